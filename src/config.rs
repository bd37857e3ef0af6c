//! Settings: built-in defaults (`config/default.toml`, compiled in), then the
//! file named by `BOTGATE_CONFIG` (or `config/default.toml` when present), then
//! `BOTGATE_*` environment variables, last. Every value is parsed into a typed
//! setting once, at start, and an error names the value and where it came from.
//!
//! Resolving secrets that are generated when missing (the master key and the
//! admin token) is a separate step: see `bootstrap`.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::{Figment, Provider as _};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The compiled-in defaults: the lowest layer.
pub const DEFAULTS: &str = include_str!("../config/default.toml");
/// The file read on top of the defaults when `BOTGATE_CONFIG` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Keys read from `BOTGATE_<KEY>`; any other `BOTGATE_*` variable is warned about.
const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "database_max_connections",
    "data_dir",
    "master_key",
    "master_key_file",
    "admin_token",
    "metrics_token",
    "naverworks_auth_url",
    "naverworks_api_url",
    "slack_api_url",
    "slack_authorize_url",
    "playground_emulator_url",
    "log_format",
    "log",
    "token_refresh_margin_seconds",
    "token_lease_seconds",
    "auth_failure_limit",
    "auth_block_seconds",
    "trusted_proxies",
    "workers",
    "dedup_window_seconds",
    "engine_timeout_seconds",
    "engine_allowed_networks",
    "engine_max_answer_bytes",
    "file_link_seconds",
    "file_max_bytes",
    "file_hosts",
    "fetch_reply_urls",
    "seal_message_data",
    "retain_done_days",
    "retain_dead_days",
    "retain_audit_days",
    "tenant_max_open_rows",
    "tenant_max_callbacks_per_second",
    "engine_max_attempts",
    "send_max_attempts",
    "send_timeout_seconds",
    "retry_base_ms",
    "worker_poll_ms",
    "console_session_idle_minutes",
    "console_session_max_hours",
];
/// Variables botgate reads that are not settings keys.
const OTHER_VARS: &[&str] = &["config", "url", "api_key"];

#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub data_dir: PathBuf,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    pub admin_token: Option<SecretString>,
    /// Bearer token for `/metrics`; without one, only unproxied requests
    /// from this machine are served.
    pub metrics_token: Option<SecretString>,
    pub naverworks_auth_url: Url,
    pub naverworks_api_url: Url,
    /// Slack's Web API base (`https://slack.com/api`), or the emulator's.
    pub slack_api_url: Url,
    /// Slack's OAuth v2 authorize page, or the emulator's.
    pub slack_authorize_url: Url,
    /// The emulator the console's playground drives (`botgate demo` sets
    /// it): connections whose platform URLs point at it get a chat page.
    pub playground_emulator_url: Option<Url>,
    pub log_format: LogFormat,
    pub log: String,
    /// Refresh a token when less than this is left (or half its lifetime).
    pub token_refresh_margin: std::time::Duration,
    /// How long a replica's claim on a token refresh holds before another
    /// replica may take over (a holder that died); a live holder's token
    /// requests are cut off at three quarters of it.
    pub token_lease: std::time::Duration,
    /// Failed auth-header checks from one client address within a minute
    /// before it is refused (429) for `auth_block`.
    pub auth_failure_limit: u32,
    pub auth_block: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` names the client for
    /// the failure limiter (CIDR list); from any other peer the header is
    /// ignored.
    pub trusted_proxies: Vec<crate::outbound::Network>,
    /// Run the inbox and outbox workers in this process (off: API only).
    pub workers: bool,
    /// A callback body seen again within this window is a duplicate.
    pub dedup_window: std::time::Duration,
    pub engine_timeout: std::time::Duration,
    /// Networks a tenant's engine URL may reach although the outbound
    /// policy refuses them by default (loopback, private, …): see
    /// `outbound`.
    pub engine_allowed_networks: Vec<crate::outbound::Network>,
    /// The largest engine answer read; a longer one fails the attempt.
    pub engine_max_answer_bytes: usize,
    /// How long a `/files/…` link given to an engine works.
    pub file_link: std::time::Duration,
    /// The largest file streamed through `/files/…` or uploaded.
    pub file_max_bytes: usize,
    /// Hosts (or, with a leading dot, domains) a platform's download may
    /// redirect to and still get the bot's Authorization header; the API
    /// URLs' own hosts always do.
    pub file_hosts: Vec<String>,
    /// An engine's file reply whose URL the platform cannot reach (not
    /// https, or a private address) is fetched by botgate, under the
    /// outbound policy, and uploaded; off: such a reply fails.
    pub fetch_reply_urls: bool,
    /// Raw callbacks and message contents are stored sealed with the vault
    /// (AAD: tenant, connection, row); off: in plaintext. Either way both
    /// forms are read.
    pub seal_message_data: bool,
    /// How long finished rows are kept: events done (or ignored) and
    /// messages delivered; dead events and failed messages; the token audit.
    pub retain_done: std::time::Duration,
    pub retain_dead: std::time::Duration,
    pub retain_audit: std::time::Duration,
    /// A tenant's quotas unless the admin set its own: rows open in its
    /// queues (pending or in flight, both queues), and callbacks accepted per
    /// second across its connections.
    pub tenant_max_open_rows: u32,
    pub tenant_max_callbacks_per_second: u32,
    /// Engine calls per event before it is dead-lettered.
    pub engine_max_attempts: u32,
    /// How long one send to NAVER WORKS may take.
    pub send_timeout: std::time::Duration,
    /// Send attempts per message before it is failed.
    pub send_max_attempts: u32,
    /// First retry delay; later ones follow a fixed schedule of multiples.
    pub retry_base: std::time::Duration,
    /// How often each worker looks for work it was not woken for.
    pub worker_poll: std::time::Duration,
    /// A console session ends after this long without a request…
    pub console_idle: std::time::Duration,
    /// …and at the latest this long after sign-in.
    pub console_max: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A database URL whose `Debug`/`Display` hide the password.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Self(SecretString::from(text.to_owned()));
        url.backend()?;
        Ok(url)
    }

    pub fn backend(&self) -> Result<Backend, String> {
        let text = self.0.expose_secret();
        if text.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err("must start with sqlite:// or postgres://".to_owned())
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A SQLite URL's file; none for PostgreSQL or an in-memory database.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        let text = self.expose();
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.starts_with(':')).then(|| path.into())
    }

    /// The URL with any password replaced by `****`.
    pub fn redacted(&self) -> String {
        match Url::parse(self.expose()) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("****"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "<unparsable url>".to_owned(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url.as_str())
            .field("database_url", &self.database_url)
            .field("database_max_connections", &self.database_max_connections)
            .field("data_dir", &self.data_dir)
            .field("master_key", &redact(&self.master_key))
            .field("master_key_file", &self.master_key_file)
            .field("admin_token", &redact(&self.admin_token))
            .field("metrics_token", &redact(&self.metrics_token))
            .field("naverworks_auth_url", &self.naverworks_auth_url.as_str())
            .field("naverworks_api_url", &self.naverworks_api_url.as_str())
            .field("slack_api_url", &self.slack_api_url.as_str())
            .field("slack_authorize_url", &self.slack_authorize_url.as_str())
            .field(
                "playground_emulator_url",
                &self.playground_emulator_url.as_ref().map(Url::as_str),
            )
            .field("log_format", &self.log_format)
            .field("log", &self.log)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .field("token_lease", &self.token_lease)
            .field("auth_failure_limit", &self.auth_failure_limit)
            .field("auth_block", &self.auth_block)
            .field("workers", &self.workers)
            .field("dedup_window", &self.dedup_window)
            .field("engine_timeout", &self.engine_timeout)
            .field("engine_allowed_networks", &self.engine_allowed_networks)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("engine_max_answer_bytes", &self.engine_max_answer_bytes)
            .field("file_link", &self.file_link)
            .field("file_max_bytes", &self.file_max_bytes)
            .field("file_hosts", &self.file_hosts)
            .field("fetch_reply_urls", &self.fetch_reply_urls)
            .field("seal_message_data", &self.seal_message_data)
            .field("retain_done", &self.retain_done)
            .field("retain_dead", &self.retain_dead)
            .field("retain_audit", &self.retain_audit)
            .field("tenant_max_open_rows", &self.tenant_max_open_rows)
            .field(
                "tenant_max_callbacks_per_second",
                &self.tenant_max_callbacks_per_second,
            )
            .field("engine_max_attempts", &self.engine_max_attempts)
            .field("send_timeout", &self.send_timeout)
            .field("send_max_attempts", &self.send_max_attempts)
            .field("retry_base", &self.retry_base)
            .field("worker_poll", &self.worker_poll)
            .field("console_idle", &self.console_idle)
            .field("console_max", &self.console_max)
            .finish()
    }
}

/// A configuration problem, naming the value and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} (named by BOTGATE_CONFIG) does not exist")]
    MissingFile(String),
    #[error("configuration could not be read: {0}")]
    Read(String),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Where the configuration was read from, and what deserves a warning.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Loads the layers from this process's environment and files.
    pub fn load() -> Result<(Self, LoadReport), ConfigError> {
        let mut report = LoadReport::default();
        let explicit = std::env::var_os("BOTGATE_CONFIG").map(PathBuf::from);
        let path = match explicit {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::MissingFile(path.display().to_string()))
            }
            Some(path) => Some(path),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()),
        };
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env_provider());
        report.file = path;
        report.warnings = unknown_env_warnings(std::env::vars().map(|(k, _)| k));
        Ok((Self::from_figment(&figment)?, report))
    }

    /// Parses and validates merged layers. Tests build the figment in code.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let values = figment
            .data()
            .map_err(|e| ConfigError::Read(e.to_string()))?;
        let dict = values
            .get(&figment::Profile::Default)
            .cloned()
            .unwrap_or_default();
        let mut errors = Vec::new();
        for key in dict.keys() {
            if !KEYS.contains(&key.as_str()) {
                errors.push(format!(
                    "unknown setting `{key}` ({})",
                    origin(figment, key)
                ));
            }
        }
        let mut p = Parser {
            figment,
            dict: &dict,
            errors: &mut errors,
        };
        let listen = p.parse("listen", |s| {
            s.parse::<SocketAddr>().map_err(|e| e.to_string())
        });
        let public_url = p.parse("public_url", parse_base_url);
        let database_url = p.parse_secret("database_url", DatabaseUrl::parse);
        let database_max_connections = p.parse("database_max_connections", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| "must be a whole number from 1 to 1000".to_owned())
        });
        let data_dir = p.parse("data_dir", |s| non_empty(s).map(PathBuf::from));
        let master_key = p.optional_secret("master_key");
        let master_key_file = p.optional("master_key_file", |s| non_empty(s).map(PathBuf::from));
        let admin_token = p.optional_secret("admin_token");
        let metrics_token = p.optional_secret("metrics_token");
        if let Some(Some(token)) = &admin_token {
            if token.expose_secret().len() < 16 {
                p.error(
                    "admin_token",
                    "must be at least 16 characters long".to_owned(),
                );
            }
        }
        let naverworks_auth_url = p.parse("naverworks_auth_url", parse_base_url);
        let naverworks_api_url = p.parse("naverworks_api_url", parse_base_url);
        let slack_api_url = p.parse("slack_api_url", parse_base_url);
        let slack_authorize_url = p.parse("slack_authorize_url", parse_base_url);
        let playground_emulator_url = p.optional("playground_emulator_url", parse_base_url);
        let log_format = p.parse("log_format", |s| match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be \"pretty\" or \"json\"".to_owned()),
        });
        let log = p.parse("log", |s| Ok(s.to_owned()));
        // A whole number of `unit`s (of `per` seconds each) from 1 to `max`.
        let units = |per: u64, unit: &'static str, max: u64| {
            move |s: &str| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .map(|n| std::time::Duration::from_secs(n * per))
                    .ok_or_else(|| format!("must be a whole number of {unit} from 1 to {max}"))
            }
        };
        let seconds = |max: u64| units(1, "seconds", max);
        let token_refresh_margin = p.parse("token_refresh_margin_seconds", seconds(86_400));
        let token_lease = p.parse("token_lease_seconds", seconds(600));
        let auth_failure_limit = p.parse("auth_failure_limit", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| "must be a whole number from 1 to 100000".to_owned())
        });
        let auth_block = p.parse("auth_block_seconds", seconds(86_400));
        let workers = p.parse("workers", |s| match s {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        });
        let dedup_window = p.parse("dedup_window_seconds", seconds(86_400));
        let engine_timeout = p.parse("engine_timeout_seconds", seconds(300));
        let engine_allowed_networks = p.parse(
            "engine_allowed_networks",
            crate::outbound::Network::parse_list,
        );
        let trusted_proxies = p.parse("trusted_proxies", crate::outbound::Network::parse_list);
        let engine_max_answer_bytes = p.parse("engine_max_answer_bytes", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1024..=64 * 1024 * 1024).contains(n))
                .ok_or_else(|| "must be a whole number of bytes from 1024 to 67108864".to_owned())
        });
        let file_link = p.parse("file_link_seconds", units(1, "seconds", 86_400));
        let file_max_bytes = p.parse("file_max_bytes", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1024..=1024 * 1024 * 1024).contains(n))
                .ok_or_else(|| "must be a whole number of bytes from 1024 to 1073741824".to_owned())
        });
        let file_hosts = p.parse("file_hosts", |s| {
            let hosts: Vec<String> = s
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            if hosts.iter().all(|h| {
                h.trim_start_matches('.').split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            }) {
                Ok(hosts)
            } else {
                Err("must be host names or .domains, comma-separated".to_owned())
            }
        });
        let fetch_reply_urls = p.parse("fetch_reply_urls", |s| match s {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        });
        let seal_message_data = p.parse("seal_message_data", |s| match s {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        });
        let retain_done = p.parse("retain_done_days", units(86_400, "days", 3650));
        let retain_dead = p.parse("retain_dead_days", units(86_400, "days", 3650));
        let retain_audit = p.parse("retain_audit_days", units(86_400, "days", 3650));
        let count = |max: u32| {
            move |s: &str| {
                s.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("must be a whole number from 1 to {max}"))
            }
        };
        let engine_max_attempts = p.parse("engine_max_attempts", count(100));
        let tenant_max_open_rows = p.parse("tenant_max_open_rows", count(100_000_000));
        let tenant_max_callbacks_per_second =
            p.parse("tenant_max_callbacks_per_second", count(1_000_000));
        let send_timeout = p.parse("send_timeout_seconds", seconds(300));
        let send_max_attempts = p.parse("send_max_attempts", count(100));
        let millis = |min: u64, max: u64| {
            move |s: &str| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .map(std::time::Duration::from_millis)
                    .ok_or_else(|| {
                        format!("must be a whole number of milliseconds from {min} to {max}")
                    })
            }
        };
        let retry_base = p.parse("retry_base_ms", millis(1, 600_000));
        let worker_poll = p.parse("worker_poll_ms", millis(10, 3_600_000));
        let console_idle = p.parse("console_session_idle_minutes", units(60, "minutes", 1440));
        let console_max = p.parse("console_session_max_hours", units(3600, "hours", 720));
        if let (Some(Some(_)), Some(Some(_))) = (&master_key, &master_key_file) {
            errors.push(
                "set master_key or master_key_file, not both (BOTGATE_MASTER_KEY, BOTGATE_MASTER_KEY_FILE)"
                    .to_owned(),
            );
        }
        // Every value parsed (or its error recorded); build only if all are good.
        macro_rules! build {
            ($($field:ident),* $(,)?) => {
                match ($($field,)*) {
                    ($(Some($field),)*) if errors.is_empty() => Ok(Settings { $($field,)* }),
                    _ => Err(ConfigError::Invalid(errors)),
                }
            };
        }
        build!(
            listen,
            public_url,
            database_url,
            database_max_connections,
            data_dir,
            master_key,
            master_key_file,
            admin_token,
            metrics_token,
            naverworks_auth_url,
            naverworks_api_url,
            slack_api_url,
            slack_authorize_url,
            playground_emulator_url,
            log_format,
            log,
            token_refresh_margin,
            token_lease,
            auth_failure_limit,
            auth_block,
            workers,
            dedup_window,
            engine_timeout,
            engine_allowed_networks,
            trusted_proxies,
            engine_max_answer_bytes,
            file_link,
            file_max_bytes,
            file_hosts,
            fetch_reply_urls,
            seal_message_data,
            retain_done,
            retain_dead,
            retain_audit,
            tenant_max_open_rows,
            tenant_max_callbacks_per_second,
            engine_max_attempts,
            send_timeout,
            send_max_attempts,
            retry_base,
            worker_poll,
            console_idle,
            console_max,
        )
    }

    /// Settings for tests and tools: the compiled-in defaults, then `overrides`
    /// (TOML text).
    pub fn with_overrides(overrides: &str) -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(overrides)))
    }

    /// `dedup_window` in milliseconds, as the queue's times are kept.
    pub fn dedup_window_ms(&self) -> i64 {
        i64::try_from(self.dedup_window.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// A URL under `public_url`, e.g. `webhooks/naverworks/abc`.
    pub fn public_link(&self, path: &str) -> String {
        // `public_url` is validated to end with '/', so `join` appends.
        self.public_url
            .join(path)
            .map(String::from)
            .unwrap_or_else(|_| format!("{}{path}", self.public_url))
    }
}

fn env_provider() -> Env {
    Env::prefixed("BOTGATE_").only(KEYS)
}

/// Warnings for `BOTGATE_*` variables botgate does not know (likely typos).
pub fn unknown_env_warnings(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter_map(|name| {
            let key = name.strip_prefix("BOTGATE_")?.to_ascii_lowercase();
            let known = KEYS.contains(&key.as_str()) || OTHER_VARS.contains(&key.as_str());
            (!known)
                .then(|| format!("environment variable {name} is not a botgate setting; ignored"))
        })
        .collect()
}

/// "BOTGATE_LISTEN" or "`listen` in config/x.toml", for error messages.
fn origin(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => match &md.source {
            Some(figment::Source::File(path)) => format!("`{key}` in {}", path.display()),
            Some(figment::Source::Code(_)) | None if md.name.contains("TOML") => {
                format!("`{key}` in the built-in defaults")
            }
            _ if md.name.contains("environment") => {
                format!("environment variable BOTGATE_{}", key.to_ascii_uppercase())
            }
            _ => format!("`{key}` in {}", md.name),
        },
        None => format!("`{key}`"),
    }
}

struct Parser<'a> {
    figment: &'a Figment,
    dict: &'a figment::value::Dict,
    errors: &'a mut Vec<String>,
}

impl Parser<'_> {
    fn error(&mut self, key: &str, reason: String) {
        self.errors
            .push(format!("{}: {reason}", origin(self.figment, key)));
    }

    fn text(&mut self, key: &str) -> Option<Option<String>> {
        match self.dict.get(key) {
            None => Some(None),
            Some(Value::String(_, s)) => Some(Some(s.clone())),
            Some(Value::Num(_, n)) => Some(n.to_u128().map(|n| n.to_string()).or_else(|| {
                n.to_i128()
                    .map(|n| n.to_string())
                    .or_else(|| n.to_f64().map(|f| f.to_string()))
            })),
            Some(Value::Bool(_, b)) => Some(Some(b.to_string())),
            Some(_) => {
                self.error(key, "must be a single value".to_owned());
                None
            }
        }
    }

    /// A required setting; the value may be echoed in errors.
    fn parse<T>(&mut self, key: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match self.text(key)? {
            None => {
                self.error(key, "is required".to_owned());
                None
            }
            Some(text) => match f(text.trim()) {
                Ok(v) => Some(v),
                Err(reason) => {
                    self.error(key, format!("{reason} (got {text:?})"));
                    None
                }
            },
        }
    }

    /// A required secret setting; the value is never echoed.
    fn parse_secret<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.text(key)? {
            None => {
                self.error(key, "is required".to_owned());
                None
            }
            Some(text) => f(text.trim())
                .map_err(|reason| self.error(key, reason))
                .ok(),
        }
    }

    fn optional<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.text(key)? {
            None => Some(None),
            Some(text) if text.trim().is_empty() => Some(None),
            Some(text) => match f(text.trim()) {
                Ok(v) => Some(Some(v)),
                Err(reason) => {
                    self.error(key, format!("{reason} (got {text:?})"));
                    None
                }
            },
        }
    }

    fn optional_secret(&mut self, key: &str) -> Option<Option<SecretString>> {
        let text = self.text(key)?;
        Some(
            text.filter(|t| !t.trim().is_empty())
                .map(|t| SecretString::from(t.trim().to_owned())),
        )
    }
}

fn non_empty(s: &str) -> Result<&str, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s)
    }
}

/// An http(s) base URL, normalised to end with '/', with no query or fragment.
fn parse_base_url(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let s = Settings::with_overrides("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            s.public_link("webhooks/naverworks/x"),
            "http://127.0.0.1:8080/webhooks/naverworks/x"
        );
        assert_eq!(s.database_url.backend(), Ok(Backend::Sqlite));
        assert!(s.master_key.is_none() && s.admin_token.is_none());
    }

    #[test]
    fn console_sessions_are_read_in_minutes_and_hours() {
        let s = Settings::with_overrides(
            "console_session_idle_minutes = 30\nconsole_session_max_hours = 2",
        )
        .unwrap();
        assert_eq!(s.console_idle, std::time::Duration::from_secs(30 * 60));
        assert_eq!(s.console_max, std::time::Duration::from_secs(2 * 3600));
        let defaults = Settings::with_overrides("").unwrap();
        assert_eq!(defaults.console_idle, std::time::Duration::from_secs(3600));
        let Err(err) = Settings::with_overrides(
            "console_session_idle_minutes = 0\nconsole_session_max_hours = 721",
        ) else {
            panic!("out-of-range session lengths accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("whole number of minutes from 1 to 1440"),
            "{err}"
        );
        assert!(err.contains("whole number of hours from 1 to 720"), "{err}");
    }

    #[test]
    fn errors_name_every_bad_value_and_its_origin() {
        let figment = Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(
            "listen = \"nope\"\npublic_url = \"ftp://x\"\ncolour = 1",
        ));
        let err = Settings::from_figment(&figment).err().unwrap().to_string();
        assert!(err.contains("listen") && err.contains("\"nope\""), "{err}");
        assert!(err.contains("public_url") && err.contains("http"), "{err}");
        assert!(err.contains("unknown setting `colour`"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn env_is_the_top_layer_and_is_named_in_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BOTGATE_LISTEN", "127.0.0.1:9999");
            jail.set_env("BOTGATE_DATABASE_MAX_CONNECTIONS", "5000");
            let figment = Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string("listen = \"127.0.0.1:1\""))
                .merge(env_provider());
            let err = Settings::from_figment(&figment).err().unwrap().to_string();
            assert!(err.contains("BOTGATE_DATABASE_MAX_CONNECTIONS"), "{err}");
            jail.set_env("BOTGATE_DATABASE_MAX_CONNECTIONS", "5");
            let figment = Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string("listen = \"127.0.0.1:1\""))
                .merge(env_provider());
            let s = Settings::from_figment(&figment).unwrap();
            assert_eq!(s.listen.port(), 9999);
            assert_eq!(s.database_max_connections, 5);
            Ok(())
        });
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let s = Settings::with_overrides(
            "admin_token = \"admin-token-very-secret\"\nmaster_key = \"bWFzdGVyLWtleS12ZXJ5LXNlY3JldA==\"\n\
             database_url = \"postgres://u:db-password-secret@h/db\"",
        )
        .unwrap();
        let debug = format!("{s:?}");
        for secret in [
            "admin-token-very-secret",
            "bWFzdGVyLWtleS12ZXJ5LXNlY3JldA",
            "db-password-secret",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("u:****@h"), "{debug}");
        let err = Settings::with_overrides("database_url = \"mysql://u:pw-secret@h\"")
            .err()
            .unwrap()
            .to_string();
        assert!(
            !err.contains("pw-secret") && err.contains("database_url"),
            "{err}"
        );
    }

    #[test]
    fn unknown_env_vars_are_warned() {
        let warnings = unknown_env_warnings(
            ["BOTGATE_LISTEN", "BOTGATE_LISTNE", "BOTGATE_CONFIG", "PATH"]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("BOTGATE_LISTNE"));
    }
}
