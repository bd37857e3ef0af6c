//! The NAVER WORKS emulator over real HTTP: token endpoint, Bot API, content
//! validation, rate limiting, faults, callbacks, attachments and channels.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use botgate::emulator::{AppConfig, BotConfig, EmulatorConfig, EmulatorServer};
use botgate::naverworks::jwt::{sign_assertion, sign_claims};

use crate::helpers::{eventually, PKCS8};

const CLIENT_ID: &str = "ZbsOq6zjt0IhtZZnrc";
const CLIENT_SECRET: &str = "oRm3M_nBg6";
const SERVICE_ACCOUNT: &str = "1wagx.serviceaccount@example.com";
const BOT_ID: &str = "2000001";
const BOT_SECRET: &str = "test-bot-secret";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A moment inside the fixed vectors' validity (iat 1682871825, exp +3600).
const VECTOR_NOW: i64 = 1_682_871_900;

fn vector(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/jwt/{name}.jwt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

pub fn app_config() -> AppConfig {
    AppConfig {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        service_account: SERVICE_ACCOUNT.to_owned(),
        public_key: Some(include_str!("../fixtures/keys/app1_public.pem").to_owned()),
        private_key: None,
        domain_id: 10_000,
        scopes: vec!["bot".into(), "bot.read".into(), "user.read".into()],
        bots: vec![BotConfig {
            bot_id: BOT_ID.to_owned(),
            bot_secret: BOT_SECRET.to_owned(),
            callback_url: None,
        }],
    }
}

/// A second app in another domain, signing with the second key.
fn other_app() -> AppConfig {
    AppConfig {
        client_id: "OtherClient".to_owned(),
        client_secret: "other-secret".to_owned(),
        service_account: "other.serviceaccount@example.com".to_owned(),
        public_key: None,
        private_key: Some(include_str!("../fixtures/keys/app2_pkcs8.pem").to_owned()),
        domain_id: 20_000,
        scopes: vec!["bot".into()],
        bots: vec![BotConfig {
            bot_id: "3000001".to_owned(),
            bot_secret: "other-bot-secret".to_owned(),
            callback_url: None,
        }],
    }
}

pub struct Emu {
    pub url: String,
    pub client: reqwest::Client,
}

pub async fn spawn_emulator(mut config: EmulatorConfig) -> Emu {
    if config.apps.is_empty() {
        config.apps = vec![app_config(), other_app()];
    }
    let server = EmulatorServer::build(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = server.url();
    tokio::spawn(server.run_until_stopped());
    Emu {
        url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

fn key(pem: &str) -> rsa::RsaPrivateKey {
    botgate::domain::naverworks::PrivateKeyPem::parse(pem)
        .unwrap()
        .rsa_key()
        .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Emu {
    async fn token_form(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}/oauth2/v2.0/token", self.url))
            .form(form)
            .send()
            .await
            .unwrap();
        crate::helpers::decode(res).await
    }

    async fn jwt_grant(&self, assertion: &str, scope: &str) -> (StatusCode, Value) {
        self.token_form(&[
            ("assertion", assertion),
            ("grant_type", JWT_BEARER),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope),
        ])
        .await
    }

    /// A valid access token for the first app, minted with the real clock.
    pub async fn token(&self) -> String {
        let jwt = sign_assertion(&key(PKCS8), CLIENT_ID, SERVICE_ACCOUNT, now(), 3600);
        let (status, body) = self.jwt_grant(&jwt, "bot bot.read").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .client
            .request(method, format!("{}/emulator{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        crate::helpers::decode(res).await
    }

    async fn set_clock(&self, now: Option<i64>) {
        let (status, _) = self
            .admin(reqwest::Method::PUT, "/clock", json!({ "now": now }))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    pub async fn faults(&self, faults: Value) {
        let (status, body) = self.admin(reqwest::Method::PUT, "/faults", faults).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn stats(&self) -> Value {
        self.admin(reqwest::Method::GET, "/stats", Value::Null)
            .await
            .1
    }

    /// Tokens the emulator issued to the test app: (JWT grants, refresh grants).
    pub async fn tokens_issued(&self) -> (u64, u64) {
        let stats = self.stats().await;
        let app = &stats["apps"][app_config().client_id];
        (
            app["tokens_issued"].as_u64().unwrap(),
            app["tokens_refreshed"].as_u64().unwrap(),
        )
    }

    /// The "Allow" and "Deny"/"Cancel" links of a consent page (either
    /// platform's: `emulator/consent.rs` draws both).
    pub async fn consent_links(&self, url: &str) -> (String, String) {
        let page = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let link = |id: &str| {
            let at = page
                .find(&format!("id={id} href=\""))
                .unwrap_or_else(|| panic!("{page}"))
                + id.len()
                + 10;
            let end = page[at..].find('"').unwrap();
            page[at..at + end].replace("&amp;", "&")
        };
        (link("allow"), link("deny"))
    }

    /// One of the emulator's JSON answers (`/emulator/…`, `/slack/emulator/…`).
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        crate::helpers::decode(res).await.1
    }

    /// The text of each message the bot sent, in order.
    pub async fn texts(&self) -> Vec<Value> {
        let messages = self.messages().await;
        messages
            .iter()
            .map(|m| m["content"]["text"].clone())
            .collect()
    }

    pub async fn messages(&self) -> Vec<Value> {
        let res = self
            .client
            .get(format!("{}/emulator/messages", self.url))
            .send()
            .await
            .unwrap();
        crate::helpers::decode(res).await.1["messages"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn send(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1.0{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

fn assert_token_error(status: StatusCode, body: &Value, needle: &str, case: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
    assert_eq!(body["returnCode"], "99", "{case}: {body}");
    let message = body["returnMessage"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{case}: {needle:?} not in {message:?}"
    );
}

#[tokio::test]
async fn token_endpoint_accepts_independent_vectors_and_rejects_bad_assertions() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    emu.set_clock(Some(VECTOR_NOW)).await;

    // Signed by openssl, not by botgate: accepted, with the real field names.
    let (status, body) = emu.jwt_grant(&vector("valid_rs256"), "bot").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].as_str().unwrap().starts_with("kr1"));
    assert!(body["refresh_token"].is_string());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "bot");
    assert_eq!(
        body["expires_in"], "86400",
        "a string, as documented and observed"
    );
    let (status, body) = emu
        .jwt_grant(&vector("valid_float_claims"), "bot bot.read")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "float iat/exp like the official Python sample: {body}"
    );

    let valid = vector("valid_rs256");
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let sig = parts[2].clone();
    parts[2] = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    let tampered = parts.join(".");
    for (case, jwt, needle) in [
        ("tampered signature", tampered.as_str(), "signature"),
        ("wrong issuer", &vector("wrong_issuer"), "iss"),
        ("wrong subject", &vector("wrong_subject"), "sub"),
        ("over an hour", &vector("over_long"), "60 minutes"),
        ("other key", &vector("wrong_key"), "signature"),
        ("alg none", &vector("alg_none"), "RS256"),
        ("alg HS256", &vector("alg_hs256"), "RS256"),
        ("not a JWT", "abc", "JWT"),
    ] {
        let (status, body) = emu.jwt_grant(jwt, "bot").await;
        assert_token_error(status, &body, needle, case);
    }
    emu.set_clock(Some(1_682_875_426)).await;
    let (status, body) = emu.jwt_grant(&valid, "bot").await;
    assert_token_error(status, &body, "expired", "expired");
    emu.set_clock(Some(VECTOR_NOW)).await;

    // Client and scope checks.
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Form<'_>, &str); 5] = [
        (
            "wrong client secret",
            vec![
                ("assertion", &valid),
                ("grant_type", JWT_BEARER),
                ("client_id", CLIENT_ID),
                ("client_secret", "nope"),
                ("scope", "bot"),
            ],
            "client_secret",
        ),
        (
            "unknown client",
            vec![
                ("assertion", &valid),
                ("grant_type", JWT_BEARER),
                ("client_id", "Nobody"),
                ("client_secret", CLIENT_SECRET),
                ("scope", "bot"),
            ],
            "client_id",
        ),
        (
            "scope missing",
            vec![
                ("assertion", &valid),
                ("grant_type", JWT_BEARER),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ],
            "scope",
        ),
        (
            "scope not granted",
            vec![
                ("assertion", &valid),
                ("grant_type", JWT_BEARER),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", "bot mail"),
            ],
            "mail",
        ),
        (
            "unknown grant",
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ],
            "UnsupportedGrantType",
        ),
    ];
    for (case, form, needle) in cases {
        let (status, body) = emu.token_form(&form).await;
        assert_token_error(status, &body, needle, case);
    }

    // grant_type double-encoded (the official Python sample) and fields in the query string.
    let body = format!(
        "assertion={valid}&grant_type=urn%253Aietf%253Aparams%253Aoauth%253Agrant-type%253Ajwt-bearer&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&scope=bot"
    );
    let res = emu
        .client
        .post(format!("{}/oauth2/v2.0/token", emu.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = emu
        .client
        .post(format!("{}/oauth2/v2.0/token?{body}", emu.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let stats = emu.stats().await;
    assert_eq!(stats["apps"][CLIENT_ID]["tokens_issued"], 4);
    assert_eq!(stats["apps"][CLIENT_ID]["token_errors"], 13);
}

#[tokio::test]
async fn refresh_grant_without_and_with_rotation() {
    for rotation in [false, true] {
        let emu = spawn_emulator(EmulatorConfig {
            refresh_token_rotation: rotation,
            token_lifetime_seconds: 3600,
            ..Default::default()
        })
        .await;
        let jwt = sign_assertion(&key(PKCS8), CLIENT_ID, SERVICE_ACCOUNT, now(), 3600);
        let (_, first) = emu.jwt_grant(&jwt, "bot").await;
        assert_eq!(first["expires_in"], "3600", "lifetime configurable");
        let refresh = first["refresh_token"].as_str().unwrap().to_owned();
        assert!(
            refresh.contains('+') && refresh.contains('/') && refresh.contains('='),
            "real tokens need URL-encoding: {refresh}"
        );

        let emu = &emu;
        let grant = |rt: String| async move {
            emu.token_form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .await
        };
        let (status, body) = grant(refresh.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_ne!(body["access_token"], first["access_token"]);
        assert_eq!(body["scope"], "bot");
        if rotation {
            let new = body["refresh_token"]
                .as_str()
                .expect("rotation gives a new refresh token")
                .to_owned();
            assert_ne!(new, refresh);
            let (status, body) = grant(refresh.clone()).await;
            assert_token_error(status, &body, "UnexpectedError", "old token after rotation");
            assert_eq!(grant(new).await.0, StatusCode::OK);
        } else {
            assert!(
                body.get("refresh_token").is_none(),
                "no refresh_token without rotation: {body}"
            );
            assert_eq!(
                grant(refresh.clone()).await.0,
                StatusCode::OK,
                "still valid"
            );
        }
        // Sent without URL-encoding, `+` turns into a space: refused, as observed.
        let raw = format!("grant_type=refresh_token&refresh_token={refresh}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}");
        let res = emu
            .client
            .post(format!("{}/oauth2/v2.0/token", emu.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, body) = crate::helpers::decode(res).await;
        assert_token_error(status, &body, "UnexpectedError", "unencoded refresh token");
        let stats = emu.stats().await;
        assert_eq!(stats["apps"][CLIENT_ID]["tokens_issued"], 1);
        assert_eq!(stats["apps"][CLIENT_ID]["tokens_refreshed"], 2);
    }
    let emu = spawn_emulator(EmulatorConfig {
        expires_in_as_number: true,
        ..Default::default()
    })
    .await;
    let jwt = sign_assertion(&key(PKCS8), CLIENT_ID, SERVICE_ACCOUNT, now(), 3600);
    assert_eq!(emu.jwt_grant(&jwt, "bot").await.1["expires_in"], 86400);
}

#[tokio::test]
async fn bot_api_sends_and_checks_tokens_bots_and_paths() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let token = emu.token().await;
    let text = json!({"content": {"type": "text", "text": "hello"}});

    let res = emu
        .send(&token, "/bots/2000001/users/user-1/messages", &text)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["rateLimit-limit"], "240");
    assert_eq!(res.text().await.unwrap(), "", "201 with an empty body");
    let res = emu
        .send(&token, "/bots/2000001/channels/room-1/messages", &text)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let messages = emu.messages().await;
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (&messages[0]["user_id"], &messages[0]["channel_id"]),
        (&json!("user-1"), &Value::Null)
    );
    assert_eq!(messages[1]["channel_id"], "room-1");
    assert_eq!(messages[0]["content"], text["content"]);
    assert_eq!(messages[0]["bot_id"], BOT_ID);

    let cases = [
        (
            "no token",
            "",
            "/bots/2000001/users/u/messages",
            401,
            "UNAUTHORIZED",
        ),
        (
            "bad token",
            "kr1AAAAnope",
            "/bots/2000001/users/u/messages",
            401,
            "UNAUTHORIZED",
        ),
        (
            "unknown bot",
            token.as_str(),
            "/bots/9999999/users/u/messages",
            404,
            "NOT_FOUND",
        ),
        (
            "another app's bot",
            token.as_str(),
            "/bots/3000001/users/u/messages",
            404,
            "NOT_FOUND",
        ),
        (
            "unknown path",
            token.as_str(),
            "/bots/2000001/messages",
            404,
            "NOT_FOUND",
        ),
    ];
    for (case, token, path, status, code) in cases {
        let res = emu.send(token, path, &text).await;
        let (got, body) = crate::helpers::decode(res).await;
        assert_eq!(
            (got.as_u16(), body["code"].as_str()),
            (status, Some(code)),
            "{case}: {body}"
        );
    }
    let res = emu
        .send("kr1AAAAnope", "/bots/2000001/users/u/messages", &text)
        .await;
    assert_eq!(
        crate::helpers::decode(res).await.1,
        json!({"code": "UNAUTHORIZED", "description": "Malformed authentication token"})
    );
    let res = emu
        .send(&token, "/bots/9999999/users/u/messages", &text)
        .await;
    assert_eq!(
        crate::helpers::decode(res).await.1,
        json!({"code": "NOT_FOUND", "description": "Bot does not exist."})
    );
    let res = emu.send(&token, "/bots/2000001/messages", &text).await;
    assert_eq!(
        crate::helpers::decode(res).await.1,
        json!({"code": "NOT_FOUND", "description": "Api not exists"})
    );

    // A token past its lifetime (clock two days on).
    emu.set_clock(Some(now() + 2 * 86_400)).await;
    let res = emu
        .send(&token, "/bots/2000001/users/u/messages", &text)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    emu.set_clock(None).await;

    // The 403 compatibility mode.
    let emu403 = spawn_emulator(EmulatorConfig {
        unauthorized_status: 403,
        ..Default::default()
    })
    .await;
    let res = emu403
        .send("kr1AAAAnope", "/bots/2000001/users/u/messages", &text)
        .await;
    let (status, body) = crate::helpers::decode(res).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("UNAUTHORIZED"))
    );
    assert_eq!(
        emu.messages().await.len(),
        2,
        "nothing refused was recorded"
    );
}

#[tokio::test]
async fn content_types_valid_and_each_limit_refused() {
    let emu = spawn_emulator(EmulatorConfig {
        rate_limit_per_minute: 6000,
        ..Default::default()
    })
    .await;
    let token = emu.token().await;
    let path = "/bots/2000001/users/u/messages";
    let valid = valid_bodies();
    assert!(valid.len() >= 17);
    for body in &valid {
        let res = emu.send(&token, path, body).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{body}: {}",
            res.text().await.unwrap()
        );
    }

    let cases = limit_cases();
    for (content, needle) in cases {
        let res = emu.send(&token, path, &json!({ "content": content })).await;
        let (status, body) = crate::helpers::decode(res).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content}: {body}");
        let description = body["description"].as_str().unwrap();
        assert!(
            description.contains(needle),
            "{content}: {needle:?} not in {description:?}"
        );
    }
    let res = emu.send(&token, path, &json!({"text": "no content"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        emu.messages().await.len(),
        valid.len(),
        "refused messages are not recorded"
    );
}

/// A valid send body of every content type: the documented fixtures, and one
/// example of each type they lack.
pub fn valid_bodies() -> Vec<Value> {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/naverworks");
    let mut valid: Vec<Value> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("send_")
        })
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    let postback = json!({"type": "postback", "label": "Yes", "data": "yes", "displayText": "Yes"});
    let column = |title: &str| json!({"originalContentUrl": "https://e.example/a.png", "title": title, "text": "t", "actions": [postback.clone()]});
    for content in [
        json!({"type": "video", "originalContentUrl": "https://e.example/v.mp4"}),
        json!({"type": "list_template", "coverData": {"title": "cover"}, "elements": [{"title": "a", "action": {"type": "uri", "label": "go", "uri": "https://e.example"}}], "actions": [[{"type": "message", "label": "more", "postback": "more"}]]}),
        json!({"type": "carousel", "columns": [column("a"), column("b")]}),
        json!({"type": "image_carousel", "columns": [{"originalContentUrl": "https://e.example/a.png", "action": postback.clone()}]}),
        json!({"type": "text", "text": "pick", "quickReply": {"items": [{"action": postback.clone()}, {"action": {"type": "camera", "label": "Camera"}}]}}),
    ] {
        valid.push(json!({ "content": content }));
    }
    valid
}

/// Each documented limit violated once: (content, text the refusal names).
pub fn limit_cases() -> Vec<(Value, &'static str)> {
    let postback = json!({"type": "postback", "label": "Yes", "data": "yes", "displayText": "Yes"});
    let column = |title: &str| json!({"originalContentUrl": "https://e.example/a.png", "title": title, "text": "t", "actions": [postback.clone()]});
    let long = |n: usize| "x".repeat(n);
    let button = |n: usize| {
        (0..n)
            .map(|i| json!({"type": "message", "label": format!("b{i}"), "text": "t"}))
            .collect::<Vec<_>>()
    };
    vec![
        (json!({"type": "text", "text": long(2001)}), "content.text"),
        (json!({"type": "text"}), "content.text"),
        (
            json!({"type": "text", "text": "x", "i18nTexts": [{"language": "fr_FR", "text": "x"}]}),
            "language",
        ),
        (json!({"type": "sticker", "packageId": "1"}), "stickerId"),
        (
            json!({"type": "image", "previewImageUrl": "http://e.example/p.png", "originalContentUrl": "https://e.example/o.png"}),
            "https",
        ),
        (
            json!({"type": "image", "previewImageUrl": "https://e.example/p.png", "originalContentUrl": format!("https://e.example/{}", long(1000))}),
            "1000",
        ),
        (
            json!({"type": "file", "originalContentUrl": "https://e.example/setup.exe"}),
            "blocked",
        ),
        (json!({"type": "audio"}), "originalContentUrl or fileId"),
        (
            json!({"type": "link", "contentText": long(1001), "linkText": "l", "link": "https://e.example"}),
            "contentText",
        ),
        (
            json!({"type": "location", "title": long(101), "address": "a", "latitude": 1.0, "longitude": 2.0}),
            "title",
        ),
        (
            json!({"type": "location", "title": "t", "address": "a", "latitude": "north", "longitude": 2.0}),
            "latitude",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": button(11)}),
            "at most 10",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "message", "label": long(21), "text": "t"}]}),
            "label",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [postback.clone()]}),
            "postback actions are allowed only",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "uri", "label": "u", "uri": long(1001)}]}),
            "uri",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "message", "label": "m", "text": long(301)}]}),
            "text",
        ),
        (
            json!({"type": "list_template", "elements": [{"title": "a"}, {"title": "b"}, {"title": "c"}, {"title": "d"}, {"title": "e"}]}),
            "at most 4",
        ),
        (
            json!({"type": "carousel", "columns": (0..11).map(|_| column("a")).collect::<Vec<_>>()}),
            "at most 10",
        ),
        (
            json!({"type": "carousel", "columns": [column(&long(41))]}),
            "title",
        ),
        (
            json!({"type": "carousel", "columns": [column("a"), {"originalContentUrl": "https://e.example/a.png", "title": "b", "text": "t", "actions": []}]}),
            "same number of actions",
        ),
        (
            json!({"type": "carousel", "columns": [{"text": long(121)}]}),
            "text",
        ),
        (
            json!({"type": "image_carousel", "columns": [{"originalContentUrl": "https://e.example/a.png", "action": {"type": "postback", "label": long(13), "data": "d"}}]}),
            "label",
        ),
        (
            json!({"type": "flex", "altText": long(401), "contents": {"type": "bubble"}}),
            "altText",
        ),
        (
            json!({"type": "flex", "altText": "a", "contents": {"type": "box"}}),
            "contents.type",
        ),
        (
            json!({"type": "text", "text": "x", "quickReply": {"items": (0..14).map(|_| json!({"action": postback.clone()})).collect::<Vec<_>>()}}),
            "at most 13",
        ),
        (
            json!({"type": "text", "text": "x", "quickReply": {"items": [{"action": {"type": "postback", "label": "p", "data": "d"}}]}}),
            "displayText",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "camera", "label": "c"}]}),
            "quick reply",
        ),
        (json!({"type": "hologram"}), "unknown content type"),
        (
            json!({"type": "text", "text": "x", "i18nTexts": [{"language": "ja_JP", "text": long(2001)}]}),
            "i18nTexts[0].text",
        ),
        (
            json!({"type": "sticker", "packageId": long(101), "stickerId": "1"}),
            "packageId",
        ),
        (
            json!({"type": "link", "contentText": "c", "linkText": long(1001), "link": "https://e.example"}),
            "linkText",
        ),
        (
            json!({"type": "link", "contentText": "c", "linkText": "l", "link": long(1001)}),
            "content.link",
        ),
        (
            json!({"type": "location", "title": "t", "address": long(101), "latitude": 1.0, "longitude": 2.0}),
            "address",
        ),
        (
            json!({"type": "location", "title": "t", "address": "a", "latitude": 1.0, "longitude": 200.0}),
            "longitude",
        ),
        (
            json!({"type": "list_template", "coverData": {"title": long(1001)}, "elements": [{"title": "a"}]}),
            "coverData.title",
        ),
        (
            json!({"type": "list_template", "elements": [{"title": "a"}], "actions": [[], [], []]}),
            "at most 2",
        ),
        (
            json!({"type": "list_template", "elements": [{"title": "a"}], "actions": [[{"type": "copy", "label": "c", "copyText": "1"}, {"type": "copy", "label": "c", "copyText": "2"}, {"type": "copy", "label": "c", "copyText": "3"}]]}),
            "2×2",
        ),
        (
            json!({"type": "image_carousel", "columns": (0..11).map(|_| json!({"originalContentUrl": "https://e.example/a.png"})).collect::<Vec<_>>()}),
            "at most 10",
        ),
        (
            json!({"type": "carousel", "columns": [{"text": "t", "actions": [postback.clone(), postback.clone(), postback.clone(), postback.clone()]}]}),
            "at most 3",
        ),
        (
            json!({"type": "carousel", "imageAspectRatio": "wide", "columns": [{"text": "t"}]}),
            "imageAspectRatio",
        ),
        (
            json!({"type": "flex", "altText": "a", "contents": {"type": "bubble", "body": long(31 * 1024)}}),
            "30 KB",
        ),
        (
            json!({"type": "text", "text": "x", "quickReply": {"items": [{"imageUrl": "http://e.example/i.png", "action": postback.clone()}]}}),
            "imageUrl",
        ),
        (
            json!({"type": "image_carousel", "columns": [{"originalContentUrl": "https://e.example/a.png", "action": {"type": "postback", "label": "p", "data": long(301)}}]}),
            "data",
        ),
        (
            json!({"type": "text", "text": "x", "quickReply": {"items": [{"action": {"type": "postback", "label": "p", "data": "d", "displayText": long(301)}}]}}),
            "displayText",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "copy", "label": "c", "copyText": long(1001)}]}),
            "copyText",
        ),
        (
            json!({"type": "button_template", "contentText": "c", "actions": [{"type": "message", "label": "m", "postback": long(1001)}]}),
            "postback",
        ),
        (
            json!({"type": "button_template", "contentText": long(1001), "actions": button(1)}),
            "contentText",
        ),
    ]
}

#[tokio::test]
async fn rate_limit_per_domain_answers_429_and_recovers() {
    let emu = spawn_emulator(EmulatorConfig {
        rate_limit_per_minute: 5,
        rate_limit_window_seconds: 2,
        ..Default::default()
    })
    .await;
    let token = emu.token().await;
    let text = json!({"content": {"type": "text", "text": "hi"}});
    let path = "/bots/2000001/users/u/messages";
    for remaining in (0..5).rev() {
        let res = emu.send(&token, path, &text).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(
            res.headers()["rateLimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let res = emu.send(&token, path, &text).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = res.headers().clone();
    assert_eq!(headers["rateLimit-limit"], "5");
    assert_eq!(headers["rateLimit-remaining"], "0");
    let reset: u64 = headers["rateLimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&reset), "seconds until reset: {reset}");
    assert!(
        headers.get("retry-after").is_none(),
        "no Retry-After, like the real service"
    );
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"code": "TOO_MANY_REQUESTS", "description": "API rate limit exceeded"})
    );

    // The channel API has its own budget; another domain is unaffected.
    assert_eq!(
        emu.send(&token, "/bots/2000001/channels/c/messages", &text)
            .await
            .status(),
        StatusCode::CREATED
    );
    let jwt = sign_assertion(
        &key(include_str!("../fixtures/keys/app2_pkcs8.pem")),
        "OtherClient",
        "other.serviceaccount@example.com",
        now(),
        3600,
    );
    let (_, body) = emu
        .token_form(&[
            ("assertion", &jwt),
            ("grant_type", JWT_BEARER),
            ("client_id", "OtherClient"),
            ("client_secret", "other-secret"),
            ("scope", "bot"),
        ])
        .await;
    let other = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        emu.send(&other, "/bots/3000001/users/u/messages", &text)
            .await
            .status(),
        StatusCode::CREATED
    );

    // After the window, sends go through again.
    let recovered = eventually(Duration::from_secs(5), || async {
        emu.send(&token, path, &text).await.status() == StatusCode::CREATED
    })
    .await;
    assert!(recovered, "the budget came back after the window");
}

#[tokio::test]
async fn faults_can_be_switched_on_and_off() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let token = emu.token().await;
    let text = json!({"content": {"type": "text", "text": "hi"}});
    let path = "/bots/2000001/users/u/messages";

    emu.faults(json!({"rate_429": 1.0})).await;
    assert_eq!(
        emu.send(&token, path, &text).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    emu.faults(json!({"rate_5xx": 1.0})).await;
    assert_eq!(
        emu.send(&token, path, &text).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    emu.faults(json!({"rate_408": 1.0})).await;
    assert_eq!(
        emu.send(&token, path, &text).await.status(),
        StatusCode::REQUEST_TIMEOUT
    );
    emu.faults(json!({"latency_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(
        emu.send(&token, path, &text).await.status(),
        StatusCode::CREATED
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    emu.faults(json!({"token_endpoint_down": true})).await;
    let jwt = sign_assertion(&key(PKCS8), CLIENT_ID, SERVICE_ACCOUNT, now(), 3600);
    assert_eq!(
        emu.jwt_grant(&jwt, "bot").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Tokens that die early while expires_in still says a day.
    emu.faults(json!({"token_expire_after_seconds": 0})).await;
    let (status, body) = emu.jwt_grant(&jwt, "bot").await;
    assert_eq!(
        (status, &body["expires_in"]),
        (StatusCode::OK, &json!("86400"))
    );
    let res = emu
        .send(body["access_token"].as_str().unwrap(), path, &text)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Off again, and reset forgets messages and counters.
    emu.faults(json!({})).await;
    assert_eq!(
        emu.send(&token, path, &text).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(emu.messages().await.len(), 2);
    let (status, _) = emu
        .admin(reqwest::Method::PUT, "/faults", json!({"rate_429": 2.0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    emu.admin(reqwest::Method::POST, "/reset", Value::Null)
        .await;
    assert!(emu.messages().await.is_empty());
    assert_eq!(emu.stats().await["apps"][CLIENT_ID]["tokens_issued"], 0);
}

/// A webhook: a recording server answering `status`.
async fn spawn_webhook(status: u16) -> crate::helpers::TestEngine {
    let hook = crate::helpers::spawn_engine(Value::Null).await;
    *hook.mode.lock().unwrap() = format!("status:{status}");
    hook
}

#[tokio::test]
async fn callbacks_of_every_type_are_signed_and_shaped_like_the_real_ones() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let hook = spawn_webhook(200).await;
    let cases = [
        json!({"type": "message", "user_id": "u1", "text": "hello"}),
        json!({"type": "message", "user_id": "u1", "channel_id": "room", "content": {"type": "location", "address": "Tokyo", "latitude": 35.6, "longitude": 139.7}}),
        json!({"type": "message", "user_id": "u1", "content": {"type": "sticker", "packageId": "1", "stickerId": "2"}}),
        json!({"type": "message", "user_id": "u1", "content": {"type": "image", "fileId": "kr1.123"}}),
        json!({"type": "message", "user_id": "u1", "content": {"type": "file", "fileId": "kr1.124"}}),
        json!({"type": "postback", "user_id": "u1", "channel_id": "room", "data": "choice=1"}),
        json!({"type": "join", "channel_id": "room"}),
        json!({"type": "leave", "channel_id": "room"}),
        json!({"type": "joined", "channel_id": "room", "members": ["u2", "u3"]}),
        json!({"type": "left", "channel_id": "room", "members": ["u3"]}),
        json!({"type": "begin", "user_id": "u1"}),
        json!({"type": "end", "user_id": "u1"}),
    ];
    for case in &cases {
        let mut request = case.clone();
        request["bot_id"] = json!(BOT_ID);
        request["webhook_url"] = json!(hook.url);
        let (status, body) = emu
            .admin(reqwest::Method::POST, "/callbacks", request)
            .await;
        assert_eq!(
            (status, &body["status"]),
            (StatusCode::OK, &json!(200)),
            "{case}: {body}"
        );
    }
    let received = hook.received.lock().unwrap().clone();
    assert_eq!(received.len(), cases.len());
    for ((headers, raw), case) in received.iter().zip(&cases) {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-works-botid"), Some(BOT_ID));
        assert_eq!(
            header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        let signature = header("x-works-signature").unwrap();
        assert!(
            botgate::naverworks::signature::verify(BOT_SECRET.as_bytes(), raw, signature),
            "{case}"
        );
        let body: Value = serde_json::from_slice(raw).unwrap();
        let text = String::from_utf8_lossy(raw);
        assert!(
            text.starts_with("{\"type\":"),
            "type first, like the documented examples: {text}"
        );
        assert_eq!(body["type"], case["type"]);
        assert!(body["source"]["domainId"].is_i64());
        let issued = body["issuedTime"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(issued, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{issued}"
        );
        match case["type"].as_str().unwrap() {
            "join" | "leave" | "joined" | "left" => {
                assert!(body["source"].get("userId").is_none(), "{text}")
            }
            _ => assert_eq!(body["source"]["userId"], "u1"),
        }
        if case.get("channel_id").is_none() {
            assert!(
                body["source"].get("channelId").is_none(),
                "1:1 has no channelId: {text}"
            );
        }
        if let Some(members) = case.get("members") {
            assert_eq!(&body["members"], members);
        }
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&received[0].1).unwrap()["content"],
        json!({"type": "text", "text": "hello"})
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&received[5].1).unwrap()["data"],
        "choice=1"
    );

    // Refusals: unknown bot, missing fields.
    for (request, needle) in [
        (
            json!({"bot_id": "42", "webhook_url": hook.url, "user_id": "u", "text": "x"}),
            "no bot",
        ),
        (
            json!({"bot_id": BOT_ID, "webhook_url": hook.url, "type": "join"}),
            "channel_id",
        ),
        (
            json!({"bot_id": BOT_ID, "user_id": "u", "text": "x"}),
            "callback URL",
        ),
    ] {
        let (status, body) = emu
            .admin(reqwest::Method::POST, "/callbacks", request)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }

    // Never retried: a webhook answering 500 gets exactly one request.
    let failing = spawn_webhook(500).await;
    let (_, body) = emu
        .admin(
            reqwest::Method::PUT,
            &format!("/bots/{BOT_ID}/callback"),
            json!({"callback_url": failing.url}),
        )
        .await;
    assert_eq!(body["callback_url"], failing.url.as_str());
    let (status, body) = emu
        .admin(
            reqwest::Method::POST,
            "/callbacks",
            json!({"bot_id": BOT_ID, "user_id": "u1", "text": "lost"}),
        )
        .await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!(500)));
    tokio::time::sleep(Duration::from_millis(300)).await; // a retry, if any, would arrive now
    assert_eq!(failing.received.lock().unwrap().len(), 1);

    // The command line sends through a running emulator too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args([
            "emulator",
            "callback",
            "--emulator",
            &emu.url,
            "--bot-id",
            BOT_ID,
            "--user-id",
            "u9",
            "--text",
            "from the CLI",
            "--webhook-url",
            &hook.url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = hook.received.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(
        serde_json::from_slice::<Value>(&last).unwrap()["content"]["text"],
        "from the CLI"
    );
}

#[tokio::test]
async fn attachments_and_channels() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let token = emu.token().await;
    let res = emu
        .send(
            &token,
            "/bots/2000001/attachments",
            &json!({"fileName": "report.pdf"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let created: Value = res.json().await.unwrap();
    let (file_id, upload_url) = (
        created["fileId"].as_str().unwrap(),
        created["uploadUrl"].as_str().unwrap(),
    );

    let boundary = "XyZboundary";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"resourceName\"\r\n\r\nreport.pdf\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"FileData\"; filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 bytes\r\n--{boundary}--\r\n");
    let upload = |auth: bool| {
        let req = emu
            .client
            .post(upload_url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body.clone());
        if auth {
            req.bearer_auth(&token)
        } else {
            req
        }
    };
    assert_eq!(
        upload(false).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let res = upload(true).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["fileId"], file_id);
    assert_eq!(
        upload(true).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "upload URLs are single-use"
    );

    let res = emu
        .client
        .get(format!(
            "{}/v1.0/bots/2000001/attachments/{file_id}",
            emu.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert!(res.headers().get("rateLimit-limit").is_none());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        emu.client.get(&location).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "the second hop needs the header"
    );
    let res = emu
        .client
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"%PDF-1.4 bytes");

    // Channels become known from callbacks (or the admin API).
    let hook = spawn_webhook(200).await;
    for request in [
        json!({"bot_id": BOT_ID, "webhook_url": hook.url, "type": "joined", "channel_id": "room-9", "members": ["a", "b", "c"]}),
        json!({"bot_id": BOT_ID, "webhook_url": hook.url, "type": "left", "channel_id": "room-9", "members": ["b"]}),
    ] {
        emu.admin(reqwest::Method::POST, "/callbacks", request)
            .await;
    }
    let get = |path: String| {
        emu.client
            .get(format!("{}/v1.0{path}", emu.url))
            .bearer_auth(&token)
            .send()
    };
    let info: Value = get("/bots/2000001/channels/room-9".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["channelId"].as_str(), info["domainId"].as_i64()),
        (Some("room-9"), Some(10_000))
    );
    assert_eq!(info["channelType"]["type"], "MULTI_USERS");
    let page: Value = get("/bots/2000001/channels/room-9/members?count=1".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page,
        json!({"members": ["a"], "responseMetaData": {"nextCursor": "1"}})
    );
    let page: Value = get("/bots/2000001/channels/room-9/members?count=1&cursor=1".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page,
        json!({"members": ["c"], "responseMetaData": {"nextCursor": null}})
    );
    assert_eq!(
        get("/bots/2000001/channels/nowhere".into())
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn generated_apps_work_end_to_end() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let (status, app) = emu
        .admin(
            reqwest::Method::POST,
            "/apps/generate",
            json!({"bot_id": "2999999"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert!(
        app["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8, as the console issues"
    );
    // botgate accepts the key as a builder would paste it.
    let pem =
        botgate::domain::naverworks::PrivateKeyPem::parse(app["private_key"].as_str().unwrap())
            .unwrap();
    let client_id = app["client_id"].as_str().unwrap();
    let jwt = sign_assertion(
        &pem.rsa_key().unwrap(),
        client_id,
        app["service_account"].as_str().unwrap(),
        now(),
        3600,
    );
    let (status, body) = emu
        .token_form(&[
            ("assertion", &jwt),
            ("grant_type", JWT_BEARER),
            ("client_id", client_id),
            ("client_secret", app["client_secret"].as_str().unwrap()),
            ("scope", "bot"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = emu
        .send(
            body["access_token"].as_str().unwrap(),
            "/bots/2999999/users/u/messages",
            &json!({"content": {"type": "text", "text": "hi"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, apps) = emu.admin(reqwest::Method::GET, "/apps", Value::Null).await;
    assert!(apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["client_id"] == client_id));
    assert!(
        !apps.to_string().contains("PRIVATE KEY") && !apps.to_string().contains(CLIENT_SECRET),
        "no secrets listed"
    );

    // Claims signed by botgate but with the wrong subject are refused.
    let claims = json!({"iss": client_id, "sub": "someone@else", "iat": now(), "exp": now() + 60});
    let jwt = sign_claims(
        &pem.rsa_key().unwrap(),
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims,
    );
    let (status, _) = emu
        .token_form(&[
            ("assertion", &jwt),
            ("grant_type", JWT_BEARER),
            ("client_id", client_id),
            ("client_secret", app["client_secret"].as_str().unwrap()),
            ("scope", "bot"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The command line generates one too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args(["emulator", "new-app", "--bot-id", "2123456"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["bot_id"], "2123456");
    botgate::domain::naverworks::PrivateKeyPem::parse(printed["private_key"].as_str().unwrap())
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args(["emulator", "new-app", "--toml"])
        .output()
        .unwrap();
    let toml = String::from_utf8(out.stdout).unwrap();
    let config = EmulatorConfig::from_toml(&toml).unwrap();
    assert_eq!(config.apps.len(), 1);
}
