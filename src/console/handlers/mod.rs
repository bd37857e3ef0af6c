//! The console's pages and forms. Every change goes through the same
//! functions as the management API (validation, sealing, rotation, replay),
//! so the console cannot accept what the API refuses.
//!
//! What every page shares is here (stopping early, sessions, forms); the
//! pages are in [`sign_in`], [`tenant_pages`] (an operator's tenants, a
//! tenant's engine) and [`connection_pages`].

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use maud::{html, Markup};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::i18n::{Lang, T};
use super::pages::{self, alert, copyable, csrf, layout, listing, notice, status_badge, when};
use super::session::{csrf_of, millis, same, Ctx, Session, SESSION_COOKIE, SIGN_IN_COOKIE};
use crate::channels::Channel;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::domain::naverworks::AuthMode;
use crate::domain::tenant::TenantName;
use crate::domain::{now_millis, FieldError};
use crate::error::ApiError;
use crate::secrets::hashing::{generate_token, hash_token};
use crate::service::auth::Caller;
use crate::service::checks::{run_checks, Check};
use crate::service::connections::{self, ConnectionBody, ConnectionView};
use crate::service::engine::{self, EngineTest, EngineTestBody};
use crate::service::slack;
use crate::service::status_hook::{self, StatusHookBody, StatusHookTest};
use crate::service::tenants::{self, EngineBody};
use crate::service::{events, messages, oauth};
use crate::store::console::{ConsoleSession, Role};
use crate::store::{ConnectionRecord, StoreError, TenantRecord};

mod connection_pages;
mod sign_in;
mod tenant_pages;

pub use connection_pages::*;
pub use sign_in::*;
pub use tenant_pages::*;

pub(super) type Form = web::Form<HashMap<String, String>>;

/// Why a handler stops early: a response to send as it is, or an error to
/// show as a page.
pub enum Stop {
    Reply(Box<HttpResponse>),
    Error(ApiError),
}

impl Stop {
    fn reply(response: HttpResponse) -> Self {
        Self::Reply(Box::new(response))
    }
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Self::Error(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Error(e.into())
    }
}

pub(super) type Page = Result<HttpResponse, Stop>;

/// Sends a page, or the page of why it could not be made.
pub(super) fn finish(ctx: &Ctx, page: Page) -> HttpResponse {
    match page {
        Ok(response) => response,
        Err(Stop::Reply(response)) => *response,
        Err(Stop::Error(e)) => {
            let status = e.status_code();
            // Logs internal errors (with their cause chain, never a secret).
            drop(e.error_response());
            let (title, text) = match status {
                StatusCode::NOT_FOUND => (T::NotFoundTitle, T::NotFoundText),
                _ => (T::ErrorTitle, T::ErrorText),
            };
            let l = ctx.lang;
            html_page(ctx, status, layout(ctx, title.get(l), alert(text.get(l))))
        }
    }
}

pub(super) fn html_page(ctx: &Ctx, status: StatusCode, markup: Markup) -> HttpResponse {
    ctx.builder(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// A form's page under `title`: 422 when it shows the fields' problems.
fn form_page(ctx: &Ctx, title: T, errors: &[FieldError], body: Markup) -> Page {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(html_page(
        ctx,
        status,
        layout(ctx, title.get(ctx.lang), body),
    ))
}

fn ok(ctx: &Ctx, markup: Markup) -> Page {
    Ok(html_page(ctx, StatusCode::OK, markup))
}

/// The signed-in session, or a redirect to sign in.
pub(super) fn session(ctx: &Ctx) -> Result<&Session, Stop> {
    ctx.session
        .as_ref()
        .ok_or_else(|| Stop::reply(ctx.redirect("/console/sign-in")))
}

/// The tenant being worked on; operators who have not opened one go to the
/// tenant list.
pub(super) fn tenant(ctx: &Ctx) -> Result<&TenantRecord, Stop> {
    let s = session(ctx)?;
    s.tenant
        .as_ref()
        .ok_or_else(|| Stop::reply(ctx.redirect("/console/tenants")))
}

/// 403: a form without its token (forged, or from an ended session).
fn form_expired(ctx: &Ctx) -> HttpResponse {
    let l = ctx.lang;
    let page = layout(
        ctx,
        T::FormExpiredTitle.get(l),
        alert(T::FormExpired.get(l)),
    );
    html_page(ctx, StatusCode::FORBIDDEN, page)
}

/// A form post of this session: without the session it goes to sign-in,
/// without its CSRF token it is refused; either way nothing changes.
pub(super) fn genuine<'c>(
    ctx: &'c Ctx,
    form: &HashMap<String, String>,
) -> Result<&'c Session, Stop> {
    let s = session(ctx)?;
    if !ctx.form_is_genuine(form) {
        return Err(Stop::reply(form_expired(ctx)));
    }
    Ok(s)
}

fn admin(ctx: &Ctx) -> Result<&Session, Stop> {
    let s = session(ctx)?;
    if s.role != Role::Admin {
        return Err(ApiError::NotFound("no such page").into());
    }
    Ok(s)
}

/// The session tenant's connection named by a page's path (404 for another
/// tenant's).
pub(super) async fn connection(ctx: &Ctx, raw: &str) -> Result<ConnectionRecord, Stop> {
    const NOT_FOUND: ApiError = ApiError::NotFound("no such connection");
    let tenant = tenant(ctx)?;
    let id = ConnectionId::parse(raw).ok_or(NOT_FOUND)?;
    Ok(ctx
        .state
        .store
        .connection(&tenant.id, &id)
        .await?
        .ok_or(NOT_FOUND)?)
}

/// [`connection`] for a form posted to it: the form must be [`genuine`].
pub(super) async fn posted_connection(
    ctx: &Ctx,
    form: &HashMap<String, String>,
    raw: &str,
) -> Result<ConnectionRecord, Stop> {
    genuine(ctx, form)?;
    connection(ctx, raw).await
}

pub(super) fn text(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}
