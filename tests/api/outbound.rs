//! The outbound policy for tenant-given URLs, end to end: engine URLs that
//! reach this machine are refused (when set, or when called), redirects are
//! not followed, oversized answers are refused while reading, and the error
//! stored for the tenant names the class of failure, never the foreign body.
//!
//! Every address these tests name is on this machine (loopback) or refused
//! before any connection: no test sends a packet anywhere else. The private
//! and metadata ranges are checked by address in `src/outbound.rs`'s unit
//! tests, and here only as literals refused when the engine is set.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::helpers::*;
use crate::inbound::{setup_with, Inbound};

both_backends!(
    engine_urls_inside_the_network_are_refused,
    oversized_engine_answers_are_refused_while_reading
);

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

/// A server on `ip` that answers every request with a redirect to `location`.
fn redirect_on(ip: &str, location: String) -> String {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let location = location.clone();
        App::new().default_service(web::to(move || {
            let location = location.clone();
            async move {
                HttpResponse::Found()
                    .insert_header(("Location", location))
                    .finish()
            }
        }))
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .run();
    tokio::spawn(server);
    format!("http://{ip}:{port}/")
}

/// A raw HTTP/1.1 server on `ip` answering each request with `size` bytes
/// of chunked body (no length announced), in 64 KiB chunks.
fn chunked_on(ip: &str, size: usize) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 65_536];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let chunk = vec![b'x'; 65_536];
            for _ in 0..size / chunk.len() {
                if stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .is_err()
                    || stream.write_all(&chunk).is_err()
                    || stream.write_all(b"\r\n").is_err()
                {
                    break;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    });
    format!("http://{ip}:{port}/")
}

impl Inbound {
    async fn put_engine(&self, engine: &Value) -> (StatusCode, Value) {
        self.app
            .send_json(
                Method::PUT,
                &format!("/api/v1/tenants/{}/engine", self.tenant.id),
                &self.tenant.api_key,
                engine,
            )
            .await
    }

    /// Sends one user message and waits for its event to have failed once;
    /// returns the error stored for the tenant.
    async fn first_error(&self, text: &str) -> String {
        self.callback(json!({"type": "message", "user_id": format!("u-{text}"), "text": text}))
            .await;
        let start = Instant::now();
        loop {
            let events = self.events("").await;
            let failed = events.iter().find(|e| {
                e["last_error"].is_string()
                    && e["conversation"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("u-{text}"))
            });
            if let Some(e) = failed {
                return e["last_error"].as_str().unwrap().to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no failed attempt: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn engine_urls_inside_the_network_are_refused(backend: Backend) {
    // Whatever reaches this engine was sent: nothing may.
    let recorder = spawn_engine(json!({"replies": [{"type": "text", "text": "leak"}]})).await;
    let port = port_of(&recorder.url);
    // Only 127.0.0.2 is allowed: the engine that redirects to the recorder.
    let s = setup_with(
        backend,
        EmulatorConfig::default(),
        "engine_allowed_networks = \"127.0.0.2/32\"",
    )
    .await;

    // Literal addresses are refused when the engine is set; nothing changes.
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://192.168.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00::1]/".to_owned(),
    ] {
        let (status, body) = s
            .put_engine(
                &json!({"kind": "http", "url": url, "secret": "engine-hmac-secret-0123456789"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["fields"][0]["field"], "url", "{body}");
        let (status, body) = s.put_engine(&json!({"kind": "rasa", "url": url})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
    }
    let (_, tenant) = s
        .app
        .get(
            &format!("/api/v1/tenants/{}", s.tenant.id),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(tenant["engine"]["kind"], "echo", "nothing was stored");

    // A name that resolves to loopback passes when set (names resolve at
    // each call) and is refused where it resolves.
    s.set_engine(
        json!({"kind": "http", "url": format!("http://localhost:{port}/"),
        "secret": "engine-hmac-secret-0123456789"}),
    )
    .await;
    let error = s.first_error("by-name").await;
    assert!(error.contains("not allowed"), "{error}");

    // An allowed engine's redirect to loopback is not followed.
    let redirector = redirect_on("127.0.0.2", recorder.url.clone());
    s.set_engine(json!({"kind": "http", "url": redirector,
        "secret": "engine-hmac-secret-0123456789"}))
        .await;
    let error = s.first_error("redirected").await;
    assert!(error.contains("HTTP 302"), "{error}");

    assert!(
        recorder.received.lock().unwrap().is_empty(),
        "a refused URL was reached"
    );
}

async fn oversized_engine_answers_are_refused_while_reading(backend: Backend) {
    // 2 MiB, with no length announced up front, from an allowed engine; the
    // cap is 1 MiB.
    let big = chunked_on("127.0.0.2", 2 * 1024 * 1024);
    let s = setup_with(
        backend,
        EmulatorConfig::default(),
        "engine_allowed_networks = \"127.0.0.2/32\"\nengine_max_answer_bytes = 1048576",
    )
    .await;
    s.set_engine(json!({"kind": "rasa", "url": big})).await;
    let error = s.first_error("big").await;
    assert!(error.contains("larger than 1048576 bytes"), "{error}");
    assert!(
        !error.contains("xxxx"),
        "the answer is not repeated: {error}"
    );
}
