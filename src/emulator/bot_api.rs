//! The Bot API under `/v1.0` (§4, §5): send to a user or a channel, the
//! attachment upload/download pair, channel info and members. Unknown paths
//! answer `404 Api not exists`.

// Checks return the ready error response; one per request, so its size is moot.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{strikes, Attachment, Emulator, State};
use super::{api_error, content};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1.0/bots/{bot}/{kind}/{target}/messages",
        web::post().to(send_message),
    )
    .route("/v1.0/bots/{bot}", web::get().to(bot_info))
    .route(
        "/v1.0/bots/{bot}/attachments",
        web::post().to(create_attachment),
    )
    .route(
        "/v1.0/bots/{bot}/attachments/{file}",
        web::get().to(download_attachment),
    )
    .route(
        "/v1.0/bots/{bot}/channels/{channel}",
        web::get().to(channel_info),
    )
    .route(
        "/v1.0/bots/{bot}/channels/{channel}/members",
        web::get().to(channel_members),
    )
    .route("/storage/upload/{upload}", web::post().to(upload))
    .route("/storage/download/{file}", web::get().to(storage_download));
}

const SEND_SCOPES: &[&str] = &["bot", "bot.message"];
const READ_SCOPES: &[&str] = &["bot", "bot.read"];

/// Who is calling: the app behind the token, and its domain.
struct Caller {
    client_id: String,
    domain_id: i64,
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn unauthorized(state: &State, description: &str) -> HttpResponse {
    api_error(
        state.config.unauthorized_status,
        "UNAUTHORIZED",
        description,
    )
}

/// Token check (401, or 403 in the compatibility mode), then the bot: it must
/// belong to the token's app (404 `Bot does not exist.`, §4.4).
fn authorize(
    state: &State,
    req: &HttpRequest,
    bot_id: &str,
    scopes: &[&str],
) -> Result<Caller, HttpResponse> {
    let Some(token) = bearer(req) else {
        return Err(unauthorized(state, "Authentication required"));
    };
    let Some(access) = state.access_tokens.get(token) else {
        return Err(unauthorized(state, "Malformed authentication token"));
    };
    if access.expires_at <= state.now() {
        return Err(unauthorized(state, "Expired authentication token"));
    }
    if !access.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
        // An app without the scope granted gets 401 ([3P] openclaw README).
        return Err(unauthorized(state, "Insufficient scope"));
    }
    let app = state
        .apps
        .get(&access.client_id)
        .ok_or_else(|| unauthorized(state, "Unknown app"))?;
    match state.bots.get(bot_id) {
        Some((owner, _)) if *owner == access.client_id => Ok(Caller {
            client_id: access.client_id.clone(),
            domain_id: app.config.domain_id,
        }),
        _ => Err(api_error(404, "NOT_FOUND", "Bot does not exist.")),
    }
}

fn rate_headers(builder: &mut HttpResponseBuilder, limit: u32, remaining: u32, reset: u64) {
    // The docs spell the used-count header `rateLimit-ssed` (§4.5, probably a
    // typo for "used"); both spellings are sent.
    let used = limit.saturating_sub(remaining);
    builder
        .insert_header(("rateLimit-limit", limit.to_string()))
        .insert_header(("rateLimit-remaining", remaining.to_string()))
        .insert_header(("rateLimit-reset", reset.to_string()))
        .insert_header(("rateLimit-ssed", used.to_string()))
        .insert_header(("rateLimit-used", used.to_string()));
}

fn too_many(limit: u32, reset: u64) -> HttpResponse {
    let mut builder = HttpResponse::TooManyRequests();
    rate_headers(&mut builder, limit, 0, reset);
    builder.json(json!({"code": "TOO_MANY_REQUESTS", "description": "API rate limit exceeded"}))
}

/// Latency fault, before anything else.
async fn delay(emulator: &Emulator) {
    let ms = emulator.lock().faults.latency_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Rate limit, then injected 429/5xx faults. `Ok` carries the headers' values.
fn admit(
    state: &mut State,
    caller: &Caller,
    api: &'static str,
) -> Result<(u32, u32, u64), HttpResponse> {
    let (limit, remaining, reset) = match state.take_rate(caller.domain_id, api) {
        Ok(v) => v,
        Err((l, r)) => {
            state.rate_limited += 1;
            return Err(too_many(l, r));
        }
    };
    if strikes(state.faults.rate_429) {
        state.rate_limited += 1;
        return Err(too_many(limit, reset));
    }
    if strikes(state.faults.rate_5xx) {
        return Err(api_error(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal server error (injected fault)",
        ));
    }
    if strikes(state.faults.rate_408) {
        return Err(HttpResponse::RequestTimeout().finish());
    }
    Ok((limit, remaining, reset))
}

/// Token, bot, rate limit and injected faults: everything before the work.
fn gate(
    state: &mut State,
    req: &HttpRequest,
    bot_id: &str,
    scopes: &[&str],
    api: &'static str,
) -> Result<(Caller, (u32, u32, u64)), HttpResponse> {
    let caller = authorize(state, req, bot_id, scopes)?;
    let rate = admit(state, &caller, api)?;
    Ok((caller, rate))
}

async fn send(
    req: HttpRequest,
    body: web::Bytes,
    emulator: web::Data<Emulator>,
    bot_id: String,
    target: (Option<String>, Option<String>),
    api: &'static str,
) -> HttpResponse {
    delay(&emulator).await;
    let mut state = emulator.lock();
    let (caller, (limit, remaining, reset)) =
        match gate(&mut state, &req, &bot_id, SEND_SCOPES, api) {
            Ok(v) => v,
            Err(response) => return response,
        };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return api_error(
                400,
                "INVALID_PARAMETER",
                &format!("request body is not valid JSON: {e}"),
            )
        }
    };
    if let Err(description) = content::validate_message(&parsed) {
        // The real validation codes are undocumented ([I], §4.4).
        return api_error(400, "INVALID_PARAMETER", &description);
    }
    if let (Some(user), _) = &target {
        if state.faults.unknown_users.contains(user) {
            return api_error(404, "NOT_FOUND", "User does not exist.");
        }
    }
    let content = parsed.get("content").cloned().unwrap_or(Value::Null);
    state.record_message(&bot_id, &caller.client_id, target, content);
    let mut builder = HttpResponse::Created();
    rate_headers(&mut builder, limit, remaining, reset);
    builder.finish() // 201 with an empty body (§4.1)
}

/// §4.1's two sends: to a user (`users/{userId}`) or a channel
/// (`channels/{channelId}`).
async fn send_message(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    let (bot, kind, id) = path.into_inner();
    let (target, api) = match kind.as_str() {
        "users" => ((Some(id), None), "bot.message.user"),
        "channels" => ((None, Some(id)), "bot.message.channel"),
        _ => return HttpResponse::NotFound().finish(),
    };
    send(req, body, emulator, bot, target, api).await
}

#[derive(Deserialize)]
struct AttachmentBody {
    #[serde(rename = "fileName")]
    file_name: Option<String>,
}

/// §5.1 step 1: `{"fileName"}` → 200 `{"fileId","uploadUrl"}`.
async fn create_attachment(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    delay(&emulator).await;
    let bot_id = path.into_inner();
    let mut state = emulator.lock();
    if let Err(response) = gate(&mut state, &req, &bot_id, SEND_SCOPES, "bot.attachment") {
        return response;
    }
    let file_name = match serde_json::from_slice::<AttachmentBody>(&body) {
        Ok(AttachmentBody {
            file_name: Some(name),
        }) if !name.is_empty() && name.len() <= 255 => name,
        _ => return api_error(400, "INVALID_PARAMETER", "fileName: is required"),
    };
    let now = state.now();
    let file_id = format!(
        "kr1.{}{:06}.{}.0.{bot_id}.0.0.0",
        now,
        state.next_seq,
        now + 86_400
    );
    state.next_seq += 1;
    let upload_id = crate::secrets::hex(&crate::secrets::random_bytes(16));
    state.uploads.insert(upload_id.clone(), file_id.clone());
    state.attachments.insert(
        file_id.clone(),
        Attachment {
            bot_id,
            file_name,
            data: None,
            uploaded: true,
        },
    );
    let upload_url = format!("{}/storage/upload/{upload_id}", emulator.base_url);
    HttpResponse::Ok().json(json!({"fileId": file_id, "uploadUrl": upload_url}))
}

/// §5.1 step 2: multipart with a `Filedata`/`FileData` part, single use.
async fn upload(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    let mut state = emulator.lock();
    if bearer(&req).is_none_or(|t| !state.access_tokens.contains_key(t)) {
        return unauthorized(&state, "Malformed authentication token");
    }
    let Some(file_id) = state.uploads.remove(path.as_str()) else {
        return api_error(404, "NOT_FOUND", "Upload URL is unknown or already used");
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(data) = multipart_file(content_type, &body) else {
        return api_error(
            400,
            "INVALID_PARAMETER",
            "expected multipart/form-data with a Filedata part",
        );
    };
    if let Some(a) = state.attachments.get_mut(&file_id) {
        a.data = Some(data);
    }
    HttpResponse::Ok().json(json!({"fileId": file_id}))
}

/// The bytes of the `Filedata` part (any case) of a multipart body.
fn multipart_file(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut start = 0;
    let positions: Vec<usize> = std::iter::from_fn(|| {
        let found = find(text.get(start..)?, delimiter.as_bytes()).map(|i| i + start)?;
        start = found + delimiter.len();
        Some(found)
    })
    .collect();
    for pair in positions.windows(2) {
        let part = text.get(pair[0] + delimiter.len()..pair[1])?;
        let split = find(part, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(part.get(..split)?).to_ascii_lowercase();
        if headers.contains("name=\"filedata\"") {
            let data = part.get(split + 4..)?;
            return Some(data.strip_suffix(b"\r\n").unwrap_or(data).to_vec());
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// §5.1 download: 302 to the storage host, no rate-limit headers.
async fn download_attachment(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    delay(&emulator).await;
    let (bot_id, file_id) = path.into_inner();
    let mut state = emulator.lock();
    state.downloads += 1;
    if let Err(response) = authorize(&state, &req, &bot_id, READ_SCOPES) {
        return response;
    }
    let location = state
        .faults
        .download_redirect
        .clone()
        .unwrap_or_else(|| format!("{}/storage/download/{file_id}", emulator.base_url));
    match state.attachments.get(&file_id) {
        Some(a) if a.bot_id == bot_id && a.data.is_some() => HttpResponse::Found()
            .insert_header((header::LOCATION, location))
            .finish(),
        _ => api_error(404, "NOT_FOUND", "File does not exist."),
    }
}

/// The storage host: the Authorization header must be repeated (§5.1).
async fn storage_download(
    req: HttpRequest,
    path: web::Path<String>,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    let state = emulator.lock();
    if bearer(&req).is_none_or(|t| !state.access_tokens.contains_key(t)) {
        return unauthorized(&state, "Malformed authentication token");
    }
    match state.attachments.get(path.as_str()) {
        Some(Attachment {
            data: Some(data),
            file_name,
            ..
        }) => HttpResponse::Ok()
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file_name.replace('"', "")),
            ))
            .content_type("application/octet-stream")
            .body(data.clone()),
        _ => api_error(404, "NOT_FOUND", "File does not exist."),
    }
}

/// §5.4 bot info (the fields the emulator knows).
async fn bot_info(
    req: HttpRequest,
    path: web::Path<String>,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    delay(&emulator).await;
    let bot_id = path.into_inner();
    let mut state = emulator.lock();
    let (caller, _) = match gate(&mut state, &req, &bot_id, READ_SCOPES, "bot.info") {
        Ok(v) => v,
        Err(response) => return response,
    };
    let callback_url = state
        .bots
        .get(&bot_id)
        .and_then(|(_, b)| b.callback_url.clone());
    // botId is an int64 in the docs; ids beyond i64 stay strings.
    let id = bot_id
        .parse::<i64>()
        .map_or_else(|_| json!(bot_id), |n| json!(n));
    HttpResponse::Ok().json(json!({
        "botId": id,
        "botName": format!("Emulated bot {bot_id}"),
        "photoUrl": "https://example.com/bot.png",
        "description": "A bot of the botgate NAVER WORKS emulator",
        "administrators": [],
        "allowDomains": [caller.domain_id],
        "enableCallback": callback_url.is_some(),
        "callbackEvents": ["text", "location", "sticker", "image", "file"],
        "callbackUrl": callback_url,
        "enableGroupJoin": true,
    }))
}

async fn channel_info(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    delay(&emulator).await;
    let (bot_id, channel_id) = path.into_inner();
    let mut state = emulator.lock();
    let (caller, _) = match gate(&mut state, &req, &bot_id, READ_SCOPES, "bot.channel") {
        Ok(v) => v,
        Err(response) => return response,
    };
    match state.channels.get(&channel_id) {
        Some((owner, members)) if *owner == bot_id => HttpResponse::Ok().json(json!({
            "domainId": caller.domain_id,
            "channelId": channel_id,
            "title": format!("room {channel_id}"),
            "channelType": {"type": if members.len() > 1 { "MULTI_USERS" } else { "SINGLE_USER" }},
        })),
        // Not found and forbidden look alike on the real service (§4.4).
        _ => api_error(403, "ACCESS_DENIED", "Access is denied."),
    }
}

#[derive(Deserialize)]
struct Page {
    count: Option<usize>,
    cursor: Option<String>,
}

async fn channel_members(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    page: web::Query<Page>,
    emulator: web::Data<Emulator>,
) -> HttpResponse {
    delay(&emulator).await;
    let (bot_id, channel_id) = path.into_inner();
    let mut state = emulator.lock();
    if let Err(response) = gate(&mut state, &req, &bot_id, READ_SCOPES, "bot.channel") {
        return response;
    }
    let Some((owner, members)) = state.channels.get(&channel_id) else {
        return api_error(403, "ACCESS_DENIED", "Access is denied.");
    };
    if *owner != bot_id {
        return api_error(403, "ACCESS_DENIED", "Access is denied.");
    }
    let count = page.count.unwrap_or(100).clamp(1, 100);
    let start = page
        .cursor
        .as_deref()
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    let slice: Vec<&String> = members.iter().skip(start).take(count).collect();
    let next = (start + count < members.len()).then(|| (start + count).to_string());
    HttpResponse::Ok().json(json!({"members": slice, "responseMetaData": {"nextCursor": next}}))
}
