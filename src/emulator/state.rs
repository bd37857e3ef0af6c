//! The emulator's state: registered apps and bots, issued tokens, received
//! messages, counters, rate-limit windows, faults and its clock. One mutex,
//! never held across an await.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use serde::Serialize;
use serde_json::Value;

use super::config::{AppConfig, BotConfig, EmulatorConfig};
use crate::domain::naverworks::PrivateKeyPem;
use crate::secrets::random_bytes;

pub struct App {
    pub config: AppConfig,
    pub public_key: RsaPublicKey,
    pub stats: AppStats,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AppStats {
    pub tokens_issued: u64,
    pub tokens_refreshed: u64,
    /// Authorization codes exchanged for a member's tokens (§2).
    pub codes_exchanged: u64,
    pub token_errors: u64,
}

pub struct AccessToken {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Unix seconds on the emulator clock.
    pub expires_at: i64,
}

/// A code the consent page gave (§2): single-use, 10 minutes, bound to the
/// app and the redirect URL it was issued for.
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Unix seconds on the emulator clock.
    pub expires_at: i64,
}

pub struct RefreshToken {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceivedMessage {
    pub seq: u64,
    /// RFC 3339 time of receipt.
    pub received_at: String,
    pub bot_id: String,
    pub user_id: Option<String>,
    pub channel_id: Option<String>,
    pub client_id: String,
    pub content: Value,
}

/// Whether a fault that strikes this `share` (0..1) of calls strikes this
/// one.
pub fn strikes(share: f64) -> bool {
    share > 0.0 && rand::random::<f64>() < share
}

/// Faults switched on by tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share (0..1) of Bot API calls answered 429.
    pub rate_429: f64,
    /// Share (0..1) of Bot API calls answered 500.
    pub rate_5xx: f64,
    /// Share (0..1) of Bot API calls answered 408 with no body, as a loaded
    /// HTTP server answers a request it could not read in time.
    pub rate_408: f64,
    /// Delay added to every Bot API call, in milliseconds.
    pub latency_ms: u64,
    /// Issued access tokens stop working after this many seconds, whatever
    /// `expires_in` says.
    pub token_expire_after_seconds: Option<u64>,
    /// The token endpoint answers 503.
    pub token_endpoint_down: bool,
    /// Delay before the token endpoint answers (and issues), in
    /// milliseconds: holds a refresh in flight.
    pub token_latency_ms: u64,
    /// User ids the Bot API treats as nonexistent: a send to them answers
    /// 404 NOT_FOUND (the real answer is undocumented, NAVERWORKS.md §4.4 [I]).
    pub unknown_users: Vec<String>,
    /// The attachment download's 302 points here instead of the storage
    /// host (a test server, to see which headers a redirect target gets).
    pub download_redirect: Option<String>,
}

pub struct Attachment {
    pub bot_id: String,
    pub file_name: String,
    pub data: Option<Vec<u8>>,
    /// Uploaded by a bot (create attachment → upload), not a user's file.
    pub uploaded: bool,
}

pub struct State {
    pub config: EmulatorConfig,
    pub apps: HashMap<String, App>,
    /// bot id → (client id of its app, bot).
    pub bots: HashMap<String, (String, BotConfig)>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub codes: HashMap<String, AuthCode>,
    pub messages: Vec<ReceivedMessage>,
    pub next_seq: u64,
    /// 429 answers given (rate limit and injected).
    pub rate_limited: u64,
    pub faults: Faults,
    /// (domain id, API name) → (window start, calls in window).
    pub windows: HashMap<(i64, &'static str), (Instant, u32)>,
    /// Added to the real clock (seconds), set through the admin API.
    pub clock_offset: i64,
    pub attachments: HashMap<String, Attachment>,
    /// Upload id → file id.
    pub uploads: HashMap<String, String>,
    /// Calls of the attachment download (`GET …/attachments/{fileId}`).
    pub downloads: u64,
    /// channel id → (bot id, member user ids).
    pub channels: HashMap<String, (String, Vec<String>)>,
}

pub struct Emulator {
    state: Mutex<State>,
    /// e.g. `http://127.0.0.1:9090`, for upload and download URLs.
    pub base_url: String,
    /// For sending callbacks.
    pub http: reqwest::Client,
    /// The Slack half (`emulator::slack`).
    pub slack: super::slack::Slack,
}

impl Emulator {
    pub fn new(config: EmulatorConfig, base_url: String) -> anyhow::Result<Self> {
        let apps = config.apps.clone();
        let emulator = Self {
            state: Mutex::new(State {
                config,
                apps: HashMap::new(),
                bots: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                codes: HashMap::new(),
                messages: Vec::new(),
                next_seq: 1,
                rate_limited: 0,
                faults: Faults::default(),
                windows: HashMap::new(),
                clock_offset: 0,
                attachments: HashMap::new(),
                uploads: HashMap::new(),
                downloads: 0,
                channels: HashMap::new(),
            }),
            base_url,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            slack: super::slack::Slack::default(),
        };
        for app in apps {
            emulator.register_app(app)?;
        }
        Ok(emulator)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers (or replaces) an app and its bots.
    pub fn register_app(&self, app: AppConfig) -> anyhow::Result<()> {
        let public_key = public_key_of(&app)?;
        anyhow::ensure!(!app.client_id.is_empty(), "client_id is required");
        anyhow::ensure!(!app.client_secret.is_empty(), "client_secret is required");
        anyhow::ensure!(
            app.service_account.contains('@'),
            "service_account must look like id@domain"
        );
        let mut state = self.lock();
        for bot in &app.bots {
            anyhow::ensure!(
                !bot.bot_id.is_empty() && bot.bot_id.bytes().all(|b| b.is_ascii_digit()),
                "bot_id must be digits"
            );
            state
                .bots
                .insert(bot.bot_id.clone(), (app.client_id.clone(), bot.clone()));
        }
        let stats = state
            .apps
            .get(&app.client_id)
            .map(|a| a.stats.clone())
            .unwrap_or_default();
        state.apps.insert(
            app.client_id.clone(),
            App {
                config: app,
                public_key,
                stats,
            },
        );
        Ok(())
    }
}

impl State {
    /// Unix seconds on the emulator's clock.
    pub fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + self.clock_offset
    }

    /// A token like the real ones: region prefix, then base64 that always
    /// holds `+`, `/` and `=` (§1.5 says real tokens do), so a client that
    /// forgets to URL-encode them fails here as it would there.
    pub fn new_token() -> String {
        format!(
            "kr1AAAA{}/{}+{}",
            STANDARD.encode(random_bytes(24)),
            STANDARD.encode(random_bytes(12)),
            STANDARD.encode(random_bytes(14))
        )
    }

    pub fn record_message(
        &mut self,
        bot_id: &str,
        client_id: &str,
        target: (Option<String>, Option<String>),
        content: Value,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.messages.push(ReceivedMessage {
            seq,
            received_at: crate::domain::rfc3339(crate::domain::now_millis()),
            bot_id: bot_id.to_owned(),
            user_id: target.0,
            channel_id: target.1,
            client_id: client_id.to_owned(),
            content,
        });
    }

    /// Counts one call of `api` for `domain`; `Err(reset_secs)` when over budget.
    /// Returns (limit, remaining, reset seconds) for the `rateLimit-*` headers.
    pub fn take_rate(
        &mut self,
        domain: i64,
        api: &'static str,
    ) -> Result<(u32, u32, u64), (u32, u64)> {
        let limit = self.config.rate_limit_per_minute;
        let window = self.config.rate_limit_window_seconds.max(1);
        let now = Instant::now();
        let entry = self.windows.entry((domain, api)).or_insert((now, 0));
        if now.duration_since(entry.0).as_secs() >= window {
            *entry = (now, 0);
        }
        let reset = window
            .saturating_sub(now.duration_since(entry.0).as_secs())
            .max(1);
        if entry.1 >= limit {
            return Err((limit, reset));
        }
        entry.1 += 1;
        Ok((limit, limit - entry.1, reset))
    }
}

fn public_key_of(app: &AppConfig) -> anyhow::Result<RsaPublicKey> {
    if let Some(pem) = &app.public_key {
        let pem = pem.trim();
        return RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| {
                anyhow::anyhow!(
                    "public_key of app {} is not an RSA public key PEM",
                    app.client_id
                )
            });
    }
    let Some(private) = &app.private_key else {
        anyhow::bail!("app {} needs public_key or private_key", app.client_id);
    };
    let parsed = PrivateKeyPem::parse(private)
        .map_err(|e| anyhow::anyhow!("private_key of app {} {e}", app.client_id))?;
    let key = parsed.rsa_key().map_err(anyhow::Error::msg)?;
    Ok(key.to_public_key())
}
