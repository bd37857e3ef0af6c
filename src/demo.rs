//! `botgate demo`: the gateway on the embedded SQLite in a demo data
//! directory, the emulator beside it, a demo tenant with its engine (echo,
//! or the builder's own http engine) and a connection to the emulator's app,
//! and one printed line: a one-time link that signs the browser into the
//! console's playground. It never talks to the real NAVER WORKS or Slack:
//! every platform URL points at the emulator, whatever the environment says.
//!
//! Two connections: NAVER WORKS (the link opens its playground) and Slack,
//! both to the emulator's apps. A second run reuses the demo data: the
//! emulator's apps (with their keys and tokens) are kept in `emulator.toml`
//! and `slack-app.json`, the tenant and connection ids in `demo.json`, all
//! 0600 in the data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::domain::now_millis;
use crate::domain::tenant::TenantName;
use crate::emulator::admin::{describe_generated, generate_app, GenerateRequest};
use crate::emulator::slack::SlackApp;
use crate::emulator::{EmulatorConfig, EmulatorServer};
use crate::secrets::hashing::{generate_token, hash_token};
use crate::service::activity::Actor;
use crate::startup::Application;
use crate::state::AppState;

/// How long the printed link signs a browser in.
const LINK_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// `botgate demo`'s options.
pub struct DemoArgs {
    pub listen: SocketAddr,
    pub emulator_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub engine_url: Option<String>,
}

/// What a run leaves for the next one.
#[derive(Serialize, Deserialize)]
struct Saved {
    tenant_id: String,
    /// The NAVER WORKS connection (the printed link opens its playground).
    connection_id: String,
    /// The Slack connection.
    slack_connection_id: Option<String>,
    /// The http engine's signing secret, made once.
    engine_secret: String,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The emulator's configuration: the saved app, or a new one saved now.
/// Also the app's values for botgate's connection, when new.
fn emulator_config(dir: &Path) -> anyhow::Result<(EmulatorConfig, Option<Value>)> {
    let path = dir.join("emulator.toml");
    if path.is_file() {
        let text = std::fs::read_to_string(&path)?;
        let config = EmulatorConfig::from_toml(&text)
            .with_context(|| format!("invalid {}", path.display()))?;
        if !config.apps.is_empty() {
            return Ok((config, None));
        }
    }
    let (app, _) = generate_app(&GenerateRequest::default())?;
    let (values, toml) = describe_generated(&app);
    write_private(&path, &toml)?;
    Ok((EmulatorConfig::from_toml(&toml)?, Some(values)))
}

/// The emulator's Slack app: the saved one put back, or a new one saved
/// now (then `true`).
fn slack_app(dir: &Path, emulator: &EmulatorServer) -> anyhow::Result<(SlackApp, bool)> {
    let path = dir.join("slack-app.json");
    let slack = &emulator.emulator().slack;
    if let Ok(text) = std::fs::read_to_string(&path) {
        let app: SlackApp =
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        slack.restore_app(app.clone());
        return Ok((app, false));
    }
    let app = slack.generate_app();
    write_private(&path, &serde_json::to_string_pretty(&app)?)?;
    Ok((app, true))
}

/// The settings of the demo's gateway: only what is fixed here, never the
/// environment's platform URLs.
fn settings(args: &DemoArgs, emulator: &str) -> anyhow::Result<Settings> {
    let dir = args.data_dir.display().to_string();
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut toml = format!(
        "listen = {listen}\npublic_url = {public}\ndata_dir = {dir}\ndatabase_url = {db}\n\
         naverworks_auth_url = {auth}\nnaverworks_api_url = {api}\n\
         slack_api_url = {slack}\nslack_authorize_url = {slack_auth}\n\
         playground_emulator_url = {emu}\nlog = \"warn,botgate=warn\"\n",
        listen = quote(&args.listen.to_string()),
        public = quote(&format!("http://{}/", args.listen)),
        dir = quote(&dir),
        db = quote(&format!("sqlite://{dir}/botgate.db")),
        auth = quote(&format!("{emulator}/oauth2/v2.0")),
        api = quote(&format!("{emulator}/v1.0")),
        slack = quote(&format!("{emulator}/slack/api")),
        slack_auth = quote(&format!("{emulator}/slack/oauth/v2/authorize")),
        emu = quote(emulator),
    );
    if args.engine_url.is_some() {
        // The builder's engine runs on this machine.
        toml.push_str("engine_allowed_networks = \"127.0.0.0/8,::1/128\"\n");
    }
    Settings::with_overrides(&toml).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn exists(state: &AppState, connection: &str) -> anyhow::Result<bool> {
    Ok(state
        .store
        .connection_by_id(&ConnectionId::from_trusted(connection.to_owned()))
        .await?
        .is_some())
}

/// Creates a connection of the demo tenant; its id.
async fn connect(state: &AppState, tenant: &TenantId, body: Value) -> anyhow::Result<String> {
    let tenant = state
        .store
        .tenant(tenant)
        .await?
        .context("the demo tenant is gone")?;
    let body: crate::service::connections::ConnectionBody = serde_json::from_value(body)?;
    let connection = crate::service::connections::create(state, &tenant, &body, &Actor::operator())
        .await
        .map_err(|e| anyhow::anyhow!("the demo connection was refused: {e}"))?;
    Ok(connection.id.as_str().to_owned())
}

/// The demo tenant and connections: the saved ones while they are still in
/// the database (and the emulator's apps are the saved ones), else new ones.
async fn tenant_and_connections(
    state: &AppState,
    dir: &Path,
    new_app: Option<Value>,
    (slack, new_slack): (&SlackApp, bool),
) -> anyhow::Result<Saved> {
    let path = dir.join("demo.json");
    let saved = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let saved: Saved = serde_json::from_str(&text)
                .with_context(|| format!("invalid {}", path.display()))?;
            (new_app.is_none() && exists(state, &saved.connection_id).await?).then_some(saved)
        }
        Err(_) => None,
    };
    let mut saved = match saved {
        Some(saved) => saved,
        None => new_tenant(state, dir, new_app).await?,
    };
    let slack_exists = match &saved.slack_connection_id {
        Some(id) => exists(state, id).await?,
        None => false,
    };
    if new_slack || !slack_exists {
        let tenant = TenantId::from_trusted(saved.tenant_id.clone());
        let body = json!({"channel": "slack", "signing_secret": slack.signing_secret, "bot_token": slack.bot_token});
        saved.slack_connection_id = Some(connect(state, &tenant, body).await?);
    }
    write_private(&path, &serde_json::to_string_pretty(&json!(saved))?)?;
    Ok(saved)
}

/// A new demo tenant and its NAVER WORKS connection to the emulator's app.
async fn new_tenant(state: &AppState, dir: &Path, new_app: Option<Value>) -> anyhow::Result<Saved> {
    let Some(app) = new_app else {
        anyhow::bail!(
            "{} is gone but {} is not: remove the demo directory to start over",
            dir.join("demo.json").display(),
            dir.join("emulator.toml").display()
        );
    };
    let name = TenantName::parse("Demo").map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (tenant, _) =
        crate::service::tenants::create(&state.store, &name, &Actor::operator()).await?;
    let body = json!({
        "channel": "naverworks",
        "bot_id": app["bot_id"], "client_id": app["client_id"],
        "client_secret": app["client_secret"], "service_account": app["service_account"],
        "private_key": app["private_key"], "bot_secret": app["bot_secret"],
        "auth_header": crate::secrets::hex(&crate::secrets::random_bytes(16)),
        "rate_limit_per_minute": 6000,
    });
    Ok(Saved {
        connection_id: connect(state, &tenant.id, body).await?,
        tenant_id: tenant.id.as_str().to_owned(),
        slack_connection_id: None,
        engine_secret: crate::secrets::hex(&crate::secrets::random_bytes(24)),
    })
}

/// Points the demo tenant at the engine asked for (echo by default).
async fn set_engine(state: &AppState, saved: &Saved, url: Option<&str>) -> anyhow::Result<()> {
    let tenant = state
        .store
        .tenant(&TenantId::from_trusted(saved.tenant_id.clone()))
        .await?
        .context("the demo tenant is gone")?;
    let body: crate::service::tenants::EngineBody = serde_json::from_value(match url {
        Some(url) => json!({"kind": "http", "url": url, "secret": saved.engine_secret}),
        None => json!({"kind": "echo"}),
    })?;
    crate::service::tenants::set_engine(state, &tenant, &body, &Actor::operator())
        .await
        .map_err(|e| anyhow::anyhow!("--engine-url: {e}"))?;
    Ok(())
}

/// A one-time link into the console, opening `target`.
pub async fn sign_in_link(
    state: &AppState,
    tenant: &TenantId,
    target: &str,
) -> anyhow::Result<String> {
    let token = generate_token("");
    let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
    let now = now_millis();
    state
        .store
        .put_console_link(
            &hash_token(&token),
            tenant,
            target,
            now + LINK_LIFETIME_MS,
            now,
        )
        .await?;
    Ok(state.settings.public_link(&format!("console/link/{token}")))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let (emulator_config, new_app) = emulator_config(&args.data_dir)?;
    let emulator = EmulatorServer::build(emulator_config, args.emulator_listen).map_err(|e| {
        anyhow::anyhow!(
            "the demo's emulator cannot listen on {} ({e:#}): stop what uses that port, or pick another with --emulator-listen",
            args.emulator_listen
        )
    })?;
    let slack = slack_app(&args.data_dir, &emulator)?;
    let emulator_url = emulator.url();
    let emulator = tokio::spawn(emulator.run_until_stopped());
    let settings = settings(&args, &emulator_url)?;
    let app = Application::build(settings).await.map_err(|e| {
        anyhow::anyhow!(
            "the demo's gateway cannot start on {} ({e:#}): stop what uses that port, or pick another with --listen",
            args.listen
        )
    })?;
    let state = app.state();
    let saved =
        tenant_and_connections(&state, &args.data_dir, new_app, (&slack.0, slack.1)).await?;
    set_engine(&state, &saved, args.engine_url.as_deref()).await?;
    let link = sign_in_link(
        &state,
        &TenantId::from_trusted(saved.tenant_id.clone()),
        &format!("/console/connections/{}/playground", saved.connection_id),
    )
    .await?;
    println!("botgate demo: open {link} (one-time link, 10 minutes; Ctrl-C stops)");
    if args.engine_url.is_some() {
        println!(
            "engine requests are signed with the secret in {}",
            args.data_dir.join("demo.json").display()
        );
    }
    let result = app.run_until_stopped().await;
    emulator.abort();
    result.context("the HTTP server failed")
}
