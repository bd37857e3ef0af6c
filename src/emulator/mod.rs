//! `botgate emulator`: a local stand-in for NAVER WORKS (and Slack: see
//! [`slack`], under `/slack/…`), following
//! `shared/NAVERWORKS.md` (section numbers in comments refer to it). One HTTP
//! server serves the auth base (`/oauth2/v2.0/…`), the API base (`/v1.0/…`)
//! and the emulator's own admin API (`/emulator/…`).
//!
//! Where NAVERWORKS.md is unsure, the emulator takes the most evidence-based
//! behaviour and makes the alternative selectable in [`EmulatorConfig`]:
//! `expires_in` as a string (or a number), 401 for a bad token (or 403), no
//! refresh-token rotation (or rotation).

pub mod admin;
mod bot_api;
pub mod config;
mod consent;
pub mod slack;
pub use crate::naverworks::content;
mod state;
mod token;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;

pub use config::{AppConfig, BotConfig, EmulatorConfig};
pub use state::Emulator;

/// An NAVER WORKS error body, `{"code","description"}` (§4.4).
pub(crate) fn api_error(status: u16, code: &str, description: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(serde_json::json!({"code": code, "description": description}))
}

/// `404 {"code":"NOT_FOUND","description":"Api not exists"}` (§4.4, observed).
pub(crate) async fn api_not_exists() -> HttpResponse {
    api_error(404, "NOT_FOUND", "Api not exists")
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(1024 * 1024)
            .error_handler(|err, _| {
                let description = format!("request body is not valid JSON: {err}");
                actix_web::error::InternalError::from_response(
                    err,
                    api_error(400, "INVALID_PARAMETER", &description),
                )
                .into()
            }),
    )
    .app_data(web::FormConfig::default().limit(64 * 1024))
    // Files (uploads, and users' files added for tests) up to 64 MiB.
    .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
    .configure(token::configure)
    .configure(bot_api::configure)
    .configure(admin::configure)
    .configure(slack::configure)
    .default_service(web::to(api_not_exists));
}

/// A running emulator: bind first, so the port is known (port 0 in tests).
pub struct EmulatorServer {
    addr: SocketAddr,
    server: Server,
    emulator: web::Data<Emulator>,
}

impl EmulatorServer {
    pub fn build(config: EmulatorConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let emulator = web::Data::new(Emulator::new(config, format!("http://{addr}"))?);
        let data = emulator.clone();
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
                .listen(listener)?
                .workers(2)
                .shutdown_timeout(1)
                .run();
        Ok(Self {
            addr,
            server,
            emulator,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn emulator(&self) -> Arc<Emulator> {
        self.emulator.clone().into_inner()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
