//! The route table. Handlers parse input into domain types, call the store,
//! and shape responses; every failure goes through `ApiError`.

pub mod auth_urls;
pub mod connections;
pub mod docs;
mod events;
pub mod extract;
mod health;
mod messages;
pub mod tenants;
pub mod webhooks;

use actix_web::web;

use crate::error::method_not_allowed;

/// A resource whose unmatched methods answer 405 in the JSON envelope.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Routes are tried in the order they are registered, and each pattern with
/// a `{segment}` is a regex run over the path: the hot ones (callbacks from
/// NAVER WORKS, the auth URLs) come first, so they are found on the first
/// try or two instead of after every API route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/webhooks/naverworks/{connection}").route(web::post().to(webhooks::naverworks)),
    )
    .service(resource("/auth/naverworks/{connection}").route(web::get().to(auth_urls::read)))
    .service(
        resource("/auth/naverworks/{connection}/refresh").route(web::post().to(auth_urls::refresh)),
    )
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/api/openapi.json").route(web::get().to(docs::openapi)))
    .service(resource("/api/docs").route(web::get().to(docs::page)))
    .service(resource("/api/v1/tenants").route(web::post().to(tenants::create)))
    .service(resource("/api/v1/tenants/{tenant}").route(web::get().to(tenants::get)))
    .service(resource("/api/v1/tenants/{tenant}/engine").route(web::put().to(tenants::set_engine)))
    .service(
        resource("/api/v1/tenants/{tenant}/connections")
            .route(web::post().to(connections::create))
            .route(web::get().to(connections::list)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/events")
            .route(web::get().to(events::list)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/events/replay")
            .route(web::post().to(events::replay_all)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/events/{event}/replay")
            .route(web::post().to(events::replay_one)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/outbox")
            .route(web::get().to(events::outbox)),
    )
    .service(
        resource("/api/v1/connections/{connection}/messages")
            .route(web::post().to(messages::send))
            .route(web::get().to(messages::list)),
    )
    .service(
        resource("/api/v1/connections/{connection}/messages/{id}")
            .route(web::get().to(messages::get)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/test")
            .route(web::post().to(connections::test)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}/audit")
            .route(web::get().to(connections::audit)),
    )
    .service(
        resource("/api/v1/tenants/{tenant}/connections/{connection}")
            .route(web::get().to(connections::get))
            .route(web::patch().to(connections::update))
            .route(web::delete().to(connections::delete)),
    );
}
