//! One shared NAVER WORKS token per connection.
//!
//! - The source of truth is the token row and its sealed values in the store,
//!   shared by every replica. Each request reads the (small, indexed) token row
//!   anyway, to check the auth header against the current hash; when the row's
//!   generation matches the in-memory copy, the token is served from memory
//!   without decrypting anything. A deleted connection or rotated credentials
//!   (which drop the row) therefore take effect at once on every replica.
//! - A refresh is single-flight: within a process by a per-connection mutex,
//!   across processes by a lease on the token row, taken and committed before
//!   the call to NAVER WORKS and released when the new token is stored (no
//!   transaction is held across the network call). Everyone else waits for the
//!   row's generation to move, then reads the new token.
//! - A token is refreshed when less than the margin is left (the configured
//!   margin, or half the token's lifetime if that is shorter), through the
//!   refresh grant while the refresh token is valid, else a new JWT grant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::ids::ConnectionId;
use crate::domain::naverworks::{AuthMode, PrivateKeyPem};
use crate::domain::now_millis;
use crate::naverworks::token::{Credentials, IssuedToken, ServiceAccount, TokenClient, TokenError};
use crate::secrets::vault::Vault;
use crate::secrets::{random_bytes, Aad, OpenError};
use crate::store::{field, ConnectionRecord, NewToken, Store, StoreError, TokenMeta};

/// How much longer than a refresh lease a request waits for someone
/// else's refresh, so that a waiter outlives a holder that died.
const WAIT_PAST_LEASE_MS: i64 = 5_000;
/// Refresh tokens live 90 days (§1.4).
const REFRESH_LIFETIME_MS: i64 = 90 * 86_400 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored credential does not decrypt: {0}")]
    Secret(#[from] OpenError),
    #[error("the stored private key is unusable")]
    BadKey,
    #[error("timed out waiting for another replica's token refresh")]
    Timeout,
    #[error("the stored token is missing")]
    Missing,
    /// A user-account connection no one has authorised yet (§2).
    #[error("the connection is not authorised yet: a NAVER WORKS member must sign in and allow it (its authorize URL)")]
    NotAuthorized,
    /// A user-account connection whose refresh token NAVER WORKS refused
    /// (expired after about 90 days, or revoked): no JWT can stand in.
    #[error("the connection needs re-authorisation: its refresh token was refused, so a NAVER WORKS member must sign in and allow it again")]
    NeedsReauthorization,
}

/// A token as served to callers.
pub struct ServedToken {
    pub token_id: String,
    pub access_token: SecretString,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub scope: String,
    pub generation: i64,
}

struct Cached {
    token_id: String,
    generation: i64,
    access: SecretString,
    expires_at: i64,
    scope: String,
}

pub struct TokenService {
    store: Store,
    vault: Arc<Vault>,
    client: TokenClient,
    margin_ms: i64,
    /// How long a refresh lease holds before another replica may take it
    /// over (`token_lease_seconds`). A live holder never loses it: its
    /// token requests are cut off at three quarters of it.
    lease_ms: i64,
    /// This process, as a lease owner.
    owner: String,
    cache: RwLock<HashMap<ConnectionId, Cached>>,
    flights: Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl TokenService {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        client: TokenClient,
        (margin, lease): (Duration, Duration),
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        Self {
            store,
            vault,
            client,
            margin_ms: millis(margin),
            lease_ms: millis(lease).max(1000),
            owner: format!("replica-{}", crate::secrets::hex(&random_bytes(8))),
            cache: RwLock::default(),
            flights: Mutex::default(),
            metrics,
        }
    }

    /// Whether `meta` holds a token that may be served now without refreshing.
    fn fresh(&self, meta: &TokenMeta, now: i64) -> bool {
        let (Some(expires), issued) = (meta.expires_at, meta.issued_at.unwrap_or(0)) else {
            return false;
        };
        let margin = self.margin_ms.min((expires - issued) / 2).max(1000);
        expires - margin > now
    }

    /// A valid token for the connection: the shared one, or a new one if it is
    /// missing, near expiry, or `force` is set (then one newer than `meta`'s).
    pub async fn token(
        &self,
        connection: &ConnectionRecord,
        meta: Option<TokenMeta>,
        force: bool,
    ) -> Result<ServedToken, TokenFailure> {
        let started = now_millis();
        let start_generation = meta.as_ref().map_or(0, |m| m.generation);
        // A token whose refresh was refused is not served, however fresh:
        // the connection needs a person again (checked below).
        let acceptable = |m: &TokenMeta, now| {
            self.fresh(m, now)
                && (!force || m.generation > start_generation)
                && m.reauthorize_since.is_none()
        };
        let mut meta = meta;
        loop {
            let now = now_millis();
            if let Some(m) = meta.as_ref().filter(|m| acceptable(m, now)) {
                return self.serve(connection, m).await;
            }
            if now - started > self.lease_ms + WAIT_PAST_LEASE_MS {
                return Err(TokenFailure::Timeout);
            }
            let flight = self.flight(&connection.id);
            let guard = flight.lock().await;
            // Re-read after taking the lock: someone may have just refreshed.
            meta = self.store.token_meta(&connection.id).await?;
            let now = now_millis();
            if meta.as_ref().is_some_and(|m| acceptable(m, now)) {
                continue;
            }
            if AuthMode::of_details(&connection.details) == AuthMode::User {
                // Only a person can mint a user token: never a JWT.
                match meta.as_ref() {
                    Some(m) if m.reauthorize_since.is_some() => {
                        return Err(TokenFailure::NeedsReauthorization)
                    }
                    Some(m) if m.token_id.is_some() => {}
                    _ => return Err(TokenFailure::NotAuthorized),
                }
            }
            let seen_generation = meta.as_ref().map_or(0, |m| m.generation);
            if self
                .store
                .acquire_token_lease(
                    &connection.tenant_id,
                    &connection.id,
                    &self.owner,
                    (now, now + self.lease_ms),
                    seen_generation,
                )
                .await?
            {
                let current = meta.clone().unwrap_or_default();
                match self.refresh(connection, &current).await {
                    Ok(Some(served)) => return Ok(served),
                    // Lost the lease (credentials rotated meanwhile): start over.
                    Ok(None) => meta = self.store.token_meta(&connection.id).await?,
                    Err(e) => {
                        self.store
                            .release_token_lease(&connection.id, &self.owner)
                            .await?;
                        // Still-valid token and a transient failure: serve what we have.
                        let usable = current.expires_at.is_some_and(|exp| exp > now + 1000);
                        if !force
                            && usable
                            && matches!(&e, TokenFailure::Token(t) if t.is_transient())
                        {
                            tracing::warn!(connection_id = %connection.id, error.message = %e, "refresh failed; serving the current token");
                            return self.serve(connection, &current).await;
                        }
                        return Err(e);
                    }
                }
            } else {
                drop(guard);
                tokio::time::sleep(Duration::from_millis(50)).await;
                meta = self.store.token_meta(&connection.id).await?;
            }
        }
    }

    fn flight(&self, id: &ConnectionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flights.entry(id.clone()).or_default().clone()
    }

    /// Serves the token `meta` describes: from memory if this generation is
    /// cached, else from the store (decrypting once).
    async fn serve(
        &self,
        connection: &ConnectionRecord,
        meta: &TokenMeta,
    ) -> Result<ServedToken, TokenFailure> {
        {
            let cache = self
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let same = |c: &&Cached| meta.token_id.as_deref() == Some(c.token_id.as_str());
            if let Some(c) = cache.get(&connection.id).filter(same) {
                return Ok(ServedToken {
                    token_id: c.token_id.clone(),
                    access_token: c.access.clone(),
                    expires_at: c.expires_at,
                    scope: c.scope.clone(),
                    generation: c.generation,
                });
            }
        }
        let secrets = self.store.secrets(connection.id.as_str()).await?;
        let sealed = secrets
            .iter()
            .find(|s| s.field == field::ACCESS_TOKEN)
            .ok_or(TokenFailure::Missing)?;
        let access = self.vault.open_str(&sealed.sealed, sealed.aad())?;
        let served = ServedToken {
            token_id: meta.token_id.clone().ok_or(TokenFailure::Missing)?,
            access_token: access,
            expires_at: meta.expires_at.unwrap_or(0),
            scope: meta.scope.clone().unwrap_or_default(),
            generation: meta.generation,
        };
        self.remember(connection, &served);
        Ok(served)
    }

    fn remember(&self, connection: &ConnectionRecord, served: &ServedToken) {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Generations restart after a credential rotation, so a lower one
        // from a different token may replace a cached higher one.
        let stale = cache
            .get(&connection.id)
            .is_some_and(|c| c.token_id == served.token_id);
        if !stale {
            cache.insert(
                connection.id.clone(),
                Cached {
                    token_id: served.token_id.clone(),
                    generation: served.generation,
                    access: served.access_token.clone(),
                    expires_at: served.expires_at,
                    scope: served.scope.clone(),
                },
            );
        }
    }

    /// The connection's decrypted credentials and refresh token.
    pub async fn credentials(
        &self,
        connection: &ConnectionRecord,
    ) -> Result<(Credentials, Option<SecretString>), TokenFailure> {
        let secrets = self.store.secrets(connection.id.as_str()).await?;
        let open = |name: &str| -> Result<Option<SecretString>, TokenFailure> {
            match secrets.iter().find(|s| s.field == name) {
                Some(s) => Ok(Some(self.vault.open_str(&s.sealed, s.aad())?)),
                None => Ok(None),
            }
        };
        let client_secret = open(field::CLIENT_SECRET)?.ok_or(TokenFailure::BadKey)?;
        let service_account = match AuthMode::of_details(&connection.details) {
            AuthMode::User => None,
            AuthMode::ServiceAccount => {
                let pem = open(field::PRIVATE_KEY)?.ok_or(TokenFailure::BadKey)?;
                let private_key = PrivateKeyPem::parse(pem.expose_secret())
                    .and_then(|k| k.rsa_key())
                    .map_err(|_| TokenFailure::BadKey)?;
                Some(ServiceAccount {
                    id: connection.service_account.clone(),
                    private_key,
                })
            }
        };
        let refresh = open(field::REFRESH_TOKEN)?;
        Ok((
            Credentials {
                client_id: connection.client_id.clone(),
                client_secret,
                service_account,
                scope: connection.scope.clone(),
            },
            refresh,
        ))
    }

    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    /// Mints a token while holding the lease; `Ok(None)` if the lease was lost.
    async fn refresh(
        &self,
        connection: &ConnectionRecord,
        current: &TokenMeta,
    ) -> Result<Option<ServedToken>, TokenFailure> {
        let (creds, refresh_token) = self.credentials(connection).await?;
        let now = now_millis();
        let refresh_valid = current.refresh_expires_at.is_some_and(|t| t > now);
        // Bounded well inside the lease, so that no other replica takes it
        // over while this one still waits for NAVER WORKS.
        let deadline = Duration::from_millis(u64::try_from(self.lease_ms * 3 / 4).unwrap_or(1000));
        let minted = tokio::time::timeout(
            deadline,
            self.mint(
                connection,
                &creds,
                refresh_token.filter(|_| refresh_valid),
                now,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(TokenError::Unavailable("no answer within the refresh lease".to_owned()).into())
        });
        let (issued, via_refresh) = match minted {
            Ok(minted) => {
                self.metrics
                    .tokens
                    .inc(if minted.1 { "refreshed" } else { "issued" });
                minted
            }
            Err(TokenFailure::NeedsReauthorization) => {
                self.metrics.tokens.inc("failed");
                tracing::warn!(connection_id = %connection.id, "user token's refresh refused; the connection needs re-authorisation");
                self.store
                    .mark_reauthorize(&connection.id, &self.owner, now_millis())
                    .await?;
                return Err(TokenFailure::NeedsReauthorization);
            }
            Err(e) => {
                self.metrics.tokens.inc("failed");
                return Err(e);
            }
        };
        // Expiry counted from before the request: never later than the truth.
        let stored = self
            .store_issued(connection, &issued, via_refresh, now)
            .await?;
        let Some((token_id, generation)) = stored else {
            return Ok(None);
        };
        tracing::info!(connection_id = %connection.id, generation, via_refresh, "new NAVER WORKS token");
        let served = ServedToken {
            token_id,
            access_token: issued.access_token,
            expires_at: now + issued.expires_in * 1000,
            scope: issued.scope,
            generation,
        };
        self.remember(connection, &served);
        Ok(Some(served))
    }

    /// One token request: the refresh grant when there is a valid refresh
    /// token, falling back to a new JWT grant (a user-account connection has
    /// none: then it needs re-authorisation). `true` when it was a refresh.
    async fn mint(
        &self,
        connection: &ConnectionRecord,
        creds: &Credentials,
        refresh_token: Option<SecretString>,
        now: i64,
    ) -> Result<(IssuedToken, bool), TokenFailure> {
        if let Some(rt) = refresh_token {
            match self.client.refresh_grant(creds, &rt).await {
                Ok(issued) => return Ok((issued, true)),
                Err(e) if e.is_transient() => return Err(e.into()),
                // A user token's client credentials refused: re-authorising
                // would not help; correcting the Client Secret does.
                Err(e @ TokenError::InvalidClient) if creds.service_account.is_none() => {
                    return Err(e.into())
                }
                Err(e) => {
                    tracing::info!(connection_id = %connection.id, error.code = e.code(), "refresh grant refused");
                }
            }
        }
        let Some(account) = &creds.service_account else {
            return Err(TokenFailure::NeedsReauthorization);
        };
        Ok((
            self.client.jwt_grant(creds, account, now / 1000).await?,
            false,
        ))
    }

    /// The token's row: access and refresh tokens sealed to this
    /// connection, the times in milliseconds.
    fn seal(
        &self,
        connection: &ConnectionRecord,
        issued: &IssuedToken,
        now: i64,
        refresh_expires_at: Option<i64>,
    ) -> NewToken {
        let aad = |field| Aad {
            tenant: connection.tenant_id.as_str(),
            connection: Some(connection.id.as_str()),
            field,
        };
        NewToken {
            access: self
                .vault
                .seal(&issued.access_token, aad(field::ACCESS_TOKEN)),
            refresh: issued
                .refresh_token
                .as_ref()
                .map(|rt| self.vault.seal(rt, aad(field::REFRESH_TOKEN))),
            issued_at: now,
            expires_at: now + issued.expires_in * 1000,
            refresh_expires_at,
            scope: issued.scope.clone(),
        }
    }

    async fn store_issued(
        &self,
        connection: &ConnectionRecord,
        issued: &IssuedToken,
        via_refresh: bool,
        now: i64,
    ) -> Result<Option<(String, i64)>, TokenFailure> {
        // A new refresh token (JWT grant, or rotation) lives 90 days; a
        // refresh without rotation keeps the old one's expiry.
        let refresh_expires_at =
            (issued.refresh_token.is_some() || !via_refresh).then_some(now + REFRESH_LIFETIME_MS);
        let token = self.seal(connection, issued, now, refresh_expires_at);
        Ok(self
            .store
            .store_token(&connection.tenant_id, &connection.id, &self.owner, &token)
            .await?)
    }

    /// Stores the tokens of a person's authorisation (the OAuth callback),
    /// replacing whatever the connection had, and serves them at once.
    pub async fn authorized(
        &self,
        connection: &ConnectionRecord,
        issued: IssuedToken,
        now: i64,
    ) -> Result<ServedToken, TokenFailure> {
        let refresh_expires_at = issued
            .refresh_token
            .is_some()
            .then_some(now + REFRESH_LIFETIME_MS);
        let token = self.seal(connection, &issued, now, refresh_expires_at);
        let (token_id, generation) = self
            .store
            .put_authorized_token(&connection.tenant_id, &connection.id, &token)
            .await?;
        self.metrics.tokens.inc("authorized");
        let served = ServedToken {
            token_id,
            access_token: issued.access_token,
            expires_at: token.expires_at,
            scope: issued.scope,
            generation,
        };
        self.remember(connection, &served);
        Ok(served)
    }
}
