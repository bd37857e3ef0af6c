//! A dialogue engine for botgate's `http` kind, as small as one can be:
//! it checks every request as an engine should — `X-Botgate-Timestamp`
//! within 300 s of its clock (a replayed request is refused), then
//! `X-Botgate-Signature` over `timestamp.body` — and answers a text with
//! the same text, shouted.
//!
//! ```sh
//! ENGINE_SECRET=a-long-shared-secret cargo run --example engine   # listens on 127.0.0.1:5005
//! ```
//! then set the tenant's engine to `{"kind": "http", "url":
//! "http://127.0.0.1:5005/botgate", "secret": "a-long-shared-secret"}` (and
//! `BOTGATE_ENGINE_ALLOWED_NETWORKS=127.0.0.0/8`), or run
//! `botgate demo --engine-url http://127.0.0.1:5005/botgate` and use the
//! secret it names.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use botgate::engine::http::verify;
use serde_json::{json, Value};

async fn answer(req: HttpRequest, body: web::Bytes, secret: web::Data<String>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let now = botgate::domain::now_millis() / 1000;
    if let Err(why) = verify(
        secret.as_bytes(),
        header("X-Botgate-Timestamp"),
        header("X-Botgate-Signature"),
        &body,
        now,
    ) {
        return HttpResponse::Unauthorized().json(json!({ "error": why.to_string() }));
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let replies = match event.pointer("/content/text").and_then(Value::as_str) {
        Some(text) => vec![json!({"type": "text", "text": text.to_uppercase()})],
        None => Vec::new(),
    };
    HttpResponse::Ok().json(json!({ "replies": replies }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("ENGINE_SECRET").unwrap_or_else(|_| {
        eprintln!("set ENGINE_SECRET to the engine secret you gave botgate");
        std::process::exit(2);
    });
    let listen = std::env::var("ENGINE_LISTEN").unwrap_or_else(|_| "127.0.0.1:5005".into());
    let secret = web::Data::new(secret);
    HttpServer::new(move || {
        App::new()
            .app_data(secret.clone())
            .route("/botgate", web::post().to(answer))
    })
    .bind(listen)?
    .run()
    .await
}
