//! `botgate bench`: the load generator and the benchmarks of BENCHMARKS.md.
//!
//! Every figure is set against a ceiling measured by the same tool in the same
//! run: a minimal actix-web server with botgate's server settings that only
//! checks the callback's HMAC and answers 200. The machines are small and
//! noisy, so the ratio is the result, not the absolute number.
//!
//! - B1 ingest: signed, unique callbacks to one connection's webhook at
//!   maximum throughput (closed loop, `concurrency` requests in flight), then
//!   at half that rate (open loop: each request's latency counts from when it
//!   was due, so a stall is not hidden — no coordinated omission).
//! - B3 auth hot path: GETs of a connection's auth URL with a cached token.
//!
//! The workers are off while measuring ingest (B1 measures the webhook path:
//! verify, group-commit, answer). The token for B3 comes from the emulator,
//! started in-process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::config::Settings;
use crate::emulator::{AppConfig, BotConfig, EmulatorConfig, EmulatorServer};
use crate::naverworks::signature;
use crate::startup::Application;

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
            while started.elapsed() < duration {
                let n = counter.fetch_add(1, Ordering::Relaxed);
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

fn callback_request(url: String) -> MakeRequest {
    Arc::new(move |client: &reqwest::Client, n: u64| {
        let body = format!(
            r#"{{"type":"message","source":{{"userId":"bench-user-{}","domainId":10000}},"issuedTime":"2026-11-23T00:00:00.000Z","content":{{"type":"text","text":"bench message {n}"}}}}"#,
            n % 1000
        );
        let sig = signature::sign(BOT_SECRET.as_bytes(), body.as_bytes());
        client
            .post(&url)
            .header("Content-Type", "application/json; charset=UTF-8")
            .header("X-WORKS-BotId", "2000001")
            .header("X-WORKS-Signature", sig)
            .body(body)
    })
}

pub struct BenchOptions {
    pub database_url: Option<String>,
    pub duration: Duration,
    pub concurrency: usize,
}

/// Runs the ceiling, B1 and B3 and prints a report.
pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let ceiling_url = ceiling_server().await?;
    let ceiling = max_throughput(
        callback_request(ceiling_url),
        options.concurrency,
        options.duration,
    )
    .await;
    println!("ceiling (HMAC check + 200): {}", ceiling.summary());

    // The emulator, for B3's token.
    let key = crate::emulator::admin::generate_app(&Default::default())?.0;
    let emulator_config = EmulatorConfig {
        apps: vec![AppConfig {
            client_id: key.client_id.clone(),
            client_secret: key.client_secret.clone(),
            service_account: key.service_account.clone(),
            public_key: None,
            private_key: Some(key.private_key.clone()),
            domain_id: 10_000,
            scopes: vec!["bot".into()],
            bots: vec![BotConfig {
                bot_id: "2000001".into(),
                bot_secret: BOT_SECRET.into(),
                callback_url: None,
            }],
        }],
        ..Default::default()
    };
    let emulator = EmulatorServer::build(emulator_config, "127.0.0.1:0".parse()?)?;
    let emulator_url = emulator.url();
    tokio::spawn(emulator.run_until_stopped());

    let dir = std::env::temp_dir().join(format!(
        "botgate-bench-{}",
        crate::secrets::hex(&crate::secrets::random_bytes(6))
    ));
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    let admin = "bench-admin-token-0123456789".to_owned();
    let settings = Settings::with_overrides(&format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndata_dir = \"{}\"\nadmin_token = \"{admin}\"\n\
         master_key = \"{}\"\nworkers = false\nlog = \"warn\"\n\
         naverworks_auth_url = \"{emulator_url}/oauth2/v2.0\"\nnaverworks_api_url = \"{emulator_url}/v1.0\"",
        dir.display(),
        crate::secrets::MasterKey::generate().to_base64().expose_secret()
    ))?;
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = client();
    let tenant: serde_json::Value = http
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let tenant_id = tenant["id"].as_str().unwrap_or_default();
    let connection: serde_json::Value = http
        .post(format!("{base}/api/v1/tenants/{tenant_id}/connections"))
        .bearer_auth(tenant["api_key"].as_str().unwrap_or_default())
        .json(&json!({"bot_id": "2000001", "client_id": key.client_id, "client_secret": key.client_secret,
            "service_account": key.service_account, "private_key": key.private_key, "bot_secret": BOT_SECRET,
            "auth_header": AUTH_HEADER}))
        .send()
        .await?
        .json()
        .await?;
    let public = connection["webhook_url"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let backend = if database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    let webhook = format!("{base}/webhooks/naverworks/{public}");
    let b1 = max_throughput(
        callback_request(webhook.clone()),
        options.concurrency,
        options.duration,
    )
    .await;
    println!(
        "B1 ingest ({backend}), max: {} — {:.3} of the ceiling",
        b1.summary(),
        b1.throughput() / ceiling.throughput()
    );
    let half = fixed_rate(
        callback_request(webhook),
        b1.throughput() / 2.0,
        options.duration,
    )
    .await;
    println!(
        "B1 ingest ({backend}), at half of max ({:.0}/s): {}",
        b1.throughput() / 2.0,
        half.summary()
    );

    let auth_url = format!("{base}/auth/naverworks/{public}");
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
    let b3 = max_throughput(auth, options.concurrency, options.duration).await;
    println!(
        "B3 auth URL ({backend}), cached token: {} — {:.3} of the ceiling",
        b3.summary(),
        b3.throughput() / ceiling.throughput()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
