//! Two real `botgate serve` processes on one PostgreSQL database: a token
//! is issued once per refresh across them, in every state of the token row
//! (none yet, expiring, a forced refresh, a lease whose holder was killed).
//! The in-process pair of app instances in `tokens.rs` cannot show this:
//! they share one process's locks.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::crash::{start, wait_healthy, Process};
use crate::emulator::{app_config, spawn_emulator, Emu};
use crate::helpers::*;

const HEADER: &str = "internal-services-auth-header";
const ADMIN: &str = "replicas-test-admin-token-0123456789";

/// Botgate processes on one database, the emulator they talk to, and one
/// connection.
struct Pair {
    emu: Emu,
    db: TestDb,
    processes: Vec<Option<Process>>,
    bases: Vec<String>,
    /// The connection's auth URL path (`/auth/naverworks/{public id}`).
    auth_path: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pair {
    /// `count` processes; `lease_seconds`: their `token_lease_seconds`.
    async fn start(emulator: EmulatorConfig, lease_seconds: u32, count: usize) -> Self {
        let emu = spawn_emulator(emulator).await;
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(Backend::Postgres, dir.path()).await;
        let master_key = botgate::secrets::MasterKey::generate()
            .to_base64()
            .expose_secret()
            .to_owned();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        let mut processes = Vec::new();
        let mut bases = Vec::new();
        for i in 0..count {
            let port = free_port();
            let env: Vec<(String, String)> = [
                ("BOTGATE_LISTEN", format!("127.0.0.1:{port}")),
                ("BOTGATE_DATABASE_URL", db.url.clone()),
                (
                    "BOTGATE_DATA_DIR",
                    dir.path().join(format!("data{i}")).display().to_string(),
                ),
                ("BOTGATE_MASTER_KEY", master_key.clone()),
                ("BOTGATE_ADMIN_TOKEN", ADMIN.to_owned()),
                (
                    "BOTGATE_NAVERWORKS_AUTH_URL",
                    format!("{}/oauth2/v2.0", emu.url),
                ),
                ("BOTGATE_NAVERWORKS_API_URL", format!("{}/v1.0", emu.url)),
                ("BOTGATE_TOKEN_LEASE_SECONDS", lease_seconds.to_string()),
                ("BOTGATE_AUTH_FAILURE_LIMIT", "100000".to_owned()),
                ("BOTGATE_LOG", "botgate=info".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let log_dir = dir.path().join(format!("p{i}"));
            std::fs::create_dir_all(&log_dir).unwrap();
            processes.push(Some(start(&env, &log_dir)));
            bases.push(format!("http://127.0.0.1:{port}"));
            wait_healthy(&client, &bases[i]).await;
        }
        let tenant: Value = client
            .post(format!("{}/api/v1/tenants", bases[0]))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "Replicas"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let app = app_config();
        let res = client
            .post(format!(
                "{}/api/v1/tenants/{}/connections",
                bases[0],
                tenant["id"].as_str().unwrap()
            ))
            .bearer_auth(tenant["api_key"].as_str().unwrap())
            .json(
                &json!({"bot_id": app.bots[0].bot_id, "client_id": app.client_id,
                "client_secret": app.client_secret, "service_account": app.service_account,
                "private_key": PKCS8, "bot_secret": app.bots[0].bot_secret,
                "auth_header": HEADER, "scope": "bot bot.read"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let connection: Value = res.json().await.unwrap();
        let auth_url = connection["auth_url"].as_str().unwrap();
        let auth_path = auth_url[auth_url.find("/auth/naverworks/").unwrap()..].to_owned();
        Self {
            emu,
            db,
            processes,
            bases,
            auth_path,
            client,
            _dir: dir,
        }
    }

    /// Token requests the emulator answered with a token: JWT grants and
    /// refresh grants.
    async fn issued(&self) -> u64 {
        let (jwt, refreshed) = self.emu.tokens_issued().await;
        jwt + refreshed
    }

    async fn token_latency(&self, ms: u64) {
        self.emu.faults(json!({"token_latency_ms": ms})).await;
    }

    /// `n` requests at once (reads, or forced refreshes), spread over the
    /// processes in `on`; every answer must be a token. Returns the distinct
    /// access tokens served.
    async fn burst(&self, n: usize, refresh: bool, on: &[usize]) -> HashSet<String> {
        let requests = (0..n).map(|i| {
            let base = &self.bases[on[i % on.len()]];
            let (method, path) = if refresh {
                (Method::POST, format!("{}/refresh", self.auth_path))
            } else {
                (Method::GET, self.auth_path.clone())
            };
            let request = self
                .client
                .request(method, format!("{base}{path}"))
                .header("DANBEE-NAVERWORKS-AUTH", HEADER);
            async move {
                let res = request.send().await.unwrap();
                let status = res.status();
                let body: Value = res.json().await.unwrap();
                assert_eq!(status, StatusCode::OK, "{body}");
                body["access_token"].as_str().unwrap().to_owned()
            }
        });
        futures_join_all(requests).await.into_iter().collect()
    }

    async fn lease_owner(&self) -> Option<String> {
        let mut conn = self.db.connect().await;
        let row = sqlx::query("SELECT lease_owner FROM tokens")
            .fetch_optional(&mut conn)
            .await
            .unwrap()?;
        sqlx::Row::get::<Option<String>, _>(&row, "lease_owner")
    }
}

/// `join_all` without the futures crate: every future on a task of its own.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// No token row yet, then a token past half its lifetime (refreshed ahead
/// of expiry): 600 requests at once over both processes get one token each
/// time, minted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_issue_one_first_token_and_one_refresh() {
    let pair = Pair::start(
        EmulatorConfig {
            // Refreshed once less than half the lifetime is left.
            token_lifetime_seconds: 10,
            ..Default::default()
        },
        30,
        2,
    )
    .await;
    let served = pair.burst(600, false, &[0, 1]).await;
    assert_eq!(pair.issued().await, 1, "one issuance for the first token");
    assert_eq!(served.len(), 1, "one token served by both processes");

    // Past half its lifetime: the next reads refresh it, once.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let refreshed = pair.burst(600, false, &[0, 1]).await;
    assert_eq!(pair.issued().await, 2, "one refresh for the expiring token");
    assert_eq!(refreshed.len(), 1, "one refreshed token served");
    assert!(refreshed.is_disjoint(&served), "the token was refreshed");
}

/// Forced refreshes from both processes at once, while the first of them is
/// in flight: one new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_refreshes_from_two_processes_mint_once() {
    let pair = Pair::start(EmulatorConfig::default(), 30, 2).await;
    let first = pair.burst(2, false, &[0, 1]).await;
    assert_eq!(pair.issued().await, 1);
    // Held for a second at the token endpoint, so every forced refresh
    // starts from the same token.
    pair.token_latency(1_000).await;
    // The other process's cached connection row learns of the first token
    // by a PostgreSQL notification; a forced refresh counts from the
    // generation it holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refreshed = pair.burst(200, true, &[0, 1]).await;
    assert_eq!(
        pair.issued().await,
        2,
        "one token request for 200 concurrent forced refreshes"
    );
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    assert!(refreshed.is_disjoint(&first), "a new token");
}

/// The process holding the refresh lease is killed while NAVER WORKS holds
/// its request: the two others, asked at once, take the lease over once it
/// expires and mint exactly once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_taken_over_after_the_lease() {
    let mut pair = Pair::start(EmulatorConfig::default(), 3, 3).await;
    pair.token_latency(60_000).await;
    // Process 0 takes the lease and waits for the token endpoint.
    let hung = {
        let request = pair
            .client
            .get(format!("{}{}", pair.bases[0], pair.auth_path))
            .header("DANBEE-NAVERWORKS-AUTH", HEADER);
        tokio::spawn(async move { request.send().await })
    };
    let started = Instant::now();
    while pair.lease_owner().await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no lease taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut holder = pair.processes[0].take().unwrap();
    holder.0.kill().unwrap(); // SIGKILL
    holder.0.wait().unwrap();
    let _ = hung.await;
    pair.token_latency(0).await;
    assert_eq!(
        pair.issued().await,
        0,
        "the holder's request never completed"
    );

    let served = pair.burst(300, false, &[1, 2]).await;
    let waited = started.elapsed();
    assert_eq!(served.len(), 1);
    assert_eq!(pair.issued().await, 1, "issued once, by one survivor");
    assert!(
        waited >= Duration::from_secs(3),
        "the survivors waited for the lease to expire: {waited:?}"
    );
    assert!(pair.lease_owner().await.is_none(), "the lease was released");
}
