//! `GET /api/openapi.json`, the OpenAPI document generated from the
//! handlers' own annotations and types (utoipa), and `GET /api/docs`, a page
//! listing every operation. A test checks that the document's operations are
//! exactly the router's ([`super::routes`]).

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi as _;

use super::{
    auth_urls, connections, events, files, health, messages, naverworks_oauth, slack, slack_oauth,
    tenants, webhooks,
};
use crate::error::ErrorEnvelope;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "botgate",
        description = "A multi-tenant chatbot channel gateway for NAVER WORKS and Slack bots. \
                       Errors are {\"error\": {\"code\", \"message\"}}."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        openapi,
        page,
        tenants::create,
        tenants::list,
        tenants::get,
        tenants::set_engine,
        tenants::delete,
        tenants::export,
        tenants::set_quotas,
        tenants::replace_api_key,
        connections::create,
        connections::list,
        connections::get,
        connections::update,
        connections::delete,
        connections::test,
        connections::audit,
        connections::installations,
        connections::delete_installation,
        events::list,
        events::replay_all,
        events::replay_one,
        events::outbox,
        webhooks::naverworks,
        slack::events,
        slack::commands,
        slack::interactions,
        slack_oauth::install,
        slack_oauth::callback,
        files::file,
        naverworks_oauth::authorize,
        naverworks_oauth::callback,
        auth_urls::read,
        auth_urls::refresh,
        auth_urls::slack_read,
        auth_urls::slack_refresh,
        messages::send,
        messages::list,
        messages::get,
        messages::retry_all,
        messages::retry_one,
        messages::cancel_all,
        messages::cancel_one,
        tenants::activity,
        tenants::test_engine,
        tenants::set_status_hook,
        tenants::remove_status_hook,
        tenants::test_status_hook,
    ),
    components(schemas(
        ErrorEnvelope<'static>,
        EngineRequest,
        EngineAnswer,
        crate::service::status_hook::StatusPost<'static>
    )),
    modifiers(&SecuritySchemes),
    // Every operation needs the bearer token unless its own `security`
    // says otherwise: `security(())` for the public ones (callbacks, OAuth
    // pages, health), `naverworksAuth` for the auth URLs.
    security(("bearer" = []))
)]
struct ApiDoc;

/// What botgate POSTs to an `http` engine (signed with
/// `X-Botgate-Timestamp` and `X-Botgate-Signature: sha256=<hex
/// HMAC-SHA256(secret, timestamp + "." + body)>`), for every channel. Not an
/// operation of botgate's: documented here for engine authors.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
struct EngineRequest {
    event_id: String,
    tenant_id: String,
    connection_id: String,
    /// `naverworks` or `slack`.
    #[schema(example = "slack")]
    channel: String,
    /// `message`, `postback`, `command` (Slack), or a NAVER WORKS event type
    /// (`join`, `leave`, `joined`, `left`, `begin`, `end`, …).
    #[schema(example = "command")]
    r#type: String,
    /// NAVER WORKS: `{user_id, channel_id, domain_id}`. Slack: `{user_id,
    /// channel_id, team_id, thread_ts}`.
    #[schema(value_type = Object)]
    conversation: serde_json::Value,
    /// `{"type":"text","text"}`; Slack commands `{"type":"command",
    /// "command":"/luckydraw","text"}`; Slack buttons `{"type":"postback",
    /// "data","action_id"}`; NAVER WORKS content as sent otherwise.
    #[schema(value_type = Object)]
    content: serde_json::Value,
    /// A button press: `{"data": …}`.
    #[schema(value_type = Option<Object>)]
    postback: Option<serde_json::Value>,
    /// RFC 3339.
    issued_time: Option<String>,
    /// The platform's request as sent (a Slack command's form fields as an
    /// object).
    #[schema(value_type = Object)]
    raw: serde_json::Value,
    /// `true` on a sample message from an engine test (`POST
    /// /api/v1/tenants/{tenant}/engine/test`): no user is waiting and the
    /// replies are shown, not sent. Absent otherwise.
    test: Option<bool>,
}

/// An engine's answer: `{"replies": [...]}`, each `{"type":"text","text"}`,
/// `{"type":"image","url"}` (https), `{"type":"buttons","text","buttons":
/// [{"label","postback"|"url"}]}` or `{"type":"native","content"}` (the
/// channel's own message body: NAVER WORKS content, or a Slack message).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
struct EngineAnswer {
    #[schema(value_type = Vec<Object>)]
    replies: Vec<serde_json::Value>,
}

/// The two ways in: a bearer token (admin or tenant key) for the management
/// API, the `DANBEE-NAVERWORKS-AUTH` header for the auth URLs.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token or a tenant's API key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "naverworksAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(auth_urls::AUTH_HEADER))),
        );
    }
}

/// The document, generated once per process.
pub static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    DOCUMENT
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
});

#[utoipa::path(get, path = "/api/openapi.json",
    summary = "This document", tag = "operations",
    responses((status = 200, description = "OpenAPI document", body = Object)), security(()))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT_JSON.as_str())
}

#[utoipa::path(get, path = "/api/docs",
    summary = "A page listing the API", tag = "operations",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
    security(()))]
pub async fn page() -> HttpResponse {
    let rows: Vec<(String, String, String)> = DOCUMENT
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            operations(item).map(move |(method, op)| {
                (
                    method.to_uppercase(),
                    path.clone(),
                    op.summary.clone().unwrap_or_default(),
                )
            })
        })
        .collect();
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "botgate API" } }
            body {
                h1 { "botgate API" }
                p { "The machine-readable document: " a href="/api/openapi.json" { "/api/openapi.json" } "." }
                table {
                    thead { tr { th { "Method" } th { "Path" } th { "What" } } }
                    tbody {
                        @for (method, path, summary) in &rows {
                            tr { td { code { (method) } } td { code { (path) } } td { (summary) } }
                        }
                    }
                }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'",
        ))
        .body(html.into_string())
}

/// A path's operations with their methods' names.
fn operations(
    item: &utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &utoipa::openapi::path::Operation)> {
    [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("patch", &item.patch),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

/// The failures of every operation on a tenant's resources.
#[derive(utoipa::IntoResponses)]
pub enum Denied {
    /// Missing or wrong credentials
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope<'static>),
    /// No such resource (also for another tenant's)
    #[response(status = 404)]
    NotFound(ErrorEnvelope<'static>),
}

/// A body or query the operation refuses.
#[derive(utoipa::IntoResponses)]
pub enum Invalid {
    /// Invalid fields, each named with its problem
    #[response(status = 422)]
    Fields(ErrorEnvelope<'static>),
}

/// The failures of the header-guarded auth URLs.
#[derive(utoipa::IntoResponses)]
pub enum TokenDenied {
    /// Missing or wrong header, or unknown connection
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope<'static>),
    /// Too many failures from this address
    #[response(status = 429)]
    TooMany(ErrorEnvelope<'static>),
    /// NAVER WORKS refused the credentials
    #[response(status = 502)]
    Refused(ErrorEnvelope<'static>),
    /// NAVER WORKS unavailable
    #[response(status = 503)]
    Unavailable(ErrorEnvelope<'static>),
}

/// The refusals of a platform's callback (a webhook or Slack's Request
/// URLs): nothing is stored for any of them.
#[derive(utoipa::IntoResponses)]
pub enum CallbackRefused {
    /// Malformed body (or, from NAVER WORKS, no X-WORKS-BotId)
    #[response(status = 400)]
    Malformed(ErrorEnvelope<'static>),
    /// Missing, wrong or (Slack) stale signature
    #[response(status = 401)]
    Unsigned(ErrorEnvelope<'static>),
    /// Unknown webhook
    #[response(status = 404)]
    NotFound(ErrorEnvelope<'static>),
    /// Body too large
    #[response(status = 413)]
    TooLarge(ErrorEnvelope<'static>),
    /// Not the content type the platform sends (Slack: JSON for events,
    /// form-encoded for commands and interactions)
    #[response(status = 415)]
    WrongType(ErrorEnvelope<'static>),
}

/// `{tenant}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// Tenant id (`ten_…`)
    pub tenant: String,
}

/// `{tenant}` and `{connection}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConnectionPath {
    /// Tenant id (`ten_…`)
    pub tenant: String,
    /// Connection id (`con_…`)
    pub connection: String,
}

/// `{connection}` of the send API.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SendPath {
    /// Connection id (`con_…`)
    pub connection: String,
}

/// The query a platform sends back to an OAuth callback.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by utoipa's derive only
pub struct CallbackQuery {
    /// The code to exchange
    pub code: Option<String>,
    /// The state botgate sent
    pub state: Option<String>,
    /// Set instead of a code when the person cancelled (`access_denied`)
    pub error: Option<String>,
}

/// `{connection}` of a webhook or auth URL.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PublicPath {
    /// The connection's public id, from its webhook or auth URL
    pub connection: String,
}
