//! NAVER WORKS user-account connections (issue 24): a member authorises the
//! bot through the emulator's consent page (the OAuth authorization-code
//! flow), the bot answers with the member's token, a refused refresh turns
//! into "needs re-authorisation" and back, and two replicas refresh once.
//! Both backends, real HTTP.

use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::emulator::app_config;
use crate::helpers::*;
use crate::inbound::{setup_connection, Inbound};
use crate::tokens::{force_refresh, get_token};

const PUBLIC: &str = "https://botgate.example.com/base";
/// The auth header `tokens::force_refresh` sends.
const HEADER: &str = "internal-services-auth-header";

fn user_body() -> Value {
    let app = app_config();
    json!({
        "auth_mode": "user", "bot_id": app.bots[0].bot_id, "client_id": app.client_id,
        "client_secret": app.client_secret, "bot_secret": app.bots[0].bot_secret,
        "auth_header": HEADER, "rate_limit_per_minute": 6000,
    })
}

async fn setup(backend: Backend, emulator: EmulatorConfig) -> Inbound {
    setup_connection(backend, emulator, "", &user_body()).await
}

fn local(app: &TestApp, public: &str) -> String {
    app.url(
        public
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("{public}")),
    )
}

/// A browser at the consent page: its cookie for botgate, and the page's
/// "Allow" and "Deny" links back to botgate.
struct Consent {
    cookie: String,
    allow: String,
    deny: String,
}

async fn start(s: &Inbound) -> Consent {
    let authorize = local(&s.app, s.connection["authorize_url"].as_str().unwrap());
    let res = s.app.client.get(authorize).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("botgate_naverworks_signin="), "{cookie}");
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    assert!(
        location.starts_with(&format!("{}/oauth2/v2.0/authorize?", s.emu.url)),
        "{location}"
    );
    let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["client_id"], app_config().client_id);
    assert_eq!(
        pairs["redirect_uri"],
        format!("{PUBLIC}/oauth/naverworks/callback")
    );
    assert_eq!(pairs["response_type"], "code");
    assert_eq!(pairs["scope"], "bot");
    assert!(pairs["state"].len() >= 40, "a random state");
    let (allow, deny) = s.emu.consent_links(&location).await;
    Consent {
        cookie,
        allow,
        deny,
    }
}

/// Follows NAVER WORKS' redirect back to botgate, with a cookie or none.
async fn back(s: &Inbound, url: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut req = s.app.client.get(local(&s.app, url));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.text().await.unwrap())
}

async fn authorise(s: &Inbound) {
    let consent = start(s).await;
    let (status, page) = back(s, &consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"authorized\""), "{page}");
}

async fn view(s: &Inbound) -> Value {
    let (status, body) = s.app.get(&s.conn_path(), &s.tenant.api_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn auth_path(s: &Inbound) -> String {
    s.connection["auth_url"]
        .as_str()
        .unwrap()
        .replace(PUBLIC, "")
}

async fn app_stats(s: &Inbound) -> Value {
    s.emu.stats().await["apps"][app_config().client_id].clone()
}

async fn metric(app: &TestApp, name: &str) -> String {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_owned()
}

both_backends!(
    a_member_authorises_and_the_bot_answers_with_the_user_token,
    user_account_fields_are_validated,
    bad_states_and_refused_codes_store_nothing,
    a_refused_refresh_needs_reauthorisation_until_a_member_signs_in_again,
    two_replicas_refresh_a_user_token_once,
);

/// Connect, authorise through the consent page, and the echo reply of a
/// user's message goes out with the member's token (no JWT is ever minted).
async fn a_member_authorises_and_the_bot_answers_with_the_user_token(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default()).await;
    let c = &s.connection;
    assert_eq!(c["auth_mode"], "user");
    assert_eq!(c["authorization"], "not_authorized");
    assert_eq!(
        c["oauth_redirect_url"],
        format!("{PUBLIC}/oauth/naverworks/callback")
    );
    assert!(c["authorize_url"].as_str().unwrap().ends_with("/authorize"));
    assert!(
        c.get("service_account").is_none() && c.get("private_key").is_none(),
        "{c}"
    );
    assert!(
        c["client_secret"].as_str().unwrap().starts_with("****"),
        "{c}"
    );
    // Not authorised yet: the auth URL says so instead of a token.
    let (status, body) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "not_authorized");

    authorise(&s).await;
    assert_eq!(view(&s).await["authorization"], "authorized");
    let (status, token) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["bot_id"], "2000001");
    // The tenant's activity: authorised by a member, through the sign-in.
    let activity = s.app.activity(&s.tenant).await;
    let newest = &activity[0];
    assert_eq!(
        (&newest["action"], &newest["actor"], &newest["via"]),
        (
            &json!("connection.authorized"),
            &json!("member"),
            &json!("oauth")
        ),
        "{activity:?}"
    );
    assert_eq!(newest["connection_id"], s.connection["id"]);
    assert!(token["expires_in"].as_i64().unwrap() > 80_000, "{token}");
    let stats = app_stats(&s).await;
    assert_eq!(stats["codes_exchanged"], 1, "{stats}");
    assert_eq!(stats["tokens_issued"], 0, "never a JWT grant: {stats}");

    // A user writes; the echo goes out with that token.
    s.callback(json!({"type": "message", "user_id": "u1", "text": "hello"}))
        .await;
    let messages = s.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["user_id"], "u1");
    assert!(
        messages[0]["content"].to_string().contains("hello"),
        "{messages:?}"
    );
    assert_eq!(app_stats(&s).await["tokens_issued"], 0);
    // The sealed tokens are not in the database in plaintext.
    let raw = s.app.db.raw_contents().await;
    let access = token["access_token"].as_str().unwrap();
    assert!(
        !raw.windows(access.len()).any(|w| w == access.as_bytes()),
        "the access token in plaintext"
    );
    // The test endpoint uses the shared token and passes.
    let (status, checks) = s
        .app
        .send_json(
            Method::POST,
            &format!("{}/test", s.conn_path()),
            &s.tenant.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checks}");
    assert_eq!(checks["ok"], true, "{checks}");
    assert_eq!(app_stats(&s).await["tokens_issued"], 0);
}

/// The user mode asks for what it needs and refuses what it does not use;
/// the mode cannot be changed; a service account's connection has no
/// sign-in.
async fn user_account_fields_are_validated(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default()).await;
    let path = format!("/api/v1/tenants/{}/connections", s.tenant.id);
    let post = |body: Value| {
        let path = path.clone();
        let s = &s;
        async move {
            s.app
                .send_json(Method::POST, &path, &s.tenant.api_key, &body)
                .await
        }
    };
    let fields = |body: &Value| -> Vec<String> {
        body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut body = user_body();
    body["bot_id"] = json!("2000002");
    body["service_account"] = json!("1wagx.serviceaccount@example.com");
    body["private_key"] = json!(PKCS8);
    body.as_object_mut().unwrap().remove("client_secret");
    let (status, answer) = post(body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let mut named = fields(&answer);
    named.sort();
    assert_eq!(named, ["client_secret", "private_key", "service_account"]);
    assert!(!answer.to_string().contains("BEGIN"), "no key echoed");
    let mut body = user_body();
    body["bot_id"] = json!("2000003");
    body["auth_mode"] = json!("member");
    let (status, answer) = post(body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Not knowing the mode, the service account's fields are asked for too.
    assert_eq!(
        fields(&answer),
        ["auth_mode", "service_account", "private_key"]
    );
    // The mode stays; the key stays out.
    for patch in [
        json!({"auth_mode": "service_account"}),
        json!({"private_key": PKCS8}),
    ] {
        let (status, answer) = s
            .app
            .send_json(Method::PATCH, &s.conn_path(), &s.tenant.api_key, &patch)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    // A service account's connection: the default, and no sign-in.
    let mut sa = connection_body("2000004");
    sa["channel"] = json!("naverworks");
    let (status, created) = post(sa).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["auth_mode"], "service_account");
    assert!(created.get("authorize_url").is_none(), "{created}");
    let authorize = created["webhook_url"]
        .as_str()
        .unwrap()
        .replace("/webhooks/naverworks/", "/oauth/naverworks/")
        + "/authorize";
    let res = s
        .app
        .client
        .get(local(&s.app, &authorize))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Forged, reused, expired and other-browser states, a denied consent and a
/// code the token endpoint refuses: a clear page each, nothing stored.
async fn bad_states_and_refused_codes_store_nothing(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default()).await;
    let callback = format!("{PUBLIC}/oauth/naverworks/callback");
    let not_authorized = || async { view(&s).await["authorization"].clone() };
    // Forged.
    let (status, page) = back(&s, &format!("{callback}?code=abc&state=forged"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("id=\"problem\""), "{page}");
    // Another browser.
    let consent = start(&s).await;
    let (status, page) = back(&s, &consent.allow, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("another browser"), "{page}");
    // Expired.
    let consent = start(&s).await;
    let mut conn = s.app.db.connect().await;
    sqlx::query("UPDATE oauth_states SET expires_at = 0")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, page) = back(&s, &consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("expired"), "{page}");
    // Denied at the consent page.
    let consent = start(&s).await;
    let (status, page) = back(&s, &consent.deny, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"cancelled\""), "{page}");
    // A code the token endpoint refuses (not the one it issued).
    let consent = start(&s).await;
    let forged = consent.allow.replace("code=", "code=x");
    let (status, page) = back(&s, &forged, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("refused the sign-in"), "{page}");
    // NAVER WORKS unreachable (its token endpoint answers 503): a 502 page.
    let consent = start(&s).await;
    s.emu.faults(json!({"token_endpoint_down": true})).await;
    let (status, page) = back(&s, &consent.allow, Some(&consent.cookie)).await;
    s.emu.faults(json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("NAVER WORKS could not be reached"), "{page}");
    assert!(page.contains("Nothing was stored"), "{page}");
    assert_eq!(not_authorized().await, "not_authorized");
    assert_eq!(app_stats(&s).await["codes_exchanged"], 0);
    let mut conn = s.app.db.connect().await;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE token_id IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 0, "no token stored");
    // Reused: the first use authorises, the second is refused.
    let consent = start(&s).await;
    let (status, _) = back(&s, &consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = back(&s, &consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("already used"), "{page}");
    assert_eq!(not_authorized().await, "authorized");
    // A later denial keeps the authorisation the bot has.
    let (_, before) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    let consent = start(&s).await;
    back(&s, &consent.deny, Some(&consent.cookie)).await;
    let (status, after) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before["access_token"], after["access_token"]);
}

/// The refresh token expires (1 s in this emulator): a refresh is refused,
/// the connection needs re-authorisation (API, auth URLs 409, metric), and
/// a member signing in again brings it back.
async fn a_refused_refresh_needs_reauthorisation_until_a_member_signs_in_again(backend: Backend) {
    let s = setup(
        backend,
        EmulatorConfig {
            refresh_token_lifetime_seconds: 1,
            ..EmulatorConfig::default()
        },
    )
    .await;
    authorise(&s).await;
    let (status, first) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        metric(
            &s.app,
            "botgate_naverworks_connections_needing_reauthorization"
        )
        .await,
        "botgate_naverworks_connections_needing_reauthorization 0"
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, body) = force_refresh(&s.app, &auth_path(&s)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "needs_reauthorization");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("re-authorisation"));
    // Every read now says so too (no dead token), without asking NAVER WORKS.
    let errors_before = app_stats(&s).await["token_errors"].as_u64().unwrap();
    let (status, body) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "needs_reauthorization");
    assert_eq!(
        app_stats(&s).await["token_errors"].as_u64().unwrap(),
        errors_before
    );
    assert_eq!(view(&s).await["authorization"], "needs_reauthorization");
    assert_eq!(
        metric(
            &s.app,
            "botgate_naverworks_connections_needing_reauthorization"
        )
        .await,
        "botgate_naverworks_connections_needing_reauthorization 1"
    );
    // A member signs in again.
    authorise(&s).await;
    assert_eq!(view(&s).await["authorization"], "authorized");
    let (status, again) = get_token(&s.app, &auth_path(&s), Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_ne!(again["access_token"], first["access_token"]);
    assert_eq!(
        metric(
            &s.app,
            "botgate_naverworks_connections_needing_reauthorization"
        )
        .await,
        "botgate_naverworks_connections_needing_reauthorization 0"
    );
    assert_eq!(app_stats(&s).await["tokens_issued"], 0);
}

/// Forced refreshes through two replicas at once, held at the token
/// endpoint: one refresh grant, one new token for everyone.
async fn two_replicas_refresh_a_user_token_once(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default()).await;
    authorise(&s).await;
    let replica = spawn_replica(&s.app).await;
    let path = auth_path(&s);
    let (_, first) = get_token(&replica, &path, Some(HEADER)).await;
    s.emu.faults(json!({"token_latency_ms": 800})).await;
    let apps = [&s.app, &replica];
    let refreshes = (0..40).map(|i| force_refresh(apps[i % 2], &path));
    let answers = join_all(refreshes).await;
    let mut tokens = std::collections::HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1, "one new token for all: {tokens:?}");
    assert!(!tokens.contains(first["access_token"].as_str().unwrap()));
    let stats = app_stats(&s).await;
    assert_eq!(stats["tokens_refreshed"], 1, "{stats}");
    assert_eq!(stats["tokens_issued"], 0, "{stats}");
}
