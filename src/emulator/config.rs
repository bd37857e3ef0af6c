//! The emulator's configuration: apps (as registered in the Developer
//! Console), their bots, and the behaviours NAVERWORKS.md leaves open.

use serde::{Deserialize, Serialize};

use crate::secrets::debug_fields;

fn default_lifetime() -> u64 {
    86_400
}
fn default_refresh_lifetime() -> u64 {
    90 * 86_400
}
fn default_rate() -> u32 {
    240
}
fn default_window() -> u64 {
    60
}
fn default_unauthorized() -> u16 {
    401
}
fn default_scopes() -> Vec<String> {
    ["bot", "bot.read", "user.read"].map(String::from).to_vec()
}
fn default_domain() -> i64 {
    10_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Access-token lifetime in seconds: 86400 (24 h, the default), 3600 (1 h),
    /// or a few seconds for tests (§1.4).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_seconds: u64,
    /// Refresh-token lifetime in seconds: 90 days like the real service
    /// (§1.4), or a few seconds to test expiry.
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_lifetime_seconds: u64,
    /// Refresh Token Rotation (§1.4): off by default, as in the console.
    #[serde(default)]
    pub refresh_token_rotation: bool,
    /// Emit `expires_in` as a JSON number instead of the documented string.
    #[serde(default)]
    pub expires_in_as_number: bool,
    /// Status for a bad or expired token: 401 (current samples) or 403 (2022).
    #[serde(default = "default_unauthorized")]
    pub unauthorized_status: u16,
    /// Requests per API per domain per window (§4.5: 60 free, 240 paid).
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// Length of the rate-limit window; 60 like the real service, shorter in tests.
    #[serde(default = "default_window")]
    pub rate_limit_window_seconds: u64,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token_lifetime_seconds: default_lifetime(),
            refresh_token_lifetime_seconds: default_refresh_lifetime(),
            refresh_token_rotation: false,
            expires_in_as_number: false,
            unauthorized_status: default_unauthorized(),
            rate_limit_per_minute: default_rate(),
            rate_limit_window_seconds: default_window(),
            apps: Vec::new(),
        }
    }
}

/// One app of the Developer Console, with its bots.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: String,
    pub client_secret: String,
    pub service_account: String,
    /// The app's public key (PEM, SPKI or PKCS#1), or leave it out and give
    /// `private_key`, from which it is derived.
    pub public_key: Option<String>,
    pub private_key: Option<String>,
    #[serde(default = "default_domain")]
    pub domain_id: i64,
    /// Scopes granted to the app in the console.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub bots: Vec<BotConfig>,
}

debug_fields!(AppConfig {
    client_id,
    service_account,
    domain_id,
    bots
});

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    pub bot_id: String,
    pub bot_secret: String,
    /// Where callbacks go when none is named (the bot's Callback URL).
    pub callback_url: Option<String>,
}

debug_fields!(BotConfig {
    bot_id,
    callback_url
});

impl EmulatorConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        use figment::providers::{Format as _, Toml};
        Ok(figment::Figment::from(Toml::string(text)).extract()?)
    }
}
