//! Tokens through the auth URLs, against the emulator over real HTTP.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::emulator::app_config;
use crate::helpers::*;
use crate::inbound::{setup_connection, Inbound};

const AUTH: &str = "DANBEE-NAVERWORKS-AUTH";
const HEADER: &str = "internal-services-auth-header";

type Setup = Inbound;

fn emulator_connection() -> Value {
    let app = app_config();
    json!({
        "bot_id": app.bots[0].bot_id,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "service_account": app.service_account,
        "private_key": PKCS8,
        "bot_secret": app.bots[0].bot_secret,
        "auth_header": HEADER,
        "scope": "bot bot.read",
    })
}

async fn setup(backend: Backend, emulator: EmulatorConfig, extra: &str) -> Setup {
    setup_connection(backend, emulator, extra, &emulator_connection()).await
}

impl Inbound {
    fn auth_path(&self) -> String {
        let url = self.connection["auth_url"].as_str().unwrap();
        url.replace("https://botgate.example.com/base", "")
    }

    async fn issued(&self) -> (u64, u64) {
        self.emu.tokens_issued().await
    }

    /// Whether the emulator accepts `token` for a send.
    async fn accepted(&self, token: &str) -> bool {
        self.emu
            .client
            .post(format!(
                "{}/v1.0/bots/2000001/users/check/messages",
                self.emu.url
            ))
            .bearer_auth(token)
            .json(&json!({"content": {"type": "text", "text": "token check"}}))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::CREATED
    }
}

pub async fn get_token(app: &TestApp, path: &str, header: Option<&str>) -> (StatusCode, Value) {
    let mut req = app.client.get(app.url(path));
    if let Some(h) = header {
        req = req.header(AUTH, h);
    }
    app.documented(reqwest::Method::GET, path, req).await
}

pub async fn force_refresh(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let req = app
        .client
        .post(app.url(&format!("{path}/refresh")))
        .header(AUTH, HEADER);
    app.documented(reqwest::Method::POST, &format!("{path}/refresh"), req)
        .await
}

both_backends!(
    concurrent_first_requests_share_one_token,
    forced_refresh_gives_a_new_accepted_token,
    short_lived_tokens_are_refreshed_before_expiry,
    rotation_and_deletion_discard_tokens_everywhere,
    replicas_issue_once_per_refresh,
    wrong_headers_look_alike_and_are_limited,
    connection_test_reports_each_problem,
);

async fn concurrent_first_requests_share_one_token(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let path = s.auth_path();
    let requests = (0..500).map(|_| get_token(&s.app, &path, Some(HEADER)));
    let answers = join_all(requests).await;
    let tokens: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "everyone got the same token");
    assert_eq!(
        s.issued().await,
        (1, 0),
        "exactly one token request reached NAVER WORKS"
    );
    let (_, body) = &answers[0];
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["bot_id"], "2000001");
    assert_eq!(body["scope"], "bot bot.read");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((86_000..=86_400).contains(&expires_in), "{expires_in}");
    assert!(s.accepted(tokens.iter().next().unwrap()).await);
}

async fn forced_refresh_gives_a_new_accepted_token(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let path = s.auth_path();
    let (_, first) = get_token(&s.app, &path, Some(HEADER)).await;
    let (status, second) = force_refresh(&s.app, &path).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["access_token"], second["access_token"]);
    assert!(s.accepted(second["access_token"].as_str().unwrap()).await);
    assert_eq!(
        s.issued().await,
        (1, 1),
        "refreshed through the refresh grant"
    );
    // Reads now serve the new token.
    let (_, third) = get_token(&s.app, &path, Some(HEADER)).await;
    assert_eq!(third["access_token"], second["access_token"]);
    // Nothing secret in any answer: not the refresh token, not the credentials.
    let conn =
        botgate::domain::ids::ConnectionId::parse(s.connection["id"].as_str().unwrap()).unwrap();
    let secrets = s.app.state.store.secrets(conn.as_str()).await.unwrap();
    let refresh = secrets.iter().find(|r| r.field == "refresh_token").unwrap();
    let refresh = s
        .app
        .state
        .vault
        .open_str(&refresh.sealed, refresh.aad())
        .unwrap();
    let audit = s
        .app
        .get(&format!("{}/audit", s.conn_path()), &s.tenant.api_key)
        .await
        .1;
    for answer in [&first, &second, &third, &audit] {
        let text = answer.to_string();
        assert!(
            !text.contains(secrecy::ExposeSecret::expose_secret(&refresh)),
            "refresh token leaked"
        );
        assert!(!text.contains(&app_config().client_secret) && !text.contains(HEADER));
    }
}

async fn short_lived_tokens_are_refreshed_before_expiry(backend: Backend) {
    let emulator = EmulatorConfig {
        token_lifetime_seconds: 4,
        ..Default::default()
    };
    let s = setup(backend, emulator, "").await;
    let path = s.auth_path();
    let started = Instant::now();
    let mut seen = HashSet::new();
    while started.elapsed() < Duration::from_secs(9) {
        let (status, body) = get_token(&s.app, &path, Some(HEADER)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        // Served with time left (refreshed at half its life, so about two
        // seconds; a slow answer on a loaded machine may eat one of them).
        assert!(
            body["expires_in"].as_i64().unwrap() >= 0,
            "never served expired: {body}"
        );
        assert!(
            s.accepted(&token).await,
            "the served token works at NAVER WORKS"
        );
        seen.insert(token);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (issued, refreshed) = s.issued().await;
    assert_eq!(
        issued, 1,
        "one JWT grant; the rest through the refresh grant"
    );
    assert!(refreshed >= 3, "refreshed ahead of expiry: {refreshed}");
    assert_eq!(seen.len() as u64, issued + refreshed);
}

async fn rotation_and_deletion_discard_tokens_everywhere(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let replica = spawn_replica(&s.app).await;
    let path = s.auth_path();
    let (_, first) = get_token(&s.app, &path, Some(HEADER)).await;
    let (_, same) = get_token(&replica, &path, Some(HEADER)).await;
    assert_eq!(
        first["access_token"], same["access_token"],
        "replicas share the token"
    );

    // Rotating a credential drops the token on every replica at once.
    let (status, _) = s
        .app
        .send_json(
            Method::PATCH,
            &s.conn_path(),
            &s.tenant.api_key,
            &json!({"client_secret": app_config().client_secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = get_token(&replica, &path, Some(HEADER)).await;
    assert_ne!(
        after["access_token"], first["access_token"],
        "the replica did not serve the old token"
    );
    assert_eq!(s.issued().await.0, 2);
    // Changing only the pacing keeps the token.
    s.app
        .send_json(
            Method::PATCH,
            &s.conn_path(),
            &s.tenant.api_key,
            &json!({"rate_limit_per_minute": 60}),
        )
        .await;
    assert_eq!(
        get_token(&s.app, &path, Some(HEADER)).await.1["access_token"],
        after["access_token"]
    );

    // Deleting: 401 on both replicas at once, and the tokens are wiped.
    let (status, _) = s.app.delete(&s.conn_path(), &s.tenant.api_key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for app in [&s.app, &replica] {
        assert_eq!(
            get_token(app, &path, Some(HEADER)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let snapshot = s.app.db.snapshot().await;
    assert!(
        !snapshot
            .iter()
            .any(|r| r.contains("access_token") || r.contains("refresh_token")),
        "{snapshot:?}"
    );
}

async fn replicas_issue_once_per_refresh(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let replica = spawn_replica(&s.app).await;
    let path = s.auth_path();
    let apps = [&s.app, &replica];
    for round in 0..5 {
        // Reads and forced refreshes, spread over both replicas, all at once.
        let reads = (0..60).map(|i| get_token(apps[i % 2], &path, Some(HEADER)));
        let refreshes = (0..10).map(|i| force_refresh(apps[i % 2], &path));
        let (reads, refreshes) = tokio::join!(join_all(reads), join_all(refreshes));
        for (status, body) in reads.iter().chain(&refreshes) {
            assert_eq!(*status, StatusCode::OK, "round {round}: {body}");
        }
    }
    let conn =
        botgate::domain::ids::ConnectionId::parse(s.connection["id"].as_str().unwrap()).unwrap();
    let generation = s
        .app
        .state
        .store
        .token_meta(&conn)
        .await
        .unwrap()
        .unwrap()
        .generation;
    let (issued, refreshed) = s.issued().await;
    assert_eq!(
        issued + refreshed,
        generation as u64,
        "every token request made a stored generation: none competed"
    );
    // Each round after the first refreshed; the first round's forced
    // refreshes may have started before any token existed, and then the
    // first token (newer than none) answers them.
    assert!(
        generation >= 5,
        "the forced refreshes did refresh: {generation}"
    );
    let (_, last) = get_token(&replica, &path, Some(HEADER)).await;
    assert!(s.accepted(last["access_token"].as_str().unwrap()).await);
}

async fn wrong_headers_look_alike_and_are_limited(backend: Backend) {
    let s = setup(
        backend,
        EmulatorConfig::default(),
        "auth_failure_limit = 8\nauth_block_seconds = 60",
    )
    .await;
    let path = s.auth_path();
    let unknown = format!("/auth/naverworks/{}", "A".repeat(32));
    let failures = [
        get_token(&s.app, &path, None).await,
        get_token(&s.app, &path, Some("wrong-header-value-xxxx")).await,
        get_token(&s.app, &path, Some("")).await,
        get_token(&s.app, &unknown, Some(HEADER)).await,
        get_token(&s.app, "/auth/naverworks/not-an-id", Some(HEADER)).await,
    ];
    for (status, body) in &failures {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, &failures[0].1, "identical bodies");
    }
    assert_eq!(error_code(&failures[0].1), "unauthorized");
    assert_eq!(
        s.issued().await,
        (0, 0),
        "no token was minted for a refused caller"
    );

    // A burst from one address: slowed, then refused, while another address
    // with the right header is served.
    let attacker = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut refused = false;
    for _ in 0..12 {
        let res = attacker
            .get(s.app.url(&path))
            .header(AUTH, "guess-guess-guess-guess")
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().get("retry-after").is_some());
            refused = true;
            break;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(refused, "the burst was refused with 429");
    let res = attacker
        .get(s.app.url(&path))
        .header(AUTH, HEADER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a refused address is refused even with the right header"
    );
    let (status, _) = get_token(&s.app, &path, Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK, "others are served");

    // The audit log has the reads and the denials, with addresses; never a token.
    let found = eventually(Duration::from_secs(10), || async {
        let (_, audit) = s
            .app
            .get(&format!("{}/audit", s.conn_path()), &s.tenant.api_key)
            .await;
        let entries = audit["entries"].as_array().cloned().unwrap_or_default();
        entries.iter().any(|e| {
            e["outcome"] == "ok" && e["action"] == "read" && e["client_addr"] == "127.0.0.1"
        }) && entries
            .iter()
            .any(|e| e["outcome"] == "denied" && e["client_addr"] == "127.0.0.2")
    })
    .await;
    assert!(found, "audit entries recorded");

    // The console's connection page lists the same reads, never the header.
    let mut visitor = crate::console::Visitor::new(&s.app);
    visitor.sign_in(&s.tenant.api_key).await;
    let page_path = format!(
        "/console/connections/{}",
        s.connection["id"].as_str().unwrap()
    );
    let (status, _, page) = visitor.get(&page_path).await;
    assert_eq!(status, StatusCode::OK);
    let section = &page[page
        .find("id=\"token-reads\"")
        .expect("a token reads section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(
        section.contains("data-outcome=\"ok\"") && section.contains("127.0.0.1"),
        "{section}"
    );
    assert!(
        section.contains("data-outcome=\"denied\"") && section.contains("127.0.0.2"),
        "{section}"
    );
    assert!(!section.contains(HEADER));
}

async fn connection_test_reports_each_problem(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let test = |path: String| {
        let app = &s.app;
        let key = s.tenant.api_key.clone();
        async move {
            let (status, body) = app
                .send_json(Method::POST, &format!("{path}/test"), &key, &json!({}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let good = test(s.conn_path()).await;
    assert_eq!(good["ok"], true, "{good}");
    let names: Vec<&str> = good["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["credentials", "token", "scopes", "bot"]);

    let failing = |check: &Value, name: &str| -> String {
        assert_eq!(check["ok"], false, "{check}");
        let found = check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ok"] == false)
            .unwrap()
            .clone();
        assert_eq!(found["name"], name, "{check}");
        assert!(!found["message"].as_str().unwrap().is_empty());
        found["code"].as_str().unwrap().to_owned()
    };
    let cases = [
        (
            json!({"client_secret": "not-the-secret"}),
            "token",
            "naverworks_invalid_client",
        ),
        (
            json!({"client_secret": app_config().client_secret, "private_key": PKCS8_OTHER}),
            "token",
            "naverworks_invalid_assertion",
        ),
        (
            json!({"private_key": PKCS8, "scope": "bot mail"}),
            "token",
            "naverworks_scope_not_granted",
        ),
    ];
    for (patch, name, code) in cases {
        let (status, _) = s
            .app
            .send_json(Method::PATCH, &s.conn_path(), &s.tenant.api_key, &patch)
            .await;
        assert_eq!(status, StatusCode::OK);
        let report = test(s.conn_path()).await;
        assert_eq!(failing(&report, name), code, "{report}");
        let text = report.to_string();
        assert!(
            !text.contains("not-the-secret") && !text.contains("PRIVATE KEY"),
            "{text}"
        );
    }
    // A bot id that is not the app's.
    let mut other = emulator_connection();
    other["bot_id"] = json!("7777777");
    let conn = s.app.create_connection(&s.tenant, &other).await;
    let report = test(format!(
        "/api/v1/tenants/{}/connections/{}",
        s.tenant.id,
        conn["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(failing(&report, "bot"), "bot_not_found");
}

/// Reads the hot-path cache's hit counter from `/metrics`.
async fn cache_hits(app: &TestApp) -> u64 {
    let metrics = crate::inbound::scrape(&app.get_text("/metrics").await);
    metrics["botgate_cache_lookups_total{result=\"hit\"}"] as u64
}

/// Polls `get_token` with `header` until it is accepted (5 s at most).
async fn accepted_within_5s(app: &TestApp, path: &str, header: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if get_token(app, path, Some(header)).await.0 == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

both_backends!(auth_urls_are_served_from_the_cache);

async fn auth_urls_are_served_from_the_cache(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let path = s.auth_path();
    warm_cache(&s.app, &path).await;
    let before = cache_hits(&s.app).await;
    for _ in 0..20 {
        assert_eq!(
            get_token(&s.app, &path, Some(HEADER)).await.0,
            StatusCode::OK
        );
    }
    let after = cache_hits(&s.app).await;
    assert!(
        after >= before + 20,
        "every read of a known connection came from memory: {before} → {after}, {:?}",
        s.app.state.store.cache_stats()
    );
}

/// Waits for the cache to be in use, then reads the token until a read is
/// answered from memory: the first read issues a token, which changes the
/// token row; on PostgreSQL that change's own notification also comes back
/// a moment later and drops the entry once more.
async fn warm_cache(app: &TestApp, path: &str) {
    wait_for_live_cache(app).await;
    assert_eq!(get_token(app, path, Some(HEADER)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let hits = cache_hits(app).await;
        assert_eq!(get_token(app, path, Some(HEADER)).await.0, StatusCode::OK);
        if cache_hits(app).await > hits {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the connection never stayed cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_live_cache(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.state.store.cache_stats().live {
        assert!(Instant::now() < deadline, "the cache never went live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL only: a change made outside this process — another replica, a
/// hand-written UPDATE — reaches the hot-path cache through NOTIFY, also
/// after the listener's connection was cut. Without the notification the
/// cached connection would be served for a minute (cache::MAX_AGE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_elsewhere_reach_the_cache() {
    let s = setup(Backend::Postgres, EmulatorConfig::default(), "").await;
    let path = s.auth_path();
    let mut db = s.app.db.connect().await;
    let name = s.app.db.pg_name.clone().unwrap();
    let set_header = |value: &str| {
        let hash =
            botgate::secrets::hashing::hash_salted(&secrecy::SecretString::from(value.to_owned()));
        format!("UPDATE connections SET auth_header_hash = '{hash}'")
    };

    warm_cache(&s.app, &path).await;
    let hits = cache_hits(&s.app).await;
    assert_eq!(
        get_token(&s.app, &path, Some(HEADER)).await.0,
        StatusCode::OK
    );
    assert!(cache_hits(&s.app).await > hits, "the connection is cached");

    sqlx::query(&set_header("header-changed-by-hand"))
        .execute(&mut db)
        .await
        .unwrap();
    assert!(
        accepted_within_5s(&s.app, &path, "header-changed-by-hand").await,
        "the hand-made change reached the cache"
    );
    assert_eq!(
        get_token(&s.app, &path, Some(HEADER)).await.0,
        StatusCode::UNAUTHORIZED,
        "the old header is refused"
    );

    // Cut the listener's connection: the cache stops being used until the
    // listener listens again, and changes made meanwhile are not missed.
    let cut = sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity \
         WHERE datname = '{name}' AND application_name = 'botgate cache listener'"
    ))
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(cut.len(), 1, "one listener per process and database");
    sqlx::query(&set_header("header-changed-while-cut"))
        .execute(&mut db)
        .await
        .unwrap();
    assert!(accepted_within_5s(&s.app, &path, "header-changed-while-cut").await);
    wait_for_live_cache(&s.app).await;
    assert_eq!(
        get_token(&s.app, &path, Some("header-changed-while-cut"))
            .await
            .0,
        StatusCode::OK
    );
    sqlx::query(&set_header("header-changed-after"))
        .execute(&mut db)
        .await
        .unwrap();
    assert!(
        accepted_within_5s(&s.app, &path, "header-changed-after").await,
        "the listener is back"
    );
}

/// Behind a trusted proxy: each client is counted by the address the proxy
/// names (IPv6 by /64), per connection; a correct header from another
/// client is never refused because of someone else's failures; a client
/// cannot name itself through the header without the proxy. The
/// management API's bearer tokens are counted too.
async fn failures_are_counted_per_client_behind_a_trusted_proxy(backend: Backend) {
    let s = setup(
        backend,
        EmulatorConfig::default(),
        "auth_failure_limit = 6\nauth_block_seconds = 60\ntrusted_proxies = \"127.0.0.1/32\"",
    )
    .await;
    let path = s.auth_path();
    let from = |client: &str, header: &str| {
        s.app
            .client
            .get(s.app.url(&path))
            .header("X-Forwarded-For", format!("{client}, 127.0.0.1"))
            .header(AUTH, header.to_owned())
            .send()
    };
    for _ in 0..6 {
        assert_eq!(
            from("203.0.113.7", "guess-guess-guess-guess")
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from("203.0.113.7", HEADER).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "its own failures"
    );
    assert_eq!(
        from("198.51.100.9", HEADER).await.unwrap().status(),
        StatusCode::OK,
        "another client behind the same proxy"
    );
    // IPv6: one /64 is one client.
    for _ in 0..6 {
        from("2001:db8:5:6::1", "guess-guess-guess-guess")
            .await
            .unwrap();
    }
    assert_eq!(
        from("2001:db8:5:6::ffff", HEADER).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        from("2001:db8:5:7::1", HEADER).await.unwrap().status(),
        StatusCode::OK
    );
    // Another connection of the same tenant: the blocked client is served there.
    let other = s
        .app
        .create_connection(&s.tenant, &connection_body("3000003"))
        .await;
    let other_path = other["auth_url"]
        .as_str()
        .unwrap()
        .replace("https://botgate.example.com/base", "");
    let res = s
        .app
        .client
        .get(s.app.url(&other_path))
        .header("X-Forwarded-For", "203.0.113.7")
        .header(AUTH, "auth-header-3000003-ZxcvBnmLkj")
        .send()
        .await
        .unwrap();
    assert_ne!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the block is per connection"
    );

    // Not through the proxy (another peer): the header names no one.
    let direct = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    for i in 0..6 {
        direct
            .get(s.app.url(&path))
            .header("X-Forwarded-For", format!("192.0.2.{i}"))
            .header(AUTH, "guess-guess-guess-guess")
            .send()
            .await
            .unwrap();
    }
    let res = direct
        .get(s.app.url(&path))
        .header("X-Forwarded-For", "192.0.2.200")
        .header(AUTH, HEADER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed header does not escape the count"
    );

    // The management API: wrong bearer tokens are slowed, then refused,
    // for that client only.
    let api = |client: &str, token: &str| {
        s.app
            .client
            .get(s.app.url(&format!("/api/v1/tenants/{}", s.tenant.id)))
            .header("X-Forwarded-For", client.to_owned())
            .bearer_auth(token.to_owned())
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            api("203.0.113.50", "bgk_wrong-wrong-wrong")
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        api("203.0.113.50", &s.tenant.api_key)
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        api("203.0.113.51", &s.tenant.api_key)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

both_backends!(failures_are_counted_per_client_behind_a_trusted_proxy);

/// A connection's `auth_networks`: its auth URLs answer only those
/// addresses (the test's is 127.0.0.1), with the same 401 as a wrong header
/// to any other and the refusal audited apart; `[]` answers any again; a
/// bad list is a 422 that changes nothing.
async fn auth_networks_limit_who_reads_the_token(backend: Backend) {
    let s = setup(backend, EmulatorConfig::default(), "").await;
    let path = s.auth_path();
    let conn = s.conn_path();
    let key = s.tenant.api_key.clone();
    let patch = |networks: Value| {
        let (app, conn, key) = (&s.app, conn.clone(), key.clone());
        async move {
            app.send_json(
                Method::PATCH,
                &conn,
                &key,
                &json!({"auth_networks": networks}),
            )
            .await
        }
    };
    let (status, view) = patch(json!(["10.0.0.0/8", "fd00::/8"])).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["auth_networks"], json!(["10.0.0.0/8", "fd00::/8"]));
    let (status, body) = get_token(&s.app, &path, Some(HEADER)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, wrong) = get_token(&s.app, &path, Some("wrong-header-value-xxxx")).await;
    assert_eq!(body, wrong, "alike to a wrong header");
    assert_eq!(s.issued().await, (0, 0), "no token minted");
    let audit = format!("{conn}/audit");
    let found = eventually(Duration::from_secs(10), || async {
        let (_, audit) = s.app.get(&audit, &key).await;
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["outcome"] == "network_denied"))
    })
    .await;
    assert!(found, "the refusal is audited as network_denied");

    for bad in [
        json!("10.0.0.0/8"),
        json!(["nope"]),
        json!([8]),
        json!(["10.0.0.0/33"]),
        json!(vec!["10.0.0.1"; 33]),
    ] {
        let (status, body) = patch(bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, view) = s.app.get(&conn, &key).await;
    assert_eq!(
        view["auth_networks"],
        json!(["10.0.0.0/8", "fd00::/8"]),
        "unchanged"
    );

    let (status, _) = patch(json!(["127.0.0.0/8"])).await;
    assert_eq!(status, StatusCode::OK);
    let mut visitor = crate::console::Visitor::new(&s.app);
    visitor.sign_in(&key).await;
    let (_, _, page) = visitor
        .get(&format!(
            "/console/connections/{}",
            s.connection["id"].as_str().unwrap()
        ))
        .await;
    assert!(page.contains("<code>127.0.0.0/8</code>"), "{page}");
    // The rotate form shows the list and changes it: a new one, a bad one
    // (refused next to the field, nothing changed), then emptied for any.
    let rotate = format!(
        "/console/connections/{}/rotate",
        s.connection["id"].as_str().unwrap()
    );
    let (_, _, page) = visitor.get(&rotate).await;
    assert!(page.contains("value=\"127.0.0.0/8\""), "{page}");
    let csrf = crate::console::hidden(&page, "csrf");
    for (typed, status) in [
        ("10.0.0.0/8 192.168.0.0/16", StatusCode::SEE_OTHER),
        ("nope", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let form = [("csrf", csrf.as_str()), ("auth_networks", typed)];
        assert_eq!(visitor.post(&rotate, &form).await.0, status, "{typed}");
        let (_, view) = s.app.get(&conn, &key).await;
        assert_eq!(
            view["auth_networks"],
            json!(["10.0.0.0/8", "192.168.0.0/16"])
        );
    }
    let form = [("csrf", csrf.as_str()), ("auth_networks", "")];
    assert_eq!(visitor.post(&rotate, &form).await.0, StatusCode::SEE_OTHER);
    let (_, view) = s.app.get(&conn, &key).await;
    assert!(view.get("auth_networks").is_none(), "{view}");
    let (status, _) = patch(json!(["127.0.0.0/8"])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get_token(&s.app, &path, Some(HEADER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, view) = patch(json!([])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(view.get("auth_networks").is_none(), "{view}");
    assert_eq!(
        get_token(&s.app, &path, Some(HEADER)).await.0,
        StatusCode::OK
    );
}

both_backends!(auth_networks_limit_who_reads_the_token);
