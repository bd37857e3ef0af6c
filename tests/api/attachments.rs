//! Attachments (issue 25), both backends, real HTTP: a user's image reaches
//! an http engine as a botgate `/files/` link whose bytes are the
//! emulator's; the engine answers with a PDF as base64 and the emulator
//! receives the same bytes and a message sending that fileId; forged,
//! altered, expired, foreign and orphaned links get 404 without a platform
//! call; a redirect to an untrusted host gets no Authorization header; a
//! file over the cap is refused; a blocked file type is refused before any
//! upload.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest as _;

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::helpers::*;
use crate::inbound::{setup_with, Inbound};

const PUBLIC: &str = "https://botgate.example.com/base";

fn sha(bytes: &[u8]) -> String {
    botgate::secrets::hex(&sha2::Sha256::digest(bytes))
}

/// (link, status, bytes) of each download an engine made.
type Downloads = Arc<Mutex<Vec<(String, u16, Vec<u8>)>>>;

/// An http engine that downloads every `content.url` it is given (through
/// the test app's address) and answers with `reply`.
#[derive(Clone)]
struct FileEngine {
    url: String,
    /// The app's address, for the links' public base.
    base: Arc<Mutex<String>>,
    downloads: Downloads,
}

async fn spawn_file_engine(reply: Value) -> FileEngine {
    let base = Arc::new(Mutex::new(String::new()));
    let downloads: Downloads = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (b, d) = (base.clone(), downloads.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (b, d, reply, client) = (b.clone(), d.clone(), reply.clone(), client.clone());
        App::new().default_service(web::to(move |_req: HttpRequest, body: web::Bytes| {
            let (b, d, reply, client) = (b.clone(), d.clone(), reply.clone(), client.clone());
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(link) = event.pointer("/content/url").and_then(Value::as_str) {
                    let base = b.lock().unwrap().clone();
                    let local = link.replace(PUBLIC, &base);
                    let res = client.get(&local).send().await.unwrap();
                    let status = res.status().as_u16();
                    let bytes = res.bytes().await.unwrap_or_default().to_vec();
                    d.lock().unwrap().push((link.to_owned(), status, bytes));
                }
                HttpResponse::Ok().json(json!({ "replies": reply }))
            }
        }))
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    FileEngine {
        url: format!("http://127.0.0.1:{port}/engine"),
        base,
        downloads,
    }
}

async fn with_engine(backend: Backend, extra: &str, reply: Value) -> (Inbound, FileEngine) {
    let engine = spawn_file_engine(reply).await;
    let s = setup_with(backend, EmulatorConfig::default(), extra).await;
    *engine.base.lock().unwrap() = s.app.address.clone();
    s.set_engine(json!({"kind": "http", "url": engine.url, "secret": "an-engine-signing-secret"}))
        .await;
    (s, engine)
}

/// A user's file at the emulator: its fileId.
async fn user_file(s: &Inbound, name: &str, bytes: &[u8]) -> String {
    let res: Value = s
        .emu
        .client
        .post(format!(
            "{}/emulator/files?bot_id=2000001&name={name}",
            s.emu.url
        ))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["fileId"].as_str().unwrap().to_owned()
}

async fn files(s: &Inbound) -> Vec<Value> {
    s.emu.get_json("/emulator/files").await["files"]
        .as_array()
        .unwrap()
        .clone()
}

async fn platform_downloads(s: &Inbound) -> u64 {
    s.emu.stats().await["downloads"].as_u64().unwrap()
}

async fn send_image(s: &Inbound, file_id: &str) {
    s.callback(json!({"type": "message", "user_id": "user-1",
        "content": {"type": "image", "fileId": file_id}}))
        .await;
}

/// A setup whose engine was given a link to a user's image holding
/// `bytes`, and downloaded them through it: the setup, the link and the
/// file's id at the platform.
async fn linked(backend: Backend, extra: &str, bytes: &[u8]) -> (Inbound, String, String) {
    let (s, engine) = with_engine(backend, extra, json!([])).await;
    let file_id = user_file(&s, "a.png", bytes).await;
    send_image(&s, &file_id).await;
    let (link, status, got) = first_download(&engine).await;
    assert_eq!((status, got.as_slice()), (200, bytes));
    (s, link, file_id)
}

/// Waits for the engine's first download.
async fn first_download(engine: &FileEngine) -> (String, u16, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(d) = engine.downloads.lock().unwrap().first().cloned() {
            return d;
        }
        assert!(Instant::now() < deadline, "the engine never downloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n% botgate test report\n".to_vec();
    bytes.extend((0..200_000u32).map(|i| (i * 7 % 251) as u8));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

both_backends!(
    an_image_reaches_the_engine_and_a_pdf_comes_back,
    file_links_refuse_what_they_did_not_issue,
    an_untrusted_redirect_gets_no_authorization,
    files_over_the_cap_and_blocked_types_are_refused,
    a_slack_file_reaches_the_engine_and_a_chart_is_uploaded,
    a_private_file_url_is_fetched_and_uploaded_only_when_configured,
);

async fn an_image_reaches_the_engine_and_a_pdf_comes_back(backend: Backend) {
    let report = pdf();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&report);
    let (s, engine) = with_engine(
        backend,
        "",
        json!([{"type": "file", "name": "../reports/Q3 report.pdf", "data_base64": b64}]),
    )
    .await;
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let file_id = user_file(&s, "photo.png", &photo).await;
    send_image(&s, &file_id).await;
    let (link, status, bytes) = first_download(&engine).await;
    assert!(link.starts_with(&format!("{PUBLIC}/files/")), "{link}");
    assert!(
        !link.contains(&file_id),
        "the link does not show the file id"
    );
    assert_eq!(status, 200);
    let held = files(&s).await;
    let original = held
        .iter()
        .find(|f| f["fileId"] == file_id.as_str())
        .unwrap();
    assert_eq!(sha(&bytes), original["sha256"].as_str().unwrap());
    assert_eq!(bytes.len(), photo.len());

    // The PDF: uploaded, then sent by its fileId.
    let messages = s.wait_messages(1, Duration::from_secs(20)).await;
    let sent = messages
        .iter()
        .find(|m| m["content"]["type"] == "file")
        .unwrap_or_else(|| panic!("{messages:?}"));
    let sent_id = sent["content"]["fileId"].as_str().unwrap();
    let held = files(&s).await;
    let uploaded = held
        .iter()
        .find(|f| f["fileId"] == sent_id)
        .unwrap_or_else(|| panic!("{held:?}"));
    assert_eq!(uploaded["uploaded"], true);
    assert_eq!(uploaded["sha256"].as_str().unwrap(), sha(&report));
    assert_eq!(
        uploaded["name"], "Q3 report.pdf",
        "the name's path is dropped"
    );
    assert_eq!(sent["content"].as_object().unwrap().len(), 2, "{sent}");
}

async fn file_links_refuse_what_they_did_not_issue(backend: Backend) {
    let (s, link, file_id) = linked(backend, "file_link_seconds = 3", b"the picture's bytes").await;
    let local = link.replace(PUBLIC, &s.app.address);
    let get = |url: String| {
        let client = s.app.client.clone();
        async move {
            let res = client.get(url).send().await.unwrap();
            let status = res.status();
            (status, res.bytes().await.unwrap())
        }
    };
    assert_eq!(get(local.clone()).await.0, StatusCode::OK);
    let calls = platform_downloads(&s).await;

    // Altered: a character of the body, or of the tag.
    let token = local.rsplit('/').next().unwrap().to_owned();
    let (body, tag) = token.split_once('.').unwrap();
    let flip = |t: &str| {
        let mut c: Vec<char> = t.chars().collect();
        c[3] = if c[3] == 'A' { 'B' } else { 'A' };
        c.into_iter().collect::<String>()
    };
    for forged in [
        format!("{}.{tag}", flip(body)),
        format!("{body}.{}", flip(tag)),
        format!("{body}."),
        "not-a-token".to_owned(),
    ] {
        let (status, body) = get(s.app.url(&format!("/files/{forged}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{forged}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
            "not_found"
        );
    }
    // Genuinely signed, but naming another tenant, or another connection.
    let state = &s.app.state;
    let connection = s.connection["id"].as_str().unwrap().to_owned();
    let other = s.app.create_tenant("Someone else").await;
    let expires = botgate::domain::now_millis() / 1000 + 600;
    for (t, c) in [
        (other.id.clone(), connection.clone()),
        (s.tenant.id.clone(), "con_doesnotexist0000000000".to_owned()),
    ] {
        let token = botgate::channels::files::token(
            state,
            &botgate::channels::files::FileRef {
                t,
                c,
                f: file_id.clone(),
                e: expires,
                w: None,
                x: None,
            },
        );
        assert_eq!(
            get(s.app.url(&format!("/files/{token}"))).await.0,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(platform_downloads(&s).await, calls, "no platform call");
    // Expired.
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    assert_eq!(get(local.clone()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(platform_downloads(&s).await, calls, "no platform call");
}

async fn an_untrusted_redirect_gets_no_authorization(backend: Backend) {
    // The real path first: the emulator's storage host (the API's own
    // host) needs the header again, and gets it.
    let (s, link, _) = linked(backend, "", b"bytes at the real storage").await;
    // Now the platform redirects elsewhere.
    let elsewhere = spawn_engine(json!({"not": "a file"})).await;
    s.emu
        .faults(json!({ "download_redirect": elsewhere.url }))
        .await;
    let res = s
        .app
        .client
        .get(link.replace(PUBLIC, &s.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = elsewhere.received.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the redirect was followed once");
    assert!(
        !seen[0].0.contains_key("authorization"),
        "no Authorization header: {:?}",
        seen[0].0
    );
}

async fn files_over_the_cap_and_blocked_types_are_refused(backend: Backend) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"MZ not really a program");
    let (s, engine) = with_engine(
        backend,
        "engine_max_attempts = 1",
        json!([{"type": "file", "name": "setup.exe", "data_base64": b64}]),
    )
    .await;
    // 30 MiB against the default cap of 25 MiB.
    let big = vec![7u8; 30 * 1024 * 1024];
    let file_id = user_file(&s, "big.mov", &big).await;
    s.callback(json!({"type": "message", "user_id": "user-1",
        "content": {"type": "video", "fileId": file_id}}))
        .await;
    let (_, status, body) = first_download(&engine).await;
    assert_eq!(status, 502);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "file_too_large", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("26214400"));
    // The engine's .exe: refused before any upload, the reason stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = s.events("dead").await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "{:?}", s.events("").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(error.contains(".exe"), "{error}");
    assert!(files(&s).await.iter().all(|f| f["uploaded"] == false));
    assert!(s.emu.messages().await.is_empty());
}

async fn slack_files(s: &crate::slack::SlackSetup) -> Value {
    s.emu.get_json("/slack/emulator/files").await
}

async fn a_slack_file_reaches_the_engine_and_a_chart_is_uploaded(backend: Backend) {
    let chart: Vec<u8> = (0..120_000u32).map(|i| (i % 241) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&chart);
    let engine =
        spawn_file_engine(json!([{"type": "image", "name": "chart.png", "data_base64": b64}]))
            .await;
    let s = crate::slack::setup(backend, "").await;
    *engine.base.lock().unwrap() = s.app.address.clone();
    let (status, body) = s
        .app
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{}/engine", s.tenant.id),
            &s.tenant.api_key,
            &json!({"kind": "http", "url": engine.url, "secret": "an-engine-signing-secret"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A user shares a photo in a channel.
    let photo: Vec<u8> = (0..90_000u32).map(|i| (i % 239) as u8).collect();
    let added: Value = s
        .emu
        .client
        .post(format!(
            "{}/slack/emulator/files?app_id={}&name=photo.jpg&mimetype=image/jpeg",
            s.emu.url,
            s.slack["app_id"].as_str().unwrap()
        ))
        .body(photo.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer = s
        .deliver(
            "file",
            json!({"file": added["id"], "channel": "C1", "text": "look"}),
        )
        .await;
    assert_eq!(answer["first"]["status"], 200, "{answer}");
    let (link, status, bytes) = first_download(&engine).await;
    assert!(link.starts_with(&format!("{PUBLIC}/files/")), "{link}");
    assert_eq!(status, 200);
    assert_eq!(sha(&bytes), sha(&photo));
    // The engine's chart: the external upload, shared in the channel.
    let messages = s.wait_messages(1, Duration::from_secs(20)).await;
    let shared = messages
        .iter()
        .find(|m| m["via"] == "files.completeUploadExternal")
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert_eq!(shared["channel"], "C1");
    let id = shared["files"][0]["id"].as_str().unwrap();
    assert_eq!(shared["files"][0]["title"], "chart.png");
    let held = slack_files(&s).await;
    let uploaded = held["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("{held}"));
    assert_eq!(uploaded["uploaded"], true);
    assert_eq!(uploaded["channel"], "C1");
    assert_eq!(uploaded["sha256"].as_str().unwrap(), sha(&chart));
}

/// A server of one file, at any path.
async fn serve_file(bytes: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let bytes = bytes.clone();
        App::new().default_service(web::to(move || {
            let bytes = bytes.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/pdf")
                    .body(bytes)
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// An engine's file at a URL the platform cannot reach (http, loopback):
/// fetched under the outbound policy and uploaded with `fetch_reply_urls`;
/// without it the message fails, saying so, and nothing is fetched or sent.
async fn a_private_file_url_is_fetched_and_uploaded_only_when_configured(backend: Backend) {
    let report = pdf();
    let server = serve_file(report.clone()).await;
    let url = format!("{server}/reports/Q4%20report.pdf");
    let reply = json!([{"type": "file", "url": url}]);
    let (s, _engine) = with_engine(backend, "fetch_reply_urls = true", reply.clone()).await;
    s.callback(json!({"type": "message", "user_id": "user-1", "text": "the report?"}))
        .await;
    let messages = s.wait_messages(1, Duration::from_secs(20)).await;
    let sent_id = messages[0]["content"]["fileId"]
        .as_str()
        .unwrap_or_else(|| panic!("{messages:?}"))
        .to_owned();
    let held = files(&s).await;
    let uploaded = held
        .iter()
        .find(|f| f["fileId"] == sent_id.as_str())
        .unwrap();
    assert_eq!(uploaded["sha256"].as_str().unwrap(), sha(&report));
    assert_eq!(uploaded["name"], "Q4 report.pdf");

    let (off, _engine) = with_engine(backend, "send_max_attempts = 1", reply).await;
    off.callback(json!({"type": "message", "user_id": "user-1", "text": "the report?"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let (status, body) = off
            .app
            .get(
                &format!(
                    "/api/v1/connections/{}/messages?status=failed",
                    off.connection["id"].as_str().unwrap()
                ),
                &off.tenant.api_key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(m) = body["messages"].as_array().and_then(|m| m.first()) {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("fetch_reply_urls"),
        "{failed}"
    );
    assert!(off.emu.messages().await.is_empty());
    assert!(files(&off).await.is_empty());
}
