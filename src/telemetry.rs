//! Logs: a tracing subscriber (pretty or JSON, RUST_LOG overriding the
//! configured filter) and one line per request that names the route template,
//! never the raw path: webhook and auth paths carry the connection's public id.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; later calls are ignored.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// One span per request, with a request id (the caller's `X-Request-Id` if
/// it is sane, else a new one) that every log line of the request carries and
/// the response echoes; then one line with the route template and status.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument as _;
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(
            || crate::secrets::hex(&crate::secrets::random_bytes(8)),
            str::to_owned,
        );
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.call(req).instrument(span.clone()).await?;
    // Read after routing: the request then knows its resource, and the
    // template is looked up by it. Asked before, actix matches the path
    // against every route's pattern again, one regex each (BENCHMARKS.md,
    // session 6: about 15% of the HTTP workers' time on the webhook).
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_owned());
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    let status = response.status().as_u16();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _entered = span.enter();
    if route == "/healthz" || route == "/readyz" || route == "/metrics" {
        tracing::debug!(%method, %route, status, elapsed_us, "request");
    } else {
        tracing::info!(%method, %route, status, elapsed_us, "request");
    }
    Ok(response)
}
