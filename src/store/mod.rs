//! The store: every table botgate keeps, behind one interface, on SQLite (the
//! embedded default) or PostgreSQL (for production and several replicas),
//! chosen by the URL scheme at run time.
//!
//! Design choice: one implementation over sqlx's `Any` driver rather than one
//! copy per backend. The two dialects agree on almost all of botgate's SQL
//! (`$N` parameters, `RETURNING`, `ON CONFLICT`), ids are text and times are
//! Unix milliseconds in both, so one copy of each query serves both; where the
//! dialects differ (claims, locks) a method matches on [`Backend`]. Every
//! multi-statement operation is one method whose transaction stays inside it.
//! The same contract suite (`tests/store`) runs on both backends.
//!
//! One file per aggregate, each with its records and its queries:
//! `tenants`, `connections`, `secrets`, `tokens`, `audit`, `activity`,
//! `console` (sessions), `queue` (the inbox and outbox engine), `one_time`
//! (sign-in links and OAuth states: single-use tokens); across them,
//! `bodies` (message data sealed at rest), `lifecycle` (retention, purging
//! a tenant or connection, export pages) and `copy` (every row into
//! another database). Below them: `error` (the one error type), `sql`
//! (statement building and the one fetch-and-decode helper), `pool` (the
//! `Store` handle: connecting, migrating, SQLite's write turn and
//! checkpoint) and `cache` (the hot-path cache of connections, tokens rows
//! and tenants).

mod activity;
mod audit;
pub mod bodies;
pub mod cache;
mod connections;
pub mod console;
pub mod copy;
mod error;
mod installations;
pub mod lifecycle;
mod migrations;
mod one_time;
mod pool;
pub mod queue;
mod secrets;
mod sql;
mod tenants;
mod tokens;

pub use crate::config::Backend;
pub use activity::ActivityEntry;
pub use audit::AuditEntry;
pub use connections::{ConnectionRecord, ConnectionUpdate};
pub use error::{StoreError, StoreResult};
pub use installations::{bot_token_field, refresh_token_field, Installation, SealedTokens};
pub use lifecycle::{Pruned, Retention};
pub use pool::{Store, WriteTurn};
pub use secrets::{field, SecretRecord};
pub use tenants::{NewTenant, TenantRecord};
pub use tokens::{NewToken, TokenMeta};
