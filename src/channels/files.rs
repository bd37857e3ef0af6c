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
use crate::domain::str_field;
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
    /// Slack: the workspace whose bot token reads the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<String>,
    /// Slack: the workspace's Enterprise Grid organization, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
}

/// The link's token: the reference and its MAC, base64url.
pub fn token(state: &AppState, file: &FileRef) -> String {
    sign(&state.vault.ring(), file)
}

/// [`token`] with a key ring at hand (the benchmarks sign links for a
/// gateway whose master key they chose).
pub fn sign(ring: &crate::secrets::KeyRing, file: &FileRef) -> String {
    let body = serde_json::to_vec(file).unwrap_or_default();
    let tag = ring.mac(PURPOSE, &body);
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

/// The platform file a turn's content names, if any: NAVER WORKS' fileId,
/// Slack's `url_private` (with its workspace).
fn file_of(turn: &Turn) -> Option<(&str, Option<&Value>)> {
    match turn.channel {
        Channel::NaverWorks => {
            let kind = str_field(&turn.content, "type")?;
            if !matches!(kind, "image" | "file" | "audio" | "video") {
                return None;
            }
            str_field(&turn.content, "fileId")
                .filter(|f| !f.is_empty() && f.len() <= 256 && !f.chars().any(char::is_control))
                .map(|f| (f, None))
        }
        Channel::Slack => {
            let kind = str_field(&turn.content, "type")?;
            if !matches!(kind, "image" | "file" | "audio" | "video") {
                return None;
            }
            let url = turn
                .raw
                .pointer("/event/files/0/url_private")
                .and_then(Value::as_str)
                .filter(|u| u.len() <= 1024 && u.starts_with("http"))?;
            Some((url, Some(&turn.conversation)))
        }
    }
}

/// Adds `content.url` (a link that works `file_link_seconds`) to a turn
/// whose content names a platform file.
pub fn annotate(state: &AppState, connection: &ConnectionRecord, turn: &mut Turn, now_ms: i64) {
    let Some((file, conversation)) = file_of(turn) else {
        return;
    };
    let at = |key: &str| {
        conversation
            .and_then(|c| str_field(c, key))
            .map(str::to_owned)
    };
    let (file, team, enterprise) = (file.to_owned(), at("team_id"), at("enterprise_id"));
    let expires = now_ms / 1000 + i64::try_from(state.settings.file_link.as_secs()).unwrap_or(900);
    let token = token(
        state,
        &FileRef {
            t: connection.tenant_id.as_str().to_owned(),
            c: connection.id.as_str().to_owned(),
            f: file,
            e: expires,
            w: team,
            x: enterprise,
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
    file: &FileRef,
) -> Result<reqwest::Response, FileError> {
    let (url, bearer) = match Channel::of(connection) {
        Channel::NaverWorks => naverworks_file(state, connection, &file.f).await?,
        Channel::Slack => {
            // The URL came in a signed Slack event; the bot token goes only
            // to a host trusted with it.
            let url = url::Url::parse(&file.f).map_err(|_| FileError::NotFound)?;
            if !trusted_host(state, &url) {
                return Err(FileError::Refused);
            }
            let token = super::slack::installs::bot_token(
                state,
                connection,
                file.w.as_deref(),
                file.x.as_deref(),
                false,
            )
            .await
            .map_err(|e| FileError::Token(e.to_string()))?;
            (url, token.token.expose_secret().to_owned())
        }
    };
    fetch(state, url, &bearer).await
}

/// NAVER WORKS' download URL for a file, and the bot's token.
async fn naverworks_file(
    state: &AppState,
    connection: &ConnectionRecord,
    file_id: &str,
) -> Result<(url::Url, String), FileError> {
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
    Ok((url, token.access_token.expose_secret().to_owned()))
}

/// GETs `url` with the bearer token, following one redirect: with the
/// token again to a trusted host, without it (under the outbound policy)
/// to any other. The 2xx answer, its length checked against the cap.
async fn fetch(
    state: &AppState,
    url: url::Url,
    bearer: &str,
) -> Result<reqwest::Response, FileError> {
    let first = state
        .http
        .get(url.clone())
        .bearer_auth(bearer)
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
                    .bearer_auth(bearer)
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

// ---------------------------------------------------------------- uploads

/// The stored form of a reply whose file the engine gave as bytes: kept in
/// the outbox as `{"type", "botgate_upload": {"name", "data_base64"}}` and
/// uploaded at delivery.
pub struct Upload {
    pub kind: String,
    pub name: String,
    /// The bytes the engine gave, or (empty) those at `url`.
    pub data: Vec<u8>,
    /// A URL the platform cannot reach, fetched by botgate at delivery.
    pub url: Option<String>,
}

impl Upload {
    /// The file's bytes: the engine's, or fetched from its URL when the
    /// configuration allows (`fetch_reply_urls`), under the outbound policy
    /// (no redirects, at most `file_max_bytes`). A refusal fails the reply.
    pub async fn bytes(&self, state: &AppState) -> Result<std::borrow::Cow<'_, [u8]>, super::Sent> {
        use super::Sent;
        let Some(url) = &self.url else {
            return Ok(std::borrow::Cow::Borrowed(&self.data));
        };
        if !state.settings.fetch_reply_urls {
            return Err(Sent::Rejected(
                "the file's URL is not a public https URL the platform can fetch; send data_base64, or set fetch_reply_urls".into(),
            ));
        }
        let request = state
            .outbound
            .get(url)
            .map_err(|e| Sent::Rejected(format!("the file's URL is refused: {e}")))?;
        let response = request.send().await.map_err(|e| {
            if crate::outbound::refused(&e).is_some() {
                Sent::Rejected("the file's URL is on a network botgate may not reach".into())
            } else {
                Sent::Unreachable("the file's URL could not be fetched".into())
            }
        })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            status if crate::outbound::retryable_status(status) => {
                return Err(Sent::ServerError(format!(
                    "the file's URL answered HTTP {status}"
                )))
            }
            _ => {
                return Err(Sent::Rejected(format!(
                    "the file's URL answered HTTP {status}"
                )))
            }
        }
        let bytes = crate::outbound::read_capped(response, state.settings.file_max_bytes)
            .await
            .map_err(|e| Sent::Rejected(format!("the file's URL: {e}")))?;
        Ok(std::borrow::Cow::Owned(bytes))
    }
}

/// Whether the platform can fetch `url` itself: https to a name or a
/// public address (a name that resolves privately is not known here).
pub fn platform_reachable(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.scheme() == "https")
        && crate::outbound::Policy::new(Vec::new(), None)
            .check_url(url)
            .is_ok()
}

/// A reply's file at a URL the platform cannot reach, kept for delivery:
/// botgate fetches it then (if configured) and uploads it.
pub fn upload_from_url(kind: &str, url: &str) -> Result<Value, String> {
    let parsed = url::Url::parse(url).map_err(|_| "the file's url is not a URL".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2000 {
        return Err("the file's url must be http(s), at most 2,000 characters".into());
    }
    let last = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .unwrap_or("file");
    let name = file_name(kind, &percent_decode(last))?;
    Ok(serde_json::json!({"type": kind, "botgate_upload": {"name": name, "url": url}}))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// Extensions NAVER WORKS blocks by default (NAVERWORKS.md §4.2).
const BLOCKED: &[&str] = &[
    "bat", "cmd", "com", "cpl", "exe", "scr", "js", "vbs", "wsf", "hta",
];

/// A file name as botgate sends it: its last path part, without control
/// characters or quotes, at most 200 characters; refused when nothing is
/// left or NAVER WORKS would refuse it (a blocked extension, an MP3 audio
/// sent by fileId, which NAVERWORKS.md §4.2 reports refused).
pub fn file_name(kind: &str, name: &str) -> Result<String, String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':'))
        .take(200)
        .collect();
    let clean = clean.trim().to_owned();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        return Err("a file reply needs a name".into());
    }
    let extension = clean
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if BLOCKED.contains(&extension.as_str()) {
        return Err(format!(
            "NAVER WORKS blocks .{extension} files by default; send another type"
        ));
    }
    if kind == "audio" && extension == "mp3" {
        return Err(
            "NAVER WORKS refuses MP3 audio sent as a file (send WAV, or an https URL)".into(),
        );
    }
    Ok(clean)
}

/// A reply's file given as bytes, checked (name, base64) and put in the
/// form the outbox keeps until delivery.
pub fn upload_request(kind: &str, name: Option<&Value>, data: &Value) -> Result<Value, String> {
    let name = name
        .and_then(Value::as_str)
        .ok_or("a file reply with data_base64 needs a name")?;
    let name = file_name(kind, name)?;
    let data = data.as_str().ok_or("data_base64 must be a string")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| "data_base64 is not valid base64".to_owned())?;
    if bytes.is_empty() {
        return Err("data_base64 is empty".into());
    }
    Ok(
        serde_json::json!({"type": kind, "botgate_upload": {"name": name, "data_base64": data.trim()}}),
    )
}

/// The upload a stored content asks for, if it is one.
pub fn upload_of(content: &str) -> Option<Upload> {
    if !content.contains("\"botgate_upload\"") {
        return None;
    }
    let value: Value = serde_json::from_str(content).ok()?;
    let upload = value.get("botgate_upload")?;
    let kind = value.get("type")?.as_str()?.to_owned();
    let url = str_field(upload, "url").map(str::to_owned);
    let data = match &url {
        Some(_) => Vec::new(),
        None => base64::engine::general_purpose::STANDARD
            .decode(upload.get("data_base64")?.as_str()?)
            .ok()?,
    };
    Some(Upload {
        name: upload.get("name")?.as_str()?.to_owned(),
        kind,
        data,
        url,
    })
}

/// What an upload step's answer comes to, as a send's would.
fn step_failure(status: u16, what: &str) -> super::Sent {
    use super::Sent;
    match status {
        401 | 403 => Sent::Unauthorized(format!("NAVER WORKS refused the token for {what}")),
        429 => Sent::RateLimited {
            until: crate::domain::now_millis() + 5_000,
            error: format!("HTTP 429 on {what}"),
        },
        status if crate::outbound::retryable_status(status) => {
            Sent::ServerError(format!("HTTP {status} on {what}"))
        }
        _ => Sent::Rejected(format!("HTTP {status} on {what}")),
    }
}

/// NAVER WORKS' upload (§5.1): create the attachment (`{"fileName"}` →
/// `fileId`, single-use `uploadUrl`), then the multipart upload with the
/// bot's token (only to a trusted host). The file id, or how it failed.
pub async fn upload(
    state: &AppState,
    connection: &ConnectionRecord,
    token: &secrecy::SecretString,
    upload: &Upload,
) -> Result<String, super::Sent> {
    use super::Sent;
    let name = file_name(&upload.kind, &upload.name).map_err(Sent::Rejected)?;
    let data = upload.bytes(state).await?;
    if data.len() > state.settings.file_max_bytes {
        return Err(Sent::Rejected(format!(
            "the file is larger than file_max_bytes ({})",
            state.settings.file_max_bytes
        )));
    }
    let mut url = url::Url::parse(state.settings.naverworks_api_url.as_str())
        .map_err(|_| Sent::Rejected("the API URL is invalid".into()))?;
    url.path_segments_mut()
        .map_err(|()| Sent::Rejected("the API URL is invalid".into()))?
        .pop_if_empty()
        .extend(["bots", connection.bot_id.as_str(), "attachments"]);
    let created = upload_step(
        state,
        token,
        state
            .http
            .post(url)
            .json(&serde_json::json!({ "fileName": name })),
        "create attachment",
    )
    .await?;
    let created: Value = crate::outbound::read_capped(created, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Sent::ServerError("create attachment answered no JSON".into()))?;
    let (Some(file_id), Some(upload_url)) = (
        str_field(&created, "fileId").filter(|f| f.len() <= 256),
        str_field(&created, "uploadUrl").and_then(|u| url::Url::parse(u).ok()),
    ) else {
        return Err(Sent::ServerError(
            "create attachment answered no fileId or uploadUrl".into(),
        ));
    };
    if !trusted_host(state, &upload_url) {
        return Err(Sent::Rejected(
            "the upload URL is on a host botgate does not send the bot's token to (file_hosts)"
                .into(),
        ));
    }
    let boundary = format!(
        "botgate{}",
        crate::secrets::hex(&crate::secrets::random_bytes(12))
    );
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"resourceName\"\r\n\r\n{name}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"Filedata\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = state.http.post(upload_url).header(
        reqwest::header::CONTENT_TYPE,
        format!("multipart/form-data; boundary={boundary}"),
    );
    upload_step(state, token, request.body(body), "the file upload").await?;
    Ok(file_id.to_owned())
}

/// One step of an upload, sent with the bot's token: its 2xx answer.
async fn upload_step(
    state: &AppState,
    token: &secrecy::SecretString,
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, super::Sent> {
    let response = request
        .timeout(state.settings.send_timeout)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(|e| {
            super::Sent::Unreachable(format!(
                "NAVER WORKS {} on {what}",
                crate::outbound::no_answer(&e)
            ))
        })?;
    let status = response.status().as_u16();
    if !(200..=299).contains(&status) {
        return Err(step_failure(status, what));
    }
    Ok(response)
}
