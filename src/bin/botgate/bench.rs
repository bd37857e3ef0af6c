//! `botgate bench`: the load generator and the benchmarks of BENCHMARKS.md.
//!
//! Every figure is set against a ceiling measured by the same tool in the same
//! run: a minimal actix-web server with botgate's server settings that only
//! checks the callback's HMAC and answers 200. The machines are small and
//! noisy, so the ratio is the result, not the absolute number.
//!
//! - B1 ingest: signed, unique callbacks to one connection's webhook at
//!   maximum throughput (closed loops with `concurrency` and with
//!   `peak_concurrency` requests in flight, the higher of the two; the
//!   ceiling is measured the same way), then at half that rate (open loop:
//!   each request's latency counts from when it was due, so a stall is not
//!   hidden — no coordinated omission).
//! - B3 auth hot path: GETs of a connection's auth URL with a cached token.
//!
//! B2 (end to end), B4 (tenant scale, with botgate's resident memory) and
//! B5 (drain) are described in BENCHMARKS.md.
//!
//! botgate runs as a process of its own (`botgate serve`, this executable,
//! on a fresh database per benchmark); the ceiling server, the NAVER WORKS
//! emulator and the load generator run in this one. The workers are off
//! while measuring ingest (B1 measures the webhook path: verify,
//! group-commit, answer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use secrecy::ExposeSecret as _;
use serde_json::json;

use botgate::config::Settings;
use botgate::emulator::{AppConfig, BotConfig, EmulatorConfig, EmulatorServer};
use botgate::naverworks::signature;

const BOT_SECRET: &str = "bench-bot-secret-0123456789";
const AUTH_HEADER: &str = "bench-auth-header-0123456789";

/// Latencies (µs) and how long the run took.
pub struct Run {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

impl Run {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index] as f64 / 1000.0
    }

    /// Several runs of one load as one.
    pub fn merge(runs: Vec<Run>) -> Run {
        runs.into_iter().fold(
            Run {
                requests: 0,
                errors: 0,
                elapsed: Duration::ZERO,
                latencies_us: Vec::new(),
            },
            |mut all, run| {
                all.requests += run.requests;
                all.errors += run.errors;
                all.elapsed += run.elapsed;
                all.latencies_us.extend(run.latencies_us);
                all
            },
        )
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            self.throughput(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.90),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.errors
        )
    }
}

/// What one request of a load is: a URL, headers and a body made per request.
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap_or_default()
}

/// Waits for the load's tasks and gathers what they measured.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
    latencies: &Mutex<Vec<u64>>,
    errors: &AtomicU64,
) -> Run {
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let latencies_us = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Run {
        requests: latencies_us.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    }
}

/// Closed loop: `concurrency` requests in flight for `duration`.
pub async fn max_throughput(make: MakeRequest, concurrency: usize, duration: Duration) -> Run {
    closed_loop(make, concurrency, Stop::After(duration)).await
}

/// Closed loop: `concurrency` requests in flight until `count` were sent.
pub async fn max_throughput_count(make: MakeRequest, concurrency: usize, count: u64) -> Run {
    closed_loop(make, concurrency, Stop::Count(count)).await
}

#[derive(Clone, Copy)]
enum Stop {
    After(Duration),
    Count(u64),
}

async fn closed_loop(make: MakeRequest, concurrency: usize, stop: Stop) -> Run {
    let client = client();
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, make, counter, errors, latencies) = (
            client.clone(),
            make.clone(),
            counter.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let done = match stop {
                    Stop::After(duration) => started.elapsed() >= duration,
                    Stop::Count(count) => n >= count,
                };
                if done {
                    break;
                }
                let t = Instant::now();
                let ok = make(&client, n)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                mine.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(mine);
        }));
    }
    finish(tasks, started, &latencies, &errors).await
}

/// Open loop at `rate` per second for `duration`; latency counts from when
/// each request was due.
pub async fn fixed_rate(make: MakeRequest, rate: f64, duration: Duration) -> Run {
    let client = client();
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for n in 0..total {
        let due = started + Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(Duration::ZERO);
        tokio::time::sleep_until(due.into()).await;
        let (client, make, errors, latencies) = (
            client.clone(),
            make.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ok = make(&client, n)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let took = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(took);
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    finish(tasks, started, &latencies, &errors).await
}

/// The ceiling: the HMAC check and a 200, with botgate's server settings.
async fn ceiling_server() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|req: HttpRequest, body: web::Bytes| async move {
            let sig = req
                .headers()
                .get("x-works-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if signature::verify(BOT_SECRET.as_bytes(), &body, sig) {
                HttpResponse::Ok().json(json!({"status": "accepted"}))
            } else {
                HttpResponse::Unauthorized().finish()
            }
        }))
    })
    .listen(listener)?
    .disable_signals()
    .run();
    tokio::spawn(server);
    Ok(format!("http://127.0.0.1:{port}/hook"))
}

pub use botgate::cli::BenchArgs as BenchOptions;

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Samples process `pid`'s resident memory while a load runs; the largest
/// sample.
fn watch_rss(pid: u32) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let watched = peak.clone();
    let task = tokio::spawn(async move {
        loop {
            watched.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peak, task)
}

/// Process `pid`'s peak resident memory in MiB: the `sampled` peak (KiB,
/// from [`watch_rss`]), or the kernel's high-water mark if higher (the
/// process did nothing else before the load).
fn peak_mib(pid: u32, sampled: &AtomicU64) -> f64 {
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0;
    (sampled.load(Ordering::Relaxed) as f64 / 1024.0).max(hwm)
}

/// A database of its own for each benchmark: a new SQLite file, or a new
/// PostgreSQL database next to the one named (dropped afterwards).
struct FreshDb {
    url: String,
    label: String,
    postgres: Option<(String, String)>,
}

impl FreshDb {
    async fn new(base: Option<&str>, dir: &std::path::Path, label: &str) -> anyhow::Result<Self> {
        let Some(base) = base else {
            return Ok(Self {
                url: format!("sqlite://{}/{label}.db", dir.display()),
                label: label.to_owned(),
                postgres: None,
            });
        };
        use sqlx::Connection as _;
        let mut url = url::Url::parse(base)?;
        let name = format!(
            "{}_{label}",
            url.path()
                .trim_start_matches('/')
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "")
        );
        // Databases are made from the server's `postgres` database; the one
        // named in the URL only names them (it need not exist).
        let mut admin_url = url.clone();
        admin_url.set_path("/postgres");
        let mut admin = sqlx::PgConnection::connect(admin_url.as_str()).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            url: url.to_string(),
            label: label.to_owned(),
            postgres: Some((admin_url.to_string(), name)),
        })
    }

    async fn drop_now(self) {
        if let Some((base, name)) = self.postgres {
            use sqlx::Connection as _;
            if let Ok(mut admin) = sqlx::PgConnection::connect(&base).await {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

/// The in-process emulator: one generated app whose bots are 2000001,
/// 2000002, …; rate limit raised so that it does not pace the benchmarks.
struct Emulator {
    url: String,
    app: botgate::emulator::admin::GeneratedApp,
}

const FIRST_BOT: u64 = 2_000_001;

async fn start_emulator(bots: usize) -> anyhow::Result<Emulator> {
    let app = botgate::emulator::admin::generate_app(&Default::default())?.0;
    let config = EmulatorConfig {
        apps: vec![AppConfig {
            client_id: app.client_id.clone(),
            client_secret: app.client_secret.clone(),
            service_account: app.service_account.clone(),
            public_key: None,
            private_key: Some(app.private_key.clone()),
            domain_id: 10_000,
            scopes: vec!["bot".into()],
            bots: (0..bots as u64)
                .map(|i| BotConfig {
                    bot_id: (FIRST_BOT + i).to_string(),
                    bot_secret: BOT_SECRET.into(),
                    callback_url: None,
                })
                .collect(),
        }],
        rate_limit_per_minute: 100_000_000,
        ..Default::default()
    };
    let server = EmulatorServer::build(config, "127.0.0.1:0".parse()?)?;
    let url = server.url();
    tokio::spawn(server.run_until_stopped());
    Ok(Emulator { url, app })
}

/// botgate in a process of its own (`botgate serve`, this executable), on a
/// fresh database, with one tenant: its resident memory is its own, and it
/// stops as in production (SIGTERM: the workers finish, then the server).
struct Gateway {
    /// Its master key (base64), to sign file links as it would.
    master_key: String,
    base: String,
    http: reqwest::Client,
    tenant: String,
    api_key: String,
    process: std::process::Child,
    db: FreshDb,
}

/// One connection: its bot and the webhook and auth URLs.
#[derive(Clone)]
struct Target {
    bot_id: String,
    webhook: String,
    auth: String,
}

impl Gateway {
    async fn start(
        db: FreshDb,
        dir: &std::path::Path,
        workers: bool,
        extra: &str,
        emulator: &Emulator,
    ) -> anyhow::Result<Self> {
        let admin = "bench-admin-token-0123456789";
        let master_key = botgate::secrets::MasterKey::generate()
            .to_base64()
            .expose_secret()
            .to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let label = db.label.clone();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{}\"\ndata_dir = \"{}\"\nadmin_token = \"{admin}\"\n\
             master_key = \"{}\"\nworkers = {workers}\nlog = \"warn\"\n\
             naverworks_auth_url = \"{emu}/oauth2/v2.0\"\nnaverworks_api_url = \"{emu}/v1.0\"\n\
             engine_allowed_networks = \"127.0.0.0/8\"\n\
             tenant_max_open_rows = 100000000\ntenant_max_callbacks_per_second = 1000000\n{extra}",
            db.url,
            dir.display(),
            master_key,
            emu = emulator.url,
        );
        // Checked here, so that a mistake is an error, not a process that
        // never answers.
        Settings::with_overrides(&config)?;
        // It holds the (generated) master key and admin token: the owner's alone.
        let config_file = dir.join(format!("{label}.toml"));
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&config_file)?
                .write_all(config.as_bytes())?;
        }
        let log = std::fs::File::create(dir.join(format!("{label}.log")))?;
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .env("BOTGATE_CONFIG", &config_file)
            .stdout(log.try_clone()?)
            .stderr(log);
        // The bench's settings are the file's alone.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BOTGATE_") && key != "BOTGATE_CONFIG" {
                command.env_remove(key);
            }
        }
        let mut process = command.spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
        let started = Instant::now();
        loop {
            if let Some(status) = process.try_wait()? {
                anyhow::bail!(
                    "botgate exited ({status}); see {}",
                    dir.join(format!("{label}.log")).display()
                );
            }
            let ready = http.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "botgate did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tenant: serde_json::Value = http
            .post(format!("{base}/api/v1/tenants"))
            .bearer_auth(admin)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .json()
            .await?;
        Ok(Self {
            master_key,
            tenant: tenant["id"].as_str().unwrap_or_default().to_owned(),
            api_key: tenant["api_key"].as_str().unwrap_or_default().to_owned(),
            base,
            http,
            process,
            db,
        })
    }

    /// Group commits of callbacks so far (from `/metrics`).
    async fn commits(&self) -> anyhow::Result<u64> {
        let metrics = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("botgate_group_commits_total{writer=\"callbacks\"} "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no callback commits in /metrics"))
    }

    /// Resident memory of the botgate process, in MiB.
    fn rss_mib(&self) -> f64 {
        rss_mib(self.process.id())
    }

    /// Connects bots FIRST_BOT.. FIRST_BOT+n-1, `parallel` at a time.
    async fn connect(&self, emulator: &Emulator, n: usize) -> anyhow::Result<Vec<Target>> {
        let app = &emulator.app;
        let mut targets = Vec::with_capacity(n);
        for chunk in (0..n as u64).collect::<Vec<_>>().chunks(16) {
            let requests = chunk.iter().map(|i| {
                let bot_id = (FIRST_BOT + i).to_string();
                let request = self
                    .http
                    .post(format!("{}/api/v1/tenants/{}/connections", self.base, self.tenant))
                    .bearer_auth(&self.api_key)
                    .json(&json!({"bot_id": bot_id, "client_id": app.client_id, "client_secret": app.client_secret,
                        "service_account": app.service_account, "private_key": app.private_key, "bot_secret": BOT_SECRET,
                        "auth_header": AUTH_HEADER, "rate_limit_per_minute": 6000}))
                    .send();
                async move {
                    let connection: serde_json::Value = request.await?.json().await?;
                    let url = |key: &str| connection[key].as_str().unwrap_or_default().to_owned();
                    anyhow::ensure!(!url("webhook_url").is_empty(), "connection refused: {connection}");
                    Ok::<_, anyhow::Error>((bot_id, url("webhook_url"), url("auth_url")))
                }
            });
            for result in futures_join(requests).await {
                let (bot_id, webhook, auth) = result?;
                // The public URLs name public_url; the bench talks to the listener.
                let local = |u: &str| {
                    let path = u
                        .split_once("/webhooks/")
                        .map(|(_, p)| format!("/webhooks/{p}"))
                        .or_else(|| u.split_once("/auth/").map(|(_, p)| format!("/auth/{p}")))
                        .unwrap_or_default();
                    format!("{}{path}", self.base)
                };
                targets.push(Target {
                    webhook: local(&webhook),
                    auth: local(&auth),
                    bot_id,
                });
            }
        }
        Ok(targets)
    }

    async fn set_engine(&self, engine: serde_json::Value) -> anyhow::Result<()> {
        self.put_tenant("engine", engine).await
    }

    /// PUTs one of the tenant's settings (`engine`, `status-hook`).
    async fn put_tenant(&self, setting: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let res = self
            .http
            .put(format!(
                "{}/api/v1/tenants/{}/{setting}",
                self.base, self.tenant
            ))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "{setting} refused: {}",
            res.status()
        );
        Ok(())
    }

    /// SIGTERM, then waits for the process to finish its work and exit.
    async fn stop(mut self) {
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let started = Instant::now();
        while stopped && started.elapsed() < Duration::from_secs(60) {
            if !matches!(self.process.try_wait(), Ok(None)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if matches!(self.process.try_wait(), Ok(None)) {
            eprintln!("botgate did not stop after SIGTERM; killed");
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
        self.db.drop_now().await;
    }
}

/// Awaits every future (they run concurrently).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// When each numbered callback was sent (Unix ms).
type SendLog = Arc<Mutex<Vec<(u64, i64)>>>;

/// A NAVER WORKS user id (a UUID, as in the platform's callbacks) for user
/// `i` of load `load`: distinct for distinct pairs, and scattered as real
/// ids are — ids that count up would sort side by side and flatter every
/// index keyed by conversation (one page per batch instead of one per row).
fn user_id(load: u64, i: u64) -> String {
    // splitmix64's finaliser: a bijection of u64, so distinct in, distinct out.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (a, b) = (mix(i), mix(load ^ 0x5bd1_e995));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Signed, unique callbacks spread over the targets (user `n % users`),
/// issued now, as NAVER WORKS's are.
/// Each load's users are its own ([`user_id`]), so no load repeats
/// another's bodies (botgate would rightly drop them as duplicates).
fn callbacks(targets: Vec<Target>, users: u64, sent: Option<SendLog>) -> MakeRequest {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    let load = LOADS.fetch_add(1, Ordering::Relaxed);
    Arc::new(move |client: &reqwest::Client, n: u64| {
        let target = &targets[(n % targets.len() as u64) as usize];
        let body = format!(
            r#"{{"type":"message","source":{{"userId":"{}","domainId":10000}},"issuedTime":"{}","content":{{"type":"text","text":"bench message {n}"}}}}"#,
            user_id(load, n % users),
            botgate::domain::rfc3339(botgate::domain::now_millis())
        );
        if let Some(sent) = &sent {
            sent.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((n, botgate::domain::now_millis()));
        }
        let sig = signature::sign(BOT_SECRET.as_bytes(), body.as_bytes());
        client
            .post(&target.webhook)
            .header("Content-Type", "application/json; charset=UTF-8")
            .header("X-WORKS-BotId", &target.bot_id)
            .header("X-WORKS-Signature", sig)
            .body(body)
    })
}

/// The messages the emulator received after `after`: (seq, text, received ms).
async fn received(
    http: &reqwest::Client,
    emulator: &Emulator,
    after: u64,
) -> anyhow::Result<Vec<(u64, String, i64)>> {
    let body: serde_json::Value = http
        .get(format!("{}/emulator/messages?after={after}", emulator.url))
        .send()
        .await?
        .json()
        .await?;
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0)
    };
    Ok(body["messages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap_or(0),
                        m["content"]["text"].as_str().unwrap_or_default().to_owned(),
                        parse(m["received_at"].as_str().unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until the emulator holds `expected` messages after `after` (or
/// `limit` passes); returns them.
async fn await_replies(
    http: &reqwest::Client,
    emulator: &Emulator,
    after: u64,
    expected: usize,
    limit: Duration,
) -> anyhow::Result<Vec<(u64, String, i64)>> {
    let started = Instant::now();
    let mut all: Vec<(u64, String, i64)> = Vec::new();
    while all.len() < expected && started.elapsed() < limit {
        let after = all.last().map_or(after, |m| m.0);
        let more = received(http, emulator, after).await?;
        if more.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        all.extend(more);
    }
    Ok(all)
}

/// Runs the ceiling and the chosen benchmarks and prints a report.
pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let duration = Duration::from_secs(options.duration);
    let wants =
        |b: &str| options.only.is_empty() || options.only.iter().any(|o| o.eq_ignore_ascii_case(b));
    let ceiling_url = ceiling_server().await?;
    let ceiling_target = Target {
        bot_id: FIRST_BOT.to_string(),
        webhook: ceiling_url,
        auth: String::new(),
    };
    // Closed loops at each level; the best is the maximum.
    let levels: Vec<usize> =
        if options.peak_concurrency > 0 && options.peak_concurrency != options.concurrency {
            vec![options.concurrency, options.peak_concurrency]
        } else {
            vec![options.concurrency]
        };
    let c = if let Some(given) = options.ceiling {
        println!("ceiling: {given:.0} req/s (given, not measured)");
        given
    } else {
        let mut c: f64 = 0.0;
        for &level in &levels {
            let ceiling = max_throughput(
                callbacks(vec![ceiling_target.clone()], 1000, None),
                level,
                duration,
            )
            .await;
            println!(
                "ceiling (HMAC check + 200), {level} in flight: {}",
                ceiling.summary()
            );
            c = c.max(ceiling.throughput());
        }
        println!("ceiling: {c:.0} req/s (the higher)");
        c
    };
    let backend = if options.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let dir = std::env::temp_dir().join(format!(
        "botgate-bench-{}",
        botgate::secrets::hex(&botgate::secrets::random_bytes(6))
    ));
    std::fs::create_dir_all(&dir)?;
    let base_db = options.database_url.as_deref();
    let emulator = start_emulator(options.connections.max(1000)).await?;
    let http = client();

    if wants("b1") || wants("b3") {
        let db = FreshDb::new(base_db, &dir, "b1").await?;
        let gw = Gateway::start(db, &dir, false, "", &emulator).await?;
        let target = gw.connect(&emulator, 1).await?;
        if wants("b1") {
            let mut max: f64 = 0.0;
            for &level in &levels {
                let commits = gw.commits().await?;
                let b1 =
                    max_throughput(callbacks(target.clone(), 1000, None), level, duration).await;
                let commits = gw.commits().await? - commits;
                println!(
                    "B1 ingest ({backend}), {level} in flight: {} — {:.3} of the ceiling; {commits} commits ({:.1} callbacks each)",
                    b1.summary(),
                    b1.throughput() / c,
                    b1.requests as f64 / commits.max(1) as f64
                );
                max = max.max(b1.throughput());
            }
            println!(
                "B1 ingest ({backend}), max: {max:.0} req/s — {:.3} of the ceiling",
                max / c
            );
            let half = fixed_rate(callbacks(target.clone(), 1000, None), max / 2.0, duration).await;
            println!(
                "B1 ingest ({backend}), at half of max ({:.0}/s): {}",
                max / 2.0,
                half.summary()
            );
        }
        if wants("b3") {
            let auth_url = target[0].auth.clone();
            let warm = http
                .get(&auth_url)
                .header("DANBEE-NAVERWORKS-AUTH", AUTH_HEADER)
                .send()
                .await?;
            anyhow::ensure!(
                warm.status().is_success(),
                "the auth URL did not give a token: {}",
                warm.status()
            );
            let auth: MakeRequest = Arc::new(move |client: &reqwest::Client, _| {
                client
                    .get(&auth_url)
                    .header("DANBEE-NAVERWORKS-AUTH", AUTH_HEADER)
            });
            let b3 = max_throughput(auth, options.concurrency, duration).await;
            println!(
                "B3 auth URL ({backend}), cached token: {} — {:.3} of the ceiling",
                b3.summary(),
                b3.throughput() / c
            );
        }
        gw.stop().await;
    }

    if wants("b4") {
        // Both gateways run at once and the loads alternate between them in
        // slices, so that the machine's drift (its speed moves by a quarter
        // from one minute to the next here) falls on both cases alike.
        struct Case {
            n: usize,
            gw: Gateway,
            targets: Vec<Target>,
            setup: Duration,
            idle: f64,
            runs: Vec<Run>,
        }
        let mut cases = Vec::new();
        for n in [1, options.connections] {
            let db = FreshDb::new(base_db, &dir, &format!("b4_{n}")).await?;
            let gw = Gateway::start(db, &dir, false, "", &emulator).await?;
            let started = Instant::now();
            let targets = gw.connect(&emulator, n).await?;
            cases.push(Case {
                n,
                gw,
                targets,
                setup: started.elapsed(),
                idle: 0.0,
                runs: Vec::new(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut watchers = Vec::new();
        let mut warm = Vec::new();
        for case in &mut cases {
            case.idle = case.gw.rss_mib();
            watchers.push(watch_rss(case.gw.process.id()));
            // Warm-up, not measured: one callback per connection, so the
            // measured load finds every connection read and its bot secret
            // opened once, as in a gateway that has been running a while (a
            // 10-second load over 10,000 connections would otherwise mostly
            // measure first contact). Reported on its own.
            warm.push(
                max_throughput_count(
                    callbacks(case.targets.clone(), 1000, None),
                    options.concurrency,
                    case.n as u64,
                )
                .await,
            );
        }
        const SLICES: u32 = 5;
        for _ in 0..SLICES {
            for case in &mut cases {
                let run = max_throughput(
                    callbacks(case.targets.clone(), 1000, None),
                    options.concurrency,
                    duration / SLICES,
                )
                .await;
                case.runs.push(run);
            }
        }
        for ((case, (peak, watcher)), warm) in cases.into_iter().zip(watchers).zip(warm) {
            watcher.abort();
            let run = Run::merge(case.runs);
            let n = case.n;
            println!(
                "B4 ingest over {n} connection(s) ({backend}): {} — {:.3} of the ceiling; botgate's RSS idle {:.0} MiB, under load (peak) {:.0} MiB; {n} connections made in {:.1} s; first callback to each: {:.0} req/s",
                run.summary(),
                run.throughput() / c,
                case.idle,
                peak.load(Ordering::Relaxed) as f64 / 1024.0,
                case.setup.as_secs_f64(),
                warm.throughput()
            );
            case.gw.stop().await;
        }
    }

    if wants("b2") {
        let db = FreshDb::new(base_db, &dir, "b2").await?;
        let gw = Gateway::start(db, &dir, true, "", &emulator).await?;
        let targets = gw.connect(&emulator, 1000).await?;
        // Tokens first, so that the measurement is the message path.
        let warm = targets.iter().map(|t| {
            http.get(&t.auth)
                .header("DANBEE-NAVERWORKS-AUTH", AUTH_HEADER)
                .send()
        });
        for r in futures_join(warm).await {
            anyhow::ensure!(r?.status().is_success(), "a token could not be fetched");
        }
        let posts = if options.status_hook {
            let (url, posts) = status_receiver()?;
            gw.put_tenant(
                "status-hook",
                json!({"url": url, "secret": "bench-status-hook-secret"}),
            )
            .await?;
            Some(posts)
        } else {
            None
        };
        // By default at 0.01 of the ceiling (the latency when the pipeline is
        // far from saturated), then at 0.05 (the target).
        for &fraction in &options.rates {
            let already = received(&http, &emulator, 0)
                .await?
                .last()
                .map_or(0, |m| m.0);
            let rate = fraction * c;
            let sent = Arc::new(Mutex::new(Vec::new()));
            let run = fixed_rate(
                callbacks(targets.clone(), 1000, Some(sent.clone())),
                rate,
                duration,
            )
            .await;
            let expected = run.requests as usize;
            let replies = await_replies(
                &http,
                &emulator,
                already,
                expected,
                Duration::from_secs(180),
            )
            .await?;
            let sent: std::collections::HashMap<u64, i64> = sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .copied()
                .collect();
            let latencies: Vec<u64> = replies
                .iter()
                .filter_map(|(_, text, at)| {
                    let n = text.strip_prefix("bench message ")?.parse::<u64>().ok()?;
                    let t = sent.get(&n)?;
                    Some(u64::try_from((at - t).max(0)).unwrap_or(0) * 1000)
                })
                .collect();
            let e2e = Run {
                requests: latencies.len() as u64,
                errors: run.errors,
                elapsed: run.elapsed,
                latencies_us: latencies,
            };
            println!(
                "B2 end to end ({backend}), {rate:.0} callbacks/s ({fraction:.2} of the ceiling) over 1000 connections: {} replies of {expected} callbacks; callback sent → reply recorded p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (ms resolution); webhook p99 {:.2} ms, {} callbacks not answered 2xx",
                e2e.requests,
                e2e.percentile_ms(0.5),
                e2e.percentile_ms(0.9),
                e2e.percentile_ms(0.99),
                e2e.percentile_ms(1.0),
                run.percentile_ms(0.99),
                run.errors
            );
            if let Some(posts) = &posts {
                report_posts(posts, expected).await;
            }
        }
        gw.stop().await;
    }

    if wants("b5") {
        let engine = flaky_engine().await?;
        let db = FreshDb::new(base_db, &dir, "b5").await?;
        let gw = Gateway::start(
            db,
            &dir,
            true,
            "engine_max_attempts = 50\nretry_base_ms = 20\nengine_timeout_seconds = 5",
            &emulator,
        )
        .await?;
        let targets = gw.connect(&emulator, 100).await?;
        gw.set_engine(json!({"kind": "http", "url": engine, "secret": "bench-engine-secret-0123"}))
            .await?;
        let already = received(&http, &emulator, 0)
            .await?
            .last()
            .map_or(0, |m| m.0);
        let started = Instant::now();
        let total = options.events as u64;
        let counter = Arc::new(AtomicU64::new(0));
        let make = callbacks(targets, 1000, None);
        let posted = futures_join((0..options.concurrency).map(|_| {
            let (make, counter, client) = (make.clone(), counter.clone(), http.clone());
            async move {
                let mut failed = 0u64;
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return failed;
                    }
                    let ok = make(&client, n)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    failed += u64::from(!ok);
                }
            }
        }))
        .await;
        let refused: u64 = posted.iter().sum();
        let accepted = started.elapsed();
        let replies = await_replies(
            &http,
            &emulator,
            already,
            options.events,
            Duration::from_secs(600),
        )
        .await?;
        let drained = started.elapsed();
        let texts: std::collections::HashSet<String> = replies
            .iter()
            .filter(|m| m.0 > already)
            .map(|m| m.1.clone())
            .collect();
        let missing = (0..total)
            .filter(|n| !texts.contains(&format!("bench message {n}")))
            .count();
        let duplicates = replies.iter().filter(|m| m.0 > already).count() - texts.len();
        println!(
            "B5 drain ({backend}): {total} events over 100 connections, engine failing 20% and slow (200 ms) 10%: accepted in {:.1} s ({refused} refused), drained in {:.1} s ({:.0} events/s); {missing} lost, {duplicates} duplicated",
            accepted.as_secs_f64(),
            drained.as_secs_f64(),
            total as f64 / drained.as_secs_f64()
        );
        gw.stop().await;
    }

    if wants("b6") {
        let db = FreshDb::new(base_db, &dir, "b6").await?;
        let gw = Gateway::start(db, &dir, false, "", &emulator).await?;
        gw.connect(&emulator, 1).await?;
        b6_files(&gw, &emulator, &http, backend).await?;
        gw.stop().await;
    }
    if wants("b7") {
        let db = FreshDb::new(base_db, &dir, "b7").await?;
        let gw = Gateway::start(db, &dir, true, "engine_max_attempts = 1", &emulator).await?;
        let targets = gw.connect(&emulator, 16).await?;
        b7_huge_engine_answers(&gw, targets, &http, backend).await?;
        gw.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// B7: an engine that answers every call with 100 MiB, called for 16
/// conversations at once (more than the inbox worker's slots): the
/// gateway's peak resident memory, which the answer cap
/// (`engine_max_answer_bytes`, 1 MiB, enforced while reading) keeps near
/// idle, against the 60 MB target.
async fn b7_huge_engine_answers(
    gw: &Gateway,
    targets: Vec<Target>,
    http: &reqwest::Client,
    backend: &str,
) -> anyhow::Result<()> {
    const CALLS: u64 = 16;
    let served = Arc::new(AtomicU64::new(0));
    let engine = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let served = served.clone();
        let server = HttpServer::new(move || {
            let served = served.clone();
            App::new().default_service(web::to(move || {
                served.fetch_add(1, Ordering::Relaxed);
                // 100 chunks of 1 MiB, made as they are sent.
                let body =
                    futures_util::stream::iter((0..100).map(|_| {
                        Ok::<_, std::io::Error>(web::Bytes::from(vec![b' '; 1024 * 1024]))
                    }));
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .no_chunking(100 * 1024 * 1024)
                        .streaming(body)
                }
            }))
        })
        .listen(listener)?
        .disable_signals()
        .run();
        tokio::spawn(server);
        format!("http://127.0.0.1:{port}/engine")
    };
    gw.set_engine(json!({"kind": "http", "url": engine, "secret": "bench-engine-secret-0123"}))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = gw.rss_mib();
    let (peak, watcher) = watch_rss(gw.process.id());
    let make = callbacks(targets, CALLS, None);
    let started = Instant::now();
    for n in 0..CALLS {
        let answer = make(http, n).send().await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "a callback was refused: {}",
            answer.status()
        );
    }
    // Every call answered, and each event dead-lettered (one attempt).
    let failed = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("botgate_engine_calls_total{outcome=\"error\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    loop {
        let metrics = http
            .get(format!("{}/metrics", gw.base))
            .send()
            .await?
            .text()
            .await?;
        if failed(&metrics) >= CALLS {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the engine calls did not all end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    watcher.abort();
    let peak = peak_mib(gw.process.id(), &peak);
    println!(
        "B7 engine answers of 100 MiB ({backend}): {CALLS} calls ({} served), each refused at the 1 MiB cap, in {:.1} s; gateway RSS {idle:.0} MiB idle, {peak:.0} MiB peak (+{:.0} MiB; target: peak under 60 MB)",
        served.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        (peak - idle).max(0.0)
    );
    Ok(())
}

/// B6: 25 MiB files streamed through `/files/` links, 8 at a time, 4
/// rounds: the gateway's peak resident memory against its idle figure
/// (streamed, it stays near idle; buffered it would grow by the files).
async fn b6_files(
    gw: &Gateway,
    emulator: &Emulator,
    http: &reqwest::Client,
    backend: &str,
) -> anyhow::Result<()> {
    const SIZE: usize = 25 * 1024 * 1024;
    const PARALLEL: usize = 8;
    const ROUNDS: usize = 4;
    let file: serde_json::Value = http
        .post(format!(
            "{}/emulator/files?bot_id={FIRST_BOT}&name=big.bin",
            emulator.url
        ))
        .body(vec![0x5au8; SIZE])
        .send()
        .await?
        .json()
        .await?;
    let file_id = file["fileId"].as_str().unwrap_or_default().to_owned();
    let list: serde_json::Value = http
        .get(format!(
            "{}/api/v1/tenants/{}/connections",
            gw.base, gw.tenant
        ))
        .bearer_auth(&gw.api_key)
        .send()
        .await?
        .json()
        .await?;
    let connection = list["connections"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ring =
        botgate::secrets::KeyRing::new(botgate::secrets::MasterKey::parse(&gw.master_key)?, []);
    let token = botgate::channels::files::sign(
        &ring,
        &botgate::channels::files::FileRef {
            t: gw.tenant.clone(),
            c: connection,
            f: file_id,
            e: botgate::domain::now_millis() / 1000 + 3600,
            w: None,
            x: None,
        },
    );
    let link = format!("{}/files/{token}", gw.base);
    // One download first (the token is minted), then the idle figure.
    let first = http.get(&link).send().await?;
    anyhow::ensure!(
        first.status().is_success(),
        "the link answered {}",
        first.status()
    );
    first.bytes().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = gw.rss_mib();
    let (peak, watcher) = watch_rss(gw.process.id());
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..ROUNDS {
        let downloads = (0..PARALLEL).map(|_| {
            let (http, link) = (http.clone(), link.clone());
            tokio::spawn(async move {
                let mut response = http.get(&link).send().await?;
                let mut n = 0usize;
                while let Some(chunk) = response.chunk().await? {
                    n += chunk.len();
                }
                Ok::<_, reqwest::Error>(n)
            })
        });
        for d in downloads.collect::<Vec<_>>() {
            let n = d.await??;
            anyhow::ensure!(n == SIZE, "a download was {n} bytes, not {SIZE}");
            bytes += n;
        }
    }
    let elapsed = started.elapsed();
    watcher.abort();
    let peak = peak_mib(gw.process.id(), &peak);
    println!(
        "B6 file streaming ({backend}): {} downloads of 25 MiB, {PARALLEL} at a time, in {:.1} s ({:.0} MiB/s); gateway RSS {idle:.0} MiB idle, {peak:.0} MiB peak (+{:.0} MiB)",
        PARALLEL * ROUNDS,
        elapsed.as_secs_f64(),
        bytes as f64 / 1024.0 / 1024.0 / elapsed.as_secs_f64(),
        (peak - idle).max(0.0)
    );
    Ok(())
}

/// An `http` engine that fails every fifth call (HTTP 500) and answers
/// every tenth slowly (200 ms); the others echo at once.
/// A status hook that answers 204 and counts the posts it got.
fn status_receiver() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let posts = Arc::new(AtomicU64::new(0));
    let counted = posts.clone();
    let server = HttpServer::new(move || {
        let counted = counted.clone();
        App::new().default_service(web::to(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { HttpResponse::NoContent().finish() }
        }))
    })
    .listen(listener)?
    .disable_signals()
    .run();
    tokio::spawn(server);
    Ok((format!("http://127.0.0.1:{port}/status"), posts))
}

/// Waits (at most a minute) for the status posts of a B2 rate's replies and
/// says how many came and how long after the replies the last one did.
async fn report_posts(posts: &AtomicU64, expected: usize) {
    let started = Instant::now();
    let mut got = posts.swap(0, Ordering::Relaxed);
    while (got as usize) < expected && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got += posts.swap(0, Ordering::Relaxed);
    }
    println!(
        "B2 status posts: {got} of {expected} messages posted, the last {:.2} s after the last reply",
        started.elapsed().as_secs_f64()
    );
}

async fn flaky_engine() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let calls = Arc::new(AtomicU64::new(0));
    let server = HttpServer::new(move || {
        let calls = calls.clone();
        App::new().default_service(web::to(move |body: web::Json<serde_json::Value>| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                match n % 10 {
                    0 | 5 => return HttpResponse::InternalServerError().finish(),
                    3 => tokio::time::sleep(Duration::from_millis(200)).await,
                    _ => {}
                }
                let text = body["content"]["text"].as_str().unwrap_or("?").to_owned();
                HttpResponse::Ok().json(json!({"replies": [{"type": "text", "text": text}]}))
            }
        }))
    })
    .listen(listener)?
    .disable_signals()
    .run();
    tokio::spawn(server);
    Ok(format!("http://127.0.0.1:{port}/engine"))
}
