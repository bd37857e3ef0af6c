//! `botgate db copy`: a botgate moved to another database (SQLite to
//! PostgreSQL and back) keeps working where it left off, and a copy that
//! must not happen changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::helpers::*;
use crate::inbound::{setup_with, Inbound};

both_backends!(a_copied_database_serves_where_the_old_one_left_off);

/// Runs `botgate db copy --to TO` with `from` as the configured database.
fn copy(from: &str, to: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args(["db", "copy", "--to", to])
        .current_dir(dir.path())
        .env("BOTGATE_DATABASE_URL", from)
        .env("BOTGATE_DATA_DIR", dir.path())
        .output()
        .unwrap()
}

fn texts(messages: &Value) -> Vec<String> {
    messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `backend` is the source; the copy goes to the other one.
async fn a_copied_database_serves_where_the_old_one_left_off(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    s.callback(json!({"type": "message", "user_id": "user-1", "text": "before the move"}))
        .await;
    assert_eq!(s.wait_messages(1, Duration::from_secs(20)).await.len(), 1);
    let send_path = format!(
        "/api/v1/connections/{}/messages",
        s.connection["id"].as_str().unwrap()
    );
    let body = json!({"user_id": "user-2", "content": {"type": "text", "text": "sent before"}});
    let sent = s
        .app
        .request(reqwest::Method::POST, &send_path, &s.tenant.api_key)
        .header("Idempotency-Key", "nightly-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, sent) = decode(sent).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(s.wait_messages(2, Duration::from_secs(20)).await.len(), 2);
    let auth_path = s.connection["auth_url"]
        .as_str()
        .unwrap()
        .replace("https://botgate.example.com/base", "");
    let read_token = |app: &TestApp| {
        let req = app
            .client
            .get(app.url(&auth_path))
            .header("DANBEE-NAVERWORKS-AUTH", "internal-services-auth-header");
        async move { decode(req.send().await.unwrap()).await }
    };
    let (status, token) = read_token(&s.app).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let outbox_path = format!("{}/outbox", s.conn_path());
    let (_, outbox_before) = s.app.get(&outbox_path, &s.tenant.api_key).await;

    let other = match backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    };
    let target_dir = tempfile::tempdir().unwrap();
    let target = TestDb::new(other, target_dir.path()).await;
    let out = copy(&s.app.db.url, &target.url);
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("copied "), "{printed}");
    for table in botgate::store::copy::TABLES {
        assert!(printed.contains(table), "{table} not reported: {printed}");
    }

    // Refused, changing nothing: into a database that has rows, into the
    // source itself, from a database botgate never migrated.
    let rows_before = target.snapshot().await;
    let again = copy(&s.app.db.url, &target.url);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(target.snapshot().await, rows_before);
    let onto_itself = copy(&s.app.db.url, &s.app.db.url);
    assert!(!onto_itself.status.success());
    let blank_dir = tempfile::tempdir().unwrap();
    let blank = TestDb::new(other, blank_dir.path()).await;
    if let Some(file) = &blank.sqlite_path {
        std::fs::File::create(file).unwrap(); // an empty SQLite database
    }
    let from_blank = copy(&blank.url, &target.url);
    assert!(!from_blank.status.success());
    assert!(
        String::from_utf8_lossy(&from_blank.stderr).contains("no botgate schema"),
        "{}",
        String::from_utf8_lossy(&from_blank.stderr)
    );
    assert_eq!(target.snapshot().await, rows_before);
    let missing = blank_dir.path().join("nowhere").join("botgate.db");
    let from_missing = copy(&format!("sqlite://{}", missing.display()), &target.url);
    assert!(!from_missing.status.success());
    assert!(
        String::from_utf8_lossy(&from_missing.stderr).contains("no database at"),
        "{}",
        String::from_utf8_lossy(&from_missing.stderr)
    );
    assert!(
        !missing.parent().unwrap().exists(),
        "nothing made where the source is missing"
    );

    // The same server on the copy: same key, same admin token, same URLs.
    let moved = Inbound {
        app: spawn_on(&s.app, target).await,
        emu: crate::emulator::Emu {
            url: s.emu.url.clone(),
            client: s.emu.client.clone(),
        },
        tenant: Tenant {
            id: s.tenant.id.clone(),
            api_key: s.tenant.api_key.clone(),
        },
        connection: s.connection.clone(),
    };
    let (status, connection) = moved
        .app
        .get(&moved.conn_path(), &moved.tenant.api_key)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the tenant's key works: {connection}"
    );
    assert_eq!(connection["webhook_url"], s.connection["webhook_url"]);
    // The token the old database held, served as it was.
    let (status, moved_token) = read_token(&moved.app).await;
    assert_eq!(status, StatusCode::OK, "{moved_token}");
    assert_eq!(moved_token["access_token"], token["access_token"]);
    // The history, contents opened with the same key.
    let (_, outbox_after) = moved.app.get(&outbox_path, &moved.tenant.api_key).await;
    assert_eq!(texts(&outbox_after), texts(&outbox_before));
    assert!(texts(&outbox_after).contains(&"sent before".to_owned()));
    assert_eq!(moved.events("done").await.len(), 1);
    // The idempotency key still answers the first message.
    let repeat = moved
        .app
        .request(reqwest::Method::POST, &send_path, &moved.tenant.api_key)
        .header("Idempotency-Key", "nightly-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, repeat) = decode(repeat).await;
    assert_eq!((status, &repeat["id"]), (StatusCode::ACCEPTED, &sent["id"]));
    // A user writes again, to the webhook URL pasted into NAVER WORKS
    // before the move: verified with the copied bot secret, stored after
    // the copied rows, answered with the copied token.
    moved
        .callback(json!({"type": "message", "user_id": "user-1", "text": "after the move"}))
        .await;
    let sent = moved.wait_messages(3, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[2]["content"]["text"], "after the move");
    assert_eq!(moved.events("done").await.len(), 2);
    assert_eq!(s.emu.tokens_issued().await.0, 1, "no new token was needed");
}
