//! Data lifecycle: retention, deleting a tenant or a connection with all
//! its rows, and a tenant's export.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;
use botgate::store::{Pruned, Retention};

use crate::inbound::{setup_with, Inbound};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    retention_deletes_exactly_the_rows_past_it,
    deleting_a_connection_or_a_tenant_removes_every_row,
    a_tenant_exports_its_data,
);

const DAY: i64 = 86_400_000;

async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    connection: &str,
    id: &str,
    status: &str,
    at: i64,
) {
    sqlx::query(
        "INSERT INTO inbound_events (id, tenant_id, connection_id, conversation, event_type, raw, \
           status, attempts, next_attempt_at, received_at, updated_at) \
         VALUES ($1, $2, $3, 'u:u1', 'message', $4, $5, 1, $6, $6, $6)",
    )
    .bind(id)
    .bind(tenant)
    .bind(connection)
    .bind(b"{}".to_vec())
    .bind(status)
    .bind(at)
    .execute(conn)
    .await
    .unwrap();
}

pub async fn insert_message(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    connection: &str,
    id: &str,
    status: &str,
    at: i64,
) {
    sqlx::query(
        "INSERT INTO outbound_messages (id, tenant_id, connection_id, conversation, target_kind, target_id, \
           content, status, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'u:u1', 'user', 'u1', '{}', $4, 1, $5, $5, $5)",
    )
    .bind(id)
    .bind(tenant)
    .bind(connection)
    .bind(status)
    .bind(at)
    .execute(conn)
    .await
    .unwrap();
}

async fn ids(conn: &mut sqlx::AnyConnection, sql: &str) -> Vec<String> {
    let mut ids: Vec<String> = sqlx::query(sql)
        .fetch_all(conn)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect();
    ids.sort();
    ids
}

/// Events done or ignored and messages delivered go after 7 days, dead
/// events and failed messages after 30, audit entries after 90; open rows
/// never; in batches (of 2 here) along each connection's rows.
async fn retention_deletes_exactly_the_rows_past_it(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            extra: "workers = false".into(),
            ..Options::default()
        },
    )
    .await;
    let tenant = app.create_tenant("Retention").await;
    let a = app
        .create_connection(&tenant, &connection_body("7100001"))
        .await;
    let b = app
        .create_connection(&tenant, &connection_body("7100002"))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let now = botgate::domain::now_millis();
    let mut conn = app.db.connect().await;
    // (connection, id, status, age in days); ids ending in _gone are due.
    let events = [
        (a, "e_done_8_gone", "done", 8),
        (a, "e_done_6", "done", 6),
        (a, "e_ignored_9_gone", "ignored", 9),
        (a, "e_dead_8", "dead", 8),
        (a, "e_dead_31_gone", "dead", 31),
        (a, "e_pending_40", "pending", 40),
        (a, "e_processing_40", "processing", 40),
        (a, "e_done_10_gone", "done", 10),
        (a, "e_done_12_gone", "done", 12),
        (b, "e_b_done_20_gone", "done", 20),
        (b, "e_b_done_1", "done", 1),
    ];
    // Inserted oldest first, as they would have arrived.
    let mut by_age = events.to_vec();
    by_age.sort_by_key(|e| -e.3);
    for (c, id, status, age) in by_age {
        insert_event(&mut conn, &tenant.id, c, id, status, now - age * DAY).await;
    }
    let messages = [
        (a, "m_delivered_8_gone", "delivered", 8),
        (a, "m_delivered_6", "delivered", 6),
        (a, "m_failed_8", "failed", 8),
        (a, "m_failed_31_gone", "failed", 31),
        (a, "m_pending_40", "pending", 40),
        (a, "m_sending_40", "sending", 40),
        (a, "m_delivered_9_gone", "delivered", 9),
        (a, "m_delivered_9b_gone", "delivered", 9),
        (a, "m_delivered_9c_gone", "delivered", 9),
        (b, "m_b_delivered_15_gone", "delivered", 15),
    ];
    for (c, id, status, age) in messages {
        insert_message(&mut conn, &tenant.id, c, id, status, now - age * DAY).await;
    }
    let entry = |connection: &str, age: i64| botgate::store::AuditEntry {
        connection_id: connection.to_owned(),
        tenant_id: tenant.id.clone(),
        at: now - age * DAY,
        client_addr: "10.0.0.1".into(),
        action: "read".into(),
        outcome: "ok".into(),
    };
    app.state
        .store
        .record_audit(&[
            entry(a, 120),
            entry(a, 91),
            entry(a, 89),
            entry(b, 100),
            entry(b, 2),
        ])
        .await
        .unwrap();
    // Activity: two entries past 90 days (pruned two at a time), one not.
    for age in [120, 10, 91] {
        let entry = botgate::store::ActivityEntry {
            id: 0,
            tenant_id: tenant.id.clone(),
            connection_id: Some(a.to_owned()),
            at: now - age * DAY,
            action: "connection.updated".into(),
            actor: "tenant".into(),
            via: "api".into(),
            client_addr: "10.0.0.1".into(),
            detail: format!("{age} days ago"),
        };
        app.state.store.record_activity(&entry).await.unwrap();
    }

    let retention = Retention {
        done_before: now - 7 * DAY,
        dead_before: now - 30 * DAY,
        audit_before: now - 90 * DAY,
    };
    let pruned = app.state.store.prune_history(&retention, 2).await.unwrap();
    let kept = |rows: &[(&str, &str, &str, i64)]| {
        let mut ids: Vec<String> = rows
            .iter()
            .filter(|r| !r.1.ends_with("_gone"))
            .map(|r| r.1.to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&mut conn, "SELECT id FROM inbound_events").await,
        kept(&events)
    );
    assert_eq!(
        ids(&mut conn, "SELECT id FROM outbound_messages").await,
        kept(&messages)
    );
    let ages: Vec<String> = ids(&mut conn, "SELECT CAST(at AS TEXT) FROM token_audit").await;
    let mut expected: Vec<String> = [89, 2]
        .iter()
        .map(|age| (now - age * DAY).to_string())
        .collect();
    expected.sort();
    assert_eq!(ages, expected, "audit entries younger than 90 days kept");
    assert_eq!(
        ids(
            &mut conn,
            "SELECT detail FROM activity WHERE detail LIKE '%days ago'"
        )
        .await,
        ["10 days ago"],
        "activity younger than 90 days kept"
    );
    assert_eq!(
        pruned,
        Pruned {
            events: 6,
            messages: 6,
            audit: 3,
            activity: 2,
        }
    );
    // A second pass finds nothing more.
    assert_eq!(
        app.state.store.prune_history(&retention, 2).await.unwrap(),
        Pruned::default()
    );
}

/// A tenant's connection with a conversation behind it: a callback echoed,
/// a send-API message, a token read through the auth URL (an audit entry).
async fn with_history(backend: Backend) -> (Inbound, String) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let marker = format!(
        "Lifecycle-{}",
        botgate::secrets::hex(&botgate::secrets::random_bytes(6))
    );
    s.callback(json!({"type": "message", "user_id": "u1", "text": format!("hi {marker}")}))
        .await;
    let (status, _) = s
        .app
        .send_json(
            Method::POST,
            &format!("/api/v1/connections/{}/messages", connection_id(&s)),
            &s.tenant.api_key,
            &json!({"user_id": "u1", "content": {"type": "text", "text": "notice"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        s.wait_messages(2, std::time::Duration::from_secs(15))
            .await
            .len(),
        2
    );
    let auth = s.connection["auth_url"]
        .as_str()
        .unwrap()
        .replace("https://botgate.example.com/base", "");
    let read = s
        .app
        .client
        .get(s.app.url(&auth))
        .header("DANBEE-NAVERWORKS-AUTH", "internal-services-auth-header")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // The audit is written in the background.
    let mut conn = s.app.db.connect().await;
    let start = std::time::Instant::now();
    while count(&mut conn, "token_audit", "connection_id", connection_id(&s)).await == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "no audit entry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (s, marker)
}

fn connection_id(s: &Inbound) -> &str {
    s.connection["id"].as_str().unwrap()
}

async fn count(conn: &mut sqlx::AnyConnection, table: &str, column: &str, value: &str) -> i64 {
    let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1"))
        .bind(value)
        .fetch_one(conn)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

/// Every table and the column naming whose row it is; the test fails on a
/// table it does not list, so a new table gets its rule here.
const TENANT_TABLES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("connections", "tenant_id"),
    ("secrets", "tenant_id"),
    ("token_audit", "tenant_id"),
    ("inbound_events", "tenant_id"),
    ("outbound_messages", "tenant_id"),
    ("console_sessions", "tenant_id"),
    ("console_links", "tenant_id"),
    // Kept when a connection is deleted (its deletion is an entry).
    ("activity", "tenant_id"),
];
const CONNECTION_TABLES: &[(&str, &str)] = &[
    ("connections", "id"),
    ("secrets", "connection_id"),
    ("tokens", "connection_id"),
    ("token_audit", "connection_id"),
    ("inbound_events", "connection_id"),
    ("inbound_dedup", "connection_id"),
    ("outbound_messages", "connection_id"),
    ("slack_installations", "connection_id"),
    ("oauth_states", "connection_id"),
];
/// Tables of no tenant.
const OTHER_TABLES: &[&str] = &["_sqlx_migrations", "sqlite_sequence"];

async fn tables(conn: &mut sqlx::AnyConnection, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'"
        }
    };
    ids(conn, sql).await
}

async fn deleting_a_connection_or_a_tenant_removes_every_row(backend: Backend) {
    let (s, _) = with_history(backend).await;
    let mut conn = s.app.db.connect().await;
    for table in tables(&mut conn, backend).await {
        assert!(
            TENANT_TABLES
                .iter()
                .chain(CONNECTION_TABLES)
                .any(|(t, _)| *t == table)
                || OTHER_TABLES.contains(&table.as_str()),
            "table {table} has no deletion rule in this test"
        );
    }
    let a = connection_id(&s).to_owned();
    for (table, column) in [
        ("inbound_events", "connection_id"),
        ("outbound_messages", "connection_id"),
        ("inbound_dedup", "connection_id"),
        ("token_audit", "connection_id"),
        ("secrets", "connection_id"),
        ("tokens", "connection_id"),
    ] {
        assert!(
            count(&mut conn, table, column, &a).await > 0,
            "{table} has rows of the connection"
        );
    }
    // A second connection of the tenant, and another tenant, keep theirs.
    let b = s
        .app
        .create_connection(&s.tenant, &connection_body("7200002"))
        .await;
    let b = b["id"].as_str().unwrap().to_owned();
    let other = s.app.create_tenant("Other").await;
    let other_connection = s
        .app
        .create_connection(&other, &connection_body("7200003"))
        .await;

    let (status, _) = s.app.delete(&s.conn_path(), &s.tenant.api_key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (table, column) in CONNECTION_TABLES {
        assert_eq!(
            count(&mut conn, table, column, &a).await,
            0,
            "{table} rows of the deleted connection"
        );
    }
    assert_eq!(count(&mut conn, "connections", "id", &b).await, 1);
    assert!(count(&mut conn, "secrets", "connection_id", &b).await > 0);
    // The tenant's activity keeps the connection's removal.
    let removed = sqlx::query("SELECT actor, detail FROM activity WHERE connection_id = $1 AND action = 'connection.deleted'")
        .bind(&a)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<String, _>(&removed, 0), "tenant");
    assert!(sqlx::Row::get::<String, _>(&removed, 1).starts_with("NAVER WORKS bot"));

    // The tenant: admin only.
    let path = format!("/api/v1/tenants/{}", s.tenant.id);
    let (status, _) = s.app.delete(&path, &s.tenant.api_key).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a tenant key may not delete its tenant"
    );
    let (status, _) = s.app.delete(&path, &s.app.admin_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (table, column) in TENANT_TABLES {
        assert_eq!(
            count(&mut conn, table, column, &s.tenant.id).await,
            0,
            "{table} rows of the deleted tenant"
        );
    }
    for (table, column) in CONNECTION_TABLES {
        assert_eq!(
            count(&mut conn, table, column, &b).await,
            0,
            "{table} rows of its connection"
        );
    }
    let (status, _) = s.app.delete(&path, &s.app.admin_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone");
    let (status, _) = s.app.get(&path, &s.tenant.api_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "its key is gone with it");
    // The other tenant is whole.
    let (status, _) = s
        .app
        .get(
            &format!(
                "/api/v1/tenants/{}/connections/{}",
                other.id,
                other_connection["id"].as_str().unwrap()
            ),
            &other.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn a_tenant_exports_its_data(backend: Backend) {
    let (s, marker) = with_history(backend).await;
    let path = format!("/api/v1/tenants/{}/export", s.tenant.id);
    let res = s
        .app
        .client
        .get(s.app.url(&path))
        .bearer_auth(&s.tenant.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "tenant");
    assert_eq!(lines[0]["id"], s.tenant.id.as_str());
    assert_eq!(kinds.iter().filter(|k| **k == "connection").count(), 1);
    let event = lines.iter().find(|l| l["kind"] == "event").unwrap();
    assert_eq!(
        event["callback"]["content"]["text"],
        format!("hi {marker}"),
        "{event}"
    );
    let texts: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "message")
        .map(|l| l["content"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&format!("hi {marker}").as_str()) && texts.contains(&"notice"));
    assert!(kinds.contains(&"audit"));
    assert!(!kinds.contains(&"error"));
    // Secrets stay masked; the order is by kind.
    assert!(!text.contains("internal-services-auth-header"));
    assert!(!text.contains(crate::emulator::app_config().client_secret.as_str()));
    let order: Vec<&str> = kinds.iter().copied().fold(Vec::new(), |mut v, k| {
        if v.last() != Some(&k) {
            v.push(k);
        }
        v
    });
    assert_eq!(
        order,
        [
            "tenant",
            "connection",
            "event",
            "message",
            "audit",
            "activity"
        ]
    );
    // The activity: the tenant's creation (by the admin), then its
    // connection's (by the tenant's key).
    let activity: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["kind"] == "activity")
        .map(|l| (l["action"].as_str().unwrap(), l["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        activity[..2],
        [
            ("tenant.created", "admin"),
            ("connection.created", "tenant")
        ]
    );

    // Another tenant's key cannot read it; the admin can.
    let other = s.app.create_tenant("Nosy").await;
    let (status, _) = s.app.get(&path, &other.api_key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = s
        .app
        .client
        .get(s.app.url(&path))
        .bearer_auth(&s.app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
