//! Tenant quotas: callbacks per second and open rows; over them callbacks
//! are stored as refused (and replayable) and the send API answers 429.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::helpers::*;
use crate::inbound::{message, scrape, setup_with, Inbound};

both_backends!(
    callbacks_over_the_rate_are_kept_refused_and_replayed,
    the_send_api_answers_429_over_open_rows,
);

fn quotas_path(s: &Inbound) -> String {
    format!("/api/v1/tenants/{}/quotas", s.tenant.id)
}

async fn refused_metric(s: &Inbound, reason: &str) -> f64 {
    let m = scrape(&s.app.get_text("/metrics").await);
    m.get(&format!(
        "botgate_callbacks_refused_total{{reason=\"{reason}\"}}"
    ))
    .copied()
    .unwrap_or_default()
}

/// 12 callbacks at once against a rate of 3 a second: the first 3 are
/// handled, the rest answered 200 `refused`, stored refused (counted in the
/// metric) and not delivered; raised by the admin, a replay delivers them.
async fn callbacks_over_the_rate_are_kept_refused_and_replayed(backend: Backend) {
    let s = setup_with(
        backend,
        EmulatorConfig::default(),
        "tenant_max_callbacks_per_second = 3",
    )
    .await;
    let (status, tenant) = s
        .app
        .get(
            &format!("/api/v1/tenants/{}", s.tenant.id),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tenant["quotas"],
        json!({"max_open_rows": 100000, "max_callbacks_per_second": 3, "own": []})
    );
    let answers = join_all((0..12).map(|i| {
        let s = &s;
        async move { s.post_signed(&message("u1", &format!("burst {i}"))).await }
    }))
    .await;
    assert!(
        answers.iter().all(|(st, _)| *st == StatusCode::OK),
        "{answers:?}"
    );
    let refused = answers
        .iter()
        .filter(|(_, b)| b["status"] == "refused")
        .count();
    let accepted = answers
        .iter()
        .filter(|(_, b)| b["status"] == "accepted")
        .count();
    assert_eq!(refused + accepted, 12);
    assert!(
        (3..=5).contains(&accepted),
        "about the bucket's 3 accepted: {accepted}"
    );
    assert_eq!(s.events("refused").await.len(), refused);
    assert_eq!(
        refused_metric(&s, "callbacks_per_second").await,
        refused as f64
    );
    let delivered = s.wait_messages(accepted, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.emu.messages().await.len(),
        delivered.len(),
        "refused callbacks are not handled"
    );
    assert_eq!(delivered.len(), accepted);
    // The console shows them, each with its replay button.
    let mut console = crate::console::Visitor::new(&s.app);
    console.sign_in(&s.tenant.api_key).await;
    let (status, _, page) = console
        .get(&format!(
            "/console/connections/{}",
            s.connection["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page.matches("data-status=\"refused\"").count(),
        refused,
        "{page}"
    );
    assert!(page.contains("refused (over quota)"));
    assert_eq!(page.matches("button class=\"replay\"").count(), refused);

    // A tenant key may not raise its own quota; a bad value changes nothing.
    let raise = json!({"max_callbacks_per_second": 1000});
    let (status, _) = s
        .app
        .send_json(Method::PUT, &quotas_path(&s), &s.tenant.api_key, &raise)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = s
        .app
        .send_json(
            Method::PUT,
            &quotas_path(&s),
            &s.app.admin_token,
            &json!({"max_callbacks_per_second": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["fields"][0]["field"],
        "max_callbacks_per_second"
    );
    let (status, body) = s
        .app
        .send_json(Method::PUT, &quotas_path(&s), &s.app.admin_token, &raise)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["quotas"],
        json!({"max_open_rows": 100000, "max_callbacks_per_second": 1000, "own": ["max_callbacks_per_second"]})
    );
    // Replayed, every callback is answered, in order per user.
    let (status, body) = s
        .app
        .send_json(
            Method::POST,
            &format!("{}/events/replay", s.conn_path()),
            &s.tenant.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], refused as u64);
    let all = s.wait_messages(12, Duration::from_secs(15)).await;
    assert_eq!(all.len(), 12);
    assert!(s.events("refused").await.is_empty());
    // Back to the default with null.
    let (_, body) = s
        .app
        .send_json(
            Method::PUT,
            &quotas_path(&s),
            &s.app.admin_token,
            &json!({"max_callbacks_per_second": null}),
        )
        .await;
    assert_eq!(body["quotas"]["max_callbacks_per_second"], 3);
    assert_eq!(body["quotas"]["own"], json!([]));
}

/// With 3 open rows allowed and no worker draining them: 3 messages are
/// queued, the 4th is a 429 that stores nothing, and a callback is stored
/// refused; a higher quota set by the admin lets them in.
async fn the_send_api_answers_429_over_open_rows(backend: Backend) {
    let s = setup_with(
        backend,
        EmulatorConfig::default(),
        "workers = false\ntenant_max_open_rows = 3",
    )
    .await;
    let send = |text: &'static str| {
        let s = &s;
        async move {
            s.app
                .send_json(
                    Method::POST,
                    &format!(
                        "/api/v1/connections/{}/messages",
                        s.connection["id"].as_str().unwrap()
                    ),
                    &s.tenant.api_key,
                    &json!({"user_id": "u1", "content": {"type": "text", "text": text}}),
                )
                .await
        }
    };
    for text in ["one", "two", "three"] {
        assert_eq!(send(text).await.0, StatusCode::ACCEPTED);
    }
    let (status, body) = send("four").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "quota_exceeded");
    let outbox = || async {
        let (_, body) = s
            .app
            .get(&format!("{}/outbox", s.conn_path()), &s.tenant.api_key)
            .await;
        body["messages"].as_array().unwrap().len()
    };
    assert_eq!(outbox().await, 3, "nothing stored for the refused request");
    let (status, body) = s.post_signed(&message("u1", "over")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("refused"))
    );
    assert_eq!(s.events("refused").await.len(), 1);
    assert_eq!(s.events("pending").await.len(), 0);
    assert_eq!(refused_metric(&s, "open_rows").await, 1.0);

    let (status, _) = s
        .app
        .send_json(
            Method::PUT,
            &quotas_path(&s),
            &s.app.admin_token,
            &json!({"max_open_rows": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(send("four").await.0, StatusCode::ACCEPTED);
    assert_eq!(outbox().await, 4);
    let start = Instant::now();
    let (status, body) = s.post_signed(&message("u1", "now in")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(s.events("pending").await.len(), 1);

    // Failed messages sent again count as new ones: refused over the quota
    // (and left failed), let in under a higher one.
    let mut conn = s.app.db.connect().await;
    let connection = s.connection["id"].as_str().unwrap();
    let now = botgate::domain::now_millis();
    for id in ["msg_failed_1", "msg_failed_2"] {
        crate::lifecycle::insert_message(&mut conn, &s.tenant.id, connection, id, "failed", now)
            .await;
    }
    let set_quota = |n: i64| {
        let s = &s;
        async move {
            let (status, _) = s
                .app
                .send_json(
                    Method::PUT,
                    &quotas_path(s),
                    &s.app.admin_token,
                    &json!({"max_open_rows": n}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    };
    let retry = format!("/api/v1/connections/{connection}/messages/retry");
    set_quota(1).await;
    let (status, body) = s
        .app
        .send_json(Method::POST, &retry, &s.tenant.api_key, &json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
        "{body}"
    );
    let (_, failed) = s
        .app
        .get(
            &format!("/api/v1/connections/{connection}/messages?status=failed"),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(
        failed["messages"].as_array().unwrap().len(),
        2,
        "left failed"
    );
    set_quota(100).await;
    let (status, body) = s
        .app
        .send_json(Method::POST, &retry, &s.tenant.api_key, &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["retried"], 2);
}
