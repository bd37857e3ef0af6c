//! A table of bad requests: each gets the right 4xx and error code, in the
//! JSON envelope, and leaves the database exactly as it was.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::*;

both_backends!(bad_inputs_are_refused_and_change_nothing);

enum Body {
    Json(Value),
    Raw(&'static str, String),
    None,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

async fn bad_inputs_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Bad inputs").await;
    let conn = app
        .create_connection(&tenant, &connection_body("6000001"))
        .await;
    let tenants = "/api/v1/tenants".to_owned();
    let engine = format!("/api/v1/tenants/{}/engine", tenant.id);
    let conns = format!("/api/v1/tenants/{}/connections", tenant.id);
    let one = format!("{conns}/{}", conn["id"].as_str().unwrap());
    let api_key = format!("/api/v1/tenants/{}/api-key", tenant.id);
    let good = connection_body("6000002");
    let secret_with_space = "my very secret value";
    use StatusCode as S;
    let case = |name, method, path: &String, body, status, code| Case {
        name,
        method,
        path: path.clone(),
        body,
        status,
        code,
    };
    let cases = vec![
        case(
            "malformed JSON",
            Method::POST,
            &tenants,
            Body::Raw("application/json", "{\"name\":".into()),
            S::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "not JSON content type",
            Method::POST,
            &tenants,
            Body::Raw("text/plain", "{\"name\":\"x\"}".into()),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        case(
            "no body",
            Method::POST,
            &tenants,
            Body::None,
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        case(
            "oversized body",
            Method::POST,
            &tenants,
            Body::Json(json!({"name": "x".repeat(70 * 1024)})),
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        case(
            "empty tenant name",
            Method::POST,
            &tenants,
            Body::Json(json!({"name": "  "})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "long tenant name",
            Method::POST,
            &tenants,
            Body::Json(json!({"name": "n".repeat(101)})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "tenant name not a string",
            Method::POST,
            &tenants,
            Body::Json(json!({"name": 7})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "unknown tenant field",
            Method::POST,
            &tenants,
            Body::Json(json!({"name": "x", "plan": "gold"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "array body",
            Method::POST,
            &tenants,
            Body::Json(json!([])),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "unknown engine kind",
            Method::PUT,
            &engine,
            Body::Json(json!({"kind": "smtp"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "http engine without secret",
            Method::PUT,
            &engine,
            Body::Json(json!({"kind": "http", "url": "https://e.example/"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "engine URL not http",
            Method::PUT,
            &engine,
            Body::Json(json!({"kind": "rasa", "url": "ftp://e.example/"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "engine URL with credentials",
            Method::PUT,
            &engine,
            Body::Json(json!({"kind": "rasa", "url": "https://u:p@e.example/"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "short engine secret",
            Method::PUT,
            &engine,
            Body::Json(json!({"kind": "http", "url": "https://e.example/", "secret": "short"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "bot id not numeric",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "bot_id", json!("bot-1"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "bot id a float",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "bot_id", json!(1.5))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "missing client secret",
            Method::POST,
            &conns,
            Body::Json(without(good.clone(), "client_secret")),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "null bot secret",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "bot_secret", Value::Null)),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "client secret with spaces",
            Method::POST,
            &conns,
            Body::Json(with(
                good.clone(),
                "client_secret",
                json!(secret_with_space),
            )),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "client id with spaces",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "client_id", json!("a b"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key not PEM",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "private_key", json!("not a key"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key is a public key",
            Method::POST,
            &conns,
            Body::Json(with(
                good.clone(),
                "private_key",
                json!(include_str!("../fixtures/keys/app1_public.pem")),
            )),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key is EC",
            Method::POST,
            &conns,
            Body::Json(with(
                good.clone(),
                "private_key",
                json!(include_str!("../fixtures/keys/ec_pkcs8.pem")),
            )),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key encrypted",
            Method::POST,
            &conns,
            Body::Json(with(
                good.clone(),
                "private_key",
                json!(include_str!("../fixtures/keys/app1_encrypted.pem")),
            )),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key cut short",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "private_key", json!(&PKCS8[..900]))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "private key too weak",
            Method::POST,
            &conns,
            Body::Json(with(
                good.clone(),
                "private_key",
                json!(include_str!("../fixtures/keys/weak1024_pkcs8.pem")),
            )),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "service account without domain",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "service_account", json!("nobody"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "auth header too short",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "auth_header", json!("short"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "scope without bot",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "scope", json!("user.read"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "rate limit zero",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "rate_limit_per_minute", json!(0))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "unknown channel",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "channel", json!("slack"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "unknown connection field",
            Method::POST,
            &conns,
            Body::Json(with(good.clone(), "webhook_url", json!("x"))),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "same bot twice",
            Method::POST,
            &conns,
            Body::Json(connection_body("6000001")),
            S::CONFLICT,
            "conflict",
        ),
        case(
            "patch changes bot id",
            Method::PATCH,
            &one,
            Body::Json(json!({"bot_id": "6000009"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "patch with nothing",
            Method::PATCH,
            &one,
            Body::Json(json!({})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "patch with a bad key and a good secret",
            Method::PATCH,
            &one,
            Body::Json(json!({"client_secret": "fine-secret-123", "private_key": "bad"})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "malformed connection id",
            Method::GET,
            &format!("{conns}/con_..%2F..%2Fx"),
            Body::None,
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "unknown connection",
            Method::DELETE,
            &format!("{conns}/con_00000000000000000000000000000000"),
            Body::None,
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "api key: malformed JSON",
            Method::POST,
            &api_key,
            Body::Raw(
                "application/json",
                "{\"previous_key_valid_seconds\":".into(),
            ),
            S::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "api key: unknown field",
            Method::POST,
            &api_key,
            Body::Json(json!({"grace": 60})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "api key: a grace past a week",
            Method::POST,
            &api_key,
            Body::Json(json!({"previous_key_valid_seconds": 604_801})),
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "connections: a page of 0",
            Method::GET,
            &format!("{conns}?limit=0"),
            Body::None,
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "unknown route",
            Method::GET,
            &"/api/v1/nope".to_owned(),
            Body::None,
            S::NOT_FOUND,
            "not_found",
        ),
        case(
            "wrong method",
            Method::DELETE,
            &tenants,
            Body::None,
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    assert!(cases.len() >= 20);

    let before = app.db.snapshot().await;
    for case in cases {
        let req = app.request(case.method.clone(), &case.path, &tenant.api_key);
        // Tenant creation is the admin's.
        let req = if case.path == tenants {
            app.request(case.method.clone(), &case.path, &app.admin_token)
        } else {
            req
        };
        let req = match case.body {
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, text) => req.header("Content-Type", content_type).body(text),
            Body::None => req,
        };
        let (status, body) = decode(req.send().await.unwrap()).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(error_code(&body), case.code, "{}: {body}", case.name);
        assert!(
            !body.to_string().contains(secret_with_space),
            "{}: the error echoes a secret",
            case.name
        );
        assert_eq!(
            app.db.snapshot().await,
            before,
            "{}: the database changed",
            case.name
        );
    }
}

both_backends!(all_field_errors_are_reported_together);

async fn all_field_errors_are_reported_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Fields").await;
    let body = json!({"bot_id": "x", "client_id": "", "private_key": "nope", "scope": "user.read"});
    let (status, body) = app
        .send_json(
            Method::POST,
            &format!("/api/v1/tenants/{}/connections", tenant.id),
            &tenant.api_key,
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "auth_header",
            "bot_id",
            "bot_secret",
            "client_id",
            "client_secret",
            "private_key",
            "scope",
            "service_account"
        ]
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("private_key: is not a PEM private key"),
        "{message}"
    );
}
