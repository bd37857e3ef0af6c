use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
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
