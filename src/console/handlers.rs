//! The console's pages and forms. Every change goes through the same
//! functions as the management API (validation, sealing, rotation, replay),
//! so the console cannot accept what the API refuses.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use maud::{html, Markup};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::i18n::{Lang, T};
use super::pages::{self, alert, copyable, csrf, layout, notice, status_badge, when};
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
use crate::service::tenants::{self, EngineBody};
use crate::service::{events, oauth};
use crate::store::console::{ConsoleSession, Role};
use crate::store::{ConnectionRecord, StoreError, TenantRecord};

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

/// A form page's status: 422 when it shows the fields' problems.
fn form_status(errors: &[FieldError]) -> StatusCode {
    if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
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

pub(super) async fn connection(
    ctx: &Ctx,
    tenant: &TenantRecord,
    raw: &str,
) -> Result<ConnectionRecord, Stop> {
    const NOT_FOUND: ApiError = ApiError::NotFound("no such connection");
    let id = ConnectionId::parse(raw).ok_or(NOT_FOUND)?;
    Ok(ctx
        .state
        .store
        .connection(&tenant.id, &id)
        .await?
        .ok_or(NOT_FOUND)?)
}

pub(super) fn text(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- sign-in

pub async fn index(ctx: Ctx) -> HttpResponse {
    let to = match &ctx.session {
        None => "/console/sign-in",
        Some(s) if s.tenant.is_some() => "/console/connections",
        Some(_) => "/console/tenants",
    };
    ctx.redirect(to)
}

pub async fn sign_in_page(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let message = if req.query_string().contains("out=1") {
        Some(T::SignedOut)
    } else {
        None
    };
    sign_in_form(&ctx, StatusCode::OK, false, message)
}

/// The sign-in form with a fresh double-submit nonce in a cookie.
fn sign_in_form(ctx: &Ctx, status: StatusCode, failed: bool, message: Option<T>) -> HttpResponse {
    let nonce = generate_token("");
    let nonce = nonce.expose_secret();
    let markup = pages::sign_in(ctx, &csrf_of(nonce), failed, message);
    ctx.builder(status)
        .cookie(ctx.cookie(SIGN_IN_COOKIE, nonce.to_owned()))
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

pub async fn sign_in(ctx: Ctx, req: HttpRequest, form: Form) -> HttpResponse {
    let page = sign_in_inner(&ctx, &req, &form).await;
    finish(&ctx, page)
}

async fn sign_in_inner(ctx: &Ctx, req: &HttpRequest, form: &HashMap<String, String>) -> Page {
    let genuine = match (&ctx.sign_in_nonce, form.get("nonce")) {
        (Some(cookie), Some(sent)) => same(&csrf_of(cookie), sent),
        _ => false,
    };
    if !genuine {
        return Ok(form_expired(ctx));
    }
    // Guessing keys here is counted per client, as on the auth URLs.
    let ip = crate::state::limiter::client(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &ctx.state.settings.trusted_proxies,
    );
    let attempt =
        crate::state::limiter::Attempt::new(ip, crate::state::limiter::Family::Console, None);
    if ctx.state.limiter.blocked(&attempt).is_some() {
        return Ok(sign_in_form(ctx, StatusCode::TOO_MANY_REQUESTS, true, None));
    }
    let key = text(form, "key");
    let caller = if key.is_empty() {
        None
    } else {
        Caller::of_token(&ctx.state, &key).await?
    };
    let Some(caller) = caller else {
        tokio::time::sleep(ctx.state.limiter.failure(&attempt)).await;
        return Ok(sign_in_form(ctx, StatusCode::UNAUTHORIZED, true, None));
    };
    let (role, tenant_id) = match caller {
        Caller::Admin => (Role::Admin, None),
        Caller::Tenant(t) => (Role::Tenant, Some(t.id)),
    };
    start_session(ctx, role, tenant_id, "/console").await
}

/// `GET /console/link/{token}`: a one-time sign-in link (`botgate demo`
/// prints one). Used up by this request whatever follows; an unknown, used
/// or expired one gets the sign-in form saying so.
pub async fn sign_in_link(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let token = path.into_inner();
        let taken = if token.len() <= 128 {
            ctx.state
                .store
                .take_console_link(&hash_token(&token), now_millis())
                .await?
        } else {
            None
        };
        let Some((tenant, target)) = taken else {
            return Ok(sign_in_form(
                &ctx,
                StatusCode::GONE,
                false,
                Some(T::LinkUsed),
            ));
        };
        let target = if target.starts_with("/console/") {
            target
        } else {
            "/console".to_owned()
        };
        start_session(&ctx, Role::Tenant, Some(tenant), &target).await
    }
    .await;
    finish(&ctx, page)
}

/// A new session for this browser (its old one ended), and a redirect to `to`.
async fn start_session(ctx: &Ctx, role: Role, tenant_id: Option<TenantId>, to: &str) -> Page {
    if let Some(old) = &ctx.session {
        ctx.state.store.delete_session(&old.token_hash).await?;
    }
    let token = generate_token("");
    let now = now_millis();
    ctx.state
        .store
        .create_session(&ConsoleSession {
            token_hash: hash_token(token.expose_secret()),
            role,
            tenant_id,
            created_at: now,
            expires_at: now
                + millis(
                    ctx.state
                        .settings
                        .console_idle
                        .min(ctx.state.settings.console_max),
                ),
        })
        .await?;
    tracing::info!(role = ?role, "console sign-in");
    let mut response = ctx.redirect(to);
    response
        .add_cookie(&ctx.cookie(SESSION_COOKIE, token.expose_secret().to_owned()))
        .map_err(|e| ApiError::Internal(e.into()))?;
    response
        .add_removal_cookie(&ctx.cookie(SIGN_IN_COOKIE, String::new()))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(response)
}

pub async fn sign_out(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        let s = genuine(&ctx, &form)?;
        ctx.state.store.delete_session(&s.token_hash).await?;
        let mut response = ctx.redirect("/console/sign-in?out=1");
        response
            .add_removal_cookie(&ctx.cookie(SESSION_COOKIE, String::new()))
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(response)
    }
    .await;
    finish(&ctx, page)
}

// ---------------------------------------------------------------- tenants (operators)

pub async fn tenants_page(ctx: Ctx) -> HttpResponse {
    let page = tenants_inner(&ctx, None, &[], "").await;
    finish(&ctx, page)
}

async fn tenants_inner(
    ctx: &Ctx,
    created: Option<(&TenantRecord, &str)>,
    errors: &[FieldError],
    name: &str,
) -> Page {
    admin(ctx)?;
    let l = ctx.lang;
    let all = ctx.state.store.tenants().await?;
    let body = html! {
        @if let Some((tenant, key)) = created {
            (notice(T::TenantCreated.get(l)))
            (copyable("new-api-key", &format!("{} ({})", T::ApiKey.get(l), tenant.name), key, l))
        }
        p { (T::TenantsIntro.get(l)) }
        @if all.is_empty() {
            p.empty { (T::NoTenants.get(l)) }
        } @else {
            table #tenants {
                thead { tr { th { (T::TenantName.get(l)) } th { "ID" } th { (T::Created.get(l)) } th {} } }
                tbody {
                    @for t in &all {
                        tr {
                            td { (t.name) }
                            td { code { (t.id.as_str()) } }
                            td { (when(t.created_at)) }
                            td {
                                form.inline method="post" action={ "/console/tenants/" (t.id.as_str()) "/open" } {
                                    (csrf(ctx))
                                    button type="submit" { (T::Open.get(l)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (T::NewTenant.get(l)) }
        form.card method="post" action="/console/tenants" {
            (csrf(ctx))
            div.field.invalid[!errors.is_empty()] {
                label for="name" { (T::TenantName.get(l)) }
                input #name type="text" name="name" value=(name) required;
                @for e in errors {
                    p.error { (super::i18n::say(&e.message, l)) }
                }
            }
            button #create-tenant type="submit" { (T::CreateTenant.get(l)) }
        }
    };
    Ok(html_page(
        ctx,
        form_status(errors),
        layout(ctx, T::Tenants.get(l), body),
    ))
}

pub async fn create_tenant(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        admin(&ctx)?;
        let name = text(&form, "name");
        match TenantName::parse(&name) {
            Err(e) => tenants_inner(&ctx, None, &[e], &name).await,
            Ok(valid) => {
                let (tenant, key) = tenants::create(&ctx.state.store, &valid).await?;
                tracing::info!(tenant_id = %tenant.id, "tenant created in the console");
                tenants_inner(&ctx, Some((&tenant, key.expose_secret())), &[], "").await
            }
        }
    }
    .await;
    finish(&ctx, page)
}

pub async fn open_tenant(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let s = genuine(&ctx, &form)?;
        admin(&ctx)?;
        const NOT_FOUND: ApiError = ApiError::NotFound("no such tenant");
        let id = TenantId::parse(&path).ok_or(NOT_FOUND)?;
        let t = ctx.state.store.tenant(&id).await?.ok_or(NOT_FOUND)?;
        ctx.state
            .store
            .set_session_tenant(&s.token_hash, &t.id)
            .await?;
        Ok(ctx.redirect("/console/connections"))
    }
    .await;
    finish(&ctx, page)
}

// ---------------------------------------------------------------- connections

pub async fn connections_page(ctx: Ctx) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let l = ctx.lang;
        let all = ctx.state.store.connections(&t.id).await?;
        let body = html! {
            @if all.is_empty() {
                p.empty { (T::NoConnections.get(l)) }
            } @else {
                table #connections {
                    thead { tr { th { (T::BotId.get(l)) } th { (T::ClientId.get(l)) } th { (T::Created.get(l)) } } }
                    tbody {
                        @for c in &all {
                            tr {
                                td { a href={ "/console/connections/" (c.id.as_str()) } { (c.bot_id) } }
                                td { code { (c.client_id) } }
                                td { (when(c.created_at)) }
                            }
                        }
                    }
                }
            }
            p {
                a.button #connect href="/console/connections/new" { (T::ConnectNaverWorks.get(l)) }
                " "
                a.button #connect-slack href="/console/connections/new?channel=slack" { (T::ConnectSlack.get(l)) }
            }
        };
        ok(&ctx, layout(&ctx, T::Connections.get(l), body))
    }
    .await;
    finish(&ctx, page)
}

pub async fn deleted_page(ctx: Ctx) -> HttpResponse {
    let page = async {
        tenant(&ctx)?;
        let l = ctx.lang;
        let body = html! {
            (notice(T::Deleted.get(l)))
            p { a href="/console/connections" { (T::Connections.get(l)) } }
        };
        ok(&ctx, layout(&ctx, T::Connections.get(l), body))
    }
    .await;
    finish(&ctx, page)
}

/// The connect form of a channel, empty or with what was typed (never the
/// secrets), below a tile per channel.
fn connect_form(
    ctx: &Ctx,
    channel: Channel,
    user: bool,
    values: &HashMap<String, String>,
    errors: &[FieldError],
    problem: Option<&str>,
) -> Markup {
    let l = ctx.lang;
    let value = |name: &str| match values.get(name) {
        Some(v) => v.clone(),
        None if name == "scope" => "bot".to_owned(),
        None => String::new(),
    };
    let (title, intro) = match channel {
        Channel::NaverWorks => (T::ConnectNaverWorks, T::ConnectIntro),
        Channel::Slack => (T::ConnectSlack, T::SlackIntro),
    };
    let body = html! {
        nav.tiles aria-label=(T::ChooseChannel.get(l)) {
            @for (c, label) in [(Channel::NaverWorks, "NAVER WORKS"), (Channel::Slack, "Slack")] {
                a.tile.selected[c == channel] #{ "tile-" (c.name()) } href={ "/console/connections/new?channel=" (c.name()) }
                    aria-current=[(c == channel).then_some("page")] { (label) }
            }
        }
        @if channel == Channel::NaverWorks {
            // Two ways to connect NAVER WORKS: a service account's JWT, or
            // a member's sign-in (OAuth authorization code).
            nav.ways {
                a #way-service-account href="/console/connections/new?channel=naverworks" aria-current=[(!user).then_some("page")] { (T::ConnectWithServiceAccount.get(l)) }
                " · "
                a #way-sign-in href="/console/connections/new?channel=naverworks&auth=user" aria-current=[user.then_some("page")] { (T::ConnectWithSignIn.get(l)) }
            }
        }
        @if user {
            p { (T::UserModeIntro.get(l)) }
            (copyable("redirect-url", T::NwRedirectUrl.get(l), &oauth::naverworks_redirect_url(&ctx.state), l))
        } @else {
            p { (intro.get(l)) }
        }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        @if let Some(p) = problem { (alert(p)) }
        form.card #connect-form method="post" action="/console/connections" novalidate {
            (csrf(ctx))
            input type="hidden" name="channel" value=(channel.name());
            @if user { input type="hidden" name="auth_mode" value="user"; }
            (pages::connection_fields(l, pages::fields_of(channel), &value, errors, &|_| None, if user { pages::USER_SKIPS } else { &[] }))
            button #submit-connect type="submit" { (T::Connect.get(l)) }
        }
    };
    layout(ctx, title.get(l), body)
}

/// The channel a form or query names (NAVER WORKS when none).
fn channel_named(value: Option<&str>) -> Channel {
    value
        .and_then(Channel::parse)
        .unwrap_or(Channel::NaverWorks)
}

pub async fn new_connection(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let channel = channel_named(
        req.query_string()
            .split('&')
            .find_map(|p| p.strip_prefix("channel=")),
    );
    let user =
        channel == Channel::NaverWorks && req.query_string().split('&').any(|p| p == "auth=user");
    let page = async {
        tenant(&ctx)?;
        ok(
            &ctx,
            connect_form(&ctx, channel, user, &HashMap::new(), &[], None),
        )
    }
    .await;
    finish(&ctx, page)
}

/// A form value as the API body takes it: absent when empty.
fn json_value(name: &str, value: &str) -> Option<Value> {
    let value = if name == "private_key" {
        value
    } else {
        value.trim()
    };
    if value.trim().is_empty() {
        return None;
    }
    if name == "rate_limit_per_minute" {
        if let Ok(n) = value.parse::<u64>() {
            return Some(Value::from(n));
        }
    }
    Some(Value::String(value.to_owned()))
}

fn connection_body(
    form: &HashMap<String, String>,
    keep: impl Fn(&str, &str) -> bool,
) -> ConnectionBody {
    let get = |name: &str| {
        form.get(name)
            .filter(|v| keep(name, v.trim()))
            .and_then(|v| json_value(name, v))
    };
    ConnectionBody {
        channel: None,
        auth_mode: get("auth_mode"),
        signing_secret: get("signing_secret"),
        bot_token: get("bot_token"),
        scopes: get("scopes"),
        command_ack_text: get("command_ack_text"),
        bot_id: get("bot_id"),
        client_id: get("client_id"),
        client_secret: get("client_secret"),
        service_account: get("service_account"),
        private_key: get("private_key"),
        bot_secret: get("bot_secret"),
        auth_header: get("auth_header"),
        scope: get("scope"),
        rate_limit_per_minute: get("rate_limit_per_minute"),
    }
}

/// What was typed, minus the secrets, to show the form again.
fn typed(form: &HashMap<String, String>, channel: Channel) -> HashMap<String, String> {
    pages::fields_of(channel)
        .iter()
        .filter(|(_, _, _, kind)| matches!(kind, pages::Kind::Text | pages::Kind::Number))
        .filter_map(|(name, ..)| form.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

pub async fn create_connection(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let channel = channel_named(form.get("channel").map(String::as_str));
        let mut body = connection_body(&form, |_, _| true);
        body.channel = Some(Value::String(channel.name().to_owned()));
        let user = body.auth_mode.as_ref().and_then(Value::as_str) == Some("user");
        match connections::create(&ctx.state, t, &body).await {
            Ok(record) => {
                Ok(ctx.redirect(&format!("/console/connections/{}?created=1", record.id)))
            }
            Err(ApiError::Validation(errors)) => Ok(html_page(
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                connect_form(&ctx, channel, user, &typed(&form, channel), &errors, None),
            )),
            Err(ApiError::Conflict(message)) => Ok(html_page(
                &ctx,
                StatusCode::CONFLICT,
                connect_form(
                    &ctx,
                    channel,
                    user,
                    &typed(&form, channel),
                    &[],
                    Some(&conflict_text(&message, ctx.lang)),
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

fn conflict_text(message: &str, lang: Lang) -> String {
    match lang {
        Lang::En => format!("{message}."),
        Lang::Ko => "이 테넌트에는 이미 같은 Bot ID의 연결이 있습니다.".to_owned(),
    }
}

/// The connection page: URLs, credentials (masked), token, test results,
/// recent events and messages, replay, rotation and delete.
/// The connection's page with `test_message` as its "send a test message"
/// section (a refused form), answered 422.
pub(super) async fn connection_view_with(
    ctx: &Ctx,
    c: &ConnectionRecord,
    test_message: Markup,
) -> Page {
    let mut page = connection_view(ctx, c, None, None, Some(test_message)).await?;
    *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(page)
}

async fn connection_view(
    ctx: &Ctx,
    c: &ConnectionRecord,
    checks: Option<&[Check]>,
    flash: Option<Markup>,
    test_message: Option<Markup>,
) -> Page {
    let l = ctx.lang;
    let state = &ctx.state;
    let view = connections::view(state, c).await?;
    let events = state.store.events(&c.tenant_id, &c.id, None, 20).await?;
    // Dead events and callbacks refused over a quota: the replayable ones.
    let mut dead = state
        .store
        .events(&c.tenant_id, &c.id, Some("dead"), 100)
        .await?;
    dead.extend(
        state
            .store
            .events(&c.tenant_id, &c.id, Some("refused"), 100)
            .await?,
    );
    let messages = state.store.recent_messages(&c.tenant_id, &c.id, 20).await?;
    // Read after the messages: a message is delivered only with a token
    // stored before it, so the page never shows a delivery beside "no token"
    // (read first, a token stored and a message delivered between the two
    // reads did; the browser test caught it under load).
    let token = state.store.token_meta(&c.id).await?;
    let now = now_millis();
    let id = c.id.as_str();
    let slack = Channel::of(c) == Channel::Slack;
    let installations = if slack {
        state.store.installations(&c.id).await?
    } else {
        Vec::new()
    };
    let playground = super::playground::emulator_of(state, c).is_some();
    let body = html! {
        @if let Some(f) = flash { (f) }
        @if playground {
            p.actions { a.button #open-playground href={ "/console/connections/" (id) "/playground" } { (T::OpenPlayground.get(l)) } }
        }
        section #urls {
            h2 { (T::Urls.get(l)) }
            @let urls = [
                ("webhook-url", T::WebhookUrl, &view.webhook_url),
                ("auth-url", T::AuthUrl, &view.auth_url),
                ("auth-refresh-url", T::AuthRefreshUrl, &view.auth_refresh_url),
                ("events-url", T::EventsUrl, &view.events_url),
                ("commands-url", T::CommandsUrl, &view.commands_url),
                ("interactions-url", T::InteractionsUrl, &view.interactions_url),
                ("install-url", T::InstallUrl, &view.install_url),
                ("authorize-url", T::AuthorizeUrl, &view.authorize_url),
                ("oauth-redirect-url", if slack { T::OAuthRedirectUrl } else { T::NwRedirectUrl }, &view.oauth_redirect_url),
            ];
            @for (id, label, url) in urls {
                @if let Some(url) = url { (copyable(id, label.get(l), url, l)) }
            }
            @match Channel::of(c) {
                Channel::NaverWorks => small.hint { (T::UrlsHint.get(l)) },
                Channel::Slack => small.hint { (T::SlackUrlsHint.get(l)) },
            }
        }
        section #test {
            h2 { (T::TestConnection.get(l)) }
            p { (if slack { T::SlackTestIntro } else { T::TestIntro }.get(l)) }
            @if let Some(checks) = checks {
                @let passed = checks.iter().all(|c| c.ok);
                div #test-result data-ok=(passed) {
                    @if passed { (notice(T::TestPassed.get(l))) } @else { (alert(T::TestFailed.get(l))) }
                    ul.checks {
                        @for check in checks {
                            li class=(if check.ok { "ok" } else { "failed" }) data-check=(check.name) {
                                strong { (pages::check_title(check.name).get(l)) ": " }
                                (pages::check_sentence(check, l))
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ "/console/connections/" (id) "/test" } {
                (csrf(ctx))
                button #test-connection type="submit" { (T::TestConnection.get(l)) }
            }
        }
        @if let Some(authorization) = view.authorization {
            section #authorization data-state=(authorization) {
                h2 { (T::Authorization.get(l)) }
                @match authorization {
                    "authorized" => p { (T::Authorized.get(l)) },
                    "needs_reauthorization" => (alert(T::NeedsReauthorization.get(l))),
                    _ => p { (T::NotAuthorized.get(l)) },
                }
                @if let Some(url) = &view.authorize_url {
                    p.actions {
                        a.button #authorize href=(url) {
                            (if authorization == "not_authorized" { T::Authorize } else { T::Reauthorize }.get(l))
                        }
                    }
                }
            }
        }
        @if !slack { section #token {
            h2 { (T::Token.get(l)) }
            @match token.as_ref().and_then(|t| t.expires_at.map(|e| (e, t.issued_at))) {
                None => p #token-state data-state="none" { (T::NoToken.get(l)) },
                Some((expires, issued)) => dl #token-state data-state=(if expires > now { "valid" } else { "expired" }) {
                    dt { (if expires > now { T::TokenValid.get(l) } else { T::TokenExpired.get(l) }) }
                    dd { (when(expires)) }
                    @if let Some(issued) = issued {
                        dt { (T::LastRefresh.get(l)) }
                        dd { (when(issued)) }
                    }
                }
            }
        } }
        @if slack && !c.client_id.is_empty() {
            section #installations {
                h2 { (T::Installations.get(l)) }
                @if installations.is_empty() {
                    p.empty { (T::NoInstallations.get(l)) }
                } @else {
                    table {
                        thead { tr { th { (T::Workspace.get(l)) } th { (T::Status.get(l)) } th { (T::Scopes.get(l)) } th { (T::InstalledAt.get(l)) } } }
                        tbody {
                            @for i in &installations {
                                tr data-team=(i.team_id) data-status=(i.status) {
                                    td { (i.team_name) " " code { (i.team_id) } }
                                    td {
                                        @if i.status == "active" {
                                            span.status { (T::StatusActive.get(l)) }
                                        } @else {
                                            span.status.failed { (T::NeedsReinstall.get(l)) }
                                        }
                                    }
                                    td { code { (i.scopes) } }
                                    td { (when(i.installed_at)) }
                                }
                            }
                        }
                    }
                }
                small.hint { (T::InstallHint.get(l)) }
            }
        }
        section #events {
            h2 { (T::RecentEvents.get(l)) }
            @if !dead.is_empty() {
                form.inline method="post" action={ "/console/connections/" (id) "/replay" } {
                    (csrf(ctx))
                    button #replay-all type="submit" { (T::ReplayAll.get(l)) " (" (dead.len()) ")" }
                }
            }
            @if events.is_empty() && dead.is_empty() {
                p.empty { (T::NoEvents.get(l)) }
            } @else {
                table {
                    thead { tr { th { (T::Received.get(l)) } th { (T::Type.get(l)) } th { (T::Conversation.get(l)) } th { (T::Status.get(l)) } th { (T::Attempts.get(l)) } th { (T::LastError.get(l)) } th {} } }
                    tbody {
                        @for e in events.iter().chain(dead.iter().filter(|d| !events.iter().any(|e| e.id == d.id))) {
                            tr.event data-event=(e.id) {
                                td { (when(e.received_at)) }
                                td { (e.event_type) }
                                td { code { (e.conversation) } }
                                td { (status_badge(&e.status, l)) }
                                td { (e.attempts) }
                                td.error-text { (e.last_error.as_deref().unwrap_or("")) }
                                td {
                                    @if e.status == "dead" || e.status == "refused" {
                                        form.inline method="post" action={ "/console/connections/" (id) "/events/" (e.id) "/replay" } {
                                            (csrf(ctx))
                                            button.replay type="submit" { (T::Replay.get(l)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (test_message.unwrap_or_else(|| super::test_message::section(ctx, c, None, &[], &HashMap::new())))
        section #messages {
            h2 { (T::RecentMessages.get(l)) }
            @if messages.is_empty() {
                p.empty { (T::NoMessages.get(l)) }
            } @else {
                table {
                    thead { tr { th { (T::Created.get(l)) } th { (T::Target.get(l)) } th { (T::Status.get(l)) } th { (T::Attempts.get(l)) } th { (T::LastError.get(l)) } } }
                    tbody {
                        @for m in &messages {
                            tr.message data-message=(m.id) {
                                td { (when(m.created_at)) }
                                td { code { (m.target_kind) ":" (m.target_id) } }
                                td { (status_badge(&m.status, l)) }
                                td { (m.attempts) }
                                td.error-text { (m.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        section #credentials {
            h2 { (T::Details.get(l)) }
            dl {
                @let masked = |v: &Option<Option<String>>| v.clone().flatten().unwrap_or_default();
                @if slack {
                    @if let Some(w) = &view.workspace {
                        dt { (T::Workspace.get(l)) } dd { (w.team) " " code { (w.team_id) } }
                    }
                    dt { (T::SigningSecret.get(l)) } dd { code { (masked(&view.signing_secret)) } }
                    @if view.bot_token.is_some() { dt { (T::BotToken.get(l)) } dd { code { (masked(&view.bot_token)) } } }
                    @if !c.client_id.is_empty() {
                        dt { (T::ClientId.get(l)) } dd { code { (c.client_id) } }
                        dt { (T::ClientSecret.get(l)) } dd { code { (masked(&view.client_secret)) } }
                    }
                    @if let Some(ack) = &view.command_ack_text { dt { (T::CommandAck.get(l)) } dd { (ack) } }
                } @else {
                    dt { (T::ClientId.get(l)) } dd { code { (c.client_id) } }
                    dt { (T::ClientSecret.get(l)) } dd { code { (masked(&view.client_secret)) } }
                    @if view.authorization.is_some() {
                        dt { (T::AuthMode.get(l)) } dd { (T::UserAccount.get(l)) }
                    } @else {
                        dt { (T::ServiceAccount.get(l)) } dd { code { (c.service_account) } }
                        dt { (T::PrivateKey.get(l)) } dd { code { (c.private_key_info) } }
                    }
                    dt { (T::BotSecret.get(l)) } dd { code { (masked(&view.bot_secret)) } }
                }
                @if let Some(h) = view.auth_header { dt { (T::AuthHeader.get(l)) } dd { code { (h) } } }
                dt { (T::Scopes.get(l)) } dd { code { (c.scope) } }
                dt { (T::RateLimit.get(l)) } dd { (c.rate_limit_per_minute) }
            }
            p.actions {
                a.button #rotate href={ "/console/connections/" (id) "/rotate" } { (T::Rotate.get(l)) }
                a.button.danger #delete href={ "/console/connections/" (id) "/delete" } { (T::Delete.get(l)) }
            }
        }
    };
    ok(
        ctx,
        layout(ctx, &format!("{} {}", T::BotId.get(l), c.bot_id), body),
    )
}

fn created_steps(l: Lang, c: &ConnectionRecord) -> Markup {
    let user = AuthMode::of_details(&c.details) == AuthMode::User;
    let (intro, steps): (T, &[T]) = match Channel::of(c) {
        Channel::NaverWorks if user => (
            T::Connected,
            &[T::StepAuthorize, T::StepCallback, T::StepEvents, T::StepAdd],
        ),
        Channel::NaverWorks => (T::Connected, &[T::StepCallback, T::StepEvents, T::StepAdd]),
        Channel::Slack => (
            T::SlackConnected,
            &[
                T::SlackStepEvents,
                T::SlackStepCommands,
                T::SlackStepInteractivity,
            ],
        ),
    };
    html! {
        div.notice #next-steps role="status" {
            p { strong { (intro.get(l)) } }
            ol {
                @for step in steps { li { (step.get(l)) } }
            }
        }
    }
}

pub async fn connection_page(ctx: Ctx, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let query = req.query_string();
        let flash = if query.contains("created=1") {
            Some(created_steps(ctx.lang, &c))
        } else if query.contains("saved=1") {
            Some(notice(T::Saved.get(ctx.lang)))
        } else if let Some(n) = query.split('&').find_map(|p| p.strip_prefix("replayed=")) {
            let n: u64 = n.parse().unwrap_or(0);
            Some(notice(&format!("{} {n}", T::Replayed.get(ctx.lang))))
        } else {
            None
        };
        let sent = match query.split('&').find_map(|p| p.strip_prefix("sent=")) {
            Some(id) => ctx.state.store.message(&c.id, id).await?,
            None => None,
        };
        let test_message = sent
            .as_ref()
            .map(|m| super::test_message::section(&ctx, &c, Some(m), &[], &HashMap::new()));
        connection_view(&ctx, &c, None, flash, test_message).await
    }
    .await;
    finish(&ctx, page)
}

pub async fn test_connection(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let checks = run_checks(&ctx.state, &c).await;
        connection_view(&ctx, &c, Some(&checks), None, None).await
    }
    .await;
    finish(&ctx, page)
}

pub async fn replay_all(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let n = events::replay(&ctx.state, &c, None).await?;
        Ok(ctx.redirect(&format!("/console/connections/{}?replayed={n}", c.id)))
    }
    .await;
    finish(&ctx, page)
}

pub async fn replay_one(ctx: Ctx, path: web::Path<(String, String)>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path.0).await?;
        let n = events::replay(&ctx.state, &c, Some(&path.1)).await?;
        Ok(ctx.redirect(&format!("/console/connections/{}?replayed={n}", c.id)))
    }
    .await;
    finish(&ctx, page)
}

fn rotate_form(
    ctx: &Ctx,
    c: &ConnectionRecord,
    view: &ConnectionView,
    values: &HashMap<String, String>,
    errors: &[FieldError],
) -> Markup {
    let l = ctx.lang;
    let value = |name: &str| match values.get(name) {
        Some(v) => v.clone(),
        None => match name {
            "client_id" => c.client_id.clone(),
            "service_account" => c.service_account.clone(),
            "scope" | "scopes" => c.scope.clone(),
            "command_ack_text" => view.command_ack_text.clone().unwrap_or_default(),
            "rate_limit_per_minute" => c.rate_limit_per_minute.to_string(),
            _ => String::new(),
        },
    };
    let current = |name: &str| match name {
        "client_secret" => view.client_secret.clone().flatten(),
        "bot_secret" => view.bot_secret.clone().flatten(),
        "signing_secret" => view.signing_secret.clone().flatten(),
        "bot_token" => view.bot_token.clone().flatten(),
        "private_key" => Some(c.private_key_info.clone()),
        "auth_header" => view.auth_header.map(str::to_owned),
        _ => None,
    };
    let body = html! {
        p { (T::RotateIntro.get(l)) }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        form.card #rotate-form method="post" action={ "/console/connections/" (c.id.as_str()) "/rotate" } novalidate {
            (csrf(ctx))
            @let skip: &[&str] = if AuthMode::of_details(&c.details) == AuthMode::User { &["bot_id", "service_account", "private_key"] } else { &["bot_id"] };
            (pages::connection_fields(l, pages::fields_of(Channel::of(c)), &value, errors, &current, skip))
            button #submit-rotate type="submit" { (T::Save.get(l)) }
            " "
            a href={ "/console/connections/" (c.id.as_str()) } { (T::Cancel.get(l)) }
        }
    };
    layout(
        ctx,
        &format!("{} · {} {}", T::Rotate.get(l), T::BotId.get(l), c.bot_id),
        body,
    )
}

pub async fn rotate_page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let view = connections::view(&ctx.state, &c).await?;
        ok(&ctx, rotate_form(&ctx, &c, &view, &HashMap::new(), &[]))
    }
    .await;
    finish(&ctx, page)
}

pub async fn rotate(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        // Unchanged plain fields are left out, so that saving the form as
        // shown does not drop the token for nothing.
        let rate = c.rate_limit_per_minute.to_string();
        let ack = crate::channels::slack::Details::of(&c)
            .command_ack_text
            .unwrap_or_default();
        let body = connection_body(&form, |name, value| match name {
            "bot_id" => false,
            "client_id" => value != c.client_id,
            "service_account" => value != c.service_account,
            "scope" | "scopes" => value != c.scope,
            "command_ack_text" => value != ack,
            "rate_limit_per_minute" => value != rate,
            _ => true,
        });
        match connections::update(&ctx.state, &c, &body).await {
            Ok(_) => Ok(ctx.redirect(&format!("/console/connections/{}?saved=1", c.id))),
            Err(ApiError::Validation(errors)) => {
                let view = connections::view(&ctx.state, &c).await?;
                Ok(html_page(
                    &ctx,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    rotate_form(&ctx, &c, &view, &typed(&form, Channel::of(&c)), &errors),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

pub async fn delete_page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let l = ctx.lang;
        let body = html! {
            (alert(T::DeleteConfirm.get(l)))
            form.inline method="post" action={ "/console/connections/" (c.id.as_str()) "/delete" } {
                (csrf(&ctx))
                button.danger #confirm-delete type="submit" { (T::DeleteYes.get(l)) }
            }
            " "
            a href={ "/console/connections/" (c.id.as_str()) } { (T::Cancel.get(l)) }
        };
        ok(
            &ctx,
            layout(
                &ctx,
                &format!("{} · {} {}", T::Delete.get(l), T::BotId.get(l), c.bot_id),
                body,
            ),
        )
    }
    .await;
    finish(&ctx, page)
}

pub async fn delete(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        connections::delete(&ctx.state, &c).await?;
        Ok(ctx.redirect("/console/connections/deleted"))
    }
    .await;
    finish(&ctx, page)
}

// ---------------------------------------------------------------- engine

async fn engine_form(
    ctx: &Ctx,
    t: &TenantRecord,
    values: Option<&HashMap<String, String>>,
    errors: &[FieldError],
    saved: bool,
) -> Page {
    let l = ctx.lang;
    let view = tenants::engine_view(&ctx.state, t).await?;
    let get = |name: &str| -> String {
        match values {
            Some(v) => v.get(name).cloned().unwrap_or_default(),
            None => match name {
                "kind" => view.kind.clone(),
                "url" => view.url.clone().unwrap_or_default(),
                "fallback_text" => view.fallback_text.clone().unwrap_or_default(),
                _ => String::new(),
            },
        }
    };
    let kind = get("kind");
    let field_errors = |name: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e.field == name)
            .map(|e| super::i18n::say(&e.message, l))
            .collect()
    };
    let secret_now = view.secret.clone();
    let body = html! {
        @if saved { (notice(T::Saved.get(l))) }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        p { (T::EngineIntro.get(l)) }
        form.card #engine-form method="post" action="/console/engine" novalidate {
            (csrf(ctx))
            fieldset.field.invalid[!field_errors("kind").is_empty()] {
                legend { (T::EngineKind.get(l)) }
                @for (value, label) in [("echo", T::EngineEcho), ("http", T::EngineHttp), ("rasa", T::EngineRasa)] {
                    label.radio {
                        input type="radio" name="kind" value=(value) id={ "kind-" (value) } checked[kind == value];
                        " " (label.get(l))
                    }
                }
                @for m in field_errors("kind") { p.error { (m) } }
            }
            div.field.invalid[!field_errors("url").is_empty()] {
                label for="url" { (T::EngineUrl.get(l)) }
                input #url type="text" name="url" value=(get("url")) spellcheck="false" autocomplete="off";
                small.hint { (T::EngineUrlHint.get(l)) }
                @for m in field_errors("url") { p.error #url-error { (m) } }
            }
            div.field.invalid[!field_errors("secret").is_empty()] {
                label for="secret" { (T::EngineSecret.get(l)) }
                @if let Some(now) = &secret_now { span.current { (T::Current.get(l)) ": " code { (now) } } }
                input #secret type="password" name="secret" value="" autocomplete="new-password";
                small.hint { (T::EngineSecretHint.get(l)) }
                @for m in field_errors("secret") { p.error #secret-error { (m) } }
            }
            div.field.invalid[!field_errors("fallback_text").is_empty()] {
                label for="fallback_text" { (T::FallbackText.get(l)) }
                input #fallback_text type="text" name="fallback_text" value=(get("fallback_text"));
                small.hint { (T::FallbackTextHint.get(l)) }
                @for m in field_errors("fallback_text") { p.error { (m) } }
            }
            button #save-engine type="submit" { (T::Save.get(l)) }
        }
    };
    Ok(html_page(
        ctx,
        form_status(errors),
        layout(ctx, T::Engine.get(l), body),
    ))
}

pub async fn engine_page(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        engine_form(&ctx, t, None, &[], req.query_string().contains("saved=1")).await
    }
    .await;
    finish(&ctx, page)
}

pub async fn save_engine(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let kind = text(&form, "kind");
        let field = |name: &str| {
            let v = text(&form, name);
            (!v.is_empty()).then_some(Value::String(v))
        };
        let body = EngineBody {
            kind: (!kind.is_empty()).then(|| Value::String(kind.clone())),
            // The form always has the fields; the echo engine takes none.
            url: if kind == "echo" { None } else { field("url") },
            secret: if kind == "http" {
                field("secret")
            } else {
                None
            },
            fallback_text: field("fallback_text"),
        };
        match tenants::set_engine(&ctx.state, t, &body).await {
            Ok(_) => Ok(ctx.redirect("/console/engine?saved=1")),
            Err(ApiError::Validation(errors)) => {
                let mut values = (*form).clone();
                values.remove("secret");
                engine_form(&ctx, t, Some(&values), &errors, false).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}
