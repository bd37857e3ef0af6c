//! Users' files for engines (DESIGN.md "Attachments"): a message whose
//! content names a platform file (NAVER WORKS image, file, audio and video
//! messages carry a `fileId`, NAVERWORKS.md §3.3) reaches the engine with
//! `content.url`, a botgate link `GET /files/{token}`. The token names the
//! tenant, the connection and the file, expires (`file_link_seconds`), and
//! is signed with a key derived from the master key, so it cannot be made
//! or altered without it; nothing is stored.
//!
//! Fetching the link streams the file from the platform on demand: NAVER
//! WORKS' `GET /bots/{botId}/attachments/{fileId}` answers 302 to its
//! storage host, and the bot's Authorization header must be sent again on
//! that hop (§5.1) — but only to a host botgate trusts with it (the API
//! URL's own host, or `file_hosts`). Any other redirect target is fetched
//! without it, under the outbound policy (no loopback, private or metadata
//! addresses unless allowed). At most `file_max_bytes` pass: refused up
//! front when the platform says a larger length, cut off past it otherwise.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Channel, Turn};
use crate::state::AppState;
use crate::store::ConnectionRecord;

const PURPOSE: &str = "file link v1";

/// What a link names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    /// Tenant, connection and the platform's file id.
    pub t: String,
    pub c: String,
    pub f: String,
    /// Expiry, Unix seconds.
    pub e: i64,
}

/// The link's token: the reference and its MAC, base64url.
pub fn token(state: &AppState, file: &FileRef) -> String {
    let body = serde_json::to_vec(file).unwrap_or_default();
    let tag = state.vault.ring().mac(PURPOSE, &body);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The reference a token names, if it is genuine and unexpired at `now`
/// (Unix seconds).
pub fn verify(state: &AppState, token: &str, now: i64) -> Option<FileRef> {
    if token.len() > 1024 {
        return None;
    }
    let (body, tag) = token.split_once('.')?;
    let body = URL_SAFE_NO_PAD.decode(body).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if !state.vault.ring().verify_mac(PURPOSE, &body, &tag) {
        return None;
    }
    let file: FileRef = serde_json::from_slice(&body).ok()?;
    (file.e >= now).then_some(file)
}

/// The platform file a turn's content names, if any.
fn file_of(turn: &Turn) -> Option<&str> {
    match turn.channel {
        Channel::NaverWorks => {
            let kind = turn.content.get("type").and_then(Value::as_str)?;
            if !matches!(kind, "image" | "file" | "audio" | "video") {
                return None;
            }
            turn.content
                .get("fileId")
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty() && f.len() <= 256 && !f.chars().any(char::is_control))
        }
        // Slack files are not linked yet (NAVER WORKS first; see README).
        Channel::Slack => None,
    }
}

/// Adds `content.url` (a link that works `file_link_seconds`) to a turn
/// whose content names a platform file.
pub fn annotate(state: &AppState, connection: &ConnectionRecord, turn: &mut Turn, now_ms: i64) {
    let Some(file) = file_of(turn).map(str::to_owned) else {
        return;
    };
    let expires = now_ms / 1000 + i64::try_from(state.settings.file_link.as_secs()).unwrap_or(900);
    let token = token(
        state,
        &FileRef {
            t: connection.tenant_id.as_str().to_owned(),
            c: connection.id.as_str().to_owned(),
            f: file,
            e: expires,
        },
    );
    if let Some(content) = turn.content.as_object_mut() {
        content.insert(
            "url".to_owned(),
            Value::String(state.settings.public_link(&format!("files/{token}"))),
        );
    }
}

/// Whether the bot's Authorization header may go to `url`'s host.
pub fn trusted_host(state: &AppState, url: &url::Url) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let api_hosts = [
        &state.settings.naverworks_api_url,
        &state.settings.slack_api_url,
    ];
    if api_hosts.iter().any(|u| {
        u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&host))
            && u.port_or_known_default() == url.port_or_known_default()
    }) {
        return true;
    }
    url.scheme() == "https"
        && state
            .settings
            .file_hosts
            .iter()
            .any(|h| match h.strip_prefix('.') {
                Some(domain) => host.ends_with(&format!(".{domain}")) || host == domain,
                None => host == *h,
            })
}

/// Why a file could not be streamed: each a class of failure, never the
/// platform's own words.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the platform has no such file")]
    NotFound,
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the platform could not be reached, or answered an error")]
    Upstream,
    #[error("the platform redirected to an address the outbound policy refuses")]
    Refused,
    #[error("no token for the bot: {0}")]
    Token(String),
}

/// The platform's answer with the file's bytes (a 2xx, its length checked
/// against the cap), ready to stream.
pub async fn open(
    state: &AppState,
    connection: &ConnectionRecord,
    file_id: &str,
) -> Result<reqwest::Response, FileError> {
    if Channel::of(connection) != Channel::NaverWorks {
        return Err(FileError::NotFound);
    }
    let meta = state
        .store
        .token_meta(&connection.id)
        .await
        .map_err(|_| FileError::Upstream)?;
    let token = super::naverworks::shared_token(state, connection, meta, false)
        .await
        .map_err(FileError::Token)?;
    let mut url = url::Url::parse(state.settings.naverworks_api_url.as_str())
        .map_err(|_| FileError::Upstream)?;
    url.path_segments_mut()
        .map_err(|()| FileError::Upstream)?
        .pop_if_empty()
        .extend(["bots", connection.bot_id.as_str(), "attachments", file_id]);
    let bearer = token.access_token.expose_secret().to_owned();
    let first = state
        .http
        .get(url.clone())
        .bearer_auth(&bearer)
        .send()
        .await
        .map_err(|_| FileError::Upstream)?;
    let answer = match first.status().as_u16() {
        301 | 302 | 303 | 307 | 308 => {
            let location = first
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or(FileError::Upstream)?;
            if !matches!(location.scheme(), "http" | "https") {
                return Err(FileError::Upstream);
            }
            if trusted_host(state, &location) {
                state
                    .http
                    .get(location)
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .map_err(|_| FileError::Upstream)?
            } else {
                // Not a host botgate gives the bot's token to: fetched
                // without it, as a tenant-given URL is.
                let request = state
                    .outbound
                    .get(location.as_str())
                    .map_err(|_| FileError::Refused)?;
                request.send().await.map_err(|e| {
                    if crate::outbound::refused(&e).is_some() {
                        FileError::Refused
                    } else {
                        FileError::Upstream
                    }
                })?
            }
        }
        _ => first,
    };
    match answer.status().as_u16() {
        200..=299 => {}
        404 => return Err(FileError::NotFound),
        _ => return Err(FileError::Upstream),
    }
    let cap = state.settings.file_max_bytes;
    if answer
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(FileError::TooLarge(cap));
    }
    Ok(answer)
}
