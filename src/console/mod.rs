//! The console: web pages where chatbot builders connect a NAVER WORKS bot,
//! test it, watch its events and messages, replay failures, rotate its
//! credentials and set their dialogue engine; operators create tenants.
//!
//! Server-rendered with maud (auto-escaping, checked at compile time), one
//! small script for the copy buttons and key-file upload, no inline code.
//! Every console response carries a strict Content-Security-Policy, frame
//! denial, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`
//! (pages show URLs and masked secrets; only the two static assets may be
//! cached). Sessions and CSRF: see [`session`].

mod handlers;
pub mod i18n;
mod pages;
mod playground;
pub mod session;
mod test_message;

use actix_web::http::header;
use actix_web::{middleware, web, HttpResponse};

use crate::error::method_not_allowed;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Largest form the console accepts (a pasted 8192-bit key is ~6.5 KiB).
const FORM_LIMIT: usize = 64 * 1024;

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn stylesheet() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

fn form_error(
    err: actix_web::error::UrlencodedError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::UrlencodedError as E;
    let api = match err {
        E::Overflow { limit, .. } => crate::error::ApiError::PayloadTooLarge(limit),
        E::ContentType => crate::error::ApiError::UnsupportedMediaType,
        other => crate::error::ApiError::BadRequest("invalid_form", other.to_string()),
    };
    api.into()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    let headers = middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"));
    cfg.service(
        web::scope("/console")
            .wrap(headers)
            .app_data(
                web::FormConfig::default()
                    .limit(FORM_LIMIT)
                    .error_handler(form_error),
            )
            .service(resource("").route(web::get().to(h::index)))
            .service(resource("/").route(web::get().to(h::index)))
            .service(resource("/assets/console.css").route(web::get().to(stylesheet)))
            .service(resource("/assets/console.js").route(web::get().to(script)))
            .service(
                resource("/sign-in")
                    .route(web::get().to(h::sign_in_page))
                    .route(web::post().to(h::sign_in)),
            )
            .service(resource("/sign-out").route(web::post().to(h::sign_out)))
            .service(resource("/link/{token}").route(web::get().to(h::sign_in_link)))
            .service(
                resource("/tenants")
                    .route(web::get().to(h::tenants_page))
                    .route(web::post().to(h::create_tenant)),
            )
            .service(resource("/tenants/{tenant}/open").route(web::post().to(h::open_tenant)))
            .service(
                resource("/connections")
                    .route(web::get().to(h::connections_page))
                    .route(web::post().to(h::create_connection)),
            )
            .service(resource("/connections/new").route(web::get().to(h::new_connection)))
            .service(resource("/connections/deleted").route(web::get().to(h::deleted_page)))
            .service(resource("/connections/{connection}").route(web::get().to(h::connection_page)))
            .service(
                resource("/connections/{connection}/send")
                    .route(web::post().to(test_message::send)),
            )
            // Before `…/messages/{message}`, which would take `retry` for an id.
            .service(
                resource("/connections/{connection}/messages/retry")
                    .route(web::post().to(h::retry_all)),
            )
            .service(
                resource("/connections/{connection}/messages/cancel")
                    .route(web::post().to(h::cancel_all)),
            )
            .service(
                resource("/connections/{connection}/messages/{message}")
                    .route(web::get().to(test_message::status)),
            )
            .service(
                resource("/connections/{connection}/playground")
                    .route(web::get().to(playground::page)),
            )
            .service(
                resource("/connections/{connection}/playground/say")
                    .route(web::post().to(playground::say)),
            )
            .service(
                resource("/connections/{connection}/playground/feed")
                    .route(web::get().to(playground::feed)),
            )
            .service(
                resource("/connections/{connection}/test")
                    .route(web::post().to(h::test_connection)),
            )
            .service(
                resource("/connections/{connection}/replay").route(web::post().to(h::replay_all)),
            )
            .service(
                resource("/connections/{connection}/installations/{team}/remove")
                    .route(web::post().to(h::remove_installation)),
            )
            .service(
                resource("/connections/{connection}/events/{event}/replay")
                    .route(web::post().to(h::replay_one)),
            )
            .service(
                resource("/connections/{connection}/messages/{message}/retry")
                    .route(web::post().to(h::retry_one)),
            )
            .service(
                resource("/connections/{connection}/messages/{message}/cancel")
                    .route(web::post().to(h::cancel_one)),
            )
            .service(
                resource("/connections/{connection}/rotate")
                    .route(web::get().to(h::rotate_page))
                    .route(web::post().to(h::rotate)),
            )
            .service(
                resource("/connections/{connection}/delete")
                    .route(web::get().to(h::delete_page))
                    .route(web::post().to(h::delete)),
            )
            .service(
                resource("/engine")
                    .route(web::get().to(h::engine_page))
                    .route(web::post().to(h::save_engine)),
            )
            .service(resource("/engine/test").route(web::post().to(h::test_engine)))
            .service(resource("/status-hook").route(web::post().to(h::save_status_hook)))
            .service(
                resource("/status-hook/remove").route(web::post().to(h::remove_status_hook)),
            )
            .service(resource("/status-hook/test").route(web::post().to(h::test_status_hook)))
            .service(resource("/api-key").route(web::post().to(h::replace_api_key)))
            .service(resource("/activity").route(web::get().to(h::activity_page))),
    );
}
