//! The Slack channel over real HTTP: the emulator delivers signed events,
//! commands and button presses to botgate, botgate answers through the
//! emulator's Web API and response_urls. Both backends.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::emulator::{spawn_emulator, Emu};
use crate::helpers::*;

pub struct SlackSetup {
    pub app: TestApp,
    pub emu: Emu,
    pub tenant: Tenant,
    pub connection: Value,
    /// The emulator's app: ids, bot token, signing secret.
    pub slack: Value,
}

pub async fn new_slack_app(emu: &Emu) -> Value {
    let res = emu
        .client
        .post(format!("{}/slack/emulator/apps", emu.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

pub fn slack_body(slack: &Value) -> Value {
    json!({"channel": "slack", "signing_secret": slack["signing_secret"], "bot_token": slack["bot_token"]})
}

pub async fn setup(backend: Backend, extra: &str) -> SlackSetup {
    let emu = spawn_emulator(EmulatorConfig {
        rate_limit_per_minute: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await;
    let slack = new_slack_app(&emu).await;
    let extra = format!(
        "slack_api_url = \"{0}/slack/api\"\nnaverworks_auth_url = \"{0}/oauth2/v2.0\"\nnaverworks_api_url = \"{0}/v1.0\"\nretry_base_ms = 50\n{extra}",
        emu.url
    );
    let app = spawn_app_with(
        backend,
        Options {
            extra,
            ..Options::default()
        },
    )
    .await;
    let tenant = app.create_tenant("Slack").await;
    let connection = app.create_connection(&tenant, &slack_body(&slack)).await;
    SlackSetup {
        app,
        emu,
        tenant,
        connection,
        slack,
    }
}

impl SlackSetup {
    /// A URL of the connection's answer (public URL) on the test server.
    pub fn local(&self, field: &str) -> String {
        let public = self.connection[field].as_str().unwrap();
        self.app.url(
            public
                .strip_prefix("https://botgate.example.com/base")
                .unwrap(),
        )
    }

    pub async fn deliver(&self, kind: &str, extra: Value) -> Value {
        let url = match kind {
            "command" => self.local("commands_url"),
            "action" => self.local("interactions_url"),
            _ => self.local("events_url"),
        };
        let mut body = json!({"app_id": self.slack["app_id"], "url": url, "kind": kind});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let res = self
            .emu
            .client
            .post(format!("{}/slack/emulator/deliver", self.emu.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn messages(&self) -> Vec<Value> {
        let v: Value = self
            .emu
            .client
            .get(format!("{}/slack/emulator/messages", self.emu.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["messages"].as_array().unwrap().clone()
    }

    pub async fn rate_limited(&self) -> u64 {
        let v: Value = self
            .emu
            .client
            .get(format!("{}/slack/emulator/messages", self.emu.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["rate_limited"].as_u64().unwrap()
    }

    /// Makes the tenant's engine an `http` test engine answering `replies`.
    pub async fn use_engine(&self, replies: Value) -> TestEngine {
        let engine = spawn_engine(json!({ "replies": replies })).await;
        let body = json!({"kind": "http", "url": engine.url, "secret": "engine-secret-0123456789"});
        self.app.set_engine(&self.tenant, &body).await;
        engine
    }

    /// The emulator's messages once the first is `edit` (`replaced`,
    /// `deleted`).
    pub async fn wait_edit(&self, edit: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages().await;
            if messages.first().is_some_and(|m| m["edit"] == edit) {
                return messages;
            }
            assert!(Instant::now() < deadline, "not {edit}: {messages:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages().await;
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn events(&self) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(
                &format!(
                    "/api/v1/tenants/{}/connections/{}/events?limit=500",
                    self.tenant.id,
                    self.connection["id"].as_str().unwrap()
                ),
                &self.tenant.api_key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    pub async fn deliveries(&self) -> Vec<Value> {
        self.emu
            .client
            .get(format!("{}/slack/emulator/deliveries", self.emu.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn slack_faults(&self, faults: Value) {
        let res = self
            .emu
            .client
            .put(format!("{}/slack/emulator/faults", self.emu.url))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// A request signed as Slack signs it (or not), straight to a route.
    pub async fn post_signed(
        &self,
        url: &str,
        body: &[u8],
        content_type: &str,
        timestamp: Option<i64>,
        signature: Option<String>,
    ) -> (StatusCode, String) {
        let mut req = self
            .app
            .client
            .post(url)
            .header("Content-Type", content_type)
            .body(body.to_vec());
        if let Some(ts) = timestamp {
            req = req.header("X-Slack-Request-Timestamp", ts.to_string());
        }
        if let Some(sig) = signature {
            req = req.header("X-Slack-Signature", sig);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// Sends `hi` to a channel through the send API and polls (up to
    /// `within`) until the message's status, as the API shows it, passes
    /// `done`; the last status read.
    pub async fn send_until(
        &self,
        channel: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let id = self.connection["id"].as_str().unwrap();
        let (status, sent) = self
            .app
            .send_json(
                Method::POST,
                &format!("/api/v1/connections/{id}/messages"),
                &self.tenant.api_key,
                &json!({"channel_id": channel, "content": {"text": "hi"}}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        let path = format!(
            "/api/v1/connections/{id}/messages/{}",
            sent["id"].as_str().unwrap()
        );
        let deadline = Instant::now() + within;
        loop {
            let (_, m) = self.app.get(&path, &self.tenant.api_key).await;
            if done(&m) || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn send_until_failed(&self, channel: &str, within: Duration) -> Value {
        self.send_until(channel, within, |m| m["status"] == "failed")
            .await
    }

    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        botgate::channels::slack::signature::sign(
            self.slack["signing_secret"].as_str().unwrap().as_bytes(),
            &timestamp.to_string(),
            body,
        )
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn texts(messages: &[Value], channel: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["channel"] == channel)
        .map(|m| m["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A message, a threaded message, a mention, a slash command and a button
/// press each reach the echo engine once; each reply lands in the channel
/// and thread it belongs to, the command's at its response_url; a bot's
/// message is stored as ignored and answered by no one.
async fn each_kind_reaches_the_engine_once_and_is_answered_in_place(backend: Backend) {
    let s = setup(backend, "").await;
    assert_eq!(s.connection["workspace"]["team_id"], s.slack["team_id"]);
    assert_eq!(s.connection["bot_id"], s.slack["bot_id"]);
    let token = s.slack["bot_token"].as_str().unwrap();
    assert!(
        !s.connection.to_string().contains(token),
        "the bot token is masked"
    );
    assert!(!s
        .connection
        .to_string()
        .contains(s.slack["signing_secret"].as_str().unwrap()));

    let first = s
        .deliver("message", json!({"channel": "C1", "text": "hello"}))
        .await;
    assert_eq!(first["first"]["status"], 200, "{first}");
    assert_eq!(first["first"]["acked"], true);
    s.deliver(
        "message",
        json!({"channel": "C1", "text": "in a thread", "thread_ts": "1700000000.000100"}),
    )
    .await;
    s.deliver("mention", json!({"channel": "C2", "text": "hi there"}))
        .await;
    s.deliver(
        "command",
        json!({"channel": "C3", "command": "/luckydraw", "text": "3"}),
    )
    .await;
    s.deliver("action", json!({"channel": "C4", "value": "yes"}))
        .await;
    s.deliver(
        "message",
        json!({"channel": "C5", "text": "from a bot", "from_bot": true}),
    )
    .await;

    let messages = s.wait_messages(5, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = if messages.len() == 5 {
        s.messages().await
    } else {
        messages
    };
    assert_eq!(messages.len(), 5, "{messages:?}");
    let find = |channel: &str, text: &str| {
        messages
            .iter()
            .find(|m| m["channel"] == channel && m["text"] == text)
            .unwrap_or_else(|| panic!("no {text:?} in {channel}: {messages:?}"))
            .clone()
    };
    assert_eq!(find("C1", "hello")["thread_ts"], Value::Null);
    assert_eq!(find("C1", "in a thread")["thread_ts"], "1700000000.000100");
    assert_eq!(find("C2", "hi there")["via"], "chat.postMessage");
    let command = find("C3", "You ran /luckydraw 3");
    assert_eq!(command["via"], "response_url");
    assert_eq!(command["response_type"], "in_channel");
    assert_eq!(find("C4", "You chose: yes")["via"], "chat.postMessage");
    assert!(texts(&messages, "C5").is_empty());
    let metrics = s.app.get_text("/metrics").await;
    assert!(
        metrics.contains("botgate_slack_sends_by_method_total{method=\"response_url\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("botgate_slack_sends_by_method_total{method=\"chat.postMessage\"} 4"),
        "{metrics}"
    );

    let events = s.events().await;
    assert_eq!(events.len(), 6, "{events:?}");
    let ignored: Vec<&Value> = events.iter().filter(|e| e["status"] == "ignored").collect();
    assert_eq!(ignored.len(), 1, "{events:?}");
    assert!(events
        .iter()
        .filter(|e| e["status"] != "ignored")
        .all(|e| e["status"] == "done"));

    // The challenge of url_verification, once signed.
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = now();
    let (status, text) = s
        .post_signed(
            &s.local("events_url"),
            body,
            "application/json",
            Some(ts),
            Some(s.sign(ts, body)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

/// At least 25 bad Slack requests: each answered as DESIGN.md says, the
/// refused ones storing nothing, none answered by the bot.
async fn bad_slack_requests_are_refused_and_change_nothing(backend: Backend) {
    let s = setup(backend, "").await;
    let events = s.local("events_url");
    let commands = s.local("commands_url");
    let interactions = s.local("interactions_url");
    let (team, app) = (
        s.slack["team_id"].as_str().unwrap(),
        s.slack["app_id"].as_str().unwrap(),
    );
    let good_event = |event: Value| {
        json!({"type": "event_callback", "team_id": team, "api_app_id": app, "event_id": format!("Ev{}", rand_id()),
               "event_time": now(), "event": event}).to_string().into_bytes()
    };
    let message = good_event(
        json!({"type": "message", "channel": "C9", "user": "U1", "text": "hi", "ts": "1.1"}),
    );
    let command =
        b"command=%2Fluckydraw&team_id=T1&channel_id=C9&user_id=U1&text=hello+world&response_url=x"
            .to_vec();
    let form = |payload: &str| format!("payload={}", urlencode(payload)).into_bytes();
    // One timestamp for the whole table, which takes a few seconds to send:
    // the stale and future cases sit 100 s past the 300 s edge so that the
    // drift cannot bring them back inside (the edge itself, 301 s, is the
    // signature module's unit test).
    let ts = now();
    const JSON: &str = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded";
    // (name, url, body, content type, timestamp, signature override, status)
    type Case = (
        &'static str,
        String,
        Vec<u8>,
        &'static str,
        Option<i64>,
        Option<Option<String>>,
        u16,
    );
    let other_secret = |ts: i64, body: &[u8]| {
        botgate::channels::slack::signature::sign(
            b"not-the-signing-secret-at-all",
            &ts.to_string(),
            body,
        )
    };
    let cases: Vec<Case> = vec![
        ("missing timestamp", events.clone(), message.clone(), JSON, None, None, 401),
        ("missing signature", events.clone(), message.clone(), JSON, Some(ts), Some(None), 401),
        ("wrong secret", events.clone(), message.clone(), JSON, Some(ts), Some(Some(other_secret(ts, &message))), 401),
        ("stale timestamp", events.clone(), message.clone(), JSON, Some(ts - 400), None, 401),
        ("future timestamp", events.clone(), message.clone(), JSON, Some(ts + 400), None, 401),
        ("v1 prefix", events.clone(), message.clone(), JSON, Some(ts), Some(Some(s.sign(ts, &message).replace("v0=", "v1=")))  , 401),
        ("signature of another body", events.clone(), message.clone(), JSON, Some(ts), Some(Some(s.sign(ts, b"{}"))), 401),
        ("timestamp not a number", events.clone(), message.clone(), JSON, Some(ts), Some(Some("v0=zz".into())), 401),
        ("signature not hex", events.clone(), message.clone(), JSON, Some(ts), Some(Some(format!("v0={}", "g".repeat(64)))), 401),
        ("re-encoded form", commands.clone(), command.clone(), FORM, Some(ts), Some(Some(s.sign(ts, &command.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect::<Vec<u8>>()))), 401),
        ("events as text/plain", events.clone(), message.clone(), "text/plain", Some(ts), None, 415),
        ("command as JSON", commands.clone(), br#"{"command":"/x"}"#.to_vec(), JSON, Some(ts), None, 415),
        ("oversized body", events.clone(), vec![b' '; 300 * 1024], JSON, Some(ts), None, 413),
        ("malformed JSON", events.clone(), b"{\"type\": ".to_vec(), JSON, Some(ts), None, 400),
        ("malformed payload", interactions.clone(), form("{not json"), FORM, Some(ts), None, 400),
        ("interaction without payload", interactions.clone(), b"other=1".to_vec(), FORM, Some(ts), None, 400),
        ("event without team", events.clone(), json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", "channel": "C9"}}).to_string().into_bytes(), JSON, Some(ts), None, 400),
        ("message without channel", events.clone(), good_event(json!({"type": "message", "user": "U1", "text": "hi"})), JSON, Some(ts), None, 400),
        ("event without event_id", events.clone(), json!({"type": "event_callback", "team_id": team, "event": {"type": "message", "channel": "C9"}}).to_string().into_bytes(), JSON, Some(ts), None, 400),
        ("body without type", events.clone(), b"{}".to_vec(), JSON, Some(ts), None, 400),
        ("command without channel", commands.clone(), b"command=%2Fx&team_id=T1&user_id=U1".to_vec(), FORM, Some(ts), None, 400),
        ("command without team", commands.clone(), b"command=%2Fx&channel_id=C9&user_id=U1".to_vec(), FORM, Some(ts), None, 400),
        ("command without a slash", commands.clone(), b"command=x&team_id=T1&channel_id=C9&user_id=U1".to_vec(), FORM, Some(ts), None, 400),
        ("block_actions without channel", interactions.clone(), form(&json!({"type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"}, "actions": [{"value": "v"}]}).to_string()), FORM, Some(ts), None, 400),
        ("url_verification, badly signed", events.clone(), br#"{"type":"url_verification","challenge":"c"}"#.to_vec(), JSON, Some(ts), Some(Some(s.sign(ts, b"x"))), 401),
        ("unknown connection", s.app.url("/webhooks/slack/AAAAAAAAAAAAAAAAAAAAAA/events"), message.clone(), JSON, Some(ts), None, 404),
        // Accepted, not answered:
        ("Slack dropping events", events.clone(), br#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}"#.to_vec(), JSON, Some(ts), None, 200),
        ("unknown outer type", events.clone(), br#"{"type":"team_rename_preview","team_id":"T1"}"#.to_vec(), JSON, Some(ts), None, 200),
        ("another interaction type", interactions.clone(), form(r#"{"type":"view_submission","team":{"id":"T1"}}"#), FORM, Some(ts), None, 200),
        ("unknown event type", events.clone(), good_event(json!({"type": "reaction_added", "user": "U1", "reaction": "tada"})), JSON, Some(ts), None, 200),
        ("a bot's own message", events.clone(), good_event(json!({"type": "message", "channel": "C9", "bot_id": s.slack["bot_id"], "text": "echo", "ts": "1.2"})), JSON, Some(ts), None, 200),
        ("a message edit", events.clone(), good_event(json!({"type": "message", "subtype": "message_changed", "channel": "C9", "ts": "1.3"})), JSON, Some(ts), None, 200),
    ];
    assert!(cases.len() >= 25);
    let stored_before = s.events().await.len();
    let mut stored_expected = 0;
    for (name, url, body, content_type, timestamp, signature, expected) in cases {
        let signature = match signature {
            None => timestamp.map(|t| s.sign(t, &body)),
            Some(explicit) => explicit,
        };
        let timestamp = if name == "timestamp not a number" {
            None
        } else {
            timestamp
        };
        let mut req = s
            .app
            .client
            .post(&url)
            .header("Content-Type", content_type)
            .body(body.clone());
        if name == "timestamp not a number" {
            req = req.header("X-Slack-Request-Timestamp", "yesterday");
        }
        if let Some(ts) = timestamp {
            req = req.header("X-Slack-Request-Timestamp", ts.to_string());
        }
        if let Some(sig) = signature {
            req = req.header("X-Slack-Signature", sig);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(status, expected, "{name}: {text}");
        if status >= 400 {
            let error: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
            assert!(error["error"]["code"].is_string(), "{name}: {text}");
            assert!(!text.contains(s.slack["signing_secret"].as_str().unwrap()));
        }
        if [
            "unknown event type",
            "a bot's own message",
            "a message edit",
        ]
        .contains(&name)
        {
            stored_expected += 1;
        }
        assert_eq!(
            s.events().await.len(),
            stored_before + stored_expected,
            "{name}: stored rows"
        );
    }
    // Slack's notice that it drops events is counted apart (and logged).
    let metrics = s.app.get_text("/metrics").await;
    assert!(
        metrics.contains("botgate_webhook_requests_total{outcome=\"app_rate_limited\"} 1"),
        "{metrics}"
    );
    // Nothing was answered, and the stored ones were ignored.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(s.messages().await.is_empty(), "{:?}", s.messages().await);
    let events = s.events().await;
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e["status"] == "ignored"),
        "{events:?}"
    );
}

fn rand_id() -> String {
    botgate::secrets::hex(&botgate::secrets::random_bytes(6))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An engine that takes 10 s: every Slack request is acknowledged within
/// 3 s, the retries Slack sends when it thinks an answer was lost are not
/// processed twice, and the replies arrive once, in order.
async fn a_slow_engine_is_acknowledged_in_time_and_retries_are_not_processed_twice(
    backend: Backend,
) {
    let s = setup(backend, "engine_timeout_seconds = 30\n").await;
    let engine = spawn_engine(json!({"replies": [{"type": "text", "text": "re: {{text}}"}]})).await;
    // Slower than Slack's 3-second deadline, so only an early acknowledgement
    // keeps Slack from seeing a timeout.
    *engine.mode.lock().unwrap() = "hang:4000".into();
    let body = json!({"kind": "http", "url": engine.url, "secret": "engine-secret-0123456789"});
    s.app.set_engine(&s.tenant, &body).await;
    // Each event delivered, then sent again twice at once as if the
    // answers had been lost.
    let retry = json!({"forced_retries": 2, "retry_delays_ms": [0, 200, 400]});
    for text in ["one", "two"] {
        let mut d = retry.clone();
        d["channel"] = json!("C1");
        d["text"] = json!(text);
        s.deliver("message", d).await;
    }
    s.deliver(
        "command",
        json!({"channel": "C1", "command": "/luckydraw", "text": "three"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deliveries = s.deliveries().await;
    assert_eq!(deliveries.len(), 7, "{deliveries:?}");
    for d in &deliveries {
        assert_eq!(d["status"], 200, "{d}");
        assert!(d["elapsed_ms"].as_u64().unwrap() < 3000, "{d}");
    }
    assert_eq!(
        deliveries
            .iter()
            .filter(|d| d["response"].as_str().unwrap().contains("duplicate"))
            .count(),
        4
    );
    let messages = s.wait_messages(3, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.messages().await.len(), 3);
    assert_eq!(texts(&messages, "C1"), ["re: one", "re: two", "re: three"]);
    assert_eq!(
        engine.received.lock().unwrap().len(),
        3,
        "the engine was asked once per event"
    );
}

/// A button's answer can replace or delete the message the button was on
/// (a native reply with `replace_original` / `delete_original`, through
/// the action's `response_url`); asked of a plain message, which has no
/// such URL, the reply fails with the reason and nothing is posted.
async fn a_button_replaces_or_deletes_the_message_it_was_on(backend: Backend) {
    let s = setup(backend, "").await;
    let id = s.connection["id"].as_str().unwrap();
    let (status, body) = s
        .app
        .send_json(Method::POST, &format!("/api/v1/connections/{id}/messages"), &s.tenant.api_key,
            &json!({"channel_id": "C7", "content": {"text": "Pick one", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Pick one"}}]}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let posted = s.wait_messages(1, Duration::from_secs(20)).await;
    let ts = posted[0]["ts"].as_str().unwrap().to_owned();

    // A click on it, answered by an engine whose reply is `content`.
    async fn click(s: &SlackSetup, ts: &str, content: Value, edit: &str) -> Vec<Value> {
        let _engine = s
            .use_engine(json!([{"type": "native", "content": content}]))
            .await;
        let action = json!({"channel": "C7", "value": "yes", "message_ts": ts});
        s.deliver("action", action).await;
        s.wait_edit(edit).await
    }
    let replace = json!({"replace_original": true, "text": "Chosen: yes"});
    let messages = click(&s, &ts, replace, "replaced").await;
    assert_eq!(messages.len(), 1, "replaced, not posted: {messages:?}");
    assert_eq!(
        (&messages[0]["text"], &messages[0]["blocks"]),
        (&json!("Chosen: yes"), &Value::Null)
    );

    // Asked of a user's message: no response_url, so the reply fails.
    let _replacer = s
        .use_engine(json!([{"type": "native", "content": {"replace_original": true, "text": "x"}}]))
        .await;
    s.deliver("message", json!({"channel": "C8", "text": "hi"}))
        .await;
    let failed = format!("/api/v1/connections/{id}/messages?status=failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (_, listed) = s.app.get(&failed, &s.tenant.api_key).await;
        if listed["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break listed;
        }
        assert!(Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = listed["messages"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("response_url"), "{error}");

    let delete = json!({"delete_original": true});
    let messages = click(&s, &ts, delete, "deleted").await;
    assert_eq!(messages.len(), 1, "{messages:?}");
}

/// Membership events reach the engine with NAVER WORKS' kinds: the bot
/// added to a channel `join` (from its inviter), someone joining `joined`,
/// leaving `left` (with `members`), the bot removed `leave`; the echo
/// engine greets on the first two.
async fn membership_events_reach_the_engine_as_join_joined_left_and_leave(backend: Backend) {
    let s = setup(backend, "").await;
    let bot = s.slack["bot_user_id"].as_str().unwrap().to_owned();
    let team = s.slack["team_id"].as_str().unwrap().to_owned();
    let events = [
        json!({"type": "member_joined_channel", "user": bot, "channel": "C9", "channel_type": "C", "team": team, "inviter": "U1"}),
        json!({"type": "member_joined_channel", "user": "U5", "channel": "C9", "channel_type": "C", "team": team}),
        json!({"type": "member_left_channel", "user": "U5", "channel": "C9", "channel_type": "C", "team": team}),
        json!({"type": "channel_left", "channel": "C9", "actor_id": "U1"}),
    ];
    // The echo engine: a greeting for the bot's joining and for a member's.
    for event in &events[..2] {
        s.deliver("event", json!({ "event": event })).await;
    }
    let messages = s.wait_messages(2, Duration::from_secs(20)).await;
    assert_eq!(
        texts(&messages, "C9"),
        [
            "Hello! Thanks for adding me. Everything you say, I say back.",
            "Welcome!"
        ]
    );
    // An http engine sees each kind.
    let engine = s.use_engine(json!([])).await;
    for event in &events {
        s.deliver("event", json!({ "event": event })).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.received.lock().unwrap().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the engine was not asked 4 times"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked: Vec<Value> = engine
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).unwrap())
        .collect();
    let seen: Vec<_> = asked
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_owned(),
                a["conversation"]["user_id"].clone(),
                a["content"].get("members").cloned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("join".to_owned(), json!("U1"), None),
            ("joined".to_owned(), json!("U5"), Some(json!(["U5"]))),
            ("left".to_owned(), json!("U5"), Some(json!(["U5"]))),
            ("leave".to_owned(), json!("U1"), None),
        ]
    );
    assert!(asked
        .iter()
        .all(|a| a["conversation"]["channel_id"] == "C9"));
}

/// 20 channels × 30 messages through the send API against a per-channel
/// limit lower than the connection's pace: all delivered in per-channel
/// order, 429s honoured, and a message to a quiet channel is not held
/// behind the others' backlog.
async fn channels_are_paced_one_by_one_and_keep_their_order(backend: Backend) {
    let s = setup(backend, "").await;
    s.slack_faults(json!({"per_channel_per_second": 2.0, "burst": 2.0}))
        .await;
    let id = s.connection["id"].as_str().unwrap();
    let (status, body) = s
        .app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/tenants/{}/connections/{id}", s.tenant.id),
            &s.tenant.api_key,
            &json!({"rate_limit_per_minute": 1200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/api/v1/connections/{id}/messages");
    // Message j of every channel at once; j + 1 only once all j are queued.
    for j in 0..30 {
        join_all((0..20).map(|c| {
            let (app, key, path) = (&s.app, &s.tenant.api_key, &path);
            async move {
                let (status, body) = app
                    .send_json(Method::POST, path, key, &json!({"channel_id": format!("C{c:02}"), "content": {"text": format!("{j:02}")}}))
                    .await;
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            }
        }))
        .await;
    }
    let (status, _) = s
        .app
        .send_json(
            Method::POST,
            &path,
            &s.tenant.api_key,
            &json!({"channel_id": "CQUIET", "content": {"type": "text", "text": "quiet"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The pacing alone takes 30 s (600 messages at the connection's 20/s).
    // On a loaded two-core CI machine this has taken over 90 s (600 of 601
    // by then), so the wait is long: what is checked is that every message
    // arrives, in its channel's order, not how fast.
    let messages = s.wait_messages(601, Duration::from_secs(240)).await;
    if messages.len() != 601 {
        let mut left = Vec::new();
        for status in ["queued", "sending", "failed"] {
            let (_, list) = s
                .app
                .get(&format!("{path}?status={status}"), &s.tenant.api_key)
                .await;
            left.push(format!("{status}: {}", list["messages"]));
        }
        panic!("{} of 601 delivered; {}", messages.len(), left.join("; "));
    }
    for c in 0..20 {
        let got = texts(&messages, &format!("C{c:02}"));
        let expected: Vec<String> = (0..30).map(|j| format!("{j:02}")).collect();
        assert_eq!(got, expected, "channel C{c:02} in order");
    }
    assert!(
        s.rate_limited().await > 0,
        "the emulator's limit was reached and honoured"
    );
    let quiet = messages
        .iter()
        .position(|m| m["channel"] == "CQUIET")
        .unwrap();
    assert!(
        quiet < 500,
        "the quiet channel waited behind the backlog (position {quiet})"
    );
}

/// NAVER WORKS and Slack connections side by side, in one tenant and in
/// two: each webhook takes only its own channel's connections, and a key
/// never reaches another tenant's (404).
async fn naverworks_and_slack_connections_are_isolated(backend: Backend) {
    let s = setup(backend, "").await;
    let nw = s
        .app
        .create_connection(&s.tenant, &connection_body("2000001"))
        .await;
    let other = s.app.create_tenant("Other").await;
    let slack2 = new_slack_app(&s.emu).await;
    let other_conn = s.app.create_connection(&other, &slack_body(&slack2)).await;
    // A Slack connection's id on the NAVER WORKS webhook, and the reverse.
    let slack_public = s.connection["events_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .nth(1)
        .unwrap()
        .to_owned();
    let nw_public = nw["webhook_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let res = s
        .app
        .client
        .post(s.app.url(&format!("/webhooks/naverworks/{slack_public}")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body = b"{}";
    let ts = now();
    let (status, _) = s
        .post_signed(
            &s.app.url(&format!("/webhooks/slack/{nw_public}/events")),
            body,
            "application/json",
            Some(ts),
            Some(s.sign(ts, body)),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant's key.
    for path in [
        format!(
            "/api/v1/tenants/{}/connections/{}",
            s.tenant.id,
            s.connection["id"].as_str().unwrap()
        ),
        format!(
            "/api/v1/connections/{}/messages",
            s.connection["id"].as_str().unwrap()
        ),
    ] {
        let (status, _) = s.app.get(&path, &other.api_key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Other tenant's app signs for its own connection only.
    let other_events = other_conn["events_url"]
        .as_str()
        .unwrap()
        .strip_prefix("https://botgate.example.com/base")
        .unwrap()
        .to_owned();
    let (status, _) = s
        .post_signed(
            &s.app.url(&other_events),
            body,
            "application/json",
            Some(ts),
            Some(s.sign(ts, body)),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "signed with another app's secret"
    );
    // A connection lists with its channel's fields only.
    let (status, list) = s
        .app
        .get(
            &format!("/api/v1/tenants/{}/connections", s.tenant.id),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let list = list["connections"].as_array().unwrap();
    let slack_view = list.iter().find(|c| c["channel"] == "slack").unwrap();
    let nw_view = list.iter().find(|c| c["channel"] == "naverworks").unwrap();
    assert!(slack_view.get("webhook_url").is_none() && slack_view.get("private_key").is_none());
    // No auth header, no token URLs (they would answer nobody).
    assert!(
        slack_view.get("auth_url").is_none() && slack_view.get("auth_refresh_url").is_none(),
        "{slack_view}"
    );
    assert!(nw_view.get("events_url").is_none() && nw_view["webhook_url"].is_string());
}

/// Connect-time checks: a token Slack refuses, a token that is not a bot
/// token, and missing credentials are refused with field errors and store
/// nothing; a revoked token stops sends with the reason shown.
async fn slack_credentials_are_checked(backend: Backend) {
    let s = setup(backend, "send_max_attempts = 2\n").await;
    let cases = [
        (
            json!({"channel": "slack", "signing_secret": s.slack["signing_secret"], "bot_token": "xoxb-1234-not-a-real-token"}),
            "bot_token",
        ),
        (
            json!({"channel": "slack", "signing_secret": s.slack["signing_secret"], "bot_token": "xoxp-user-token-1234"}),
            "bot_token",
        ),
        (
            json!({"channel": "slack", "signing_secret": s.slack["signing_secret"]}),
            "bot_token",
        ),
        (
            json!({"channel": "slack", "bot_token": s.slack["bot_token"]}),
            "signing_secret",
        ),
        (
            json!({"channel": "slack", "signing_secret": s.slack["signing_secret"], "bot_token": s.slack["bot_token"], "private_key": "x"}),
            "private_key",
        ),
        (json!({"channel": "teams"}), "channel"),
    ];
    let path = format!("/api/v1/tenants/{}/connections", s.tenant.id);
    for (body, field) in cases {
        let (status, answer) = s
            .app
            .send_json(Method::POST, &path, &s.tenant.api_key, &body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(
            answer["error"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["field"] == field),
            "{body}: {answer}"
        );
        assert!(!answer.to_string().contains("xoxb-1234"), "no token echoed");
    }
    let (_, list) = s.app.get(&path, &s.tenant.api_key).await;
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    // The same bot twice: a conflict.
    let (status, _) = s
        .app
        .send_json(
            Method::POST,
            &path,
            &s.tenant.api_key,
            &slack_body(&s.slack),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Revoked: the message is retried, then fails with Slack's reason.
    s.slack_faults(json!({"revoked_tokens": [s.slack["bot_token"]]}))
        .await;
    let status = s.send_until_failed("C1", Duration::from_secs(20)).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("token_revoked"),
        "{status}"
    );
    let metrics = s.app.get_text("/metrics").await;
    assert!(
        !metrics.contains("botgate_naverworks_sends_total{outcome=\"credentials_refused\"} 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("botgate_pacing_delays_total{kind=\"held\"} 0"),
        "the connection's sends were held: {metrics}"
    );
    // And a message to a channel Slack does not know fails at once.
    s.slack_faults(json!({"unknown_channels": ["CGONE"]})).await;
    let status = s.send_until_failed("CGONE", Duration::from_secs(10)).await;
    assert_eq!(status["attempts"], 1, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{status}"
    );
}

/// A request Slack did not read in time (HTTP 408) did nothing: it is
/// retried like a 5xx, not failed as a refused message is, and goes once
/// Slack reads it.
async fn a_request_not_read_in_time_is_retried_not_failed(backend: Backend) {
    let s = setup(backend, "").await;
    s.slack_faults(json!({"rate_408": 1.0})).await;
    let retried = s
        .send_until("C408", Duration::from_secs(20), three_attempts)
        .await;
    assert_retrying_after_408(&retried);
    s.slack_faults(json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while texts(&s.messages().await, "C408").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(texts(&s.messages().await, "C408"), ["hi"], "delivered once");
}

both_backends!(
    each_kind_reaches_the_engine_once_and_is_answered_in_place,
    a_button_replaces_or_deletes_the_message_it_was_on,
    membership_events_reach_the_engine_as_join_joined_left_and_leave,
    bad_slack_requests_are_refused_and_change_nothing,
    a_slow_engine_is_acknowledged_in_time_and_retries_are_not_processed_twice,
    channels_are_paced_one_by_one_and_keep_their_order,
    naverworks_and_slack_connections_are_isolated,
    slack_credentials_are_checked,
    a_request_not_read_in_time_is_retried_not_failed,
);

/// SIGKILL in the middle of Slack traffic, then a restart: every event that
/// was acknowledged is answered.
async fn sigkill_mid_slack_load_loses_no_acknowledged_event(backend: Backend) {
    use crate::crash::{start, wait_healthy};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let slack = new_slack_app(&emu).await;
    let res = emu
        .client
        .put(format!("{}/slack/emulator/faults", emu.url))
        .json(&json!({"per_channel_per_second": 10000.0, "burst": 10000.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let engine = spawn_engine(json!({"replies": [{"type": "text", "text": "{{text}}"}]})).await;
    *engine.mode.lock().unwrap() = "hang:100".into();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let admin = "crash-test-admin-token-0123456789".to_owned();
    let (base, env) = crate::crash::process_env(&db, dir.path(), &admin, |_| {
        vec![
            ("BOTGATE_SLACK_API_URL", format!("{}/slack/api", emu.url)),
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
        .put(format!("{base}/api/v1/tenants/{tenant_id}/engine"))
        .bearer_auth(key)
        .json(
            &json!({"kind": "http", "url": engine.url, "secret": "engine-hmac-secret-0123456789"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = slack_body(&slack);
    body["rate_limit_per_minute"] = json!(6000);
    let conn: Value = client
        .post(format!("{base}/api/v1/tenants/{tenant_id}/connections"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = conn["events_url"]
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:8080", "");
    let secret = slack["signing_secret"].as_str().unwrap().to_owned();
    let team = slack["team_id"].as_str().unwrap().to_owned();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..10 {
        let (acked, killed, client, url, secret, team) = (
            acked.clone(),
            killed.clone(),
            client.clone(),
            format!("{base}{path}"),
            secret.clone(),
            team.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for m in 0..40 {
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                let text = format!("c{c}-{m}");
                let raw = json!({"type": "event_callback", "team_id": team, "event_id": format!("Ev{c}x{m}"), "event_time": now(),
                    "event": {"type": "message", "channel": format!("C{c}"), "channel_type": "channel", "user": "U1", "text": text, "ts": format!("1.{m}")}})
                    .to_string();
                let ts = now().to_string();
                let sig = botgate::channels::slack::signature::sign(secret.as_bytes(), &ts, raw.as_bytes());
                let res = client.post(&url).header("Content-Type", "application/json").header("X-Slack-Request-Timestamp", ts)
                    .header("X-Slack-Signature", sig).body(raw).send().await;
                if res.is_ok_and(|r| r.status() == StatusCode::OK) {
                    acked.lock().unwrap().push(text);
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(process.take()); // SIGKILL, mid-load
    killed.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let messages = |emu: &Emu| {
        let (client, url) = (
            emu.client.clone(),
            format!("{}/slack/emulator/messages", emu.url),
        );
        async move {
            let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<String>>()
        }
    };
    assert!(
        messages(&emu).await.len() < acked.len(),
        "the kill came before everything was answered"
    );
    *engine.mode.lock().unwrap() = "ok".into();
    let _restarted = start(&env, dir.path());
    wait_healthy(&client, &base).await;
    let started = Instant::now();
    loop {
        let delivered = messages(&emu).await;
        let missing: Vec<&String> = acked.iter().filter(|t| !delivered.contains(t)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} acknowledged events never answered: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Neither secret reached the processes' log.
    let log = std::fs::read_to_string(dir.path().join("botgate.log")).unwrap();
    assert!(log.contains("connection created"), "the log was written");
    for secret in [
        slack["bot_token"].as_str().unwrap(),
        slack["signing_secret"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

both_backends!(sigkill_mid_slack_load_loses_no_acknowledged_event);
