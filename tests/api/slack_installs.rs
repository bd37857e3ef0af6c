//! "Add to Slack" through the emulator's consent page, per-workspace tokens,
//! rotation across replicas, uninstall. Both backends.

use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::console::{hidden, Visitor};
use crate::emulator::{spawn_emulator, Emu};
use crate::helpers::*;

const PUBLIC: &str = "https://botgate.example.com/base";
const AUTH: &str = "internal-services-slack-auth-0123";

pub struct Installs {
    pub app: TestApp,
    pub emu: Emu,
    pub tenant: Tenant,
    pub connection: Value,
    pub slack: Value,
}

async fn emulator_app(emu: &Emu, body: Value) -> Value {
    let res = emu
        .client
        .post(format!("{}/slack/emulator/apps", emu.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn setup(backend: Backend, app_options: Value) -> Installs {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let slack = emulator_app(&emu, app_options).await;
    let extra = format!(
        "slack_api_url = \"{0}/slack/api\"\nslack_authorize_url = \"{0}/slack/oauth/v2/authorize\"\nretry_base_ms = 50\n",
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
    let tenant = app.create_tenant("Installs").await;
    let connection = app
        .create_connection(
            &tenant,
            &json!({"channel": "slack", "signing_secret": slack["signing_secret"], "client_id": slack["client_id"],
                    "client_secret": slack["client_secret"], "auth_header": AUTH, "rate_limit_per_minute": 6000}),
        )
        .await;
    Installs {
        app,
        emu,
        tenant,
        connection,
        slack,
    }
}

/// A connection installed in workspaces TAAA and TBBB.
async fn installed_in_two(backend: Backend) -> Installs {
    let s = setup(backend, json!({})).await;
    s.install("TAAA").await;
    s.install("TBBB").await;
    s
}

fn local(app: &TestApp, public: &str) -> String {
    app.url(
        public
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("{public}")),
    )
}

/// A browser's first two steps: the install redirect (and its cookie), then
/// the consent page's "Allow" and "Cancel" links.
pub struct Consent {
    pub cookie: String,
    pub allow: String,
    pub deny: String,
}

impl Installs {
    async fn start(&self, team: Option<&str>) -> Consent {
        let install = local(&self.app, self.connection["install_url"].as_str().unwrap());
        let res = self
            .app
            .client
            .get(format!("{install}?direct=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FOUND);
        let cookie = res
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut authorize = res
            .headers()
            .get(LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            authorize.starts_with(&format!("{}/slack/oauth/v2/authorize?", self.emu.url)),
            "{authorize}"
        );
        assert!(authorize.contains(&format!(
            "client_id={}",
            self.slack["client_id"].as_str().unwrap()
        )));
        assert!(
            authorize.contains(
                "redirect_uri=https%3A%2F%2Fbotgate.example.com%2Fbase%2Foauth%2Fslack%2Fcallback"
            ),
            "{authorize}"
        );
        if let Some(team) = team {
            authorize.push_str(&format!("&team={team}"));
        }
        let (allow, deny) = self.emu.consent_links(&authorize).await;
        Consent {
            cookie,
            allow,
            deny,
        }
    }

    /// Follows Slack's redirect back to botgate with a cookie (or none).
    async fn back(&self, url: &str, cookie: Option<&str>) -> (StatusCode, String) {
        let mut req = self.app.client.get(local(&self.app, url));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    async fn install(&self, team: &str) {
        let consent = self.start(Some(team)).await;
        let (status, page) = self.back(&consent.allow, Some(&consent.cookie)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains(&format!("data-team=\"{team}\"")), "{page}");
    }

    async fn installations(&self) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(
                &format!(
                    "/api/v1/tenants/{}/connections/{}/installations",
                    self.tenant.id,
                    self.connection["id"].as_str().unwrap()
                ),
                &self.tenant.api_key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["installations"].as_array().unwrap().clone()
    }

    async fn deliver(&self, team: &str, kind: &str, extra: Value) {
        let mut body = json!({"app_id": self.slack["app_id"], "url": local(&self.app, self.connection["events_url"].as_str().unwrap()),
                              "kind": kind, "team": team});
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
    }

    async fn messages(&self) -> Vec<Value> {
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

    async fn stats(&self) -> Value {
        self.emu
            .client
            .get(format!("{}/slack/emulator/stats", self.emu.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn faults(&self, faults: Value) {
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

    async fn wait_messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.messages().await;
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The send API: a text to channel C1 through `team` (or none named).
    async fn send(&self, team: Option<&str>, text: &str) -> (StatusCode, Value) {
        let mut body = json!({"channel_id": "C1", "content": {"text": text}});
        if let Some(team) = team {
            body["team_id"] = json!(team);
        }
        let path = format!(
            "/api/v1/connections/{}/messages",
            self.connection["id"].as_str().unwrap()
        );
        let key = &self.tenant.api_key;
        self.app.send_json(Method::POST, &path, key, &body).await
    }

    /// The messages once `n` arrived and a while passed in which no more
    /// should: those that must not be answered had their chance.
    async fn settled_messages(&self, n: usize) -> Vec<Value> {
        let messages = self.wait_messages(n).await;
        if messages.len() != n {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        self.messages().await
    }

    async fn token_url(&self, app: &TestApp, team: &str, refresh: bool) -> (StatusCode, Value) {
        let field = if refresh {
            "auth_refresh_url"
        } else {
            "auth_url"
        };
        let url = local(app, self.connection[field].as_str().unwrap());
        let method = if refresh { Method::POST } else { Method::GET };
        let req = app
            .client
            .request(method.clone(), format!("{url}?team={team}"))
            .header("X-Botgate-Auth", AUTH);
        let path = url.strip_prefix(&app.address).unwrap_or(&url).to_owned();
        app.documented(method, &path, req).await
    }
}

/// Two workspaces install through the consent page; each is answered with
/// its own token; a workspace with no installation is not answered; an
/// uninstall removes the tokens and later events of that team are refused.
async fn two_workspaces_install_and_are_answered_with_their_own_tokens(backend: Backend) {
    let s = setup(backend, json!({})).await;
    assert!(s.connection["oauth_redirect_url"]
        .as_str()
        .unwrap()
        .ends_with("/oauth/slack/callback"));
    s.install("TAAA").await;
    s.install("TBBB").await;
    let list = s.installations().await;
    assert_eq!(list.len(), 2, "{list:?}");
    let stats = s.stats().await;
    for i in &list {
        let token = stats["installs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["team_id"] == i["team_id"])
            .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!i.to_string().contains(&token), "masked: {i}");
        assert_eq!(i["status"], "active");
    }
    s.deliver(
        "TAAA",
        "message",
        json!({"channel": "C1", "text": "hello A"}),
    )
    .await;
    s.deliver(
        "TBBB",
        "message",
        json!({"channel": "C1", "text": "hello B"}),
    )
    .await;
    s.deliver(
        "TCCC",
        "message",
        json!({"channel": "C1", "text": "nobody installed me"}),
    )
    .await;
    let messages = s.settled_messages(2).await;
    if messages.len() != 2 {
        let (_, events) = s
            .app
            .get(
                &format!(
                    "/api/v1/tenants/{}/connections/{}/events",
                    s.tenant.id,
                    s.connection["id"].as_str().unwrap()
                ),
                &s.tenant.api_key,
            )
            .await;
        let (_, outbox) = s
            .app
            .get(
                &format!(
                    "/api/v1/connections/{}/messages",
                    s.connection["id"].as_str().unwrap()
                ),
                &s.tenant.api_key,
            )
            .await;
        panic!("{messages:?}\n{events}\n{outbox}");
    }
    let by_text = |t: &str| {
        messages
            .iter()
            .find(|m| m["text"] == t)
            .unwrap_or_else(|| panic!("{t}: {messages:?}"))
            .clone()
    };
    assert_eq!(by_text("hello A")["team_id"], "TAAA");
    assert_eq!(by_text("hello B")["team_id"], "TBBB");

    // The token URL: each workspace's own; none for a workspace not installed.
    let (status, a) = s.token_url(&s.app, "TAAA", false).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (_, b) = s.token_url(&s.app, "TBBB", false).await;
    assert_ne!(a["access_token"], b["access_token"]);
    assert_eq!(a["team_id"], "TAAA");
    let (status, body) = s.token_url(&s.app, "TCCC", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The connection's auth networks hold the Slack token URL too.
    let conn = format!(
        "/api/v1/tenants/{}/connections/{}",
        s.tenant.id,
        s.connection["id"].as_str().unwrap()
    );
    for (networks, expected) in [
        (json!(["10.0.0.0/8"]), StatusCode::UNAUTHORIZED),
        (json!([]), StatusCode::OK),
    ] {
        let body = json!({ "auth_networks": networks });
        let (status, view) = s
            .app
            .send_json(Method::PATCH, &conn, &s.tenant.api_key, &body)
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(
            s.token_url(&s.app, "TAAA", false).await.0,
            expected,
            "{networks}"
        );
    }
    // A malformed team, or none where there is no pasted token: 400.
    let (status, body) = s.token_url(&s.app, "T%3Cb%3E", false).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_team")
    );
    let url = local(&s.app, s.connection["auth_url"].as_str().unwrap());
    let res = s
        .app
        .client
        .get(&url)
        .header("X-Botgate-Auth", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "team_required");
    // The audit records each read with its outcome: served, or the refusal's code.
    let audit = format!(
        "/api/v1/tenants/{}/connections/{}/audit",
        s.tenant.id,
        s.connection["id"].as_str().unwrap()
    );
    let audited = eventually(Duration::from_secs(10), || async {
        let (_, audit) = s.app.get(&audit, &s.tenant.api_key).await;
        let entries = audit["entries"].as_array().cloned().unwrap_or_default();
        ["ok", "no_installation", "invalid_team", "team_required"]
            .iter()
            .all(|outcome| {
                entries
                    .iter()
                    .any(|e| e["outcome"] == *outcome && e["action"] == "read")
            })
    })
    .await;
    assert!(
        audited,
        "the Slack token URL's reads are audited with their outcomes"
    );
    let wrong = s
        .app
        .client
        .get(local(&s.app, s.connection["auth_url"].as_str().unwrap()) + "?team=TAAA")
        .header("X-Botgate-Auth", "not-the-header-value-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Uninstalled: the tokens are gone at once; later events are not answered.
    s.deliver(
        "TAAA",
        "event",
        json!({"event": {"type": "app_uninstalled"}}),
    )
    .await;
    let list = s.installations().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["team_id"], "TBBB");
    let (status, _) = s.token_url(&s.app, "TAAA", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.deliver(
        "TAAA",
        "message",
        json!({"channel": "C1", "text": "after the uninstall"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.messages().await.len(), 2);
    // A re-install of TBBB replaces its token.
    s.install("TBBB").await;
    let (_, b2) = s.token_url(&s.app, "TBBB", false).await;
    assert_ne!(b2["access_token"], b["access_token"]);
    assert_eq!(s.installations().await.len(), 1);
    // tokens_revoked naming the bot removes a workspace's tokens too.
    s.install("TREV").await;
    s.deliver(
        "TREV",
        "event",
        json!({"event": {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}}}),
    )
    .await;
    assert!(s
        .installations()
        .await
        .iter()
        .all(|i| i["team_id"] != "TREV"));
    // Removed through the API.
    let (status, _) = s
        .app
        .delete(
            &format!(
                "/api/v1/tenants/{}/connections/{}/installations/TBBB",
                s.tenant.id,
                s.connection["id"].as_str().unwrap()
            ),
            &s.tenant.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(s.installations().await.is_empty());

    // The tenant's activity: each install by a workspace admin's browser,
    // each removal by Slack's events or by the tenant's key.
    let seen: Vec<String> = s
        .app
        .activity(&s.tenant)
        .await
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("installation."))
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["action"], e["actor"], e["via"], e["detail"]
            )
            .replace('"', "")
        })
        .rev()
        .collect();
    let workspace = |team: &str| format!("workspace {team}");
    let expected = [
        format!(
            "installation.added workspace admin oauth {} (",
            workspace("TAAA")
        ),
        format!(
            "installation.added workspace admin oauth {} (",
            workspace("TBBB")
        ),
        format!(
            "installation.removed slack events {}: the app was uninstalled or its token revoked",
            workspace("TAAA")
        ),
        format!(
            "installation.added workspace admin oauth {} (",
            workspace("TBBB")
        ),
        format!(
            "installation.added workspace admin oauth {} (",
            workspace("TREV")
        ),
        format!(
            "installation.removed slack events {}: the app was uninstalled or its token revoked",
            workspace("TREV")
        ),
        format!("installation.removed tenant api {}", workspace("TBBB")),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (seen, expected) in seen.iter().zip(&expected) {
        assert!(
            seen.starts_with(expected.as_str()),
            "{seen} is not {expected}"
        );
    }

    // No token or refresh token in plaintext at rest.
    let raw = s.app.db.raw_contents().await;
    for install in s.stats().await["installs"].as_array().unwrap() {
        let token = install["access_token"].as_str().unwrap();
        assert!(
            !raw.windows(token.len()).any(|w| w == token.as_bytes()),
            "a bot token in plaintext"
        );
    }
}

/// Forged, reused, expired and other-browser states are refused with a page
/// and nothing stored; Slack's access_denied gets a friendly page.
async fn bad_install_states_are_refused_and_store_nothing(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let callback = format!("{PUBLIC}/oauth/slack/callback");
    // Forged.
    let (status, page) = s
        .back(
            &format!("{callback}?code=abc&state=forged-state-value"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("id=\"problem\""), "{page}");
    // No state at all.
    let (status, _) = s.back(&format!("{callback}?code=abc"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Another browser (no cookie, then another browser's cookie).
    let consent = s.start(Some("TOTHER")).await;
    let (status, page) = s.back(&consent.allow, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("another browser"), "{page}");
    let consent = s.start(Some("TOTHER")).await;
    let (status, _) = s
        .back(
            &consent.allow,
            Some("botgate_slack_install=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Reused: the first use installs, the second is refused.
    let consent = s.start(Some("TONCE")).await;
    let (status, _) = s.back(&consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = s.back(&consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("already used"), "{page}");
    // Expired: the state is ten minutes old.
    let consent = s.start(Some("TLATE")).await;
    let mut conn = s.app.db.connect().await;
    sqlx::query("UPDATE oauth_states SET expires_at = 0")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, page) = s.back(&consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("expired"), "{page}");
    // Slack unreachable (every Web API call answers 500): a 502 page.
    let consent = s.start(Some("TDOWN")).await;
    s.faults(json!({"rate_5xx": 1.0})).await;
    let (status, page) = s.back(&consent.allow, Some(&consent.cookie)).await;
    s.faults(json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("Slack could not be reached"), "{page}");
    assert!(page.contains("Nothing was installed"), "{page}");
    // Cancelled at Slack.
    let consent = s.start(Some("TNO")).await;
    let (status, page) = s.back(&consent.deny, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("cancelled"), "{page}");
    let teams: Vec<Value> = s
        .installations()
        .await
        .iter()
        .map(|i| i["team_id"].clone())
        .collect();
    assert_eq!(
        teams,
        vec![json!("TONCE")],
        "only the one good install is stored"
    );
    // The public install page stores at most 1,000 states in flight.
    let id = s.connection["id"].as_str().unwrap();
    let values: Vec<String> = (0..1000)
        .map(|i| format!("('flood-{i}', '{id}', 'x', 9000000000000)"))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO oauth_states (state_hash, connection_id, browser_hash, expires_at) VALUES {}",
        values.join(", ")
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let install = local(&s.app, s.connection["install_url"].as_str().unwrap());
    let res = s
        .app
        .client
        .get(format!("{install}?direct=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // A connection without a client id has no install page.
    let plain = s.app.create_connection(&s.tenant, &json!({"channel": "slack", "signing_secret": "0123456789abcdef0123", "bot_token": emulator_app(&s.emu, json!({})).await["bot_token"]})).await;
    assert!(plain.get("install_url").is_none());
}

/// Token rotation with 4-second tokens on two replicas: every message is
/// delivered, and the emulator sees one refresh per token lifetime, also
/// when 200 callers want the token at once when it is due.
async fn rotating_tokens_refresh_once_per_lifetime_across_replicas(backend: Backend) {
    let s = setup(
        backend,
        json!({"rotation": true, "token_lifetime_seconds": 4}),
    )
    .await;
    let replica = spawn_replica(&s.app).await;
    s.install("TROT").await;
    assert_eq!(s.installations().await[0]["token_rotation"], true);
    // Due after half its life: 500 concurrent readers on two replicas.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let before = s.stats().await["refreshes"].as_u64().unwrap();
    let burst = Instant::now();
    let answers = join_all((0..500).map(|i| {
        let app = if i % 2 == 0 { &s.app } else { &replica };
        s.token_url(app, "TROT", false)
    }))
    .await;
    let burst = burst.elapsed();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let refreshed = s.stats().await["refreshes"].as_u64().unwrap() - before;
    // One refresh for the 500 callers. On a loaded machine the burst can
    // outlast the new token's half-life (2 s), which rightly refreshes it
    // once more per 2 s; without single-flight it would be dozens.
    let allowed = 1 + (burst.as_secs_f64() / 2.0) as u64;
    assert!(
        (1..=allowed).contains(&refreshed),
        "{refreshed} refreshes for 500 callers in {burst:?}"
    );
    // Messages through both replicas for 10 s (2.5 lifetimes).
    let id = s.connection["id"].as_str().unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let app = if sent % 2 == 0 { &s.app } else { &replica };
        let (status, body) = app
            .send_json(Method::POST, &format!("/api/v1/connections/{id}/messages"), &s.tenant.api_key,
                &json!({"channel_id": format!("C{}", sent % 4), "team_id": "TROT", "content": {"text": format!("m{sent}")}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = s.wait_messages(sent).await;
    if messages.len() != sent {
        let (_, outbox) = s
            .app
            .get(
                &format!("/api/v1/connections/{id}/messages?limit=5"),
                &s.tenant.api_key,
            )
            .await;
        let metrics = s.app.get_text("/metrics").await;
        panic!(
            "{} of {sent} delivered: {outbox}\n{metrics}",
            messages.len()
        );
    }
    assert!(messages.iter().all(|m| m["team_id"] == "TROT"));
    let stats = s.stats().await;
    let refreshes = stats["refreshes"].as_u64().unwrap();
    assert_eq!(
        refreshes,
        stats["installs"][0]["refreshes"].as_u64().unwrap()
    );
    // 4 s tokens refreshed at half their life, over the whole run: one per
    // two seconds at most (never two for one lifetime).
    let run = started.elapsed().as_secs_f64() + 2.3;
    let most = (run / 2.0).ceil() as u64 + 1;
    assert!(
        (3..=most).contains(&refreshes),
        "{refreshes} refreshes in {run:.1} s"
    );
    assert_eq!(s.installations().await[0]["status"], "active");

    // A refused refresh token: the workspace needs a re-install.
    s.faults(json!({"refuse_refresh": true})).await;
    let (status, body) = s.token_url(&s.app, "TROT", true).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "needs_reinstall");
    assert_eq!(s.installations().await[0]["status"], "needs_reinstall");
    let metrics = s.app.get_text("/metrics").await;
    assert!(
        metrics.contains("botgate_slack_installations_needing_reinstall 1"),
        "{metrics}"
    );
    // Nothing is queued for it meanwhile: it could not be delivered.
    let (status, body) = s.send(Some("TROT"), "while revoked").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("installed in this workspace again"),
        "{body}"
    );
    // Installing again repairs it.
    s.faults(json!({})).await;
    s.install("TROT").await;
    assert_eq!(s.installations().await[0]["status"], "active");
    let (status, body) = s.send(Some("TROT"), "installed again").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let raw = s.app.db.raw_contents().await;
    for install in s.stats().await["installs"].as_array().unwrap() {
        for field in ["access_token", "refresh_token"] {
            let token = install[field].as_str().unwrap();
            assert!(
                !raw.windows(token.len()).any(|w| w == token.as_bytes()),
                "{field} in plaintext"
            );
        }
    }
}

/// The send API of a connection that sends through installations: the
/// workspace must be named (also when only one has installed, so a job
/// keeps working when a second does) and be one the app is installed in;
/// anything else is refused with the field's reason and queues nothing.
async fn the_send_api_takes_only_a_workspace_it_can_send_through(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let id = s.connection["id"].as_str().unwrap();
    let path = format!("/api/v1/connections/{id}/messages");
    let send = |team| s.send(team, "to a workspace");
    let refused = |(status, body): (StatusCode, Value), reason: &str| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["fields"][0]["field"], "team_id", "{body}");
        let message = body["error"]["fields"][0]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason:?} not in {message:?}");
    };
    refused(send(None).await, "is required");
    refused(send(Some("TAAA")).await, "not installed in this workspace");
    s.install("TAAA").await;
    refused(send(None).await, "is required");
    refused(send(Some("TBBB")).await, "not installed in this workspace");
    refused(send(Some("T<b>")).await, "is not a Slack team id");
    let (_, listed) = s.app.get(&path, &s.tenant.api_key).await;
    assert_eq!(listed["messages"], json!([]), "nothing queued");

    let (status, body) = send(Some("TAAA")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let messages = s.wait_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["team_id"], "TAAA");
    assert_eq!(messages[0]["text"], "to a workspace");

    // The command line: `--team` and `--thread`; without the team, refused.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
            .args(["send", "--connection", id, "--channel", "C2"])
            .args(extra)
            .arg("from cron")
            .env("BOTGATE_URL", &s.app.address)
            .env("BOTGATE_API_KEY", &s.tenant.api_key)
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("team_id") && said.contains("422"), "{said}");
    let out = cli(&["--team", "TAAA", "--thread", "1700000000.000100"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let messages = s.wait_messages(2).await;
    let cron = messages.iter().find(|m| m["text"] == "from cron");
    let cron = cron.unwrap_or_else(|| panic!("{messages:?}"));
    assert_eq!(
        (&cron["team_id"], &cron["channel"], &cron["thread_ts"]),
        (&json!("TAAA"), &json!("C2"), &json!("1700000000.000100"))
    );
}

/// `POST …/test` of a connection with installs asks Slack about each
/// workspace's bot token and names the one that fails; with none
/// installed, it says so.
async fn the_connection_test_asks_about_each_workspace(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let path = format!(
        "/api/v1/tenants/{}/connections/{}/test",
        s.tenant.id,
        s.connection["id"].as_str().unwrap()
    );
    let test = || async {
        let (status, body) = s
            .app
            .send_json(Method::POST, &path, &s.tenant.api_key, &json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let checks = body["checks"].as_array().unwrap().clone();
        (body["ok"].as_bool().unwrap(), checks)
    };
    let (ok, checks) = test().await;
    assert!(!ok);
    assert_eq!(
        (&checks[1]["name"], &checks[1]["code"]),
        (&json!("installations"), &json!("not_installed")),
        "{checks:?}"
    );

    s.install("TAAA").await;
    s.install("TBBB").await;
    let (ok, checks) = test().await;
    assert!(ok, "{checks:?}");
    let workspaces: Vec<_> = checks
        .iter()
        .filter(|c| c["name"] == "installation")
        .collect();
    assert_eq!(workspaces.len(), 2, "{checks:?}");
    for (check, team) in workspaces.iter().zip(["TAAA", "TBBB"]) {
        let said = check["message"].as_str().unwrap();
        assert!(
            said.contains(&format!("({team}): Slack's auth.test accepts")),
            "{said}"
        );
    }

    // One workspace's token revoked: that one fails, by name.
    let stats = s.stats().await;
    let installs = stats["installs"].as_array().unwrap();
    let a = installs.iter().find(|i| i["team_id"] == "TAAA").unwrap();
    s.faults(json!({"revoked_tokens": [a["access_token"]]}))
        .await;
    let (ok, checks) = test().await;
    assert!(!ok);
    let failed: Vec<_> = checks.iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    let said = failed[0]["message"].as_str().unwrap();
    assert!(
        said.contains("(TAAA)") && said.contains("token_revoked"),
        "{said}"
    );
    assert_eq!(failed[0]["code"], "slack_token_refused");
    let tokens = installs.iter().map(|i| i["access_token"].as_str().unwrap());
    for token in tokens {
        assert!(!checks.iter().any(|c| c.to_string().contains(token)));
    }

    // The console says the same in Korean, as Slack's sentences.
    let id = s.connection["id"].as_str().unwrap();
    let mut visitor = Visitor::new(&s.app);
    visitor.sign_in(&s.tenant.api_key).await;
    let (_, _, page) = visitor
        .get(&format!("/console/connections/{id}?lang=ko"))
        .await;
    let csrf = hidden(&page, "csrf");
    let test = format!("/console/connections/{id}/test");
    let (_, _, page) = visitor.post(&test, &[("csrf", &csrf)]).await;
    assert!(page.contains("<html lang=\"ko\">"), "{page}");
    assert!(
        page.contains("(TAAA): Slack이 봇 토큰을 거부했습니다")
            && page.contains("(TBBB): Slack의 auth.test가 봇 토큰을 받아들였습니다")
            && page.contains("저장된 시크릿을 복호화했습니다"),
        "{page}"
    );
    assert!(!page.contains("NAVER WORKS"), "{page}");
}

/// An install for a whole Enterprise Grid organization is kept under the
/// organization's id and answers every workspace of it (events that name
/// the organization), not those of another; its token is served and sent
/// through by that id; an uninstall sent to it removes it.
async fn an_organization_wide_install_answers_its_workspaces(backend: Backend) {
    let s = setup(backend, json!({"org_install": true})).await;
    let consent = s.start(Some("TORG")).await;
    let (status, page) = s.back(&consent.allow, Some(&consent.cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("data-team=\"EORG\""), "{page}");
    let list = s.installations().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["team_id"], &list[0]["enterprise_id"]),
        (&json!("EORG"), &json!("EORG"))
    );

    // A workspace of the organization is answered with the org's token; one
    // of another organization, or naming none, is not.
    s.deliver(
        "T111",
        "message",
        json!({"channel": "C1", "text": "hello org", "enterprise": "EORG"}),
    )
    .await;
    s.deliver(
        "T222",
        "message",
        json!({"channel": "C2", "text": "other org", "enterprise": "EOTHER"}),
    )
    .await;
    s.deliver(
        "T333",
        "message",
        json!({"channel": "C3", "text": "no org"}),
    )
    .await;
    let messages = s.settled_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (
            &messages[0]["text"],
            &messages[0]["team_id"],
            &messages[0]["channel"]
        ),
        (&json!("hello org"), &json!("EORG"), &json!("C1"))
    );

    // Its token by the organization's id; a send through it.
    let (status, token) = s.token_url(&s.app, "EORG", false).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["team_id"], "EORG");
    let (status, body) = s.send(Some("EORG"), "to the org").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let messages = s.wait_messages(2).await;
    assert!(
        messages.iter().any(|m| m["text"] == "to the org"),
        "{messages:?}"
    );

    // app_uninstalled sent to the org-wide install removes it.
    s.deliver(
        "T111",
        "event",
        json!({"event": {"type": "app_uninstalled"}, "enterprise": "EORG"}),
    )
    .await;
    assert!(s.installations().await.is_empty());
}

/// The console's test message on such a connection: the form lists the
/// installed workspaces, a form without one is refused next to the field,
/// and the message goes through the workspace chosen.
async fn the_console_sends_a_test_message_through_a_chosen_workspace(backend: Backend) {
    let s = installed_in_two(backend).await;
    let id = s.connection["id"].as_str().unwrap();
    let mut visitor = Visitor::new(&s.app);
    visitor.sign_in(&s.tenant.api_key).await;
    let (_, _, page) = visitor.get(&format!("/console/connections/{id}")).await;
    for team in ["TAAA", "TBBB"] {
        assert!(
            page.contains(&format!("<option value=\"{team}\"")),
            "{page}"
        );
    }
    let csrf = hidden(&page, "csrf");
    let send = format!("/console/connections/{id}/send");
    let form = [
        ("csrf", csrf.as_str()),
        ("target", "channel"),
        ("target_id", "C9"),
        ("text", "through B"),
    ];
    let (status, _, page) = visitor.post(&send, &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"test-team-error\""), "{page}");
    // The same in Korean.
    visitor
        .get(&format!("/console/connections/{id}?lang=ko"))
        .await;
    let (_, _, page) = visitor.post(&send, &form).await;
    assert!(
        page.contains("필수 항목입니다. 이 연결은 워크스페이스별 설치로 보냅니다"),
        "{page}"
    );
    let chosen = [&form[..], &[("team_id", "TBBB")]].concat();
    let (status, headers, _) = visitor.post(&send, &chosen).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[LOCATION].to_str().unwrap().contains("?sent=msg_"));
    let messages = s.wait_messages(1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (&messages[0]["team_id"], &messages[0]["text"]),
        (&json!("TBBB"), &json!("through B"))
    );
}

/// The console's Remove button: refused without the form's token and for
/// a path that is not a team id (nothing removed); with it, the workspace's
/// installation and tokens are gone, and the notice shows only a team id.
async fn the_console_removes_an_installation_with_its_form_token(backend: Backend) {
    let s = installed_in_two(backend).await;
    let id = s.connection["id"].as_str().unwrap();
    let mut visitor = Visitor::new(&s.app);
    visitor.sign_in(&s.tenant.api_key).await;
    let page_path = format!("/console/connections/{id}");
    let (status, _, page) = visitor.get(&page_path).await;
    assert_eq!(status, StatusCode::OK);
    let remove = format!("/console/connections/{id}/installations/TAAA/remove");
    assert!(page.contains(&remove), "the page has the Remove form");
    let csrf = hidden(&page, "csrf");
    let wrong = "0".repeat(64);
    for form in [&[][..], &[("csrf", wrong.as_str())][..]] {
        let (status, _, _) = visitor.post(&remove, form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form:?}");
    }
    let not_a_team = format!("/console/connections/{id}/installations/T%3Cb%3E/remove");
    let (status, _, _) = visitor.post(&not_a_team, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.installations().await.len(), 2, "nothing removed");

    let (status, headers, _) = visitor.post(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[LOCATION].to_str().unwrap().to_owned();
    assert!(location.ends_with("?removed=TAAA"), "{location}");
    let list = s.installations().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["team_id"], "TBBB");
    let (status, _) = s.token_url(&s.app, "TAAA", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "its tokens are gone");
    let (_, _, page) = visitor.get(&location).await;
    assert!(page.contains("Installation removed: TAAA"), "{page}");
    assert!(!page.contains("installations/TAAA/remove"));
    let (_, _, page) = visitor.get(&format!("{page_path}?removed=%3Cb%3Ehi")).await;
    assert!(
        !page.contains("Installation removed"),
        "a crafted notice is not shown"
    );
}

both_backends!(
    the_console_removes_an_installation_with_its_form_token,
    the_send_api_takes_only_a_workspace_it_can_send_through,
    the_connection_test_asks_about_each_workspace,
    an_organization_wide_install_answers_its_workspaces,
    the_console_sends_a_test_message_through_a_chosen_workspace,
    two_workspaces_install_and_are_answered_with_their_own_tokens,
    bad_install_states_are_refused_and_store_nothing,
    rotating_tokens_refresh_once_per_lifetime_across_replicas,
);

/// A real process at debug logging: an install, a message and a token
/// refresh leave no bot token, refresh token or secret in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_and_a_refresh_leave_no_token_in_the_log() {
    use crate::crash::{start, wait_healthy};
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let slack = emulator_app(&emu, json!({"rotation": true, "token_lifetime_seconds": 4})).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite, dir.path()).await;
    let admin = "install-log-admin-token-0123456789".to_owned();
    let (base, env) = crate::crash::process_env(&db, dir.path(), &admin, |base| {
        vec![
            ("BOTGATE_PUBLIC_URL", format!("{base}/")),
            ("BOTGATE_SLACK_API_URL", format!("{}/slack/api", emu.url)),
            (
                "BOTGATE_SLACK_AUTHORIZE_URL",
                format!("{}/slack/oauth/v2/authorize", emu.url),
            ),
            ("BOTGATE_LOG", "botgate=debug".to_owned()),
        ]
    });
    let _process = start(&env, dir.path());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    wait_healthy(&client, &base).await;
    let tenant: Value = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Log"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = tenant["api_key"].as_str().unwrap();
    let conn: Value = client.post(format!("{base}/api/v1/tenants/{}/connections", tenant["id"].as_str().unwrap())).bearer_auth(key)
        .json(&json!({"channel": "slack", "signing_secret": slack["signing_secret"], "client_id": slack["client_id"],
                      "client_secret": slack["client_secret"], "auth_header": AUTH}))
        .send().await.unwrap().json().await.unwrap();
    let res = client
        .get(format!(
            "{}?direct=1",
            conn["install_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = emu
        .client
        .get(res.headers().get(LOCATION).unwrap().to_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("id=allow href=\"").unwrap() + 15;
    let allow = page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&");
    let res = client
        .get(&allow)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A message with the installed token, then a forced refresh.
    let team = emu
        .client
        .get(format!("{}/slack/emulator/stats", emu.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["installs"][0]["team_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .post(format!(
            "{base}/api/v1/connections/{}/messages",
            conn["id"].as_str().unwrap()
        ))
        .bearer_auth(key)
        .json(&json!({"channel_id": "C1", "team_id": team, "content": {"text": "logged?"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let auth = conn["auth_refresh_url"].as_str().unwrap();
    let res = client
        .post(format!("{auth}?team={team}"))
        .header("X-Botgate-Auth", AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let served: Value = res.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = emu
            .client
            .get(format!("{}/slack/emulator/messages", emu.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !v["messages"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats: Value = emu
        .client
        .get(format!("{}/slack/emulator/stats", emu.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["refreshes"].as_u64().unwrap() >= 1);
    let log = std::fs::read_to_string(dir.path().join("botgate.log")).unwrap();
    assert!(
        log.contains("Slack workspace installed") && log.contains("Slack token refreshed"),
        "{log}"
    );
    let install = &stats["installs"][0];
    for secret in [
        install["access_token"].as_str().unwrap(),
        install["refresh_token"].as_str().unwrap(),
        served["access_token"].as_str().unwrap(),
        slack["client_secret"].as_str().unwrap(),
        slack["signing_secret"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}
