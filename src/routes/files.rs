//! `GET /files/{token}`: a user's file, streamed from the platform for the
//! engine that was given the link (see `channels::files`). An expired,
//! forged or altered token, or one whose connection is gone or belongs to
//! another tenant, gets 404 before the platform is called. The answer is
//! served as a download that cannot run in botgate's origin (`attachment`,
//! a sandboxing policy, `nosniff`), never cached.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::channels::files::{self, FileError};
use crate::domain::ids::ConnectionId;
use crate::domain::now_millis;
use crate::state::AppState;

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": {"code": code, "message": message}}))
}

fn not_found() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such file link, or it has expired",
    )
}

/// The platform's content type if it is a plain `type/subtype[; params]`.
fn content_type(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| {
            t.len() <= 128
                && t.contains('/')
                && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        })
        .unwrap_or("application/octet-stream")
        .to_owned()
}

#[utoipa::path(get, path = "/files/{token}",
    summary = "A user's file, for the engine given the link (streamed from the platform)", tag = "files",
    params(("token" = String, Path, description = "The signed token of the link in the event's content.url")),
    responses((status = 200, description = "The file's bytes, as the platform serves them"), (status = 404, description = "Unknown, forged or expired link"), (status = 502, description = "The platform failed, or the file is over file_max_bytes")),
    security(()))]
pub async fn file(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(file) = files::verify(&state, &path, now_millis() / 1000) else {
        return not_found();
    };
    let connection = match state
        .store
        .connection_by_id(&ConnectionId::from_trusted(file.c.clone()))
        .await
    {
        Ok(Some(c)) if c.tenant_id.as_str() == file.t => c,
        Ok(_) => return not_found(),
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable",
            )
        }
    };
    let answer = match files::open(&state, &connection, &file).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(connection_id = %connection.id, error = %e, "a file link failed");
            let code = match e {
                FileError::NotFound => return not_found(),
                FileError::TooLarge(_) => "file_too_large",
                FileError::Refused => "redirect_refused",
                FileError::Upstream | FileError::Token(_) => "upstream_unavailable",
            };
            return error(StatusCode::BAD_GATEWAY, code, &e.to_string());
        }
    };
    let cap = state.settings.file_max_bytes;
    let kind = content_type(&answer);
    let length = answer.content_length();
    // Past the cap (a platform that said no length), the transfer breaks
    // off: the client sees an incomplete download, never more than the cap.
    let body = futures_util::stream::unfold(Some((answer, 0usize)), move |at| async move {
        let (mut answer, seen) = at?;
        match answer.chunk().await {
            Ok(Some(chunk)) if seen + chunk.len() <= cap => {
                let seen = seen + chunk.len();
                Some((Ok::<_, std::io::Error>(chunk), Some((answer, seen))))
            }
            Ok(Some(_)) => Some((
                Err(std::io::Error::other(
                    "the file is larger than file_max_bytes",
                )),
                None,
            )),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::other("the platform's transfer broke off")),
                None,
            )),
        }
    });
    let mut response = HttpResponse::Ok();
    response
        .content_type(kind)
        .insert_header((header::CONTENT_DISPOSITION, "attachment"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "private, no-store"));
    if let Some(length) = length {
        response.no_chunking(length);
    }
    response.streaming(body)
}
