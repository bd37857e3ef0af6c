//! Who is calling: the admin, or one tenant (by its API key), and what each
//! may reach. A tenant key reaches only that tenant's resources; anything
//! else is answered 404, as if it did not exist, so ids do not leak. The
//! JSON API's extractor (`routes::extract`) and the console's sign-in both
//! resolve a key here.

use crate::domain::ids::{ConnectionId, TenantId};
use crate::error::ApiError;
use crate::secrets::hashing::{hash_token, verify_token, API_KEY_PREFIX};
use crate::state::AppState;
use crate::store::{ConnectionRecord, TenantRecord};

pub enum Caller {
    Admin,
    Tenant(Box<TenantRecord>),
}

impl Caller {
    /// Whose key or token this is, if anyone's.
    pub async fn of_token(state: &AppState, token: &str) -> Result<Option<Self>, ApiError> {
        if token.starts_with(API_KEY_PREFIX) {
            // 256-bit random keys: their hash is a safe lookup key.
            let tenant = state
                .store
                .tenant_by_api_key_hash(&hash_token(token), crate::domain::now_millis())
                .await?;
            return Ok(tenant.map(|t| Caller::Tenant(Box::new(t))));
        }
        Ok(verify_token(token, &state.admin_token_hash).then_some(Caller::Admin))
    }

    /// Whether this caller came with its tenant's replaced API key (one
    /// still valid for its grace, see `tenants::replace_api_key`): it may
    /// use the API, but not replace the key again nor sign in to the
    /// console, so that a leaked key cannot take the tenant back.
    pub fn holds_replaced_key(&self, token: &str) -> bool {
        matches!(self, Caller::Tenant(t) if !verify_token(token, &t.api_key_hash))
    }

    /// The tenant named in the path, if this caller may act on it.
    pub async fn tenant(&self, state: &AppState, raw_id: &str) -> Result<TenantRecord, ApiError> {
        const NOT_FOUND: ApiError = ApiError::NotFound("no such tenant");
        let id = TenantId::parse(raw_id).ok_or(NOT_FOUND)?;
        match self {
            Caller::Tenant(tenant) if tenant.id == id => Ok(TenantRecord::clone(tenant)),
            Caller::Tenant(_) => Err(NOT_FOUND),
            Caller::Admin => state.store.tenant(&id).await?.ok_or(NOT_FOUND),
        }
    }

    /// The connection named in the path, if this caller may act on its
    /// tenant and it belongs to that tenant.
    pub async fn connection(
        &self,
        state: &AppState,
        tenant: &str,
        connection: &str,
    ) -> Result<ConnectionRecord, ApiError> {
        const NOT_FOUND: ApiError = ApiError::NotFound("no such connection");
        let tenant = self.tenant(state, tenant).await?;
        let id = ConnectionId::parse(connection).ok_or(NOT_FOUND)?;
        state
            .store
            .connection(&tenant.id, &id)
            .await?
            .ok_or(NOT_FOUND)
    }

    /// A connection named by its id alone (the send API's paths): the
    /// admin's, or the calling tenant's own.
    pub async fn connection_by_id(
        &self,
        state: &AppState,
        raw_id: &str,
    ) -> Result<ConnectionRecord, ApiError> {
        const NOT_FOUND: ApiError = ApiError::NotFound("no such connection");
        let id = ConnectionId::parse(raw_id).ok_or(NOT_FOUND)?;
        let record = state.store.connection_by_id(&id).await?.ok_or(NOT_FOUND)?;
        match self {
            Caller::Admin => Ok(record),
            Caller::Tenant(t) if t.id == record.tenant_id => Ok(record),
            Caller::Tenant(_) => Err(NOT_FOUND),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden("only the admin token may do this")),
        }
    }
}
