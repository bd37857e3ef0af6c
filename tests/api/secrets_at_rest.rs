//! Credentials at rest: never in plaintext in the database, and bound to
//! their row and field.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    no_plaintext_credential_at_rest,
    moved_ciphertext_does_not_decrypt,
    no_plaintext_message_at_rest,
    plaintext_message_data_when_switched_off,
);

/// Distinctive substrings of every credential of `connection_body(bot)`.
fn secrets_of(bot: &str) -> Vec<String> {
    let body = connection_body(bot);
    let mut secrets: Vec<String> = ["client_secret", "bot_secret", "auth_header"]
        .iter()
        .map(|f| body[f].as_str().unwrap().to_owned())
        .collect();
    // Every line of the key's base64 body, and the body as one string.
    let lines: Vec<&str> = PKCS8.lines().filter(|l| !l.starts_with("-----")).collect();
    secrets.extend(
        lines
            .iter()
            .filter(|l| l.len() >= 40)
            .map(|l| l.to_string()),
    );
    secrets.push(lines.concat()[100..160].to_owned());
    secrets
}

fn find(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn no_plaintext_credential_at_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("At rest").await;
    let created = app
        .create_connection(&tenant, &connection_body("7000001"))
        .await;
    let engine_secret = "engine-hmac-secret-AtRest-0042";
    let (status, _) = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/tenants/{}/engine", tenant.id),
            &tenant.api_key,
            &json!({"kind": "http", "url": "https://e.example/", "secret": engine_secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let status_secret = "status-hook-secret-AtRest-0043";
    let (status, _) = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/tenants/{}/status-hook", tenant.id),
            &tenant.api_key,
            &json!({"url": "https://jobs.example/status", "secret": status_secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut secrets = secrets_of("7000001");
    secrets.push(engine_secret.to_owned());
    secrets.push(status_secret.to_owned());
    secrets.push(tenant.api_key.clone());
    secrets.push(app.admin_token.clone());

    let raw = app.db.raw_contents().await;
    assert!(raw.len() > 1000, "the dump holds the data");
    // The test can see the data that is meant to be plain.
    assert!(
        find(&raw, "1wagx.serviceaccount@example.com"),
        "the dump is readable"
    );
    for secret in &secrets {
        assert!(
            !find(&raw, secret),
            "plaintext credential found at rest: {}…",
            &secret[..8]
        );
    }

    // Nor in any API answer.
    let (_, listed) = app
        .get(
            &format!("/api/v1/tenants/{}/connections", tenant.id),
            &tenant.api_key,
        )
        .await;
    let (_, tenant_view) = app
        .get(&format!("/api/v1/tenants/{}", tenant.id), &tenant.api_key)
        .await;
    for answer in [
        created.to_string(),
        listed.to_string(),
        tenant_view.to_string(),
    ] {
        for secret in &secrets {
            assert!(
                !answer.contains(secret.as_str()),
                "secret in an API answer: {answer}"
            );
        }
    }
}

async fn moved_ciphertext_does_not_decrypt(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Moved").await;
    let a = app
        .create_connection(&tenant, &connection_body("8000001"))
        .await;
    let b = app
        .create_connection(&tenant, &connection_body("8000002"))
        .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let path = |id: &str| format!("/api/v1/tenants/{}/connections/{id}", tenant.id);

    let mut conn = app.db.connect().await;
    let copy = |from_owner: &str, from_field: &str, to_owner: &str, to_field: &str| {
        format!(
            "UPDATE secrets SET key_id = (SELECT key_id FROM secrets WHERE owner_id = '{from_owner}' AND field = '{from_field}'), \
             nonce = (SELECT nonce FROM secrets WHERE owner_id = '{from_owner}' AND field = '{from_field}'), \
             ciphertext = (SELECT ciphertext FROM secrets WHERE owner_id = '{from_owner}' AND field = '{from_field}') \
             WHERE owner_id = '{to_owner}' AND field = '{to_field}'"
        )
    };
    // A's client secret copied into B's row; A's bot secret into A's client secret field.
    for sql in [
        copy(a_id, "client_secret", b_id, "client_secret"),
        copy(a_id, "bot_secret", a_id, "client_secret"),
    ] {
        let done = sqlx::query(&sql).execute(&mut conn).await.unwrap();
        assert_eq!(sqlx::any::AnyQueryResult::rows_affected(&done), 1);
    }

    for id in [a_id, b_id] {
        let (status, body) = app.get(&path(id), &tenant.api_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["unreadable_secrets"],
            json!(["client_secret"]),
            "{body}"
        );
        assert!(body["client_secret"].is_null());
        assert!(
            body["bot_secret"].as_str().unwrap().starts_with("****"),
            "untouched values still open"
        );
    }
    // The same, straight through the vault.
    let records = app.state.store.secrets(b_id).await.unwrap();
    let moved = records.iter().find(|r| r.field == "client_secret").unwrap();
    assert_eq!(
        app.state.vault.open(&moved.sealed, moved.aad()).err(),
        Some(botgate::secrets::OpenError::Rejected)
    );

    // Re-entering the value repairs it.
    let (status, body) = app
        .send_json(
            Method::PATCH,
            &path(b_id),
            &tenant.api_key,
            &json!({"client_secret": "re-entered-secret-7777"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["client_secret"], "****7777");
    assert!(body.get("unreadable_secrets").is_none());
}

/// The SQLite file and its log are readable by botgate's user alone, and a
/// looser existing file is tightened at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_file_and_its_log_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app(Backend::Sqlite).await;
    let tenant = app.create_tenant("Files").await;
    app.create_connection(&tenant, &connection_body("7000009"))
        .await;
    let db = app.db.sqlite_path.clone().unwrap();
    let mode = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(std::path::PathBuf::from(name)).map(|m| m.permissions().mode() & 0o777)
    };
    assert_eq!(mode("").unwrap(), 0o600, "the database file");
    assert_eq!(mode("-wal").unwrap(), 0o600, "its write-ahead log");

    // A file made readable by others is tightened when botgate opens it.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite://{}", db.display());
    let settings_url = botgate::config::DatabaseUrl::parse(&url).unwrap();
    let store = botgate::store::Store::connect(&settings_url, 2)
        .await
        .unwrap();
    store.close().await;
    assert_eq!(mode("").unwrap(), 0o600, "tightened at start");
}

/// A user's message and a send-API message pass through, and neither text
/// is anywhere in the database file (and its log) or a `pg_dump`; the APIs
/// still show them; a body copied to another row does not open there.
async fn no_plaintext_message_at_rest(backend: Backend) {
    let (s, markers) = messages_through(backend, "").await;
    let raw = s.app.db.raw_contents().await;
    assert!(find(&raw, "\u{1}bgs1:"), "sealed bodies are stored");
    for marker in &markers {
        assert!(
            !find(&raw, marker),
            "plaintext message text at rest: {marker}"
        );
        // pg_dump writes a BYTEA (the raw callbacks) in hex.
        assert!(
            !find(&raw, &hex_of(marker)),
            "plaintext in a raw callback: {marker}"
        );
    }
    // Opened for the APIs.
    let outbox = outbox_texts(&s).await;
    assert!(outbox.iter().any(|t| t.contains(&markers[0])), "{outbox:?}");
    assert!(outbox.iter().any(|t| t.contains(&markers[1])), "{outbox:?}");

    // The second message's sealed content copied over the first's: the
    // first no longer opens (its row is part of the AAD).
    let mut conn = s.app.db.connect().await;
    let done = sqlx::query(
        "UPDATE outbound_messages SET content = (SELECT content FROM outbound_messages ORDER BY seq DESC LIMIT 1) \
         WHERE seq = (SELECT MIN(seq) FROM outbound_messages)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(sqlx::any::AnyQueryResult::rows_affected(&done), 1);
    let (status, body) = s
        .app
        .get(&format!("{}/outbox", s.conn_path()), &s.tenant.api_key)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        !body.to_string().contains(&markers[1]),
        "nothing of the moved body is shown: {body}"
    );
}

/// With `seal_message_data = false` the same texts are stored readable
/// (and the test above can see them when they are).
async fn plaintext_message_data_when_switched_off(backend: Backend) {
    let (s, markers) = messages_through(backend, "seal_message_data = false").await;
    let raw = s.app.db.raw_contents().await;
    for marker in &markers {
        assert!(find(&raw, marker), "stored in plaintext: {marker}");
    }
    // The raw callback too: in hex in a pg_dump; on SQLite, beside the reply
    // that echoes it.
    match backend {
        Backend::Postgres => assert!(
            find(&raw, &hex_of(&markers[0])),
            "raw callback in plaintext"
        ),
        Backend::Sqlite => assert!(
            raw.windows(markers[0].len())
                .filter(|w| *w == markers[0].as_bytes())
                .count()
                >= 2,
            "raw callback in plaintext"
        ),
    }
    let outbox = outbox_texts(&s).await;
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    // A body that begins like a sealed one is sealed even so: stored as it
    // came, it would be taken for one and could not be read back.
    let mut event =
        crate::inbound::user_u1_event(&s, &json!({"issuedTime": "2026-12-04T00:00:00Z"}));
    event.raw = b"\x01bgs1:k000000000000:AAAA".to_vec();
    let event = s.app.state.store.seal_inbound(event);
    assert_ne!(event.raw, b"\x01bgs1:k000000000000:AAAA".to_vec());
    let written = s
        .app
        .state
        .store
        .insert_inbound_batch(std::slice::from_ref(&event), 86_400_000, None)
        .await
        .unwrap();
    assert_eq!(written.len(), 1);
    let (tenant, connection) = (
        botgate::domain::ids::TenantId::parse(&s.tenant.id).unwrap(),
        botgate::domain::ids::ConnectionId::parse(s.connection["id"].as_str().unwrap()).unwrap(),
    );
    let stored = s
        .app
        .state
        .store
        .events(&tenant, &connection, None, 10)
        .await
        .unwrap();
    let back = stored.iter().find(|e| e.id == event.id).unwrap();
    assert_eq!(
        back.raw,
        b"\x01bgs1:k000000000000:AAAA".to_vec(),
        "read back as it came"
    );
}

/// An echoed callback and a send-API message, both delivered; their texts.
async fn messages_through(backend: Backend, extra: &str) -> (crate::inbound::Inbound, [String; 2]) {
    let s =
        crate::inbound::setup_with(backend, botgate::emulator::EmulatorConfig::default(), extra)
            .await;
    let markers = [
        format!(
            "Pineapple-{}",
            botgate::secrets::hex(&botgate::secrets::random_bytes(8))
        ),
        format!(
            "Grapefruit-{}",
            botgate::secrets::hex(&botgate::secrets::random_bytes(8))
        ),
    ];
    s.callback(
        json!({"type": "message", "user_id": "u1", "text": format!("hello {}", markers[0])}),
    )
    .await;
    let (status, body) = s
        .app
        .send_json(
            Method::POST,
            &format!("/api/v1/connections/{}/messages", s.connection["id"].as_str().unwrap()),
            &s.tenant.api_key,
            &json!({"user_id": "u1", "content": {"type": "text", "text": format!("notice {}", markers[1])}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sent = s.wait_messages(2, std::time::Duration::from_secs(15)).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    for marker in &markers {
        assert!(
            sent.iter().any(|m| m["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .contains(marker.as_str())),
            "{sent:?}"
        );
    }
    // Stored as the callers left it: the event done, both delivered.
    let start = std::time::Instant::now();
    while s.events("done").await.is_empty() && start.elapsed() < std::time::Duration::from_secs(10)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let events = s
        .app
        .state
        .store
        .events(
            &botgate::domain::ids::TenantId::parse(&s.tenant.id).unwrap(),
            &botgate::domain::ids::ConnectionId::parse(s.connection["id"].as_str().unwrap())
                .unwrap(),
            Some("done"),
            10,
        )
        .await
        .unwrap();
    assert!(
        find(&events[0].raw, &markers[0]),
        "the store opens the raw callback for its readers"
    );
    (s, markers)
}

async fn outbox_texts(s: &crate::inbound::Inbound) -> Vec<String> {
    let (status, body) = s
        .app
        .get(&format!("{}/outbox", s.conn_path()), &s.tenant.api_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn hex_of(text: &str) -> String {
    botgate::secrets::hex(text.as_bytes())
}
