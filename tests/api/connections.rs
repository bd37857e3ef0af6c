use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    connection_lifecycle,
    credential_rotation,
    tenant_isolation,
    one_connection_per_bot,
    connections_are_listed_a_page_at_a_time
);

async fn connection_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Lifecycle").await;

    // Create: ids, URLs under the public URL, masked secrets, defaults.
    let created = app
        .create_connection(&tenant, &connection_body("2000001"))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("con_"));
    assert_eq!(created["tenant_id"], tenant.id.as_str());
    assert_eq!(created["channel"], "naverworks");
    assert_eq!(created["bot_id"], "2000001");
    assert_eq!(created["client_id"], "ZbsOq6zjt0IhtZZnrc");
    assert_eq!(
        created["service_account"],
        "1wagx.serviceaccount@example.com"
    );
    assert_eq!(created["client_secret"], "****3rty");
    assert_eq!(created["bot_secret"], "****dfGh");
    assert_eq!(created["auth_header"], "****");
    assert!(created["private_key"]
        .as_str()
        .unwrap()
        .starts_with("RSA-2048 SHA256:"));
    assert_eq!(created["scope"], "bot");
    assert_eq!(created["rate_limit_per_minute"], 240);
    let webhook = created["webhook_url"].as_str().unwrap();
    let public_id = webhook
        .strip_prefix("https://botgate.example.com/base/webhooks/naverworks/")
        .expect(webhook);
    assert_eq!(public_id.len(), 32);
    assert!(
        !public_id.contains(&id[4..]),
        "the public id is not the management id"
    );
    assert_eq!(
        created["auth_url"],
        format!("https://botgate.example.com/base/auth/naverworks/{public_id}")
    );
    assert_eq!(
        created["auth_refresh_url"],
        format!("https://botgate.example.com/base/auth/naverworks/{public_id}/refresh")
    );

    // A JSON integer bot id, scope and rate limit given.
    let mut second = connection_body("2000002");
    second["bot_id"] = json!(2000002);
    second["scope"] = json!("bot,bot.read");
    second["rate_limit_per_minute"] = json!(60);
    second["private_key"] = json!(PKCS8.replace('\n', "\\n"));
    let second = app.create_connection(&tenant, &second).await;
    assert_eq!(second["bot_id"], "2000002");
    assert_eq!(second["scope"], "bot bot.read");
    assert_eq!(second["rate_limit_per_minute"], 60);
    assert_eq!(
        second["private_key"], created["private_key"],
        "same key, whatever the line breaks"
    );

    // Read and list.
    let path = format!("/api/v1/tenants/{}/connections/{id}", tenant.id);
    let (status, body) = app.get(&path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, created);
    let (status, body) = app
        .get(
            &format!("/api/v1/tenants/{}/connections", tenant.id),
            &app.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), second["id"].as_str().unwrap()]);

    // Delete: gone, and its secrets with it.
    let (status, body) = app.delete(&path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app.get(&path, &tenant.api_key).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = app.delete(&path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let snapshot = app.db.snapshot().await;
    assert!(
        !snapshot.iter().any(|row| row.contains(&id)),
        "{snapshot:?}"
    );
    assert_eq!(
        snapshot
            .iter()
            .filter(|r| r.starts_with("secrets:"))
            .count(),
        3,
        "the second connection's three"
    );
}

async fn credential_rotation(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Rotation").await;
    let created = app
        .create_connection(&tenant, &connection_body("3000001"))
        .await;
    let path = format!(
        "/api/v1/tenants/{}/connections/{}",
        tenant.id,
        created["id"].as_str().unwrap()
    );
    let before = app.db.snapshot().await;

    let patch = json!({
        "client_secret": "rotated-client-secret-9876",
        "private_key": PKCS8_OTHER,
        "bot_secret": "rotated-bot-secret-5432",
        "auth_header": "rotated-auth-header-value-1",
        "service_account": "other.serviceaccount@example.com",
        "rate_limit_per_minute": 60,
    });
    let (status, body) = app
        .send_json(Method::PATCH, &path, &tenant.api_key, &patch)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_secret"], "****9876");
    assert_eq!(body["bot_secret"], "****5432");
    assert_eq!(body["service_account"], "other.serviceaccount@example.com");
    assert_eq!(body["rate_limit_per_minute"], 60);
    assert_ne!(
        body["private_key"], created["private_key"],
        "a different key has another fingerprint"
    );
    assert_eq!(
        body["webhook_url"], created["webhook_url"],
        "rotation keeps the URLs"
    );
    assert_eq!(
        body["client_id"], created["client_id"],
        "fields not named are kept"
    );
    let after = app.db.snapshot().await;
    let changed = |prefix: &str| {
        let old: Vec<_> = before.iter().filter(|r| r.starts_with(prefix)).collect();
        let new: Vec<_> = after.iter().filter(|r| r.starts_with(prefix)).collect();
        assert_eq!(old.len(), new.len());
        old.iter().zip(&new).filter(|(a, b)| a != b).count()
    };
    assert_eq!(changed("secrets:"), 3, "all three sealed values replaced");
    assert_eq!(changed("connections:"), 1);

    // PKCS#1 is accepted and is the same key as its PKCS#8 form.
    let (status, body) = app
        .send_json(
            Method::PATCH,
            &path,
            &tenant.api_key,
            &json!({"private_key": PKCS1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["private_key"], created["private_key"]);

    // The read-back view matches the last answer.
    let (_, read) = app.get(&path, &app.admin_token).await;
    assert_eq!(read, body);
}

async fn tenant_isolation(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    let b_conn = app.create_connection(&b, &connection_body("4000001")).await;
    let b_id = b_conn["id"].as_str().unwrap();
    let before = app.db.snapshot().await;

    // A's key on B's connection, through B's path and through A's own path.
    for tenant_path in [&b.id, &a.id] {
        let path = format!("/api/v1/tenants/{tenant_path}/connections/{b_id}");
        let (status, body) = app.get(&path, &a.api_key).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        let (status, _) = app
            .send_json(
                Method::PATCH,
                &path,
                &a.api_key,
                &json!({"client_secret": "stolen-secret-xx"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app.delete(&path, &a.api_key).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = app
        .get(&format!("/api/v1/tenants/{}/connections", b.id), &a.api_key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send_json(
            Method::POST,
            &format!("/api/v1/tenants/{}/connections", b.id),
            &a.api_key,
            &connection_body("4000002"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app
        .get(&format!("/api/v1/tenants/{}/connections", a.id), &a.api_key)
        .await;
    assert_eq!(listed["connections"], json!([]));

    // No key and a wrong key: 401.
    let path = format!("/api/v1/tenants/{}/connections/{b_id}", b.id);
    for token in ["", "bgk_wrong"] {
        let (status, _) = app.get(&path, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app.delete(&path, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.db.snapshot().await, before, "nothing changed");
    let (status, _) = app.get(&path, &b.api_key).await;
    assert_eq!(status, StatusCode::OK);
}

async fn one_connection_per_bot(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;
    app.create_connection(&a, &connection_body("5000001")).await;
    let before = app.db.snapshot().await;
    let (status, body) = app
        .send_json(
            Method::POST,
            &format!("/api/v1/tenants/{}/connections", a.id),
            &a.api_key,
            &connection_body("5000001"),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "{body}"
    );
    assert_eq!(app.db.snapshot().await, before);
    // Another tenant's connection to the same bot is not refused: refusing would
    // tell tenant B that tenant A exists.
    app.create_connection(&b, &connection_body("5000001")).await;
}

/// With `limit` or `after`, the list comes a page at a time in the same
/// order as the whole list (oldest first), each connection once; without
/// them, the whole list as before (no `next_after`); bad paging is a 422,
/// and another tenant's connection is no cursor.
async fn connections_are_listed_a_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Many bots").await;
    let mut made = Vec::new();
    for i in 0..5 {
        let body = connection_body(&format!("300000{i}"));
        made.push(app.create_connection(&tenant, &body).await["id"].clone());
    }
    let path = format!("/api/v1/tenants/{}/connections", tenant.id);
    let (status, all) = app.get(&path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(all.get("next_after").is_none(), "{all}");
    let ids = |page: &serde_json::Value| -> Vec<serde_json::Value> {
        page["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect()
    };
    // Oldest first; connections made in the same millisecond by id.
    let listed = ids(&all);
    let (mut sorted, mut expected) = (listed.clone(), made.clone());
    sorted.sort_by_key(|v| v.to_string());
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(sorted, expected);

    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = app.get(&format!("{path}?{query}"), &tenant.api_key).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next_after"].as_str() {
            Some(after) => query = format!("limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, listed, "each once, in the same order");

    for bad in ["limit=0", "limit=1001", "limit=x", "after=nope"] {
        let (status, body) = app.get(&format!("{path}?{bad}"), &tenant.api_key).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let other = app.create_tenant("Other").await;
    let theirs = app
        .create_connection(&other, &connection_body("3999999"))
        .await;
    let (_, page) = app
        .get(
            &format!("{path}?after={}", theirs["id"].as_str().unwrap()),
            &tenant.api_key,
        )
        .await;
    assert_eq!(page["connections"], json!([]), "{page}");
}
