//! What every handler and worker shares, built once per process by
//! `startup`: the store, the keys, the settings, the token service, the
//! in-process limiter, pacer and wake-ups. This module imports no route,
//! console or worker code; they all import it.

pub mod limiter;
pub mod pacer;
pub mod quotas;
pub mod signals;

use std::sync::Arc;

use secrecy::SecretString;

use crate::audit::AuditSink;
use crate::config::Settings;
use crate::domain::ids::ConnectionId;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::secrets::vault::Vault;
use crate::store::Store;
use crate::token_cache::TokenService;
use limiter::FailureLimiter;
use pacer::Pacer;
use signals::WorkerSignals;

/// Largest JSON body the management API accepts.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// One connection's decrypted secrets: the `updated_at` they belong to, and
/// each field's value.
pub type SecretsOf = (i64, Vec<(&'static str, SecretString)>);

/// Everything a handler needs, built once per process.
pub struct AppState {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub settings: Arc<Settings>,
    /// Hash of the admin token (never the token itself).
    pub admin_token_hash: String,
    /// The HTTP client for NAVER WORKS and the operator's own URLs
    /// (timeouts set).
    pub http: reqwest::Client,
    /// The HTTP client for tenant-given URLs (engines): the outbound policy,
    /// bounded answers.
    pub outbound: crate::outbound::Client,
    pub tokens: Arc<TokenService>,
    pub limiter: FailureLimiter,
    pub audit: AuditSink,
    /// This process, as the owner of queue leases.
    pub worker_id: String,
    pub signals: WorkerSignals,
    pub pacer: Pacer,
    /// Decrypted connection secrets read on every request or send (the
    /// webhooks' signing secrets, Slack's bot tokens), valid while the
    /// connection's `updated_at` is the one stored with them: see
    /// `channels::connection_secret`.
    pub connection_secrets: std::sync::RwLock<std::collections::HashMap<ConnectionId, SecretsOf>>,
    pub metrics: Arc<Metrics>,
    /// The webhook's group-commit writer.
    pub ingest: Arc<Ingest>,
    /// Tenants' quotas: open rows, callbacks per second.
    pub quotas: quotas::Quotas,
    /// When each worker loop last went round (Unix ms), for /readyz.
    pub worker_ticks: [std::sync::atomic::AtomicI64; 2],
}
