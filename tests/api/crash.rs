//! A botgate process killed with SIGKILL in the middle of a load, then
//! restarted: every callback that was answered 200 is still delivered.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;
use botgate::naverworks::signature;

use crate::both_backends;
use crate::emulator::{app_config, spawn_emulator};
use crate::helpers::*;

pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(env: &[(String, String)], dir: &std::path::Path) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botgate"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The process's log, kept for a failure message.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("botgate.log"))
        .expect("log file");
    Process(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start botgate"),
    )
}

pub(crate) async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("botgate did not start");
}

/// The environment of a botgate process on a free port: the test database,
/// a data directory in `dir`, a fresh master key, `admin` as the admin
/// token, and the settings `extra` makes from the base URL (`BOTGATE_*`
/// names). Answers the base URL and the environment.
pub(crate) fn process_env(
    db: &TestDb,
    dir: &std::path::Path,
    admin: &str,
    extra: impl FnOnce(&str) -> Vec<(&'static str, String)>,
) -> (String, Vec<(String, String)>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(&'static str, String)> = vec![
        ("BOTGATE_LISTEN", format!("127.0.0.1:{port}")),
        ("BOTGATE_DATABASE_URL", db.url.clone()),
        ("BOTGATE_DATA_DIR", dir.join("data").display().to_string()),
        (
            "BOTGATE_MASTER_KEY",
            botgate::secrets::MasterKey::generate()
                .to_base64()
                .expose_secret()
                .to_owned(),
        ),
        ("BOTGATE_ADMIN_TOKEN", admin.to_owned()),
    ];
    env.extend(extra(&base));
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    (base, env)
}

both_backends!(
    sigkill_mid_load_loses_no_acknowledged_callback,
    sigterm_mid_load_drains_and_holds_no_lease
);

async fn sigkill_mid_load_loses_no_acknowledged_callback(backend: Backend) {
    stop_mid_load(backend, false).await;
}

async fn sigterm_mid_load_drains_and_holds_no_lease(backend: Backend) {
    stop_mid_load(backend, true).await;
}

/// Leases still held in either queue.
async fn leases_held(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    let mut held = 0;
    for table in ["inbound_events", "outbound_messages"] {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE locked_by IS NOT NULL");
        let row = sqlx::query(&sql).fetch_one(&mut conn).await.unwrap();
        held += sqlx::Row::get::<i64, _>(&row, "n");
    }
    held
}

/// Loads a real botgate process, stops it mid-load (SIGTERM: gracefully;
/// SIGKILL: dead), restarts it, and checks every acknowledged callback is
/// delivered.
async fn stop_mid_load(backend: Backend, graceful: bool) {
    let emu = spawn_emulator(EmulatorConfig {
        rate_limit_per_minute: 1_000_000,
        ..Default::default()
    })
    .await;
    let engine = spawn_engine(json!({"replies": [{"type": "text", "text": "{{text}}"}]})).await;
    *engine.mode.lock().unwrap() = "hang:100".into(); // keep work in flight
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let admin = "crash-test-admin-token-0123456789".to_owned();
    let (base, env) = crate::crash::process_env(&db, dir.path(), &admin, |_| {
        vec![
            (
                "BOTGATE_NAVERWORKS_AUTH_URL",
                format!("{}/oauth2/v2.0", emu.url),
            ),
            ("BOTGATE_NAVERWORKS_API_URL", format!("{}/v1.0", emu.url)),
            ("BOTGATE_RETRY_BASE_MS", "50".to_owned()),
            // A killed process's claims come back after their lease (the
            // longer of these timeouts + 10 s): 13 s, not the defaults' 25 s.
            ("BOTGATE_ENGINE_TIMEOUT_SECONDS", "3".to_owned()),
            ("BOTGATE_SEND_TIMEOUT_SECONDS", "3".to_owned()),
            ("BOTGATE_ENGINE_ALLOWED_NETWORKS", "127.0.0.0/8".to_owned()),
            ("BOTGATE_LOG", "botgate=info".to_owned()),
        ]
    });
    let client = reqwest::Client::new();
    let mut process = Some(start(&env, dir.path()));
    wait_healthy(&client, &base).await;

    // A tenant with the http engine, and a connection to the emulator's bot.
    let tenant: Value = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Crash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (tenant_id, key) = (
        tenant["id"].as_str().unwrap(),
        tenant["api_key"].as_str().unwrap(),
    );
    let res = client
        .request(
            Method::PUT,
            format!("{base}/api/v1/tenants/{tenant_id}/engine"),
        )
        .bearer_auth(key)
        .json(
            &json!({"kind": "http", "url": engine.url, "secret": "engine-hmac-secret-0123456789"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let app = app_config();
    let conn: Value = client.post(format!("{base}/api/v1/tenants/{tenant_id}/connections")).bearer_auth(key)
        .json(&json!({"bot_id": "2000001", "client_id": app.client_id, "client_secret": app.client_secret, "service_account": app.service_account,
            "private_key": PKCS8, "bot_secret": "test-bot-secret", "auth_header": "internal-services-auth-header", "rate_limit_per_minute": 6000}))
        .send().await.unwrap().json().await.unwrap();
    let path = conn["webhook_url"]
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:8080", "");

    // Load from 10 users; kill the process once 100 callbacks were acknowledged.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for u in 0..10 {
        let (acked, killed, client, url) = (
            acked.clone(),
            killed.clone(),
            client.clone(),
            format!("{base}{path}"),
        );
        tasks.push(tokio::spawn(async move {
            for m in 0..40 {
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                let text = format!("c{u}-{m}");
                let body = json!({"type": "message", "source": {"userId": format!("cu-{u}"), "domainId": 10000}, "issuedTime": botgate::domain::rfc3339(botgate::domain::now_millis()), "content": {"type": "text", "text": text}});
                let raw = serde_json::to_vec(&body).unwrap();
                let sig = signature::sign(b"test-bot-secret", &raw);
                let res = client.post(&url).body(raw).header("X-WORKS-BotId", "2000001").header("X-WORKS-Signature", sig).send().await;
                if res.is_ok_and(|r| r.status() == StatusCode::OK) {
                    acked.lock().unwrap().push(text);
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if graceful {
        let mut child = process.take().unwrap();
        let pid = child.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "botgate did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "a clean exit: {status:?}");
        killed.store(true, Ordering::SeqCst);
        let held = leases_held(&db).await;
        if held != 0 {
            let log = std::fs::read_to_string(dir.path().join("botgate.log")).unwrap_or_default();
            let mut conn = db.connect().await;
            let rows = sqlx::query("SELECT status, locked_by, attempts, last_error FROM inbound_events WHERE locked_by IS NOT NULL UNION ALL SELECT status, locked_by, attempts, last_error FROM outbound_messages WHERE locked_by IS NOT NULL")
                .fetch_all(&mut conn).await.unwrap();
            let rows: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{:?} {:?} {:?}",
                        sqlx::Row::get::<String, _>(r, 0),
                        sqlx::Row::get::<i64, _>(r, 2),
                        sqlx::Row::get::<Option<String>, _>(r, 3)
                    )
                })
                .collect();
            panic!("{held} leases held after SIGTERM: {rows:?}\n{log}");
        }
    } else {
        drop(process.take()); // SIGKILL, mid-load
    }
    killed.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before = emu.messages().await.len();
    assert!(
        before < acked.len(),
        "the kill came before everything was delivered ({before} of {})",
        acked.len()
    );

    // Restart: the dead process's leases expire and its work is picked up.
    *engine.mode.lock().unwrap() = "ok".into();
    let _restarted = start(&env, dir.path());
    wait_healthy(&client, &base).await;
    let started = Instant::now();
    loop {
        let delivered: Vec<String> = emu
            .messages()
            .await
            .iter()
            .map(|m| m["content"]["text"].as_str().unwrap().to_owned())
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|t| !delivered.contains(t)).collect();
        if missing.is_empty() {
            let duplicates = delivered.len()
                - delivered
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len();
            assert!(
                duplicates <= 64,
                "duplicates only for sends in flight at the kill: {duplicates}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} acknowledged callbacks never delivered: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
