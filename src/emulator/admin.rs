//! The emulator's own admin API (JSON, under `/emulator`): apps and bots,
//! inspection (messages received, token counters), faults, the clock, and
//! callbacks sent as if a user had typed (§3), signed and never retried.

use actix_web::{web, HttpResponse};
use rand::Rng as _;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{AppConfig, BotConfig};
use super::state::{Emulator, Faults};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/emulator/health",
        web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }),
    )
    .route("/emulator/apps", web::get().to(list_apps))
    .route("/emulator/apps", web::post().to(add_app))
    .route("/emulator/apps/generate", web::post().to(generate))
    .route(
        "/emulator/bots/{bot}/callback",
        web::put().to(set_callback_url),
    )
    .route("/emulator/channels/{channel}", web::put().to(set_channel))
    .route("/emulator/messages", web::get().to(messages))
    .route("/emulator/stats", web::get().to(stats))
    .route("/emulator/reset", web::post().to(reset))
    .route("/emulator/faults", web::get().to(get_faults))
    .route("/emulator/faults", web::put().to(set_faults))
    .route("/emulator/clock", web::put().to(set_clock))
    .route("/emulator/callbacks", web::post().to(send_callback))
    .route("/emulator/files", web::post().to(add_file))
    .route("/emulator/files", web::get().to(list_files));
}

fn bad_request(message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": message.to_string()}))
}

async fn list_apps(emulator: web::Data<Emulator>) -> HttpResponse {
    let state = emulator.lock();
    let mut apps: Vec<Value> = state
        .apps
        .values()
        .map(|a| {
            let bots: Vec<Value> = a
                .config
                .bots
                .iter()
                .map(|b| json!({"bot_id": b.bot_id, "callback_url": b.callback_url}))
                .collect();
            json!({
                "client_id": a.config.client_id,
                "service_account": a.config.service_account,
                "domain_id": a.config.domain_id,
                "scopes": a.config.scopes,
                "bots": bots,
            })
        })
        .collect();
    apps.sort_by(|a, b| a["client_id"].as_str().cmp(&b["client_id"].as_str()));
    HttpResponse::Ok().json(json!({"apps": apps}))
}

async fn add_app(emulator: web::Data<Emulator>, body: web::Json<AppConfig>) -> HttpResponse {
    match emulator.register_app(body.into_inner()) {
        Ok(()) => HttpResponse::Created().json(json!({"status": "registered"})),
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateRequest {
    pub domain_id: Option<i64>,
    pub bot_id: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// A ready-to-use app: what the Developer Console would show, including the
/// private key file (PKCS#8 PEM, as the console issues it).
#[derive(Serialize)]
pub struct GeneratedApp {
    pub client_id: String,
    pub client_secret: String,
    pub service_account: String,
    pub private_key: String,
    pub domain_id: i64,
    pub bot_id: String,
    pub bot_secret: String,
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub fn generate_app(request: &GenerateRequest) -> anyhow::Result<(GeneratedApp, AppConfig)> {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let pem = key.to_pkcs8_pem(LineEnding::LF)?;
    let mut rng = rand::rngs::OsRng;
    let app = GeneratedApp {
        client_id: random_string(18, ALNUM),
        client_secret: random_string(10, ALNUM),
        service_account: format!(
            "{}.serviceaccount@example.com",
            random_string(5, b"abcdefghijklmnopqrstuvwxyz0123456789")
        ),
        private_key: pem.as_str().to_owned(),
        domain_id: request.domain_id.unwrap_or(10_000),
        bot_id: request
            .bot_id
            .clone()
            .unwrap_or_else(|| format!("{}", rng.gen_range(2_000_000..3_000_000))),
        bot_secret: random_string(32, ALNUM),
    };
    let config = AppConfig {
        client_id: app.client_id.clone(),
        client_secret: app.client_secret.clone(),
        service_account: app.service_account.clone(),
        public_key: None,
        private_key: Some(app.private_key.clone()),
        domain_id: app.domain_id,
        scopes: request
            .scopes
            .clone()
            .unwrap_or_else(|| ["bot", "bot.read", "user.read"].map(String::from).to_vec()),
        bots: vec![BotConfig {
            bot_id: app.bot_id.clone(),
            bot_secret: app.bot_secret.clone(),
            callback_url: None,
        }],
    };
    Ok((app, config))
}

async fn generate(
    emulator: web::Data<Emulator>,
    body: Option<web::Json<GenerateRequest>>,
) -> HttpResponse {
    let request = body.map(web::Json::into_inner).unwrap_or_default();
    let result = web::block(move || generate_app(&request)).await;
    let (app, config) = match result {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return bad_request(e),
        Err(e) => return bad_request(e),
    };
    if let Err(e) = emulator.register_app(config) {
        return bad_request(e);
    }
    HttpResponse::Created().json(app)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackUrl {
    callback_url: Option<String>,
}

async fn set_callback_url(
    emulator: web::Data<Emulator>,
    path: web::Path<String>,
    body: web::Json<CallbackUrl>,
) -> HttpResponse {
    let mut state = emulator.lock();
    let Some((client_id, bot)) = state.bots.get_mut(path.as_str()) else {
        return HttpResponse::NotFound().json(json!({"error": "no such bot"}));
    };
    bot.callback_url.clone_from(&body.callback_url);
    let (client_id, bot) = (client_id.clone(), bot.clone());
    if let Some(app) = state.apps.get_mut(&client_id) {
        if let Some(b) = app.config.bots.iter_mut().find(|b| b.bot_id == bot.bot_id) {
            *b = bot;
        }
    }
    HttpResponse::Ok().json(json!({"bot_id": path.as_str(), "callback_url": body.callback_url}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelBody {
    bot_id: String,
    members: Vec<String>,
}

async fn set_channel(
    emulator: web::Data<Emulator>,
    path: web::Path<String>,
    body: web::Json<ChannelBody>,
) -> HttpResponse {
    let body = body.into_inner();
    emulator
        .lock()
        .channels
        .insert(path.into_inner(), (body.bot_id, body.members));
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct MessageQuery {
    bot_id: Option<String>,
    user_id: Option<String>,
    channel_id: Option<String>,
    /// Only messages with a larger sequence number.
    after: Option<u64>,
}

async fn messages(emulator: web::Data<Emulator>, query: web::Query<MessageQuery>) -> HttpResponse {
    let state = emulator.lock();
    let list: Vec<_> = state
        .messages
        .iter()
        .filter(|m| query.bot_id.as_ref().is_none_or(|b| *b == m.bot_id))
        .filter(|m| {
            query
                .user_id
                .as_ref()
                .is_none_or(|u| Some(u) == m.user_id.as_ref())
        })
        .filter(|m| {
            query
                .channel_id
                .as_ref()
                .is_none_or(|c| Some(c) == m.channel_id.as_ref())
        })
        .filter(|m| query.after.is_none_or(|a| m.seq > a))
        .collect();
    HttpResponse::Ok().json(json!({"messages": list}))
}

async fn stats(emulator: web::Data<Emulator>) -> HttpResponse {
    let state = emulator.lock();
    let apps: serde_json::Map<String, Value> = state
        .apps
        .iter()
        .map(|(id, a)| (id.clone(), json!(a.stats)))
        .collect();
    HttpResponse::Ok().json(json!({
        "apps": apps,
        "messages": state.messages.len(),
        "access_tokens": state.access_tokens.len(),
        "rate_limited": state.rate_limited,
        "downloads": state.downloads,
    }))
}

/// Forgets messages, tokens, counters, rate windows, faults and the clock
/// offset; keeps apps and bots.
async fn reset(emulator: web::Data<Emulator>) -> HttpResponse {
    let mut state = emulator.lock();
    state.messages.clear();
    state.rate_limited = 0;
    state.access_tokens.clear();
    state.refresh_tokens.clear();
    state.codes.clear();
    state.windows.clear();
    state.downloads = 0;
    state.faults = Faults::default();
    state.clock_offset = 0;
    for app in state.apps.values_mut() {
        app.stats = Default::default();
    }
    HttpResponse::Ok().json(json!({"status": "reset"}))
}

#[derive(Deserialize)]
struct NewFile {
    bot_id: String,
    name: String,
}

/// A file a user sent the bot (the body, raw), as an image or file message
/// would carry it: its `fileId` for a callback's content.
async fn add_file(
    emulator: web::Data<Emulator>,
    query: web::Query<NewFile>,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = emulator.lock();
    if !state.bots.contains_key(&query.bot_id) {
        return bad_request(format!("no bot {} is registered", query.bot_id));
    }
    let file_id = format!("kr1.user.{}.{}", state.now(), state.next_seq);
    state.next_seq += 1;
    state.attachments.insert(
        file_id.clone(),
        super::state::Attachment {
            bot_id: query.bot_id.clone(),
            file_name: query.name.clone(),
            data: Some(body.to_vec()),
            uploaded: false,
        },
    );
    HttpResponse::Created().json(json!({"fileId": file_id}))
}

/// Every file the emulator holds: name, size and SHA-256 (hex), so tests
/// compare bytes; `uploaded` for a bot's uploads.
async fn list_files(emulator: web::Data<Emulator>) -> HttpResponse {
    use sha2::Digest as _;
    let state = emulator.lock();
    let files: Vec<Value> = state
        .attachments
        .iter()
        .map(|(id, a)| {
            json!({"fileId": id, "bot_id": a.bot_id, "name": a.file_name, "uploaded": a.uploaded,
                   "size": a.data.as_ref().map(Vec::len),
                   "sha256": a.data.as_ref().map(|d| crate::secrets::hex(&sha2::Sha256::digest(d)))})
        })
        .collect();
    HttpResponse::Ok().json(json!({ "files": files }))
}

async fn get_faults(emulator: web::Data<Emulator>) -> HttpResponse {
    HttpResponse::Ok().json(&emulator.lock().faults)
}

async fn set_faults(emulator: web::Data<Emulator>, body: web::Json<Faults>) -> HttpResponse {
    let faults = body.into_inner();
    let shares = [faults.rate_429, faults.rate_5xx, faults.rate_408];
    if !shares.iter().all(|share| (0.0..=1.0).contains(share)) {
        return bad_request("rate_429, rate_5xx and rate_408 are shares from 0 to 1");
    }
    emulator.lock().faults = faults.clone();
    HttpResponse::Ok().json(faults)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clock {
    /// Unix seconds the emulator should take as now; null for the real clock.
    now: Option<i64>,
}

async fn set_clock(emulator: web::Data<Emulator>, body: web::Json<Clock>) -> HttpResponse {
    let mut state = emulator.lock();
    state.clock_offset = 0;
    if let Some(now) = body.now {
        state.clock_offset = now - state.now();
    }
    HttpResponse::Ok().json(json!({"now": state.now()}))
}

/// A callback to send (§3.3). `content` for messages (or `text` as a
/// shortcut), `data` for postbacks, `members` for joined/left.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackRequest {
    pub bot_id: String,
    /// Defaults to the bot's callback URL.
    pub webhook_url: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub channel_id: Option<String>,
    pub domain_id: Option<i64>,
    pub content: Option<Value>,
    pub text: Option<String>,
    pub data: Option<String>,
    pub members: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<String>,
    domain_id: i64,
}

/// Field order as in the documented examples: type, source, issuedTime, then the rest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallbackBody {
    #[serde(rename = "type")]
    kind: String,
    source: Source,
    issued_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<String>>,
}

/// Builds the callback body for a request, or says what is missing.
fn callback_body(
    req: &CallbackRequest,
    domain_id: i64,
    now_millis: i64,
) -> Result<CallbackBody, String> {
    let kind = req.kind.clone().unwrap_or_else(|| "message".to_owned());
    let need_user = || {
        req.user_id
            .clone()
            .ok_or(format!("user_id is required for {kind}"))
    };
    let need_channel = || {
        req.channel_id
            .clone()
            .ok_or(format!("channel_id is required for {kind}"))
    };
    let (user_id, channel_id, content, data, members) = match kind.as_str() {
        "message" => {
            let content = match (&req.content, &req.text) {
                (Some(c), _) => c.clone(),
                (None, Some(t)) => json!({"type": "text", "text": t}),
                (None, None) => return Err("message needs content or text".to_owned()),
            };
            (
                Some(need_user()?),
                req.channel_id.clone(),
                Some(content),
                None,
                None,
            )
        }
        "postback" => (
            Some(need_user()?),
            req.channel_id.clone(),
            None,
            Some(req.data.clone().ok_or("postback needs data")?),
            None,
        ),
        "join" | "leave" => (None, Some(need_channel()?), None, None, None),
        "joined" | "left" => (
            None,
            Some(need_channel()?),
            None,
            None,
            Some(req.members.clone().ok_or(format!("{kind} needs members"))?),
        ),
        "begin" | "end" => (Some(need_user()?), req.channel_id.clone(), None, None, None),
        other => return Err(format!("unknown callback type {other:?}")),
    };
    Ok(CallbackBody {
        kind,
        source: Source {
            user_id,
            channel_id,
            domain_id: req.domain_id.unwrap_or(domain_id),
        },
        issued_time: crate::domain::rfc3339(now_millis),
        content,
        data,
        members,
    })
}

async fn send_callback(
    emulator: web::Data<Emulator>,
    body: web::Json<CallbackRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let (url, secret, body) = {
        let mut state = emulator.lock();
        let Some((client_id, bot)) = state.bots.get(&req.bot_id).cloned() else {
            return bad_request(format!("no bot {} is registered", req.bot_id));
        };
        let domain = state
            .apps
            .get(&client_id)
            .map_or(10_000, |a| a.config.domain_id);
        let Some(url) = req.webhook_url.clone().or(bot.callback_url.clone()) else {
            return bad_request("give webhook_url, or set the bot's callback URL first");
        };
        let body = match callback_body(
            &req,
            domain,
            state.now() * 1000 + crate::domain::now_millis() % 1000,
        ) {
            Ok(b) => b,
            Err(e) => return bad_request(e),
        };
        remember_channel(&mut state.channels, &req, &body);
        (url, bot.bot_secret, body)
    };
    let raw = match serde_json::to_vec(&body) {
        Ok(raw) => raw,
        Err(e) => return bad_request(e),
    };
    let signature = crate::naverworks::signature::sign(secret.as_bytes(), &raw);
    // Sent once: NAVER WORKS never re-sends a failed callback (§3.1).
    let result = emulator
        .http
        .post(&url)
        .header("Content-Type", "application/json; charset=UTF-8")
        .header("X-WORKS-BotId", &req.bot_id)
        .header("X-WORKS-Signature", &signature)
        .body(raw.clone())
        .send()
        .await;
    let callback: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(2000).collect();
            HttpResponse::Ok().json(json!({"status": status, "response": text, "callback": callback, "signature": signature}))
        }
        Err(e) => HttpResponse::BadGateway().json(
            json!({"error": format!("the webhook did not answer: {e}"), "callback": callback}),
        ),
    }
}

/// Keeps the emulator's idea of a room's members up to date, so that the
/// channel info and members endpoints have something to answer.
fn remember_channel(
    channels: &mut std::collections::HashMap<String, (String, Vec<String>)>,
    req: &CallbackRequest,
    body: &CallbackBody,
) {
    let Some(channel) = &body.source.channel_id else {
        return;
    };
    let entry = channels
        .entry(channel.clone())
        .or_insert_with(|| (req.bot_id.clone(), Vec::new()));
    let members = &mut entry.1;
    if let Some(user) = &body.source.user_id {
        if !members.contains(user) {
            members.push(user.clone());
        }
    }
    match (body.kind.as_str(), &body.members) {
        ("joined", Some(joined)) => {
            for m in joined {
                if !members.contains(m) {
                    members.push(m.clone());
                }
            }
        }
        ("left", Some(left)) => members.retain(|m| !left.contains(m)),
        _ => {}
    }
}

/// Used by `botgate emulator new-app`: the values to paste into botgate and
/// the TOML to load the app into an emulator.
pub fn describe_generated(app: &GeneratedApp) -> (Value, String) {
    let json = json!(app);
    let toml = format!(
        "[[apps]]\nclient_id = \"{}\"\nclient_secret = \"{}\"\nservice_account = \"{}\"\ndomain_id = {}\nprivate_key = \"\"\"\n{}\"\"\"\n\n[[apps.bots]]\nbot_id = \"{}\"\nbot_secret = \"{}\"\n",
        app.client_id, app.client_secret, app.service_account, app.domain_id, app.private_key, app.bot_id, app.bot_secret
    );
    (json, toml)
}
