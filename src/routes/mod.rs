//! The route table. Handlers parse input into domain types, call a service
//! or the store, and shape responses; every failure goes through `ApiError`.

pub mod auth_urls;
pub mod connections;
pub mod docs;
mod events;
pub mod extract;
pub mod files;
mod health;
mod messages;
pub mod naverworks_oauth;
mod oauth;
pub mod slack;
pub mod slack_oauth;
pub mod tenants;
pub mod webhooks;

use actix_web::http::Method;
use actix_web::{web, Route};

use crate::error::method_not_allowed;

/// One operation: its method, its path pattern (as the OpenAPI document
/// names it) and its handler.
struct Operation {
    method: Method,
    path: &'static str,
    route: Route,
}

fn op(method: Method, path: &'static str, route: Route) -> Operation {
    Operation {
        method: method.clone(),
        path,
        route: route.method(method),
    }
}

/// Every operation of the API, in the order they are tried. Routes are
/// tried in the order they are registered, and each pattern with a
/// `{segment}` is a regex run over the path: the hot ones (callbacks from
/// NAVER WORKS, the auth URLs) come first, so they are found on the first
/// try or two instead of after every API route.
fn operations() -> Vec<Operation> {
    use Method as M;
    vec![
        op(
            M::POST,
            "/webhooks/naverworks/{connection}",
            web::to(webhooks::naverworks),
        ),
        op(
            M::POST,
            "/webhooks/slack/{connection}/events",
            web::to(slack::events),
        ),
        op(
            M::POST,
            "/webhooks/slack/{connection}/commands",
            web::to(slack::commands),
        ),
        op(
            M::POST,
            "/webhooks/slack/{connection}/interactions",
            web::to(slack::interactions),
        ),
        op(
            M::GET,
            "/auth/slack/{connection}",
            web::to(auth_urls::slack_read),
        ),
        op(
            M::POST,
            "/auth/slack/{connection}/refresh",
            web::to(auth_urls::slack_refresh),
        ),
        op(
            M::GET,
            "/oauth/slack/{connection}/install",
            web::to(slack_oauth::install),
        ),
        op(
            M::GET,
            "/oauth/slack/callback",
            web::to(slack_oauth::callback),
        ),
        op(M::GET, "/files/{token}", web::to(files::file)),
        op(
            M::GET,
            "/oauth/naverworks/{connection}/authorize",
            web::to(naverworks_oauth::authorize),
        ),
        op(
            M::GET,
            "/oauth/naverworks/callback",
            web::to(naverworks_oauth::callback),
        ),
        op(
            M::GET,
            "/auth/naverworks/{connection}",
            web::to(auth_urls::read),
        ),
        op(
            M::POST,
            "/auth/naverworks/{connection}/refresh",
            web::to(auth_urls::refresh),
        ),
        op(M::GET, "/healthz", web::to(health::healthz)),
        op(M::GET, "/readyz", web::to(health::readyz)),
        op(M::GET, "/metrics", web::to(health::metrics)),
        op(M::GET, "/api/openapi.json", web::to(docs::openapi)),
        op(M::GET, "/api/docs", web::to(docs::page)),
        op(M::POST, "/api/v1/tenants", web::to(tenants::create)),
        op(M::GET, "/api/v1/tenants", web::to(tenants::list)),
        op(M::GET, "/api/v1/tenants/{tenant}", web::to(tenants::get)),
        op(
            M::DELETE,
            "/api/v1/tenants/{tenant}",
            web::to(tenants::delete),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/export",
            web::to(tenants::export),
        ),
        op(
            M::PUT,
            "/api/v1/tenants/{tenant}/quotas",
            web::to(tenants::set_quotas),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/api-key",
            web::to(tenants::replace_api_key),
        ),
        op(
            M::PUT,
            "/api/v1/tenants/{tenant}/engine",
            web::to(tenants::set_engine),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/engine/test",
            web::to(tenants::test_engine),
        ),
        op(
            M::PUT,
            "/api/v1/tenants/{tenant}/status-hook",
            web::to(tenants::set_status_hook),
        ),
        op(
            M::DELETE,
            "/api/v1/tenants/{tenant}/status-hook",
            web::to(tenants::remove_status_hook),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/status-hook/test",
            web::to(tenants::test_status_hook),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/connections",
            web::to(connections::create),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/activity",
            web::to(tenants::activity),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections",
            web::to(connections::list),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections/{connection}/events",
            web::to(events::list),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/connections/{connection}/events/replay",
            web::to(events::replay_all),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/connections/{connection}/events/{event}/replay",
            web::to(events::replay_one),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections/{connection}/outbox",
            web::to(events::outbox),
        ),
        op(
            M::POST,
            "/api/v1/connections/{connection}/messages",
            web::to(messages::send),
        ),
        op(
            M::GET,
            "/api/v1/connections/{connection}/messages",
            web::to(messages::list),
        ),
        // Before `…/messages/{id}`, which would take `retry` or `cancel`
        // for an id.
        op(
            M::POST,
            "/api/v1/connections/{connection}/messages/retry",
            web::to(messages::retry_all),
        ),
        op(
            M::POST,
            "/api/v1/connections/{connection}/messages/cancel",
            web::to(messages::cancel_all),
        ),
        op(
            M::GET,
            "/api/v1/connections/{connection}/messages/{id}",
            web::to(messages::get),
        ),
        op(
            M::POST,
            "/api/v1/connections/{connection}/messages/{id}/retry",
            web::to(messages::retry_one),
        ),
        op(
            M::POST,
            "/api/v1/connections/{connection}/messages/{id}/cancel",
            web::to(messages::cancel_one),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections/{connection}/installations",
            web::to(connections::installations),
        ),
        op(
            M::DELETE,
            "/api/v1/tenants/{tenant}/connections/{connection}/installations/{team}",
            web::to(connections::delete_installation),
        ),
        op(
            M::POST,
            "/api/v1/tenants/{tenant}/connections/{connection}/test",
            web::to(connections::test),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections/{connection}/audit",
            web::to(connections::audit),
        ),
        op(
            M::GET,
            "/api/v1/tenants/{tenant}/connections/{connection}",
            web::to(connections::get),
        ),
        op(
            M::PATCH,
            "/api/v1/tenants/{tenant}/connections/{connection}",
            web::to(connections::update),
        ),
        op(
            M::DELETE,
            "/api/v1/tenants/{tenant}/connections/{connection}",
            web::to(connections::delete),
        ),
    ]
}

/// The (method, path) of every operation the router serves: the same table
/// `configure` registers, so a test can hold the OpenAPI document to it.
pub fn routes() -> Vec<(String, &'static str)> {
    operations()
        .into_iter()
        .map(|o| (o.method.to_string(), o.path))
        .collect()
}

/// Registers the operations, one resource per path (in the order of each
/// path's first operation); a resource's other methods answer 405 in the
/// JSON envelope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for o in operations() {
        match paths.iter_mut().find(|(path, _)| *path == o.path) {
            Some((_, routes)) => routes.push(o.route),
            None => paths.push((o.path, vec![o.route])),
        }
    }
    for (path, routes) in paths {
        let resource = routes.into_iter().fold(
            web::resource(path).default_service(web::to(method_not_allowed)),
            actix_web::Resource::route,
        );
        cfg.service(resource);
    }
}
