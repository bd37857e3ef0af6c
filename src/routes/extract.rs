//! The management API's caller, from its `Authorization: Bearer` header:
//! the admin token or a tenant's API key, resolved by [`Caller::of_token`].

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::error::ApiError;
use crate::secrets::hashing::API_KEY_PREFIX;
use crate::service::activity::Actor;
pub use crate::service::auth::Caller;
use crate::state::limiter::{client, Attempt, Family};
use crate::state::AppState;
use crate::store::{ConnectionRecord, TenantRecord};

/// A list's page as asked: `?limit=` (1 to 1,000, 100 when absent) and
/// `?after=` (an id `parse` takes; `what` names its kind for the 422).
pub(super) struct Page<I> {
    pub limit: i64,
    pub after: Option<I>,
}

impl<I> Page<I> {
    pub fn parse(
        limit: Option<&str>,
        after: Option<&str>,
        parse: fn(&str) -> Option<I>,
        what: &'static str,
    ) -> Result<Self, ApiError> {
        Self::parse_cursor(limit, ("after", after), parse, what)
    }

    /// As [`Page::parse`], the cursor's query parameter named `cursor.0`
    /// (e.g. `before` for a list newest first).
    pub fn parse_cursor(
        limit: Option<&str>,
        (name, after): (&'static str, Option<&str>),
        parse: fn(&str) -> Option<I>,
        what: &'static str,
    ) -> Result<Self, ApiError> {
        let limit = match limit.map(str::parse::<i64>) {
            None => 100,
            Some(Ok(n)) if (1..=1000).contains(&n) => n,
            Some(_) => {
                return Err(ApiError::validation(
                    "limit",
                    "must be a number from 1 to 1000",
                ))
            }
        };
        let after = match after {
            None => None,
            Some(id) => Some(parse(id).ok_or_else(|| ApiError::validation(name, what))?),
        };
        Ok(Self { limit, after })
    }

    /// The `after` of the next page: the last id of a full one.
    pub fn next<T>(&self, rows: &[T], id: impl Fn(&T) -> &str) -> Option<String> {
        let full = i64::try_from(rows.len()).is_ok_and(|n| n == self.limit);
        full.then(|| rows.last().map(|r| id(r).to_owned()))
            .flatten()
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case).
pub(super) fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Resolving<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        // Wrong tokens are counted per client, and slowed then refused.
        let attempt = state.as_ref().map(|s| {
            let ip = client(
                req.peer_addr().map(|a| a.ip()),
                req.headers(),
                &s.settings.trusted_proxies,
            );
            Attempt::new(ip, Family::Api, None)
        });
        Box::pin(async move {
            let (Some(state), Some(attempt)) = (state, attempt) else {
                return Err(ApiError::Internal(anyhow::anyhow!("no app state")));
            };
            if let Some(retry) = state.limiter.blocked(&attempt) {
                return Err(ApiError::Throttled(retry));
            }
            let caller = match token {
                Some(token) => Caller::of_token(&state, &token).await?,
                None => None,
            };
            match caller {
                Some(caller) => Ok(caller),
                None => {
                    let delay = state.limiter.failure(&attempt);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Err(ApiError::Unauthorized)
                }
            }
        })
    }
}

/// The tenant named by the path's `{tenant}`, if the caller may act on it
/// (else 404, as if it did not exist).
pub struct PathTenant(pub TenantRecord);

/// The connection named by the path's `{connection}` (under `{tenant}`
/// when the path has one), if the caller may act on it (else 404).
pub struct PathConnection(pub ConnectionRecord);

type Resolving<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// The path's `{tenant}` (if it has one) and `{connection}`.
struct Segments {
    tenant: Option<String>,
    connection: String,
}

/// Resolves the caller, then `find`s what the path names for it with the
/// app state: the one preamble of the path-resolving extractors.
fn resolve<T: 'static>(
    req: &HttpRequest,
    payload: &mut actix_web::dev::Payload,
    find: fn(Caller, web::Data<AppState>, Segments) -> Resolving<T>,
) -> Resolving<T> {
    let caller = Caller::from_request(req, payload);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let segment = |name| req.match_info().get(name).map(str::to_owned);
    let segments = Segments {
        tenant: segment("tenant"),
        connection: segment("connection").unwrap_or_default(),
    };
    Box::pin(async move {
        let caller = caller.await?;
        let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
        find(caller, state, segments).await
    })
}

/// The extractor's `FromRequest`: [`resolve`] with its type's `find`.
macro_rules! resolved_from_path {
    ($($extractor:ident),*) => {$(
        impl FromRequest for $extractor {
            type Error = ApiError;
            type Future = Resolving<Self>;

            fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
                resolve(req, payload, Self::find)
            }
        }
    )*};
}

resolved_from_path!(PathTenant, PathConnection);

impl PathTenant {
    fn find(caller: Caller, state: web::Data<AppState>, path: Segments) -> Resolving<Self> {
        Box::pin(async move {
            let tenant = path.tenant.unwrap_or_default();
            Ok(Self(caller.tenant(&state, &tenant).await?))
        })
    }
}

impl PathConnection {
    fn find(caller: Caller, state: web::Data<AppState>, path: Segments) -> Resolving<Self> {
        Box::pin(async move {
            let record = match &path.tenant {
                Some(tenant) => caller.connection(&state, tenant, &path.connection).await?,
                None => caller.connection_by_id(&state, &path.connection).await?,
            };
            Ok(Self(record))
        })
    }
}

/// Who is making a change through the API, for the activity log: the
/// admin or a tenant (by the bearer token's kind; the route's other
/// extractors have checked the token itself), and the client's address.
pub struct ApiActor(pub Actor);

impl FromRequest for ApiActor {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let who = match bearer(req) {
            Some(token) if token.starts_with(API_KEY_PREFIX) => "tenant",
            _ => "admin",
        };
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.trusted_proxies.as_slice())
            .unwrap_or_default();
        let addr = client(req.peer_addr().map(|a| a.ip()), req.headers(), trusted);
        std::future::ready(Ok(Self(Actor::new(who, "api", addr))))
    }
}
