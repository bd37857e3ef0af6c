//! The send API against the emulator over real HTTP.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::emulator::{limit_cases, valid_bodies};
use crate::helpers::*;
use crate::inbound::{setup_with, Inbound};

impl Inbound {
    fn messages_path(&self) -> String {
        format!(
            "/api/v1/connections/{}/messages",
            self.connection["id"].as_str().unwrap()
        )
    }

    async fn send(&self, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .app
            .request(Method::POST, &self.messages_path(), &self.tenant.api_key)
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        decode(req.send().await.unwrap()).await
    }

    async fn status_of(&self, id: &str) -> Value {
        let (status, body) = self
            .app
            .get(
                &format!("{}/{id}", self.messages_path()),
                &self.tenant.api_key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn wait_status(&self, id: &str, wanted: &str) -> Value {
        self.wait_until(id, |m| m["status"] == wanted).await
    }

    /// The message's status once it passes `done`, or after 30 s.
    async fn wait_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let m = self.status_of(id).await;
            if done(&m) || start.elapsed() > Duration::from_secs(30) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

both_backends!(
    every_content_type_is_delivered_as_sent,
    bad_messages_are_refused_and_nothing_is_queued,
    idempotency_keys_send_once,
    a_tight_rate_limit_is_paced_and_nothing_is_lost,
    a_refused_message_fails_without_endless_retries,
    a_request_not_read_in_time_is_retried_not_failed,
    tenants_cannot_use_each_others_connections,
    an_attempt_ends_before_its_lease_and_nothing_is_sent_twice,
    failed_messages_are_sent_again_on_request,
    queued_messages_are_cancelled_and_never_sent,
    final_statuses_are_posted_to_the_status_hook,
    status_posts_are_claimed_once_and_settled_under_their_lease,
    a_hanging_status_hook_does_not_hold_up_another_tenants,
);

async fn every_content_type_is_delivered_as_sent(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let bodies = valid_bodies();
    let mut ids = Vec::new();
    for body in &bodies {
        let mut request = body.clone();
        request["channel_id"] = json!("ops-room");
        let (status, answer) = s.send(&request, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["status"], "queued");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let received = s.wait_messages(bodies.len(), Duration::from_secs(30)).await;
    assert_eq!(received.len(), bodies.len());
    for (got, sent) in received.iter().zip(&bodies) {
        assert_eq!(
            got["content"], sent["content"],
            "recorded exactly as sent, in order"
        );
        assert_eq!(got["channel_id"], "ops-room");
    }
    let last = s.wait_status(ids.last().unwrap(), "delivered").await;
    assert_eq!(
        (&last["status"], &last["attempts"]),
        (&json!("delivered"), &json!(1))
    );
    assert!(last["delivered_at"].is_string());
    let (_, listed) = s
        .app
        .get(
            &format!("{}?status=delivered", s.messages_path()),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(listed["messages"].as_array().unwrap().len(), bodies.len());

    // A long text is split when asked, each part within the limit, in order.
    let long = format!("{} {}", "a".repeat(1500), "b".repeat(1500));
    let (status, answer) = s.send(&json!({"user_id": "u1", "content": {"type": "text", "text": long}, "split_long_text": true}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["ids"].as_array().unwrap().len(), 2);
    let received = s
        .wait_messages(bodies.len() + 2, Duration::from_secs(30))
        .await;
    let parts: Vec<&str> = received[bodies.len()..]
        .iter()
        .map(|m| m["content"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(parts.concat(), long);
}

async fn bad_messages_are_refused_and_nothing_is_queued(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let mut cases: Vec<(Value, &str)> = limit_cases()
        .into_iter()
        .map(|(content, needle)| (json!({"user_id": "u1", "content": content}), needle))
        .collect();
    cases.extend([
        (json!({"content": {"type": "text", "text": "x"}}), "user_id"),
        (
            json!({"user_id": "u1", "channel_id": "c", "content": {"type": "text", "text": "x"}}),
            "exactly one",
        ),
        (json!({"user_id": "u1"}), "content"),
        (
            json!({"user_id": "", "content": {"type": "text", "text": "x"}}),
            "user_id",
        ),
        (
            json!({"user_id": "u1", "content": {"type": "text", "text": "x".repeat(2001)}}),
            "2000",
        ),
    ]);
    for (body, needle) in &cases {
        let (status, answer) = s.send(body, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    let (status, answer) = s
        .send(
            &json!({"user_id": "u1", "content": {"type": "text", "text": "x"}, "priority": 1}),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let (_, listed) = s.app.get(&s.messages_path(), &s.tenant.api_key).await;
    assert_eq!(listed["messages"], json!([]), "nothing queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.emu.messages().await.is_empty());
}

async fn idempotency_keys_send_once(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let body = json!({"user_id": "u1", "content": {"type": "text", "text": "backup done"}});
    let (_, first) = s.send(&body, Some("job-2026-11-23")).await;
    let (status, again) = s.send(&body, Some("job-2026-11-23")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], first["id"]);
    // Concurrently, with a fresh key: still one message.
    let sends = (0..10).map(|_| s.send(&body, Some("job-concurrent")));
    let answers = join_all(sends).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(st, a)| {
            assert_eq!(*st, StatusCode::ACCEPTED, "{a}");
            a["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    s.wait_messages(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.emu.messages().await.len(), 2, "one per key");
}

async fn a_tight_rate_limit_is_paced_and_nothing_is_lost(backend: Backend) {
    // The free plan's budget shape, on a short window so the test stays quick:
    // 20 per second at the emulator, and the connection paced to the same.
    let emulator = EmulatorConfig {
        rate_limit_per_minute: 20,
        rate_limit_window_seconds: 1,
        ..Default::default()
    };
    let s = setup_with(backend, emulator, "").await;
    let (status, _) = s
        .app
        .send_json(
            Method::PATCH,
            &s.conn_path(),
            &s.tenant.api_key,
            &json!({"rate_limit_per_minute": 1200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut ids = Vec::new();
    for i in 0..200 {
        // 20 rooms, so that sends could run in parallel and outpace the limit.
        let room = format!("room-{}", i % 20);
        let (status, answer) = s.send(&json!({"channel_id": room, "content": {"type": "text", "text": format!("report {i}")}}), None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let received = s.wait_messages(200, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 200);
    for room in 0..20 {
        let texts: Vec<&str> = received
            .iter()
            .filter(|m| m["channel_id"] == format!("room-{room}"))
            .map(|m| m["content"]["text"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..10)
            .map(|k| format!("report {}", k * 20 + room))
            .collect();
        assert_eq!(
            texts, expected,
            "room {room}: all delivered, in order, once"
        );
    }
    for id in &ids {
        assert_eq!(s.wait_status(id, "delivered").await["status"], "delivered");
    }
    let stats = s.emu.get_json("/emulator/stats").await;
    let limited = stats["rate_limited"].as_u64().unwrap();
    eprintln!("rate limited: {limited} of 200 sends");
    assert!(
        limited <= 20,
        "pacing keeps 429s rare: {limited} for 200 messages"
    );
}

async fn a_refused_message_fails_without_endless_retries(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let res = s
        .emu
        .client
        .put(format!("{}/emulator/faults", s.emu.url))
        .json(&json!({"unknown_users": ["ghost"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, answer) = s
        .send(
            &json!({"user_id": "ghost", "content": {"type": "text", "text": "anyone?"}}),
            None,
        )
        .await;
    let failed = s
        .wait_status(answer["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 1, "not retried");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("User does not exist"),
        "{failed}"
    );
    // A later message in another conversation still goes.
    let (_, ok) = s
        .send(
            &json!({"user_id": "someone", "content": {"type": "text", "text": "hi"}}),
            None,
        )
        .await;
    assert_eq!(
        s.wait_status(ok["id"].as_str().unwrap(), "delivered").await["status"],
        "delivered"
    );
}

/// HTTP 408 (the server did not read the request in time, so did nothing):
/// the message is retried, as on a 5xx, and delivered once the server
/// reads it; it does not fail as a refused message does.
async fn a_request_not_read_in_time_is_retried_not_failed(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    s.emu.faults(json!({"rate_408": 1.0})).await;
    let (status, answer) = s
        .send(
            &json!({"user_id": "u1", "content": {"type": "text", "text": "late"}}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert_retrying_after_408(&s.wait_until(id, three_attempts).await);
    s.emu.faults(json!({})).await;
    let delivered = s.wait_status(id, "delivered").await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    let texts = s.emu.texts().await;
    assert_eq!(texts, [json!("late")], "delivered once");
}

async fn tenants_cannot_use_each_others_connections(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let (_, mine) = s
        .send(
            &json!({"user_id": "u1", "content": {"type": "text", "text": "mine"}}),
            None,
        )
        .await;
    let other = s.app.create_tenant("Other").await;
    let body = json!({"user_id": "u1", "content": {"type": "text", "text": "theirs"}});
    let (status, answer) = s
        .app
        .send_json(Method::POST, &s.messages_path(), &other.api_key, &body)
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = s
        .app
        .get(
            &format!("{}/{}", s.messages_path(), mine["id"].as_str().unwrap()),
            &other.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.app.get(&s.messages_path(), &other.api_key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.app.get(&s.messages_path(), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The command line client, with the tenant's key from the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args([
            "send",
            "--connection",
            s.connection["id"].as_str().unwrap(),
            "--channel",
            "ops",
            "nightly backup done",
        ])
        .env("BOTGATE_URL", &s.app.address)
        .env("BOTGATE_API_KEY", &s.tenant.api_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s.wait_status(printed["id"].as_str().unwrap(), "delivered")
            .await["status"],
        "delivered"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args([
            "send",
            "--connection",
            s.connection["id"].as_str().unwrap(),
            "--channel",
            "ops",
            "x",
        ])
        .env("BOTGATE_URL", &s.app.address)
        .env("BOTGATE_API_KEY", &other.api_key)
        .output()
        .unwrap();
    assert!(!out.status.success(), "another tenant's key is refused");
}

/// The token endpoint answers after 14 s, longer than the message's lease
/// (11 s with 1 s timeouts): the attempt gives up at its deadline (6 s),
/// inside the lease, and the message goes back to the queue; the refresh
/// goes on and the next attempt sends with its token. Before, the lease
/// expired under the waiting attempt, a second claim waited for the same
/// token, and both sent.
async fn an_attempt_ends_before_its_lease_and_nothing_is_sent_twice(backend: Backend) {
    let s = setup_with(
        backend,
        EmulatorConfig::default(),
        "send_timeout_seconds = 1\nengine_timeout_seconds = 1",
    )
    .await;
    s.emu.faults(json!({"token_latency_ms": 14_000})).await;
    let (status, answer) = s
        .send(
            &json!({"user_id": "slow-token", "content": {"type": "text", "text": "once"}}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let delivered = s.wait_status(id, "delivered").await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert!(
        delivered["attempts"].as_i64().unwrap() >= 2,
        "the first attempt gave up at its deadline: {delivered}"
    );
    // A second send would come at about the same moment as the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent: Vec<Value> = s
        .emu
        .messages()
        .await
        .into_iter()
        .filter(|m| m["content"]["text"] == "once")
        .collect();
    assert_eq!(sent.len(), 1, "sent exactly once: {sent:?}");
}

/// A message that failed (the user was unknown) is sent again on request,
/// once the cause is gone: one by its id, the rest all at once. Each keeps
/// its id, creation time and idempotency key, starts again with no
/// attempts, and goes to the back of its conversation's queue. Anything
/// but a failed message of the caller's connection is refused and changes
/// nothing.
async fn failed_messages_are_sent_again_on_request(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    s.emu.faults(json!({"unknown_users": ["ghost"]})).await;
    let text = |t: &str| json!({"user_id": "ghost", "content": {"type": "text", "text": t}});
    let mut failed = Vec::new();
    for (t, key) in [("first", Some("job-1")), ("second", None), ("third", None)] {
        let (status, answer) = s.send(&text(t), key).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let id = answer["id"].as_str().unwrap().to_owned();
        // One at a time: a conversation's messages fail in order.
        assert_eq!(s.wait_status(&id, "failed").await["status"], "failed");
        failed.push(id);
    }
    let before = s.status_of(&failed[0]).await;
    s.emu.faults(json!({})).await;
    let (_, later) = s.send(&text("meanwhile"), None).await;
    let later = later["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.wait_status(&later, "delivered").await["status"],
        "delivered"
    );

    let retry = |path: String, key: String| {
        let s = &s;
        async move { s.app.send_json(Method::POST, &path, &key, &json!({})).await }
    };
    let one = |id: &str| format!("{}/{id}/retry", s.messages_path());
    let key = s.tenant.api_key.clone();
    // Refused, changing nothing: a delivered message, an unknown one,
    // another tenant's key, no key.
    let (status, body) = retry(one(&later), key.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delivered"),
        "{body}"
    );
    let (status, _) = retry(one("msg_unknown"), key.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = s.app.create_tenant("Other").await;
    let (status, _) = retry(one(&failed[0]), other.api_key.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let all = format!("{}/retry", s.messages_path());
    let (status, _) = retry(all.clone(), other.api_key.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = retry(all.clone(), String::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.status_of(&failed[0]).await, before, "unchanged");

    // One by its id: queued again as it was, then delivered.
    let (status, again) = retry(one(&failed[0]), key.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], before["id"]);
    assert_eq!(again["status"], "queued");
    assert_eq!(again["attempts"], 0);
    assert_eq!(again["last_error"], Value::Null);
    assert_eq!(again["created_at"], before["created_at"]);
    assert_eq!(again["content"], before["content"]);
    let delivered = s.wait_status(&failed[0], "delivered").await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert_eq!(delivered["attempts"], 1);
    let (status, body) = retry(one(&failed[0]), key.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "not twice: {body}");
    // Its idempotency key still answers it.
    let (status, repeat) = s.send(&text("first"), Some("job-1")).await;
    assert_eq!(
        (status, &repeat["id"]),
        (StatusCode::ACCEPTED, &before["id"])
    );

    // The rest at once, in their order.
    let (status, body) = retry(all.clone(), key.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["retried"], 2);
    assert_eq!(body["ids"], json!([failed[1], failed[2]]));
    assert_eq!(body["remaining"], 0);
    for id in &failed[1..] {
        assert_eq!(s.wait_status(id, "delivered").await["status"], "delivered");
    }
    let (_, body) = retry(all, key).await;
    assert_eq!(
        (&body["retried"], &body["remaining"]),
        (&json!(0), &json!(0))
    );

    // Each delivered once, the retried ones after the message sent meanwhile.
    let texts = s.emu.texts().await;
    assert_eq!(
        texts,
        [
            json!("meanwhile"),
            json!("first"),
            json!("second"),
            json!("third")
        ]
    );
    // The outbox (in queue order) lists them after it too.
    let (_, outbox) = s
        .app
        .get(
            &format!(
                "/api/v1/tenants/{}/connections/{}/outbox",
                s.tenant.id,
                s.connection["id"].as_str().unwrap()
            ),
            &s.tenant.api_key,
        )
        .await;
    let order: Vec<&str> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [&later, &failed[0], &failed[1], &failed[2]]);
}

/// With no worker running, messages stay queued: cancelled (all, then one
/// at the head of its conversation), they are never sent once a worker
/// starts, and the message behind the cancelled head still goes. Anything
/// not queued is refused and changes nothing.
async fn queued_messages_are_cancelled_and_never_sent(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "workers = false").await;
    let send = |user: &'static str, text: &'static str| {
        let s = &s;
        async move {
            let body = json!({"user_id": user, "content": {"type": "text", "text": text}});
            let (status, answer) = s.send(&body, None).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let post = |path: String, key: String| {
        let s = &s;
        async move { s.app.send_json(Method::POST, &path, &key, &json!({})).await }
    };
    let path = s.messages_path();
    let key = s.tenant.api_key.clone();
    let mut broadcast = Vec::new();
    for (user, text) in [("u1", "oops 1"), ("u2", "oops 2"), ("u3", "oops 3")] {
        broadcast.push(send(user, text).await);
    }
    // A large broadcast besides: more than one batch of the cancel's writes.
    let mut conn = s.app.db.connect().await;
    let connection = s.connection["id"].as_str().unwrap();
    let now = botgate::domain::now_millis();
    for i in 0..1200 {
        let id = format!("msg_bulk_{i}");
        crate::lifecycle::insert_message(&mut conn, &s.tenant.id, connection, &id, "pending", now)
            .await;
    }
    let other = s.app.create_tenant("Other").await;
    let (status, _) = post(format!("{path}/cancel"), other.api_key.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.status_of(&broadcast[0]).await["status"], "queued");
    let (status, body) = post(format!("{path}/cancel"), key.clone()).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"cancelled": 1203}))
    );
    for id in &broadcast {
        assert_eq!(s.status_of(id).await["status"], "cancelled");
    }
    let (_, listed) = s.app.get(&format!("{path}?status=cancelled"), &key).await;
    assert_eq!(listed["messages"].as_array().unwrap().len(), 100, "a page");
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbound_messages WHERE status IN ('pending', 'sending')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(open, 0, "nothing left queued");

    // One at the head of its conversation; the one behind it still goes.
    let head = send("u4", "cancelled head").await;
    let behind = send("u4", "behind the head").await;
    let (status, body) = post(format!("{path}/{head}/cancel"), key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["id"], &body["status"]),
        (&json!(head), &json!("cancelled"))
    );
    let before = s.status_of(&head).await;
    for (id, code) in [
        (&head, StatusCode::CONFLICT),
        (&"msg_unknown".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = post(format!("{path}/{id}/cancel"), key.clone()).await;
        assert_eq!(status, code, "{body}");
    }
    let (status, body) = post(format!("{path}/{head}/retry"), key.clone()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only failed ones are sent again: {body}"
    );
    assert_eq!(s.status_of(&head).await, before, "unchanged");

    // In the console: the queued ones counted, one cancelled by its button.
    let in_console = send("u5", "cancelled in the console").await;
    let mut visitor = crate::console::Visitor::new(&s.app);
    visitor.sign_in(&key).await;
    let page_path = format!(
        "/console/connections/{}",
        s.connection["id"].as_str().unwrap()
    );
    let (_, _, page) = visitor.get(&page_path).await;
    assert!(page.contains("id=\"cancel-all\""), "{page}");
    assert!(page.contains("(2)"), "two queued: {page}");
    let csrf = crate::console::hidden(&page, "csrf");
    let (status, headers, _) = visitor
        .post(
            &format!("{page_path}/messages/{in_console}/cancel"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers["location"]
        .to_str()
        .unwrap()
        .ends_with("?cancelled=1"));
    assert_eq!(s.status_of(&in_console).await["status"], "cancelled");

    let worker = spawn_replica_with(&s.app, |settings| settings.workers = true).await;
    assert_eq!(
        s.wait_status(&behind, "delivered").await["status"],
        "delivered"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = s.emu.texts().await;
    assert_eq!(
        texts,
        [json!("behind the head")],
        "nothing cancelled was sent"
    );
    let (status, body) = post(format!("{path}/{behind}/cancel"), key.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delivered"),
        "{body}"
    );

    // The activity names both cancels, by the tenant.
    let cancels: Vec<String> = s
        .app
        .activity(&s.tenant)
        .await
        .iter()
        .filter(|e| e["action"] == "messages.cancelled" && e["actor"] == "tenant")
        .map(|e| {
            format!(
                "{} {}",
                e["via"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        cancels,
        [
            format!("console message {in_console}"),
            format!("api message {head}"),
            "api 1203 messages".to_owned()
        ]
    );
    drop(worker);
}

/// The posts a status hook received, each checked as a receiver would:
/// signed with `secret` over the body, and carrying no message content.
fn status_posts(hook: &TestEngine, secret: &str) -> Vec<Value> {
    let now = botgate::domain::now_millis() / 1000;
    hook.received
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let header = |name: &str| headers.get(name).map_or("", String::as_str);
            botgate::engine::http::verify(
                secret.as_bytes(),
                header("x-botgate-timestamp"),
                header("x-botgate-signature"),
                body,
                now,
            )
            .expect("a post signed with the hook's secret");
            let post: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(post["type"], "message.status", "{post}");
            assert!(post["message"].get("content").is_none(), "{post}");
            post
        })
        .collect()
}

/// The statuses posted for message `id`, in the order received.
fn posted_for(posts: &[Value], id: &str) -> Vec<String> {
    posts
        .iter()
        .filter(|p| p["message"]["id"] == id)
        .map(|p| p["message"]["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn final_statuses_are_posted_to_the_status_hook(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let hook = spawn_engine(json!({})).await;
    let secret = "a-status-hook-secret";
    let key = s.tenant.api_key.clone();
    let tenant_path = format!("/api/v1/tenants/{}", s.tenant.id);
    let hook_path = format!("{tenant_path}/status-hook");
    let put = |body: Value, key: String| {
        let (s, path) = (&s, hook_path.clone());
        async move { s.app.send_json(Method::PUT, &path, &key, &body).await }
    };
    let text =
        |user: &str, t: &str| json!({"user_id": user, "content": {"type": "text", "text": t}});
    let send = |body: Value| {
        let s = &s;
        async move {
            let (status, answer) = s.send(&body, None).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            answer["id"].as_str().unwrap().to_owned()
        }
    };

    // Sent before there is a hook: never posted.
    let before = send(text("u0", "before the hook")).await;
    assert_eq!(
        s.wait_status(&before, "delivered").await["status"],
        "delivered"
    );

    // Refused, changing nothing.
    for (body, fields) in [
        (json!({}), vec!["url", "secret"]),
        (
            json!({"url": "ftp://hooks.example.com/x", "secret": "short"}),
            vec!["url", "secret"],
        ),
        (
            json!({"url": "http://10.1.2.3/status", "secret": secret}),
            vec!["url"],
        ),
        (json!({"url": hook.url, "secret": 42}), vec!["secret"]),
    ] {
        let (status, body) = put(body.clone(), key.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let named: Vec<&str> = body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    let (status, _) = put(
        json!({"url": hook.url, "secret": secret, "extra": 1}),
        key.clone(),
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    let other = s.app.create_tenant("Other").await;
    let (status, _) = put(
        json!({"url": hook.url, "secret": secret}),
        other.api_key.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, tenant) = s.app.get(&tenant_path, &key).await;
    assert!(tenant.get("status_hook").is_none(), "{tenant}");
    let test_path = format!("{hook_path}/test");
    let (status, body) = s
        .app
        .send_json(Method::POST, &test_path, &key, &json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "no hook to test"
    );

    let (status, body) = put(json!({"url": hook.url, "secret": secret}), key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["url"], hook.url.as_str());
    assert_eq!(body["secret"], "****cret", "masked");
    let (_, tenant) = s.app.get(&tenant_path, &key).await;
    assert_eq!(tenant["status_hook"], body);

    // A test post: signed as the real ones, marked, nothing stored.
    let (status, tested) = s
        .app
        .send_json(Method::POST, &test_path, &key, &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(
        (&tested["ok"], &tested["status"]),
        (&json!(true), &json!(200)),
        "{tested}"
    );
    let posts = status_posts(&hook, secret);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        (&posts[0]["test"], &posts[0]["message"]["id"]),
        (&json!(true), &json!("msg_test"))
    );
    *hook.mode.lock().unwrap() = "status:503".to_owned();
    let (_, tested) = s
        .app
        .send_json(Method::POST, &test_path, &key, &json!({}))
        .await;
    assert_eq!(
        (&tested["ok"], &tested["status"]),
        (&json!(false), &json!(503)),
        "{tested}"
    );
    assert!(
        tested["error"].as_str().unwrap().contains("HTTP 503"),
        "{tested}"
    );
    *hook.mode.lock().unwrap() = "ok".to_owned();
    hook.received.lock().unwrap().clear();

    // Delivered, failed (a user NAVER WORKS does not know), and an engine's
    // reply to a user's message: each posted once, with its final status.
    s.emu.faults(json!({"unknown_users": ["ghost"]})).await;
    let delivered = send(text("u1", "hello")).await;
    let failed = send(text("ghost", "anyone?")).await;
    s.callback(json!({"type": "message", "user_id": "user-7", "text": "echo me"}))
        .await;
    let all_posted = eventually(Duration::from_secs(20), || async {
        status_posts(&hook, secret).len() >= 3
    })
    .await;
    let posts = status_posts(&hook, secret);
    assert!(all_posted, "{posts:?}");
    assert_eq!(posted_for(&posts, &delivered), ["delivered"]);
    assert_eq!(posted_for(&posts, &failed), ["failed"]);
    let reply = posts
        .iter()
        .find(|p| p["message"]["event_id"].is_string())
        .expect("the engine's reply posted");
    assert_eq!(reply["message"]["status"], "delivered");
    assert_eq!(reply["message"]["target"]["id"], "user-7");
    let failure = posts
        .iter()
        .find(|p| p["message"]["id"] == failed.as_str())
        .unwrap();
    assert_eq!(failure["tenant_id"], s.tenant.id.as_str());
    assert_eq!(failure["connection_id"], s.connection["id"]);
    assert!(
        failure["message"]["last_error"]
            .as_str()
            .unwrap()
            .contains("User does not exist"),
        "{failure}"
    );
    assert!(
        posted_for(&posts, &before).is_empty(),
        "written before the hook"
    );

    // Sent again after it failed: its new final status is posted too.
    s.emu.faults(json!({})).await;
    let (status, body) = s
        .app
        .send_json(
            Method::POST,
            &format!("{}/{failed}/retry", s.messages_path()),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        eventually(Duration::from_secs(20), || async {
            posted_for(&status_posts(&hook, secret), &failed) == ["failed", "delivered"]
        })
        .await,
        "{:?}",
        status_posts(&hook, secret)
    );

    // A hook that fails is posted to again until it answers 2xx, then no more.
    *hook.mode.lock().unwrap() = "fail".to_owned();
    let retried = send(text("u2", "while the hook is down")).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            posted_for(&status_posts(&hook, secret), &retried).len() >= 3
        })
        .await
    );
    *hook.mode.lock().unwrap() = "ok".to_owned();
    let settled = || async {
        let n = posted_for(&status_posts(&hook, secret), &retried).len();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        posted_for(&status_posts(&hook, secret), &retried).len() == n
    };
    assert!(
        eventually(Duration::from_secs(20), settled).await,
        "posts stop once one succeeds"
    );

    // A queued message cancelled: posted as such.
    s.emu.faults(json!({"rate_408": 1.0})).await;
    let cancelled = send(text("u3", "never mind")).await;
    let path = format!("{}/{cancelled}/cancel", s.messages_path());
    assert!(
        eventually(Duration::from_secs(20), || async {
            s.app
                .send_json(Method::POST, &path, &key, &json!({}))
                .await
                .0
                == StatusCode::OK
        })
        .await,
        "cancelled between two attempts"
    );
    s.emu.faults(json!({})).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            posted_for(&status_posts(&hook, secret), &cancelled) == ["cancelled"]
        })
        .await
    );

    // Removed: nothing more is posted.
    let (status, _) = s.app.delete(&hook_path, &key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, tenant) = s.app.get(&tenant_path, &key).await;
    assert!(tenant.get("status_hook").is_none(), "{tenant}");
    let after = send(text("u4", "after the hook")).await;
    assert_eq!(
        s.wait_status(&after, "delivered").await["status"],
        "delivered"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(posted_for(&status_posts(&hook, secret), &after).is_empty());

    let actions: Vec<Value> = s
        .app
        .activity(&s.tenant)
        .await
        .into_iter()
        .filter(|a| {
            a["action"]
                .as_str()
                .unwrap()
                .starts_with("tenant.status_hook")
        })
        .map(|a| json!([a["action"], a["detail"]]))
        .collect();
    assert_eq!(
        actions,
        [
            json!(["tenant.status_hook_removed", ""]),
            json!(["tenant.status_hook_set", "url, secret"])
        ],
        "the secret never shown"
    );
    let metrics = s.app.get_text("/metrics").await;
    for result in ["posted", "retried"] {
        let line = format!("botgate_status_posts_total{{result=\"{result}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(count > 0, "{result}: {metrics}");
    }
}

/// The status posts' claims, as two replicas make them: each final message
/// claimed by one of them, not again while its lease holds, again once it
/// expired; a settle under a lease no longer held changes nothing; a
/// message not yet final, or not to be posted, is never claimed.
async fn status_posts_are_claimed_once_and_settled_under_their_lease(backend: Backend) {
    let options = Options {
        extra: "workers = false".to_owned(),
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let replica = spawn_replica(&app).await;
    let tenant = app.create_tenant("Claims").await;
    let connection = app
        .create_connection(&tenant, &connection_body("7100001"))
        .await;
    let connection = connection["id"].as_str().unwrap();
    let mut conn = app.db.connect().await;
    let now = botgate::domain::now_millis();
    let mut finals = Vec::new();
    for i in 0..40 {
        let (id, status) = (
            format!("msg_final_{i}"),
            ["delivered", "failed", "cancelled"][i % 3],
        );
        crate::lifecycle::insert_message(&mut conn, &tenant.id, connection, &id, status, now).await;
        finals.push(id);
    }
    for (id, status) in [
        ("msg_queued", "pending"),
        ("msg_sending", "sending"),
        ("msg_unhooked", "delivered"),
    ] {
        crate::lifecycle::insert_message(&mut conn, &tenant.id, connection, id, status, now).await;
    }
    let other = app.create_tenant("Other").await;
    let other_connection = app
        .create_connection(&other, &connection_body("7100002"))
        .await;
    let other_connection = other_connection["id"].as_str().unwrap();
    crate::lifecycle::insert_message(
        &mut conn,
        &other.id,
        other_connection,
        "msg_other",
        "failed",
        now,
    )
    .await;
    sqlx::query("UPDATE outbound_messages SET notify_at = 0 WHERE id <> 'msg_unhooked'")
        .execute(&mut conn)
        .await
        .unwrap();

    let lease = now + 30_000;
    let (a, b) = (&app.state.store, &replica.state.store);
    // A tenant with posts enough in flight is skipped: the other's first.
    let skipped = a
        .claim_status_notices(now, lease, 100, &[tenant.id.as_str()])
        .await
        .unwrap();
    let ids: Vec<&str> = skipped.iter().map(|n| n.message.id.as_str()).collect();
    assert_eq!(ids, ["msg_other"]);
    assert_eq!(a.settle_status_posted(&skipped).await.unwrap(), 1);
    // Rounds of four claims at once, two per replica, until none claims
    // anything: racing for the same rows, each row goes to one claim.
    let mut seen: Vec<String> = Vec::new();
    loop {
        let claims = [a, b, a, b].map(|store| store.claim_status_notices(now, lease, 7, &[]));
        let round: Vec<String> = join_all(claims.into_iter())
            .await
            .into_iter()
            .flat_map(|c| c.unwrap().into_iter().map(|n| n.message.id))
            .collect();
        if round.is_empty() {
            break;
        }
        seen.extend(round);
    }
    seen.sort();
    let mut expected = finals.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "every final one once, by one replica or the other"
    );
    assert!(
        a.claim_status_notices(now + 1, lease, 100, &[])
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    // The lease expired: claimed again, the post counted again.
    let again = b
        .claim_status_notices(lease + 1, lease + 30_000, 100, &[])
        .await
        .unwrap();
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|n| n.notify_attempts == 2));
    let stale = claimed_before(&again[0], lease);
    assert!(
        !a.settle_status_notice(&stale, None).await.unwrap(),
        "a lease no longer held"
    );
    // Settled: posted (none), or due again later.
    assert!(a.settle_status_notice(&again[0], None).await.unwrap());
    assert!(a
        .settle_status_notice(&again[1], Some(lease + 60_000))
        .await
        .unwrap());
    // Posted ones settled in a batch: those whose lease still holds.
    let batch = [
        again[2].clone(),
        again[3].clone(),
        claimed_before(&again[4], lease),
    ];
    assert_eq!(b.settle_status_posted(&batch).await.unwrap(), 2);
    let later = a
        .claim_status_notices(lease + 59_999, lease + 90_000, 100, &[])
        .await
        .unwrap();
    let later: Vec<&str> = later.iter().map(|n| n.message.id.as_str()).collect();
    assert_eq!(later.len(), 36, "{later:?}");
    for settled in &again[..4] {
        assert!(!later.contains(&settled.message.id.as_str()));
    }
    assert!(
        later.contains(&again[4].message.id.as_str()),
        "a stale settle changed nothing"
    );
    let due = a
        .claim_status_notices(lease + 60_000, lease + 90_000, 100, &[])
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|n| n.message.id.as_str())
            .collect::<Vec<_>>(),
        [again[1].message.id.as_str()]
    );
}

/// `notice` as a claim that held the lease `until` saw it.
fn claimed_before(
    notice: &botgate::store::queue::StatusNotice,
    until: i64,
) -> botgate::store::queue::StatusNotice {
    botgate::store::queue::StatusNotice {
        notify_at: until,
        ..notice.clone()
    }
}

/// One tenant's hook hangs (8 s a post) while its messages keep coming:
/// it holds a bounded share of the worker's slots, and another tenant's
/// status is still posted at once.
async fn a_hanging_status_hook_does_not_hold_up_another_tenants(backend: Backend) {
    let s = setup_with(backend, EmulatorConfig::default(), "").await;
    let (slow, quick) = (spawn_engine(json!({})).await, spawn_engine(json!({})).await);
    *slow.mode.lock().unwrap() = "hang:8000".to_owned();
    let secret = "a-status-hook-secret";
    let set_hook = |tenant: &Tenant, url: &str| {
        let (s, path) = (&s, format!("/api/v1/tenants/{}/status-hook", tenant.id));
        let body = json!({"url": url, "secret": secret});
        let key = tenant.api_key.clone();
        async move {
            let (status, body) = s.app.send_json(Method::PUT, &path, &key, &body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    set_hook(&s.tenant, &slow.url).await;
    let other = s.app.create_tenant("Other").await;
    set_hook(&other, &quick.url).await;
    let other_connection = s
        .app
        .create_connection(&other, &connection_body("7300001"))
        .await;

    for i in 0..80 {
        let body = json!({"user_id": format!("u{i}"), "content": {"type": "text", "text": "hi"}});
        let (status, answer) = s.send(&body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let hanging = eventually(Duration::from_secs(10), || async {
        slow.received.lock().unwrap().len() >= 16
    })
    .await;
    assert!(hanging, "the slow tenant's posts under way");

    // Another tenant's message (through credentials NAVER WORKS refuses,
    // so it waits for a retry), cancelled: its status is posted while the
    // slow posts hang.
    let path = format!(
        "/api/v1/connections/{}/messages",
        other_connection["id"].as_str().unwrap()
    );
    let body = json!({"user_id": "u1", "content": {"type": "text", "text": "hi"}});
    let (status, answer) = s
        .app
        .send_json(Method::POST, &path, &other.api_key, &body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let cancel = format!("{path}/{}/cancel", answer["id"].as_str().unwrap());
    let cancelled = eventually(Duration::from_secs(10), || async {
        let (status, _) = s
            .app
            .send_json(Method::POST, &cancel, &other.api_key, &json!({}))
            .await;
        status == StatusCode::OK
    })
    .await;
    assert!(cancelled);
    let posted = eventually(Duration::from_secs(4), || async {
        !quick.received.lock().unwrap().is_empty()
    })
    .await;
    assert!(posted, "posted within 4 s, not after the slow hook's 8");
    let held = slow.received.lock().unwrap().len();
    assert!(
        held <= 48,
        "the slow tenant held a bounded share of the slots: {held}"
    );
    let posts = status_posts(&quick, secret);
    assert_eq!(posts[0]["tenant_id"], other.id.as_str());
}
