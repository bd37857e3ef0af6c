use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::console::{hidden, Visitor};
use crate::helpers::*;

both_backends!(tenant_lifecycle_and_engine, authentication_is_required);

async fn tenant_lifecycle_and_engine(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Acme helpdesk").await;
    assert!(tenant.id.starts_with("ten_"));
    assert!(tenant.api_key.starts_with("bgk_"));

    // Read back by admin and by the tenant itself: no API key, echo engine.
    for token in [&app.admin_token, &tenant.api_key] {
        let (status, body) = app
            .get(&format!("/api/v1/tenants/{}", tenant.id), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "Acme helpdesk");
        assert_eq!(body["engine"], json!({"kind": "echo"}));
        assert!(
            body.get("api_key").is_none(),
            "the API key is shown only once"
        );
    }

    // http engine: secret masked in the answer.
    let path = format!("/api/v1/tenants/{}/engine", tenant.id);
    let engine = json!({"kind": "http", "url": "https://engine.example/hook", "secret": "engine-hmac-secret-0123456789"});
    let (status, body) = app
        .send_json(Method::PUT, &path, &tenant.api_key, &engine)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"kind": "http", "url": "https://engine.example/hook", "secret": "****6789"})
    );

    // rasa, then echo again: the old secret is gone.
    let (status, body) = app
        .send_json(
            Method::PUT,
            &path,
            &app.admin_token,
            &json!({"kind": "rasa", "url": "http://rasa:5005/webhooks/rest/webhook"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "rasa");
    assert!(body.get("secret").is_none());
    let (status, body) = app
        .send_json(
            Method::PUT,
            &path,
            &tenant.api_key,
            &json!({"kind": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let snapshot = app.db.snapshot().await;
    assert!(
        !snapshot.iter().any(|row| row.contains("engine_secret")),
        "{snapshot:?}"
    );
    let (_, body) = app
        .get(&format!("/api/v1/tenants/{}", tenant.id), &tenant.api_key)
        .await;
    assert_eq!(body["engine"], json!({"kind": "echo"}));
}

async fn authentication_is_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_tenant("A").await;
    let b = app.create_tenant("B").await;

    // Only the admin creates tenants.
    let (status, body) = app
        .send_json(
            Method::POST,
            "/api/v1/tenants",
            &a.api_key,
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    // Missing, malformed, wrong and forged credentials: 401 with the challenge header.
    let path = format!("/api/v1/tenants/{}", a.id);
    for token in [
        "",
        "nonsense",
        "bgk_not-a-real-key",
        "bga_not-the-admin-token",
        &format!("{}x", app.admin_token),
    ] {
        let res = app.request(Method::GET, &path, token).send().await.unwrap();
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        let (status, body) = decode(res).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "token {token:?}"
        );
    }
    let res = app
        .client
        .get(app.url(&path))
        .header("Authorization", format!("Basic {}", a.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A tenant's key does not reach another tenant, which looks absent.
    let (status, body) = app
        .get(&format!("/api/v1/tenants/{}", b.id), &a.api_key)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/tenants/{}/engine", b.id),
            &a.api_key,
            &json!({"kind": "echo"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // The admin sees an unknown tenant as 404 too.
    let (status, _) = app
        .get(
            "/api/v1/tenants/ten_00000000000000000000000000000000",
            &app.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A tenant's API key replaced (`POST …/api-key`): the new key works and
/// the old one stops, at once or after the grace asked for; the console
/// sessions signed in with a key end; bad input changes nothing; another
/// tenant's key cannot do it.
async fn an_api_key_is_replaced_at_once_or_after_a_grace(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Rotating").await;
    let other = app.create_tenant("Other").await;
    let path = format!("/api/v1/tenants/{}/api-key", tenant.id);
    let works = |key: String| {
        let app = &app;
        let read = format!("/api/v1/tenants/{}", tenant.id);
        async move { app.get(&read, &key).await.0 == StatusCode::OK }
    };
    let mut visitor = Visitor::new(&app);
    visitor.sign_in(&tenant.api_key).await;
    assert_eq!(visitor.get("/console/connections").await.0, StatusCode::OK);

    // Refused, and nothing changes.
    let bad = [
        json!({"previous_key_valid_seconds": -1}),
        json!({"previous_key_valid_seconds": 604_801}),
        json!({"previous_key_valid_seconds": "1h"}),
        json!({"grace": 60}),
    ];
    for body in &bad {
        let (status, answer) = app
            .send_json(Method::POST, &path, &tenant.api_key, body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    let (status, _) = app
        .send_json(Method::POST, &path, &other.api_key, &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's key");
    assert!(works(tenant.api_key.clone()).await);

    // At once, with no body, by the tenant itself.
    let res = app
        .client
        .post(app.url(&path))
        .bearer_auth(&tenant.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let answer: serde_json::Value = res.json().await.unwrap();
    let second = answer["api_key"].as_str().unwrap().to_owned();
    assert!(second.starts_with("bgk_") && second != tenant.api_key);
    assert_eq!(answer["previous_key_valid_until"], serde_json::Value::Null);
    assert!(!works(tenant.api_key.clone()).await, "the old key stopped");
    assert!(works(second.clone()).await);
    let (status, headers, _) = visitor.get("/console/connections").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the console session ended");
    assert!(headers["location"].to_str().unwrap().contains("sign-in"));
    let snapshot = app.db.snapshot().await;
    assert!(
        !snapshot.iter().any(|row| row.contains(&second)),
        "only its hash is kept"
    );

    // With a grace, by the admin: both work until it passes.
    let (status, answer) = app
        .send_json(
            Method::POST,
            &path,
            &app.admin_token,
            &json!({"previous_key_valid_seconds": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let third = answer["api_key"].as_str().unwrap().to_owned();
    assert!(answer["previous_key_valid_until"].is_string(), "{answer}");
    assert!(works(second.clone()).await && works(third.clone()).await);
    // The replaced key serves the API in its grace, but may not replace the
    // key (a leaked one would take the tenant back) nor open the console.
    let (status, answer) = app
        .send_json(Method::POST, &path, &second, &json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(works(third.clone()).await, "the key was not replaced");
    let mut late = Visitor::new(&app);
    let (_, _, page) = late.get("/console/sign-in").await;
    let nonce = hidden(&page, "nonce");
    let (status, _, _) = late
        .post("/console/sign-in", &[("key", &second), ("nonce", &nonce)])
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no console with a replaced key"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    assert!(!works(second).await, "the grace is over");
    assert!(works(third).await);
}

both_backends!(an_api_key_is_replaced_at_once_or_after_a_grace);

/// The console's settings page replaces the key too: with the form's token
/// only, the new key shown once, this session kept and the tenant's other
/// console sessions ended, the old key working for the hour chosen.
async fn the_console_replaces_the_api_key_and_keeps_its_own_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Console rotating").await;
    let read = format!("/api/v1/tenants/{}", tenant.id);
    let mut me = Visitor::new(&app);
    me.sign_in(&tenant.api_key).await;
    let mut elsewhere = Visitor::new(&app);
    elsewhere.sign_in(&tenant.api_key).await;
    let (status, _, page) = me.get("/console/engine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("action=\"/console/api-key\""), "{page}");
    let csrf = hidden(&page, "csrf");

    let (status, _, page) = me.post("/console/api-key", &[("grace", "3600")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no form token");
    assert!(!page.contains("id=\"new-api-key\""));
    let (status, _, _) = me
        .post(
            "/console/api-key",
            &[("csrf", &csrf), ("grace", "99999999")],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a grace past a week"
    );
    assert_eq!(
        elsewhere.get("/console/connections").await.0,
        StatusCode::OK
    );

    let (status, _, page) = me
        .post("/console/api-key", &[("csrf", &csrf), ("grace", "3600")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let start = page.find("id=\"new-api-key\">").expect("the new key") + 17;
    let key = &page[start..start + page[start..].find('<').unwrap()];
    assert!(key.starts_with("bgk_") && key != tenant.api_key, "{key}");
    assert!(page.contains("id=\"old-key-until\""));
    assert_eq!(app.get(&read, key).await.0, StatusCode::OK);
    assert_eq!(
        app.get(&read, &tenant.api_key).await.0,
        StatusCode::OK,
        "for an hour"
    );
    assert_eq!(me.get("/console/connections").await.0, StatusCode::OK);
    assert_eq!(
        elsewhere.get("/console/connections").await.0,
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    let (_, _, page) = me.get("/console/engine").await;
    assert!(!page.contains(key), "shown only once");
}

both_backends!(the_console_replaces_the_api_key_and_keeps_its_own_session);

/// `GET /api/v1/tenants` (the admin's): every tenant once, a page at a
/// time by id, with no key; a tenant's key may not list; bad paging is a
/// 422.
async fn the_admin_lists_tenants_a_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(app.create_tenant(&format!("Listed {i}")).await);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tenants?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path, &app.admin_token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let tenants = page["tenants"].as_array().unwrap();
        assert!(tenants.len() <= 2);
        for t in tenants {
            assert!(t.get("api_key").is_none());
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(after) => path = format!("/api/v1/tenants?limit=2&after={after}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = made.iter().map(|t| t.id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected, "each once, by id");

    let (status, _) = app.get("/api/v1/tenants", &made[0].api_key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get("/api/v1/tenants", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for query in ["limit=0", "limit=1001", "limit=x", "after=nope"] {
        let (status, body) = app
            .get(&format!("/api/v1/tenants?{query}"), &app.admin_token)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
}

both_backends!(the_admin_lists_tenants_a_page_at_a_time);

both_backends!(the_activity_names_who_changed_what_and_never_a_value);

/// Changes by the tenant's key, the admin and the operator's command line
/// are each an entry, newest first, naming the fields changed and not one
/// of their values; the list pages back by `before` and refuses bad input
/// and other tenants.
async fn the_activity_names_who_changed_what_and_never_a_value(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Audited").await;
    let mut body = connection_body("7300001");
    body["client_secret"] = json!("first-client-secret-value");
    let connection = app.create_connection(&tenant, &body).await;
    let conn_path = format!(
        "/api/v1/tenants/{}/connections/{}",
        tenant.id,
        connection["id"].as_str().unwrap()
    );
    let rotate = json!({"client_secret": "second-client-secret-value", "bot_secret": "second-bot-secret-value"});
    let (status, answer) = app
        .send_json(Method::PATCH, &conn_path, &tenant.api_key, &rotate)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Refused changes are not activity.
    let (status, _) = app
        .send_json(
            Method::PATCH,
            &conn_path,
            &tenant.api_key,
            &json!({"rate_limit_per_minute": -1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let engine = json!({"kind": "http", "url": "https://engine.example/hook?token=url-credential-value", "secret": "engine-hmac-secret-value-0123"});
    let tenant_path = format!("/api/v1/tenants/{}", tenant.id);
    let (status, _) = app
        .send_json(
            Method::PUT,
            &format!("{tenant_path}/engine"),
            &tenant.api_key,
            &engine,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .send_json(
            Method::PUT,
            &format!("{tenant_path}/quotas"),
            &app.admin_token,
            &json!({"max_open_rows": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .send_json(
            Method::POST,
            &format!("{tenant_path}/api-key"),
            &app.admin_token,
            &json!({"previous_key_valid_seconds": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let out = app.cli(&["tenant", "rotate-key", "--tenant", &tenant.id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = key["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&conn_path, &app.admin_token).await.0,
        StatusCode::NO_CONTENT
    );

    let activity = format!("{tenant_path}/activity");
    let res = app
        .request(Method::GET, &activity, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for secret in [
        "first-client-secret-value",
        "second-client-secret-value",
        "second-bot-secret-value",
        "url-credential-value",
        "engine-hmac-secret-value",
        key.as_str(),
        tenant.api_key.as_str(),
    ] {
        assert!(!text.contains(secret), "a value in the activity: {text}");
    }
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = all["activity"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap();
            (
                field("action"),
                field("actor"),
                field("via"),
                field("detail"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "connection.deleted",
                "admin",
                "api",
                "NAVER WORKS bot 7300001"
            ),
            (
                "tenant.api_key_replaced",
                "operator",
                "cli",
                "the previous key stopped at once"
            ),
            (
                "tenant.api_key_replaced",
                "admin",
                "api",
                "the previous key works for 60 s more"
            ),
            (
                "tenant.quotas_set",
                "admin",
                "api",
                "max_open_rows 5000, max_callbacks_per_second default"
            ),
            ("tenant.engine_set", "tenant", "api", "http: url, secret"),
            (
                "connection.updated",
                "tenant",
                "api",
                "client_secret, bot_secret"
            ),
            (
                "connection.created",
                "tenant",
                "api",
                "NAVER WORKS bot 7300001"
            ),
            ("tenant.created", "admin", "api", "Audited"),
        ]
    );
    for e in entries {
        let expected = if e["via"] == "cli" { "" } else { "127.0.0.1" };
        assert_eq!(e["client_addr"], expected, "{e}");
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(entries[0]["connection_id"], connection["id"]);
    assert_eq!(entries[7]["connection_id"], serde_json::Value::Null);

    // Pages of three, back by `before`, give the same entries.
    let mut paged = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("{activity}?limit=3&before={id}"),
            None => format!("{activity}?limit=3"),
        };
        let (status, page) = app.get(&path, &app.admin_token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(page["activity"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_i64() {
            Some(id) => before = Some(id),
            None => break,
        }
    }
    assert_eq!(&paged, entries);
    // One connection's entries alone.
    let (status, mine) = app
        .get(
            &format!(
                "{activity}?connection={}",
                connection["id"].as_str().unwrap()
            ),
            &key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let actions: Vec<&str> = mine["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "connection.deleted",
            "connection.updated",
            "connection.created"
        ]
    );

    // Refused: bad limits and cursors, another tenant, no key.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("before=abc", "before"),
        ("connection=ten_x", "connection"),
        ("before=-4", "before"),
    ] {
        let (status, body) = app.get(&format!("{activity}?{query}"), &key).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["fields"][0]["field"], field, "{body}");
    }
    let other = app.create_tenant("Nosy").await;
    assert_eq!(
        app.get(&activity, &other.api_key).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&activity, "").await.0, StatusCode::UNAUTHORIZED);
    let mine = app.activity(&other).await;
    assert_eq!(mine.len(), 1, "only its own creation: {mine:?}");
}

both_backends!(the_engine_test_asks_the_engine_and_stores_nothing);

/// The engine test sends the tenant's engine a sample message signed as a
/// real one (with `"test": true`), for either channel, and shows its
/// replies as that channel's messages or why there were none; it stores
/// and sends nothing, and refuses bad bodies and other tenants.
async fn the_engine_test_asks_the_engine_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Engine test").await;
    let path = format!("/api/v1/tenants/{}/engine/test", tenant.id);
    let test = |body: Option<serde_json::Value>| {
        let mut req = app.request(Method::POST, &path, &tenant.api_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { decode(req.send().await.unwrap()).await }
    };
    // The built-in echo engine, with no body at all.
    let (status, echo) = test(None).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!((&echo["ok"], &echo["kind"]), (&json!(true), &json!("echo")));
    assert!(echo["replies"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Hello from botgate's engine test"));

    let engine =
        spawn_engine(json!({"replies": [{"type": "text", "text": "you said {{text}}"}]})).await;
    let secret = "engine-test-secret-0123456789";
    let (status, _) = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/tenants/{}/engine", tenant.id),
            &tenant.api_key,
            &json!({"kind": "http", "url": engine.url, "secret": secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = app.db.snapshot().await;
    let (status, naverworks) = test(Some(json!({"text": "ping"}))).await;
    assert_eq!(status, StatusCode::OK, "{naverworks}");
    assert_eq!(naverworks["ok"], true, "{naverworks}");
    assert_eq!(naverworks["reply_count"], 1);
    assert_eq!(
        naverworks["replies"],
        json!([{"type": "text", "text": "you said ping"}])
    );
    let (status, slack) = test(Some(json!({"text": "pong", "channel": "slack"}))).await;
    assert_eq!(status, StatusCode::OK, "{slack}");
    assert_eq!(slack["ok"], true, "{slack}");
    assert_eq!(slack["replies"][0]["text"], "you said pong", "{slack}");
    // The requests: signed as real ones, marked as tests, one per channel.
    let received = engine.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for ((headers, body), (channel, text)) in received
        .iter()
        .zip([("naverworks", "ping"), ("slack", "pong")])
    {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        botgate::engine::http::verify(
            secret.as_bytes(),
            &headers["x-botgate-timestamp"],
            &headers["x-botgate-signature"],
            body,
            now,
        )
        .expect("signed with the tenant's engine secret");
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (
                &body["test"],
                &body["type"],
                &body["channel"],
                &body["content"]["text"]
            ),
            (
                &json!(true),
                &json!("message"),
                &json!(channel),
                &json!(text)
            ),
            "{body}"
        );
    }

    // An engine that refuses: why, not a reply.
    *engine.mode.lock().unwrap() = "status:401".to_owned();
    let (status, refused) = test(None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("HTTP 401"),
        "{refused}"
    );
    assert_eq!(refused["replies"], json!([]));

    // Bad bodies and callers, refused.
    for (body, field) in [
        (json!({"text": ""}), "text"),
        (json!({"text": 7}), "text"),
        (json!({"channel": "line"}), "channel"),
        (json!({"other": 1}), "body"),
    ] {
        let (status, answer) = test(Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["fields"][0]["field"], field, "{answer}");
    }
    let other = app.create_tenant("Other").await;
    let res = app
        .request(Method::POST, &path, &other.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.request(Method::POST, &path, "").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Nothing stored: no event, no message, the tenant as it was.
    assert_eq!(
        app.db.snapshot().await.len(),
        before.len() + 1,
        "only the other tenant"
    );
    let mut conn = app.db.connect().await;
    for table in ["inbound_events", "outbound_messages"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }

    // The console's engine page runs the same test.
    *engine.mode.lock().unwrap() = "ok".to_owned();
    let mut visitor = Visitor::new(&app);
    visitor.sign_in(&tenant.api_key).await;
    let (_, _, page) = visitor.get("/console/engine").await;
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = visitor
        .post(
            "/console/engine/test",
            &[("csrf", &csrf), ("text", "from the console")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"engine-test-result\" data-ok=\"true\""),
        "{page}"
    );
    assert!(page.contains("you said from the console"), "{page}");
}
