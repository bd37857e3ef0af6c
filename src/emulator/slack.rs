//! The Slack half of `botgate emulator`, following `shared/SLACK.md`:
//! - the Web API methods botgate calls, under `/slack/api/{method}`:
//!   `auth.test` and `chat.postMessage` (bearer check, `ok:false` errors,
//!   HTTP 429 with `Retry-After` past a per-channel rate);
//! - `response_url`s (`/slack/response/{id}`: 5 uses within 30 minutes;
//!   a button's can replace or delete the message it was on);
//! - deliveries to a gateway as Slack sends them (`POST
//!   /slack/emulator/deliver`): signed events, slash commands and block
//!   actions; an event not acknowledged with a 2xx within the ack window
//!   (3 s, configurable to compress time in tests) is sent again with
//!   `X-Slack-Retry-Num`/`X-Slack-Retry-Reason`, up to 3 times, after the
//!   schedule's delays (at once, ~1 min, ~5 min; configurable);
//! - inspection: apps, messages received, deliveries made, faults.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::consent::{self, Consent};
use super::state::strikes;
use super::Emulator;
use crate::domain::str_field;

/// One Slack app installed in one workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackApp {
    pub app_id: String,
    pub team_id: String,
    pub team: String,
    pub bot_id: String,
    pub bot_user_id: String,
    pub bot_token: String,
    pub signing_secret: String,
    pub client_id: String,
    pub client_secret: String,
    /// Token rotation on: installs answer a refresh token and `expires_in`.
    #[serde(default)]
    pub rotation: bool,
    /// With rotation, how long an access token lives (Slack: 12 h).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_seconds: u64,
    /// Installs answer as an Enterprise Grid organization's (team null,
    /// `is_enterprise_install` true).
    #[serde(default)]
    pub org_install: bool,
}

fn default_lifetime() -> u64 {
    43_200
}

/// A workspace's install of an app.
#[derive(Debug, Clone, Serialize)]
pub struct Install {
    pub app_id: String,
    pub team_id: String,
    pub team: String,
    /// Shown by `/slack/emulator/stats` (the emulator's own, for tests).
    pub access_token: String,
    pub refresh_token: Option<String>,
    #[serde(skip)]
    pub expires: Option<Instant>,
    /// Access tokens replaced by a refresh: they work until they expire
    /// (a refresh revokes the old refresh token, not the access token [I]).
    #[serde(skip)]
    pub previous: Vec<(String, Instant)>,
    pub refreshes: u64,
}

struct Code {
    app_id: String,
    team_id: String,
    team: String,
    redirect_uri: String,
    expires: Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlackMessage {
    pub seq: u64,
    pub app_id: String,
    pub channel: String,
    /// The workspace of the token it was sent with.
    pub team_id: String,
    pub thread_ts: Option<String>,
    pub ts: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    /// `chat.postMessage` or `response_url`.
    pub via: &'static str,
    pub response_type: Option<String>,
    /// `files.completeUploadExternal`: the files shared (`[{id, title}]`).
    pub files: Option<Value>,
    /// `replaced` or `deleted` through a button's `response_url`
    /// (`replace_original`, `delete_original`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<&'static str>,
}

/// A file: one a user shared (added by a test), or one an app uploaded.
#[derive(Debug, Clone)]
pub struct SlackFile {
    pub app_id: String,
    pub name: String,
    pub mimetype: String,
    /// The bytes; `None` until an upload URL received them.
    pub data: Option<Vec<u8>>,
    /// The length `files.getUploadURLExternal` announced.
    pub length: Option<usize>,
    pub uploaded: bool,
    /// The channel `files.completeUploadExternal` shared it in.
    pub channel: Option<String>,
}

/// Faults and limits switched on by tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackFaults {
    /// `chat.postMessage` calls per second per channel (a short burst of
    /// `burst` is allowed), as Slack's ~1/s per channel (SLACK.md §5).
    pub per_channel_per_second: f64,
    pub burst: f64,
    /// Share (0..1) of Web API calls answered HTTP 500.
    pub rate_5xx: f64,
    /// Share (0..1) of Web API calls answered HTTP 408 with no body, as a
    /// loaded server answers a request it could not read in time.
    pub rate_408: f64,
    pub latency_ms: u64,
    /// Channels that answer `channel_not_found`.
    pub unknown_channels: Vec<String>,
    /// Bot tokens that answer `token_revoked`.
    pub revoked_tokens: Vec<String>,
    /// Every response_url answers as expired.
    pub expire_response_urls: bool,
    /// Refresh grants answer `invalid_refresh_token`.
    pub refuse_refresh: bool,
}

impl Default for SlackFaults {
    fn default() -> Self {
        Self {
            per_channel_per_second: 1.0,
            burst: 3.0,
            rate_5xx: 0.0,
            rate_408: 0.0,
            latency_ms: 0,
            unknown_channels: Vec::new(),
            revoked_tokens: Vec::new(),
            expire_response_urls: false,
            refuse_refresh: false,
        }
    }
}

struct ResponseUrl {
    app_id: String,
    channel: String,
    /// A button's: the ts of the message it was on.
    original_ts: Option<String>,
    uses_left: u32,
    expires: Instant,
}

impl SlackState {
    /// A new `response_url` (its id) for `channel`, and for a button the
    /// message it was on.
    fn new_response_url(
        &mut self,
        app: &SlackApp,
        channel: &str,
        original_ts: Option<&str>,
    ) -> String {
        let id = random("", 20).to_ascii_lowercase();
        let url = ResponseUrl {
            app_id: app.app_id.clone(),
            channel: channel.to_owned(),
            original_ts: original_ts.map(str::to_owned),
            uses_left: 5,
            expires: Instant::now() + Duration::from_secs(30 * 60),
        };
        self.response_urls.insert(id.clone(), url);
        id
    }
}

#[derive(Default)]
pub struct SlackState {
    pub apps: Vec<SlackApp>,
    pub messages: Vec<SlackMessage>,
    pub deliveries: Vec<Value>,
    pub faults: SlackFaults,
    pub rate_limited: u64,
    next_seq: u64,
    /// channel → (tokens, last refill).
    buckets: HashMap<String, (f64, Instant)>,
    response_urls: HashMap<String, ResponseUrl>,
    pub installs: Vec<Install>,
    codes: HashMap<String, Code>,
    /// Refresh grants answered.
    pub refreshes: u64,
    pub files: HashMap<String, SlackFile>,
    /// Downloads of `url_private`s.
    pub downloads: u64,
}

pub struct Slack {
    state: Mutex<SlackState>,
}

impl Default for Slack {
    fn default() -> Self {
        Self {
            state: Mutex::new(SlackState::default()),
        }
    }
}

impl Slack {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, SlackState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/slack/api/{method}", web::post().to(api))
        .route("/slack/response/{id}", web::post().to(response_url))
        .route("/slack/oauth/v2/authorize", web::get().to(authorize))
        .route("/slack/emulator/stats", web::get().to(stats))
        .route("/slack/emulator/apps", web::post().to(add_app))
        .route("/slack/emulator/apps", web::get().to(list_apps))
        .route("/slack/emulator/messages", web::get().to(messages))
        .route("/slack/emulator/deliveries", web::get().to(deliveries))
        .route("/slack/emulator/faults", web::put().to(set_faults))
        .route("/slack/emulator/reset", web::post().to(reset))
        .route("/slack/emulator/deliver", web::post().to(deliver))
        .route("/slack/emulator/files", web::post().to(add_file))
        .route("/slack/emulator/files", web::get().to(list_files))
        .route("/slack/files/{id}", web::get().to(download_file))
        .route("/slack/upload/{id}", web::post().to(upload_file));
}

fn random(prefix: &str, len: usize) -> String {
    let chars: String = crate::secrets::hex(&crate::secrets::random_bytes(len))
        .to_ascii_uppercase()
        .chars()
        .take(len)
        .collect();
    format!("{prefix}{chars}")
}

fn ok_false(error: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": false, "error": error}))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct NewApp {
    team_id: Option<String>,
    team: Option<String>,
    signing_secret: Option<String>,
    rotation: bool,
    token_lifetime_seconds: Option<u64>,
    org_install: bool,
}

/// Creates an app installed in a workspace; answers its credentials.
async fn add_app(emulator: web::Data<Emulator>, body: web::Json<NewApp>) -> HttpResponse {
    HttpResponse::Created().json(emulator.slack.add_app(body.into_inner()))
}

impl Slack {
    /// A new app installed in a workspace (ids, bot token and secrets
    /// generated unless given).
    fn add_app(&self, body: NewApp) -> SlackApp {
        let app = SlackApp {
            app_id: random("A", 10),
            team_id: body.team_id.unwrap_or_else(|| random("T", 10)),
            team: body.team.unwrap_or_else(|| "Emulated Workspace".into()),
            bot_id: random("B", 10),
            bot_user_id: random("U", 10),
            bot_token: format!(
                "xoxb-{}-{}",
                random("", 12),
                random("", 24).to_ascii_lowercase()
            ),
            signing_secret: body
                .signing_secret
                .unwrap_or_else(|| crate::secrets::hex(&crate::secrets::random_bytes(16))),
            client_id: format!("{}.{}", random("", 12), random("", 12)),
            client_secret: crate::secrets::hex(&crate::secrets::random_bytes(16)),
            rotation: body.rotation,
            token_lifetime_seconds: body.token_lifetime_seconds.unwrap_or(43_200),
            org_install: body.org_install,
        };
        self.lock().apps.push(app.clone());
        app
    }

    /// An app saved from an earlier run (`botgate demo`), as it was.
    pub fn restore_app(&self, app: SlackApp) {
        let mut state = self.lock();
        state.apps.retain(|a| a.app_id != app.app_id);
        state.apps.push(app);
    }

    /// A generated app, for `botgate emulator`'s start.
    pub fn generate_app(&self) -> SlackApp {
        self.add_app(NewApp::default())
    }
}

async fn list_apps(emulator: web::Data<Emulator>) -> HttpResponse {
    HttpResponse::Ok().json(&emulator.slack.lock().apps)
}

#[derive(Deserialize)]
struct MessageQuery {
    channel: Option<String>,
}

async fn messages(emulator: web::Data<Emulator>, query: web::Query<MessageQuery>) -> HttpResponse {
    let state = emulator.slack.lock();
    let list: Vec<&SlackMessage> = state
        .messages
        .iter()
        .filter(|m| query.channel.as_ref().is_none_or(|c| *c == m.channel))
        .collect();
    HttpResponse::Ok().json(json!({"messages": list, "rate_limited": state.rate_limited}))
}

async fn deliveries(emulator: web::Data<Emulator>) -> HttpResponse {
    HttpResponse::Ok().json(&emulator.slack.lock().deliveries)
}

async fn set_faults(emulator: web::Data<Emulator>, body: web::Json<SlackFaults>) -> HttpResponse {
    let faults = body.into_inner();
    emulator.slack.lock().faults = faults.clone();
    HttpResponse::Ok().json(faults)
}

async fn reset(emulator: web::Data<Emulator>) -> HttpResponse {
    let mut state = emulator.slack.lock();
    state.messages.clear();
    state.deliveries.clear();
    state.rate_limited = 0;
    state.buckets.clear();
    state.faults = SlackFaults::default();
    HttpResponse::Ok().json(json!({"status": "reset"}))
}

/// The Web API: `auth.test` and `chat.postMessage` (other methods:
/// `unknown_method`, as Slack answers).
async fn api(
    emulator: web::Data<Emulator>,
    req: HttpRequest,
    method: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let latency = emulator.slack.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut state = emulator.slack.lock();
    if strikes(state.faults.rate_5xx) {
        return HttpResponse::InternalServerError().finish();
    }
    if strikes(state.faults.rate_408) {
        return HttpResponse::RequestTimeout().finish();
    }
    if method.as_str() == "oauth.v2.access" {
        return oauth_access(&mut state, &req, &body);
    }
    let Some(token) = token else {
        return ok_false("not_authed");
    };
    if state.faults.revoked_tokens.contains(&token) {
        return ok_false("token_revoked");
    }
    // The app's own workspace token, or an install's.
    let found = match state.apps.iter().find(|a| a.bot_token == token) {
        Some(app) => Some((app.clone(), app.team_id.clone(), app.team.clone())),
        None => {
            let now = Instant::now();
            let valid = |i: &&Install| {
                (i.access_token == token && i.expires.is_none_or(|e| now <= e))
                    || i.previous.iter().any(|(t, e)| *t == token && now <= *e)
            };
            state.installs.iter().find(valid).and_then(|i| {
                state
                    .apps
                    .iter()
                    .find(|a| a.app_id == i.app_id)
                    .map(|a| (a.clone(), i.team_id.clone(), i.team.clone()))
            })
        }
    };
    let Some((mut app, team_id, team)) = found else {
        let expired = state
            .installs
            .iter()
            .any(|i| i.access_token == token || i.previous.iter().any(|(t, _)| *t == token));
        return ok_false(if expired {
            "token_expired"
        } else {
            "invalid_auth"
        });
    };
    app.team_id = team_id;
    app.team = team;
    match method.as_str() {
        "auth.test" => HttpResponse::Ok().json(json!({
            "ok": true, "url": format!("https://{}.slack.com/", app.team.to_lowercase().replace(' ', "-")),
            "team": app.team, "user": "botgate", "team_id": app.team_id, "user_id": app.bot_user_id,
            "bot_id": app.bot_id, "is_enterprise_install": false})),
        "chat.postMessage" => {
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return ok_false("invalid_json");
            };
            post_message(&mut state, &app, &body)
        }
        "files.getUploadURLExternal" => {
            // Form-encoded arguments, as Slack documents them.
            let args: HashMap<String, String> = url::form_urlencoded::parse(&body)
                .into_owned()
                .collect();
            let (Some(name), Some(length)) = (
                args.get("filename").filter(|n| !n.is_empty()),
                args.get("length").and_then(|l| l.parse::<usize>().ok()),
            ) else {
                return ok_false("invalid_arguments");
            };
            let id = random("F", 10);
            state.files.insert(
                id.clone(),
                SlackFile {
                    app_id: app.app_id,
                    name: name.clone(),
                    mimetype: "application/octet-stream".into(),
                    data: None,
                    length: Some(length),
                    uploaded: true,
                    channel: None,
                },
            );
            HttpResponse::Ok().json(json!({"ok": true, "file_id": id,
                "upload_url": format!("{}/slack/upload/{id}", emulator.base_url)}))
        }
        "files.completeUploadExternal" => {
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return ok_false("invalid_json");
            };
            let Some(channel) = str_field(&body, "channel_id").map(str::to_owned) else {
                return ok_false("channel_not_found");
            };
            let listed = body.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
            if listed.is_empty() {
                return ok_false("invalid_arguments");
            }
            for f in &listed {
                let id = str_field(f, "id").unwrap_or("");
                match state.files.get_mut(id) {
                    Some(file) if file.app_id == app.app_id && file.data.is_some() => {
                        file.channel = Some(channel.clone());
                    }
                    _ => return ok_false("file_not_found"),
                }
            }
            let shared = json!({"channel": channel, "files": listed, "thread_ts": body.get("thread_ts")});
            record(&mut state, &app, &channel, &shared, "files.completeUploadExternal");
            HttpResponse::Ok().json(json!({"ok": true, "files": listed}))
        }
        _ => ok_false("unknown_method"),
    }
}

fn post_message(state: &mut SlackState, app: &SlackApp, body: &Value) -> HttpResponse {
    let Some(channel) = str_field(body, "channel").map(str::to_owned) else {
        return ok_false("channel_not_found");
    };
    if state.faults.unknown_channels.contains(&channel) {
        return ok_false("channel_not_found");
    }
    let text = str_field(body, "text").map(str::to_owned);
    let blocks = body.get("blocks").cloned();
    if text.as_deref().is_none_or(str::is_empty) && blocks.is_none() {
        return ok_false("no_text");
    }
    if text.as_ref().is_some_and(|t| t.chars().count() > 40_000) {
        return ok_false("msg_too_long");
    }
    if blocks.as_ref().is_some_and(|b| {
        !b.as_array()
            .is_some_and(|a| a.len() <= 50 && a.iter().all(|b| b.get("type").is_some()))
    }) {
        return ok_false("invalid_blocks");
    }
    // Per channel: a bucket of `burst`, refilled at the per-second rate.
    let (rate, burst) = (
        state.faults.per_channel_per_second,
        state.faults.burst.max(1.0),
    );
    let now = Instant::now();
    let bucket = state.buckets.entry(channel.clone()).or_insert((burst, now));
    bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(burst);
    bucket.1 = now;
    if bucket.0 < 1.0 {
        let wait = ((1.0 - bucket.0) / rate.max(0.001)).ceil().max(1.0);
        state.rate_limited += 1;
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", format!("{wait}")))
            .json(json!({"ok": false, "error": "ratelimited"}));
    }
    bucket.0 -= 1.0;
    let ts = record(state, app, &channel, body, "chat.postMessage");
    HttpResponse::Ok().json(
        json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}),
    )
}

fn record(
    state: &mut SlackState,
    app: &SlackApp,
    channel: &str,
    body: &Value,
    via: &'static str,
) -> String {
    state.next_seq += 1;
    let now = crate::domain::now_millis();
    let ts = format!("{}.{:06}", now / 1000, state.next_seq % 1_000_000);
    state.messages.push(SlackMessage {
        seq: state.next_seq,
        app_id: app.app_id.clone(),
        channel: channel.to_owned(),
        team_id: app.team_id.clone(),
        thread_ts: str_field(body, "thread_ts").map(str::to_owned),
        ts: ts.clone(),
        text: str_field(body, "text").map(str::to_owned),
        blocks: body.get("blocks").cloned(),
        via,
        response_type: str_field(body, "response_type").map(str::to_owned),
        files: body.get("files").cloned(),
        edit: None,
    });
    ts
}

#[derive(Deserialize)]
struct NewFile {
    app_id: String,
    name: String,
    mimetype: Option<String>,
}

/// A file a user shared (the body, raw): its id and `url_private`, for a
/// `kind: "file"` delivery.
async fn add_file(
    emulator: web::Data<Emulator>,
    query: web::Query<NewFile>,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = emulator.slack.lock();
    if !state.apps.iter().any(|a| a.app_id == query.app_id) {
        return HttpResponse::BadRequest().json(json!({"error": "no such app"}));
    }
    let id = random("F", 10);
    state.files.insert(
        id.clone(),
        SlackFile {
            app_id: query.app_id.clone(),
            name: query.name.clone(),
            mimetype: query
                .mimetype
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            data: Some(body.to_vec()),
            length: None,
            uploaded: false,
            channel: None,
        },
    );
    HttpResponse::Created()
        .json(json!({"id": id, "url_private": format!("{}/slack/files/{id}", emulator.base_url)}))
}

async fn list_files(emulator: web::Data<Emulator>) -> HttpResponse {
    use sha2::Digest as _;
    let state = emulator.slack.lock();
    let files: Vec<Value> = state
        .files
        .iter()
        .map(|(id, f)| {
            json!({"id": id, "app_id": f.app_id, "name": f.name, "uploaded": f.uploaded, "channel": f.channel,
                   "size": f.data.as_ref().map(Vec::len),
                   "sha256": f.data.as_ref().map(|d| crate::secrets::hex(&sha2::Sha256::digest(d)))})
        })
        .collect();
    HttpResponse::Ok().json(json!({"files": files, "downloads": state.downloads}))
}

/// A file's `url_private`: the bot token of its app (or an install's).
async fn download_file(
    emulator: web::Data<Emulator>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let mut state = emulator.slack.lock();
    state.downloads += 1;
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(file) = state.files.get(id.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    let app_ok = token.is_some_and(|t| {
        state
            .apps
            .iter()
            .any(|a| a.app_id == file.app_id && a.bot_token == t)
            || state
                .installs
                .iter()
                .any(|i| i.app_id == file.app_id && i.access_token == t)
    });
    if !app_ok {
        // Slack answers a login page for a missing or wrong token [I].
        return HttpResponse::Unauthorized().finish();
    }
    match &file.data {
        Some(data) => HttpResponse::Ok()
            .content_type(file.mimetype.clone())
            .body(data.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// An upload URL: the bytes, raw (or a multipart body's only part), once.
async fn upload_file(
    emulator: web::Data<Emulator>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = emulator.slack.lock();
    match state.files.get_mut(id.as_str()) {
        Some(file) if file.data.is_none() => {
            if file.length.is_some_and(|l| l != body.len()) {
                return HttpResponse::BadRequest()
                    .body("length differs from files.getUploadURLExternal's");
            }
            file.data = Some(body.to_vec());
            HttpResponse::Ok().body(format!("OK - {}", body.len()))
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// A command's `response_url`: 5 uses within 30 minutes, then 404
/// (`used_url`/`expired_url`: the exact answer is not documented [I]).
async fn response_url(
    emulator: web::Data<Emulator>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = emulator.slack.lock();
    let expired_fault = state.faults.expire_response_urls;
    let Some(url) = state.response_urls.get_mut(id.as_str()) else {
        return HttpResponse::NotFound().json(json!({"ok": false, "error": "expired_url"}));
    };
    if expired_fault || Instant::now() > url.expires {
        return HttpResponse::NotFound().json(json!({"ok": false, "error": "expired_url"}));
    }
    if url.uses_left == 0 {
        return HttpResponse::NotFound().json(json!({"ok": false, "error": "used_url"}));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"ok": false, "error": "invalid_payload"}));
    };
    url.uses_left -= 1;
    let (app_id, channel) = (url.app_id.clone(), url.channel.clone());
    let original = url.original_ts.clone();
    let Some(app) = state.apps.iter().find(|a| a.app_id == app_id).cloned() else {
        return HttpResponse::NotFound().finish();
    };
    let flag = |name: &str| body.get(name).and_then(Value::as_bool) == Some(true);
    let edit = if flag("delete_original") {
        Some("deleted")
    } else if flag("replace_original") {
        Some("replaced")
    } else {
        None
    };
    // A button's response_url acts on the message it was on; a command's
    // has none, and posts.
    let target = original.and_then(|ts| {
        state
            .messages
            .iter_mut()
            .find(|m| m.ts == ts && m.channel == channel)
    });
    match (edit, target) {
        (Some(edit), Some(m)) => {
            if edit == "replaced" {
                m.text = str_field(&body, "text").map(str::to_owned);
                m.blocks = body.get("blocks").cloned();
            }
            m.edit = Some(edit);
        }
        _ => {
            record(&mut state, &app, &channel, &body, "response_url");
        }
    }
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// What to deliver, as a user would cause it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub app_id: String,
    /// The gateway's Request URL for this kind.
    pub url: String,
    /// `message`, `mention`, `command`, `action`, or `event` (with `event`).
    pub kind: String,
    pub channel: Option<String>,
    pub user: Option<String>,
    pub text: Option<String>,
    pub thread_ts: Option<String>,
    /// `command`: the command, e.g. `/luckydraw`.
    pub command: Option<String>,
    /// `action`: the button's value.
    pub value: Option<String>,
    /// `action`: the ts of the message the button is on (its response_url
    /// replaces or deletes that one); a new ts if absent.
    pub message_ts: Option<String>,
    /// `file`: the id of a file added with `/slack/emulator/files`.
    pub file: Option<String>,
    /// The workspace it happens in (an install's), else the app's own.
    pub team: Option<String>,
    /// The workspace's Enterprise Grid organization, whose org-wide install
    /// the event is sent to (`enterprise_id`, and `authorizations` with
    /// `is_enterprise_install`).
    pub enterprise: Option<String>,
    /// `message`: sent as a bot's (`bot_id` set).
    #[serde(default)]
    pub from_bot: bool,
    /// `event`: the inner event object as is.
    pub event: Option<Value>,
    /// Extra deliveries of the same event, as if each earlier answer had
    /// been lost (`X-Slack-Retry-Reason: http_timeout`).
    #[serde(default)]
    pub forced_retries: u32,
    /// How long an answer may take before it counts as not acknowledged
    /// (Slack: 3,000 ms).
    #[serde(default = "default_ack_ms")]
    pub ack_timeout_ms: u64,
    /// Delays before retries 1..3 (Slack: about 0, 60 and 300 s).
    #[serde(default = "default_retry_delays")]
    pub retry_delays_ms: Vec<u64>,
}

fn default_ack_ms() -> u64 {
    3000
}

fn default_retry_delays() -> Vec<u64> {
    vec![0, 60_000, 300_000]
}

/// The body and content type of a delivery; for a command, its response_url id.
fn delivery_body(
    emulator: &Emulator,
    app: &SlackApp,
    d: &Delivery,
    now: i64,
) -> Result<(Vec<u8>, &'static str, Value), String> {
    let channel = d.channel.clone().unwrap_or_else(|| "C0000000001".into());
    let user = d.user.clone().unwrap_or_else(|| "U0000000001".into());
    let text = d.text.clone().unwrap_or_default();
    let ts = format!("{}.{:06}", now / 1000, now % 1_000_000);
    let event_id = random("Ev", 10);
    let envelope = |event: Value| {
        let mut body = json!({"token": "deprecated", "team_id": app.team_id, "api_app_id": app.app_id, "event": event,
               "type": "event_callback", "event_id": event_id, "event_time": now / 1000,
               "authorizations": [{"team_id": app.team_id, "user_id": app.bot_user_id, "is_bot": true, "is_enterprise_install": false}],
               "is_ext_shared_channel": false, "context_team_id": app.team_id});
        // Sent to an organization's org-wide install (api.slack.com/
        // enterprise/apps/reference): its authorization names no team.
        if let Some(e) = &d.enterprise {
            body["enterprise_id"] = json!(e);
            body["context_enterprise_id"] = json!(e);
            body["authorizations"] = json!([{"enterprise_id": e, "team_id": null, "user_id": app.bot_user_id,
                                             "is_bot": true, "is_enterprise_install": true}]);
        }
        body
    };
    match d.kind.as_str() {
        "file" => {
            let id = d.file.clone().ok_or("kind file needs file")?;
            let file = emulator
                .slack
                .lock()
                .files
                .get(&id)
                .cloned()
                .ok_or("no such file")?;
            let event = json!({"type": "message", "subtype": "file_share", "channel": channel, "user": user,
                "ts": ts, "event_ts": ts, "text": text,
                "channel_type": if channel.starts_with('D') { "im" } else { "channel" },
                "files": [{"id": id, "name": file.name, "title": file.name, "mimetype": file.mimetype,
                    "size": file.data.as_ref().map_or(0, Vec::len),
                    "url_private": format!("{}/slack/files/{id}", emulator.base_url),
                    "url_private_download": format!("{}/slack/files/{id}", emulator.base_url)}]});
            let body = envelope(event);
            Ok((
                serde_json::to_vec(&body).map_err(|e| e.to_string())?,
                "application/json",
                body,
            ))
        }
        "message" | "mention" => {
            let mut event = json!({"type": if d.kind == "mention" { "app_mention" } else { "message" },
                "channel": channel, "user": user, "ts": ts, "event_ts": ts,
                "channel_type": if channel.starts_with('D') { "im" } else { "channel" },
                "text": if d.kind == "mention" { format!("<@{}> {text}", app.bot_user_id) } else { text }});
            if let Some(t) = &d.thread_ts {
                event["thread_ts"] = json!(t);
            }
            if d.from_bot {
                event["bot_id"] = json!(app.bot_id);
                event["subtype"] = json!("bot_message");
            }
            let body = envelope(event);
            Ok((
                serde_json::to_vec(&body).map_err(|e| e.to_string())?,
                "application/json",
                body,
            ))
        }
        "event" => {
            let body = envelope(d.event.clone().ok_or("kind event needs event")?);
            Ok((
                serde_json::to_vec(&body).map_err(|e| e.to_string())?,
                "application/json",
                body,
            ))
        }
        "command" => {
            let id = emulator.slack.lock().new_response_url(app, &channel, None);
            let response_url = format!("{}/slack/response/{id}", emulator.base_url);
            let fields = [
                ("token", "deprecated"),
                ("team_id", &app.team_id),
                ("team_domain", "emulated"),
                ("channel_id", &channel),
                ("channel_name", "general"),
                ("user_id", &user),
                ("user_name", "someone"),
                ("command", d.command.as_deref().unwrap_or("/luckydraw")),
                ("text", &text),
                ("api_app_id", &app.app_id),
                ("is_enterprise_install", "false"),
                ("response_url", &response_url),
                ("trigger_id", &random("", 16)),
            ];
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            let shown = json!(fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect::<serde_json::Map<_, _>>());
            Ok((
                body.into_bytes(),
                "application/x-www-form-urlencoded",
                shown,
            ))
        }
        "action" => {
            let on = d.message_ts.clone().unwrap_or(ts.clone());
            let id = emulator
                .slack
                .lock()
                .new_response_url(app, &channel, Some(&on));
            let response_url = format!("{}/slack/response/{id}", emulator.base_url);
            let mut container = json!({"type": "message", "message_ts": on, "channel_id": channel, "is_ephemeral": false});
            if let Some(t) = &d.thread_ts {
                container["thread_ts"] = json!(t);
            }
            let payload = json!({"type": "block_actions", "team": {"id": app.team_id, "domain": "emulated"},
                "user": {"id": user, "team_id": app.team_id}, "api_app_id": app.app_id, "container": container,
                "channel": {"id": channel, "name": "general"}, "trigger_id": random("", 16),
                "message": {"type": "message", "ts": on}, "response_url": response_url,
                "actions": [{"action_id": "botgate_0", "block_id": "b1", "type": "button",
                    "value": d.value.clone().unwrap_or_default(), "action_ts": ts,
                    "text": {"type": "plain_text", "text": "button"}}]});
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &payload.to_string())
                .finish();
            Ok((
                body.into_bytes(),
                "application/x-www-form-urlencoded",
                payload,
            ))
        }
        other => Err(format!(
            "unknown kind {other}: message, mention, file, command, action or event"
        )),
    }
}

/// Sends one delivery (and, for events, Slack's retries) and answers what
/// happened to the first attempt; later retries are recorded in
/// `/slack/emulator/deliveries`.
async fn deliver(emulator: web::Data<Emulator>, body: web::Json<Delivery>) -> HttpResponse {
    let d = body.into_inner();
    let Some(mut app) = emulator
        .slack
        .lock()
        .apps
        .iter()
        .find(|a| a.app_id == d.app_id)
        .cloned()
    else {
        return HttpResponse::BadRequest().json(json!({"error": "no such app"}));
    };
    if let Some(team) = &d.team {
        app.team_id = team.clone();
    }
    let (raw, content_type, shown) =
        match delivery_body(&emulator, &app, &d, crate::domain::now_millis()) {
            Ok(x) => x,
            Err(e) => return HttpResponse::BadRequest().json(json!({"error": e})),
        };
    let first = attempt(&emulator, &app, &d, &raw, content_type, 0).await;
    let events = content_type == "application/json";
    let mut acked = first.get("acked").and_then(Value::as_bool) == Some(true);
    // Retries: events only (commands and actions are not retried, §3).
    let retries = if events {
        d.retry_delays_ms
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    let forced = d.forced_retries;
    let emu = emulator.clone();
    tokio::spawn(async move {
        for (i, delay) in retries.into_iter().enumerate() {
            let n = u32::try_from(i).unwrap_or(0) + 1;
            if acked && n > forced {
                break;
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let again = attempt(&emu, &app, &d, &raw, content_type, n).await;
            acked = again.get("acked").and_then(Value::as_bool) == Some(true);
        }
    });
    HttpResponse::Ok().json(json!({"first": first, "body": shown}))
}

async fn attempt(
    emulator: &Emulator,
    app: &SlackApp,
    d: &Delivery,
    raw: &[u8],
    content_type: &str,
    retry: u32,
) -> Value {
    let timestamp = (crate::domain::now_millis() / 1000).to_string();
    let signature =
        crate::channels::slack::signature::sign(app.signing_secret.as_bytes(), &timestamp, raw);
    let mut request = emulator
        .http
        .post(&d.url)
        .timeout(Duration::from_millis(d.ack_timeout_ms))
        .header("Content-Type", content_type)
        .header("X-Slack-Request-Timestamp", &timestamp)
        .header("X-Slack-Signature", &signature)
        .body(raw.to_vec());
    if retry > 0 {
        request = request
            .header("X-Slack-Retry-Num", retry.to_string())
            .header("X-Slack-Retry-Reason", "http_timeout");
    }
    let started = Instant::now();
    let result = request.send().await;
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let text: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(2000)
                .collect();
            json!({"retry": retry, "status": status, "response": text, "elapsed_ms": elapsed,
                   "acked": (200..300).contains(&status) && elapsed <= d.ack_timeout_ms})
        }
        Err(e) => {
            json!({"retry": retry, "error": if e.is_timeout() { "http_timeout" } else { "connection_failed" },
                          "elapsed_ms": elapsed, "acked": false})
        }
    };
    emulator.slack.lock().deliveries.push(record.clone());
    record
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    #[serde(default)]
    scope: String,
    redirect_uri: String,
    #[serde(default)]
    state: String,
    /// A workspace to install into; a new one when absent.
    team: Option<String>,
}

/// Slack's consent page: "Allow" redirects to the redirect URL with a
/// single-use code (10 minutes) and the state; "Cancel" with
/// `error=access_denied`.
async fn authorize(
    emulator: web::Data<Emulator>,
    query: web::Query<AuthorizeQuery>,
) -> HttpResponse {
    let q = query.into_inner();
    let mut state = emulator.slack.lock();
    let Some(app) = state
        .apps
        .iter()
        .find(|a| a.client_id == q.client_id)
        .cloned()
    else {
        return consent::error("invalid_client_id");
    };
    let Ok(redirect) = url::Url::parse(&q.redirect_uri) else {
        return consent::error("bad_redirect_uri");
    };
    let team_id = q.team.clone().unwrap_or_else(|| random("T", 10));
    let team = format!("Workspace {team_id}");
    let code = random("", 24).to_ascii_lowercase();
    state.codes.insert(
        code.clone(),
        Code {
            app_id: app.app_id.clone(),
            team_id,
            team: team.clone(),
            redirect_uri: q.redirect_uri.clone(),
            expires: Instant::now() + Duration::from_secs(600),
        },
    );
    consent::page(
        &Consent {
            title: &format!("Allow {}?", app.app_id),
            question: &format!("Allow the app to access {team}?"),
            scopes: &q.scope,
            deny: "Cancel",
        },
        &redirect,
        &code,
        &q.state,
    )
}

/// `oauth.v2.access`: a code (single use, this app's, the same
/// redirect_uri) or, with rotation, a refresh token (single use: each
/// refresh answers a new one and revokes the old, SLACK.md §6).
fn oauth_access(state: &mut SlackState, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    // Client credentials in the form, or HTTP Basic.
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (client_id, client_secret) = match (form.get("client_id"), form.get("client_secret"), basic)
    {
        (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
        (_, _, Some(pair)) => pair,
        _ => return ok_false("invalid_client_id"),
    };
    let Some(app) = state
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .cloned()
    else {
        return ok_false("invalid_client_id");
    };
    if app.client_secret != client_secret {
        return ok_false("bad_client_secret");
    }
    let lifetime = Duration::from_secs(app.token_lifetime_seconds.max(1));
    let new_token = || {
        format!(
            "{}xoxb-{}-{}",
            if app.rotation { "xoxe." } else { "" },
            random("", 12),
            random("", 24).to_ascii_lowercase()
        )
    };
    let new_refresh = || format!("xoxe-1-{}", random("", 40).to_ascii_lowercase());
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        if state.faults.refuse_refresh {
            return ok_false("invalid_refresh_token");
        }
        let Some(install) = state.installs.iter_mut().find(|i| {
            i.app_id == app.app_id && i.refresh_token.as_deref() == Some(presented.as_str())
        }) else {
            return ok_false("invalid_refresh_token");
        };
        if let Some(expires) = install.expires {
            let old = std::mem::take(&mut install.access_token);
            install.previous.push((old, expires));
            install.previous.retain(|(_, e)| *e > Instant::now());
        }
        install.access_token = new_token();
        install.refresh_token = Some(new_refresh());
        install.expires = Some(Instant::now() + lifetime);
        install.refreshes += 1;
        let answer = json!({"ok": true, "app_id": app.app_id, "access_token": install.access_token, "token_type": "bot",
            "scope": "chat:write,commands", "bot_user_id": app.bot_user_id, "team": {"id": install.team_id, "name": install.team},
            "enterprise": null, "is_enterprise_install": false, "refresh_token": install.refresh_token, "expires_in": lifetime.as_secs()});
        state.refreshes += 1;
        return HttpResponse::Ok().json(answer);
    }
    let Some(code) = form.get("code").and_then(|c| state.codes.remove(c)) else {
        return ok_false("invalid_code");
    };
    if code.app_id != app.app_id || code.expires < Instant::now() {
        return ok_false("invalid_code");
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return ok_false("bad_redirect_uri");
    }
    // An org-wide install is kept under the organization's id (E…).
    let team_id = match app.org_install {
        true => format!("E{}", code.team_id.get(1..).unwrap_or_default()),
        false => code.team_id.clone(),
    };
    let install = Install {
        app_id: app.app_id.clone(),
        team_id,
        team: code.team,
        access_token: new_token(),
        refresh_token: app.rotation.then(new_refresh),
        expires: app.rotation.then(|| Instant::now() + lifetime),
        previous: Vec::new(),
        refreshes: 0,
    };
    let mut answer = json!({"ok": true, "app_id": app.app_id, "access_token": install.access_token, "token_type": "bot",
        "scope": "chat:write,commands", "bot_user_id": app.bot_user_id, "team": {"id": install.team_id, "name": install.team},
        "enterprise": null, "is_enterprise_install": false, "authed_user": {"id": "U0INSTALLER"}});
    if app.rotation {
        answer["refresh_token"] = json!(install.refresh_token);
        answer["expires_in"] = json!(lifetime.as_secs());
    }
    if app.org_install {
        answer["team"] = Value::Null;
        answer["enterprise"] = json!({"id": install.team_id, "name": "Emulated Org"});
        answer["is_enterprise_install"] = json!(true);
    }
    // A re-install replaces the workspace's tokens.
    state
        .installs
        .retain(|i| !(i.app_id == install.app_id && i.team_id == install.team_id));
    state.installs.push(install);
    HttpResponse::Ok().json(answer)
}

async fn stats(emulator: web::Data<Emulator>) -> HttpResponse {
    let state = emulator.slack.lock();
    HttpResponse::Ok().json(json!({"refreshes": state.refreshes, "installs": state.installs}))
}
