//! Message data at rest: a callback's raw body (`inbound_events.raw`) and a
//! message's content (`outbound_messages.content`) are sealed with the vault,
//! like credentials, each bound (AAD) to its tenant, connection and row; a
//! row's body copied to another row does not open.
//!
//! The sealed form is text, so that one form fits both columns (BLOB/BYTEA
//! and TEXT): [`PREFIX`], the key id, then base64 of the nonce and the
//! ciphertext. A body that does not start with the prefix is plaintext —
//! written with `seal_message_data` off, or before sealing existed — and is
//! read as it is; JSON and form bodies never start with a control character.
//!
//! Bodies are sealed before they reach the write (the webhook's request
//! task, the worker's task) and opened when rows are read back, so the
//! callers of the store see plaintext only and SQLite's single writer spends
//! no time on AES. `botgate keys rotate` re-seals them too
//! ([`Store::reseal_bodies`]).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::error::{StoreError, StoreResult};
use super::queue::{InboundEvent, NewInbound, NewOutbound, OutboundMessage, Queue, INBOX, OUTBOX};
use super::sql::{decode_all, FromRow, Query};
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::secrets::vault::Vault;
use crate::secrets::{Aad, OpenError, Sealed, NONCE_LEN};

/// The start of every sealed body: version 1.
pub const PREFIX: &str = "\u{1}bgs1:";

/// The vault that seals bodies (`None`: this store writes plaintext), and
/// whether it seals new ones.
#[derive(Clone, Default)]
pub(crate) struct Bodies {
    vault: Option<Arc<Vault>>,
    seal: bool,
}

/// Which body of which row: its AAD.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    tenant: &'a str,
    connection: &'a str,
    /// `raw` or `content`.
    column: &'static str,
    id: &'a str,
}

impl<'a> Place<'a> {
    /// A callback's raw body.
    fn raw(tenant: &'a TenantId, connection: &'a ConnectionId, id: &'a str) -> Self {
        Place {
            tenant: tenant.as_str(),
            connection: connection.as_str(),
            column: "raw",
            id,
        }
    }

    /// A message's content.
    fn content(tenant: &'a TenantId, connection: &'a ConnectionId, id: &'a str) -> Self {
        Place {
            tenant: tenant.as_str(),
            connection: connection.as_str(),
            column: "content",
            id,
        }
    }

    fn field(&self) -> String {
        format!("{}:{}", self.column, self.id)
    }
}

fn seal(vault: &Vault, place: Place<'_>, plain: &[u8]) -> String {
    let field = place.field();
    let sealed = vault.seal_bytes(
        plain,
        Aad {
            tenant: place.tenant,
            connection: Some(place.connection),
            field: &field,
        },
    );
    let mut blob = sealed.nonce;
    blob.extend_from_slice(&sealed.ciphertext);
    format!("{PREFIX}{}:{}", sealed.key_id, B64.encode(blob))
}

/// The key id of a sealed body, `None` for plaintext.
fn key_of(stored: &[u8]) -> Option<&str> {
    let rest = stored.strip_prefix(PREFIX.as_bytes())?;
    let end = rest.iter().position(|&b| b == b':')?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

fn open(vault: Option<&Vault>, place: Place<'_>, stored: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
        return Ok(None);
    };
    let unreadable = |why: String| {
        StoreError::Other(anyhow::anyhow!(
            "the {} of row {} cannot be opened: {why}",
            place.column,
            place.id
        ))
    };
    let Some(vault) = vault else {
        return Err(unreadable(
            "it is sealed and this process has no master key".into(),
        ));
    };
    let text =
        std::str::from_utf8(rest).map_err(|_| unreadable(OpenError::Malformed.to_string()))?;
    let (key_id, data) = text
        .split_once(':')
        .ok_or_else(|| unreadable(OpenError::Malformed.to_string()))?;
    let blob = B64
        .decode(data)
        .map_err(|_| unreadable(OpenError::Malformed.to_string()))?;
    if blob.len() < NONCE_LEN {
        return Err(unreadable(OpenError::Malformed.to_string()));
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    let sealed = Sealed {
        key_id: key_id.to_owned(),
        nonce: nonce.to_vec(),
        ciphertext: ciphertext.to_vec(),
    };
    let field = place.field();
    let plain = vault
        .open(
            &sealed,
            Aad {
                tenant: place.tenant,
                connection: Some(place.connection),
                field: &field,
            },
        )
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(Some(plain.to_vec()))
}

impl Store {
    /// This store seals the bodies it is given (`seal`) with `vault`, and
    /// opens sealed ones with it either way.
    #[must_use]
    pub fn with_bodies(mut self, vault: Arc<Vault>, seal: bool) -> Self {
        self.bodies = Bodies {
            vault: Some(vault),
            seal,
        };
        self
    }

    /// The vault to seal `body` with: with sealing on, always; with it
    /// off, only a body that begins like a sealed one (it would be taken
    /// for one when read back).
    fn sealer_for(&self, body: &[u8]) -> Option<&Vault> {
        let looks_sealed = body.starts_with(PREFIX.as_bytes());
        self.bodies
            .vault
            .as_deref()
            .filter(|_| self.bodies.seal || looks_sealed)
    }

    /// A callback with its raw body in the form it is stored in: sealed, or
    /// as it is with sealing off. Called once per callback (the webhook's
    /// `Ingest::submit`).
    pub fn seal_inbound(&self, mut event: NewInbound) -> NewInbound {
        if let Some(vault) = self.sealer_for(&event.raw) {
            let place = Place::raw(&event.tenant_id, &event.connection_id, &event.id);
            event.raw = seal(vault, place, &event.raw).into_bytes();
        }
        event
    }

    /// Messages with their content in the form it is stored in (called once
    /// per message, before its write).
    pub(crate) fn seal_outbound(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        messages: &[NewOutbound],
    ) -> Vec<NewOutbound> {
        messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if let Some(vault) = self.sealer_for(m.content.as_bytes()) {
                    let place = Place::content(tenant, connection, &m.id);
                    m.content = seal(vault, place, m.content.as_bytes());
                }
                m
            })
            .collect()
    }

    /// `botgate keys rotate`: re-seals, in batches along each queue's key,
    /// every body sealed under a key other than the vault's current one
    /// (each replaced only if unchanged meanwhile). Returns (re-sealed,
    /// unreadable).
    pub async fn reseal_bodies(&self) -> StoreResult<(u64, u64)> {
        let Some(vault) = self.bodies.vault.clone() else {
            return Ok((0, 0));
        };
        let current = vault.ring().current().id().to_owned();
        let (mut resealed, mut unreadable) = (0, 0);
        for (table, column) in [("inbound_events", "raw"), ("outbound_messages", "content")] {
            let mut after = 0_i64;
            loop {
                let sql = format!(
                    "SELECT seq, id, tenant_id, connection_id, {column} AS body FROM {table} \
                     WHERE seq > $1 ORDER BY seq LIMIT 500"
                );
                let rows = sqlx::query(&sql).bind(after).fetch_all(&self.pool).await?;
                let Some(last) = rows.last() else { break };
                after = last.try_get("seq")?;
                for row in &rows {
                    let body: Vec<u8> = if column == "raw" {
                        row.try_get("body")?
                    } else {
                        row.try_get::<String, _>("body")?.into_bytes()
                    };
                    if key_of(&body).is_none_or(|k| k == current) {
                        continue;
                    }
                    let (seq, id, tenant, connection): (i64, String, String, String) = (
                        row.try_get("seq")?,
                        row.try_get("id")?,
                        row.try_get("tenant_id")?,
                        row.try_get("connection_id")?,
                    );
                    let place = Place {
                        tenant: &tenant,
                        connection: &connection,
                        column,
                        id: &id,
                    };
                    let Ok(Some(plain)) = open(Some(&vault), place, &body) else {
                        tracing::error!(
                            table,
                            seq,
                            "a sealed body cannot be opened with any key in the ring"
                        );
                        unreadable += 1;
                        continue;
                    };
                    let again = seal(&vault, place, &plain);
                    let _turn = self.write_turn().await;
                    let sql = format!(
                        "UPDATE {table} SET {column} = $1 WHERE seq = $2 AND {column} = $3"
                    );
                    let query = sqlx::query(&sql);
                    let query = if column == "raw" {
                        query.bind(again.into_bytes()).bind(seq).bind(body)
                    } else {
                        query
                            .bind(again)
                            .bind(seq)
                            .bind(String::from_utf8(body).unwrap_or_default())
                    };
                    let done = query.execute(&self.writer).await?;
                    resealed += done.rows_affected();
                }
            }
        }
        Ok((resealed, unreadable))
    }
}

/// A queue row (an event of the inbox, a message of the outbox) whose body
/// is stored sealed: decoded, then opened. Every read of the store opens
/// its rows, except the rows handed to this process's workers as they are
/// written (`queue::handoff`): those the worker opens as it takes them, off
/// the write path.
pub trait Stored: FromRow {
    /// The queue its rows are claimed from.
    #[doc(hidden)]
    const QUEUE: &'static Queue;
    /// Its body's column and row (the body's AAD), and the body as read.
    #[doc(hidden)]
    fn body(&self) -> (Place<'_>, &[u8]);
    /// Puts the opened body in place of the sealed one.
    #[doc(hidden)]
    fn set_body(&mut self, plain: Vec<u8>) -> StoreResult<()>;

    /// The row's id (`evt_…`, `msg_…`).
    fn id(&self) -> &str {
        self.body().0.id
    }

    /// The rows with their bodies opened (once: an opened body is not
    /// opened again).
    fn opened(store: &Store, mut rows: Vec<Self>) -> StoreResult<Vec<Self>> {
        for row in &mut rows {
            let (place, stored) = row.body();
            if let Some(plain) = open(store.bodies.vault.as_deref(), place, stored)? {
                row.set_body(plain)?;
            }
        }
        Ok(rows)
    }
}

impl Stored for InboundEvent {
    const QUEUE: &'static Queue = &INBOX;
    fn body(&self) -> (Place<'_>, &[u8]) {
        let place = Place::raw(&self.tenant_id, &self.connection_id, &self.id);
        (place, &self.raw)
    }
    fn set_body(&mut self, plain: Vec<u8>) -> StoreResult<()> {
        self.raw = plain;
        Ok(())
    }
}

impl Stored for OutboundMessage {
    const QUEUE: &'static Queue = &OUTBOX;
    fn body(&self) -> (Place<'_>, &[u8]) {
        let place = Place::content(&self.tenant_id, &self.connection_id, &self.id);
        (place, self.content.as_bytes())
    }
    fn set_body(&mut self, plain: Vec<u8>) -> StoreResult<()> {
        self.content = String::from_utf8(plain).map_err(|_| {
            StoreError::Other(anyhow::anyhow!(
                "the content of message {} is not UTF-8",
                self.id
            ))
        })?;
        Ok(())
    }
}

impl Store {
    /// Queue rows as read, decoded and opened.
    pub(crate) fn read_rows<T: Stored>(&self, rows: &[AnyRow]) -> StoreResult<Vec<T>> {
        T::opened(self, decode_all(rows)?)
    }

    /// Runs `query` on the pool; its queue rows, decoded and opened.
    pub(crate) async fn fetch_rows<T: Stored>(&self, query: Query<'_>) -> StoreResult<Vec<T>> {
        let rows = query.fetch_all(&self.pool).await?;
        self.read_rows(&rows)
    }
}
