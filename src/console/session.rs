//! Who is using the console, in which language, and the guard on every form.
//!
//! Sign-in exchanges the tenant API key (or the admin token) for a session:
//! a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie scoped to
//! `/console` (`Secure` when `public_url` is https), of which only the SHA-256
//! is stored. Sessions end on sign-out, after `console_session_idle_minutes`
//! without a request, and at the latest `console_session_max_hours` after
//! sign-in. Every form carries a CSRF token derived from the session token
//! (SHA-256 with a fixed label), which a page on another site cannot read or
//! compute; the sign-in form, before any session exists, uses a double-submit
//! cookie instead.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::i18n::Lang;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::secrets::hashing::hash_token;
use crate::secrets::hex;
use crate::state::AppState;
use crate::store::console::Role;
use crate::store::TenantRecord;

pub const SESSION_COOKIE: &str = "botgate_session";
pub const SIGN_IN_COOKIE: &str = "botgate_signin";
pub const LANG_COOKIE: &str = "botgate_lang";
pub const PATH: &str = "/console";

/// A signed-in browser.
pub struct Session {
    pub token_hash: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub role: Role,
    /// The tenant signed in, or the one an operator opened.
    pub tenant: Option<TenantRecord>,
}

/// The CSRF token of a session (or of a sign-in form): only someone holding
/// the cookie value can compute it.
pub fn csrf_of(token: &str) -> String {
    hex(&Sha256::digest(format!("botgate console form\0{token}")))
}

pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Everything a console handler needs about the request.
pub struct Ctx {
    pub state: web::Data<AppState>,
    pub lang: Lang,
    /// Set when `?lang=` chose the language: remembered in a cookie.
    lang_chosen: bool,
    pub session: Option<Session>,
    /// The page the language switch reloads (a GET page, also after a form).
    pub path: String,
    /// The sign-in form's double-submit value, if the browser has one.
    pub sign_in_nonce: Option<String>,
    pub secure: bool,
    /// The client's address, as the rate limiter sees it.
    pub addr: std::net::IpAddr,
}

impl Ctx {
    /// Who is making a change through this page, for the activity log.
    pub fn actor(&self) -> crate::service::activity::Actor {
        let who = match self.session.as_ref().map(|s| s.role) {
            Some(Role::Admin) => "admin",
            _ => "tenant",
        };
        crate::service::activity::Actor::new(who, "console", self.addr)
    }
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let query_lang =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("lang").and_then(|l| Lang::parse(l)));
        let cookie_lang = req.cookie(LANG_COOKIE).and_then(|c| Lang::parse(c.value()));
        let accept = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language);
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        let sign_in_nonce = req.cookie(SIGN_IN_COOKIE).map(|c| c.value().to_owned());
        let path = switch_target(req);
        let trusted = state
            .as_ref()
            .map(|s| s.settings.trusted_proxies.as_slice());
        let peer = req.peer_addr().map(|a| a.ip());
        let addr = crate::state::limiter::client(peer, req.headers(), trusted.unwrap_or_default());
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let session = match token {
                Some(token) => load(&state, &token).await?,
                None => None,
            };
            Ok(Ctx {
                secure: state.settings.public_url.scheme() == "https",
                state,
                lang: query_lang.or(cookie_lang).or(accept).unwrap_or(Lang::En),
                lang_chosen: query_lang.is_some(),
                session,
                path,
                sign_in_nonce,
                addr,
            })
        })
    }
}

/// The GET page showing what a request showed: itself, or for a form post
/// rendered in place, the page the form is on.
fn switch_target(req: &HttpRequest) -> String {
    let path = req.path();
    if req.method() != actix_web::http::Method::POST {
        return path.to_owned();
    }
    match path.strip_suffix("/test") {
        Some(connection) => connection.to_owned(),
        None if path == "/console/connections" => "/console/connections/new".to_owned(),
        None => path.to_owned(),
    }
}

pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The live session of a cookie value, its idle timeout pushed forward.
async fn load(state: &AppState, token: &str) -> Result<Option<Session>, ApiError> {
    let now = now_millis();
    let hash = hash_token(token);
    let Some(session) = state.store.session(&hash, now).await? else {
        return Ok(None);
    };
    let wanted = (now + millis(state.settings.console_idle))
        .min(session.created_at + millis(state.settings.console_max));
    // At most one write a minute per session.
    if wanted - session.expires_at > 60_000 {
        state.store.extend_session(&hash, wanted).await?;
    }
    let tenant = match &session.tenant_id {
        Some(id) => state.store.tenant(id).await?,
        None => None,
    };
    Ok(Some(Session {
        token_hash: hash,
        csrf: csrf_of(token),
        role: session.role,
        tenant,
    }))
}

impl Ctx {
    pub fn cookie<'c>(&self, name: &'c str, value: String) -> Cookie<'c> {
        Cookie::build(name, value)
            .path(PATH)
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .finish()
    }

    pub fn removal<'c>(&self, name: &'c str) -> Cookie<'c> {
        let mut cookie = self.cookie(name, String::new());
        cookie.make_removal();
        cookie
    }

    /// A response builder that also remembers a language chosen by `?lang=`.
    pub fn builder(&self, status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
        let mut builder = HttpResponse::build(status);
        if self.lang_chosen {
            let mut cookie = self.cookie(LANG_COOKIE, self.lang.code().to_owned());
            cookie.set_max_age(time::Duration::days(365));
            builder.cookie(cookie);
        }
        builder
    }

    /// 303 to another console page (after a form, or to sign in).
    pub fn redirect(&self, location: &str) -> HttpResponse {
        self.builder(actix_web::http::StatusCode::SEE_OTHER)
            .insert_header((header::LOCATION, location.to_owned()))
            .finish()
    }

    /// Whether a posted form carries this session's CSRF token.
    pub fn form_is_genuine(&self, form: &std::collections::HashMap<String, String>) -> bool {
        match (&self.session, form.get("csrf")) {
            (Some(session), Some(sent)) => same(&session.csrf, sent),
            _ => false,
        }
    }
}
