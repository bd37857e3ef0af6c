//! Who is calling the management API: the admin, or one tenant (by its API
//! key). A tenant key reaches only that tenant's resources; anything else is
//! answered 404, as if it did not exist, so ids do not leak.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::domain::ids::TenantId;
use crate::error::ApiError;
use crate::secrets::hashing::{hash_token, verify_token, API_KEY_PREFIX};
use crate::startup::AppState;
use crate::store::TenantRecord;

pub enum Caller {
    Admin,
    Tenant(TenantRecord),
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            Caller::of_token(&state, &token)
                .await?
                .ok_or(ApiError::Unauthorized)
        })
    }
}

impl Caller {
    /// Whose key or token this is, if anyone's. Also used by the console's
    /// sign-in.
    pub async fn of_token(state: &AppState, token: &str) -> Result<Option<Self>, ApiError> {
        if token.starts_with(API_KEY_PREFIX) {
            // 256-bit random keys: their hash is a safe lookup key.
            let tenant = state
                .store
                .tenant_by_api_key_hash(&hash_token(token))
                .await?;
            return Ok(tenant.map(Caller::Tenant));
        }
        Ok(verify_token(token, &state.admin_token_hash).then_some(Caller::Admin))
    }
}

impl Caller {
    /// The tenant named in the path, if this caller may act on it.
    pub async fn tenant(&self, state: &AppState, raw_id: &str) -> Result<TenantRecord, ApiError> {
        const NOT_FOUND: ApiError = ApiError::NotFound("no such tenant");
        let id = TenantId::parse(raw_id).ok_or(NOT_FOUND)?;
        match self {
            Caller::Tenant(tenant) if tenant.id == id => Ok(tenant.clone()),
            Caller::Tenant(_) => Err(NOT_FOUND),
            Caller::Admin => state.store.tenant(&id).await?.ok_or(NOT_FOUND),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden("only the admin token may do this")),
        }
    }
}
