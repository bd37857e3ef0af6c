//! What each command line command does.

use anyhow::Context as _;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::cli::{Cli, Command, DbCommand, EmulatorCommand, KeysCommand, SendArgs, TenantCommand};
use crate::config::Settings;
use crate::domain::ids::TenantId;
use crate::domain::tenant::TenantName;
use crate::rotation::reencrypt_all;
use crate::secrets::keyfile::{read_key_file, write_key_file};
use crate::secrets::vault::{KeySource, Vault};
use crate::secrets::{KeyRing, MasterKey};
use crate::service::activity::Actor;
use crate::startup::Application;
use crate::store::Store;
use crate::{bootstrap, telemetry};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command.unwrap_or(Command::Serve) {
        // These stand alone: they read none of botgate's settings.
        Command::Keys {
            command: KeysCommand::Generate { env },
        } => {
            let key = MasterKey::generate();
            if env {
                let token = crate::secrets::hashing::generate_token(
                    crate::secrets::hashing::ADMIN_TOKEN_PREFIX,
                );
                println!(
                    "BOTGATE_MASTER_KEY={}\nBOTGATE_ADMIN_TOKEN={}",
                    key.to_base64().expose_secret(),
                    token.expose_secret()
                );
            } else {
                println!("{}", key.to_base64().expose_secret());
            }
            return Ok(());
        }
        Command::Emulator {
            command,
            listen,
            config,
        } => {
            telemetry::init(
                crate::config::LogFormat::Pretty,
                "botgate=info,actix_web=warn",
            );
            return emulator(command, listen, config).await;
        }
        Command::Send(args) => return send(args).await,
        Command::Demo {
            listen,
            emulator_listen,
            data_dir,
            engine_url,
        } => {
            // One line on stdout; only errors on stderr.
            telemetry::init(crate::config::LogFormat::Pretty, "error");
            return crate::demo::run(crate::demo::DemoArgs {
                listen,
                emulator_listen,
                data_dir,
                engine_url,
            })
            .await;
        }
        // The load generator is the executable's (src/bin/botgate), not the
        // library's: it never reaches here from `botgate bench`.
        Command::Bench(_) => {
            anyhow::bail!("the benchmarks run from the botgate executable: `botgate bench`")
        }
        other => other,
    };
    let (settings, report) = Settings::load()?;
    // A copy's long reads are expected, not slow statements worth a warning.
    let log = match command {
        Command::Db { .. } => "warn,sqlx=error",
        _ => settings.log.as_str(),
    };
    telemetry::init(settings.log_format, log);
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = connect(&settings).await?;
            store.migrate().await?;
            eprintln!("migrations applied to {}", settings.database_url);
            Ok(())
        }
        Command::Db {
            command: DbCommand::Copy { to },
        } => {
            let to =
                crate::config::DatabaseUrl::parse(&to).map_err(|e| anyhow::anyhow!("--to {e}"))?;
            anyhow::ensure!(
                to.expose() != settings.database_url.expose(),
                "--to names the database botgate uses ({}): name a new one",
                settings.database_url
            );
            // Connecting creates a missing SQLite file: not the source's.
            if let Some(file) = settings.database_url.sqlite_file() {
                anyhow::ensure!(
                    file.exists(),
                    "there is no database at {} to copy",
                    settings.database_url
                );
            }
            let source = connect(&settings).await?;
            let target = Store::connect(&to, 2).await?;
            let copied = source
                .copy_into(&target, |table, rows| eprintln!("{table:<20} {rows:>10}"))
                .await;
            target.close().await;
            source.close().await;
            let copied =
                copied.with_context(|| format!("copying {} to {to}", settings.database_url))?;
            eprintln!(
                "copied {} rows from {} to {to}; start botgate with BOTGATE_DATABASE_URL set to it and the same master key",
                copied.rows(),
                settings.database_url
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name, json },
        } => {
            let name =
                TenantName::parse(&name).map_err(|e| anyhow::anyhow!("--name {}", e.message))?;
            let store = connect(&settings).await?;
            store.migrate().await?;
            let (tenant, api_key) =
                crate::service::tenants::create(&store, &name, &Actor::operator()).await?;
            if json {
                let out = json!({"id": tenant.id.as_str(), "name": tenant.name, "api_key": api_key.expose_secret()});
                println!("{out}");
            } else {
                println!(
                    "tenant id: {}\nname:      {}\napi key:   {}",
                    tenant.id,
                    tenant.name,
                    api_key.expose_secret()
                );
                eprintln!("(the API key is shown only this once; botgate keeps only its hash)");
            }
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::RotateKey {
                    tenant,
                    previous_valid_seconds,
                    json,
                },
        } => {
            use crate::service::tenants::{replace_api_key, MAX_PREVIOUS_KEY_SECONDS};
            let id = TenantId::parse(&tenant)
                .ok_or_else(|| anyhow::anyhow!("--tenant must be a tenant id (ten_…)"))?;
            anyhow::ensure!(
                (0..=MAX_PREVIOUS_KEY_SECONDS).contains(&previous_valid_seconds),
                "--previous-valid-seconds must be from 0 to {MAX_PREVIOUS_KEY_SECONDS} (a week)"
            );
            let store = connect(&settings).await?;
            store.migrate().await?;
            let (api_key, until) = replace_api_key(
                &store,
                &id,
                previous_valid_seconds,
                None,
                &Actor::operator(),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("no tenant {id}"))?;
            let until = until.map(crate::domain::rfc3339);
            if json {
                let out = json!({"id": id.as_str(), "api_key": api_key.expose_secret(),
                                 "previous_key_valid_until": until});
                println!("{out}");
            } else {
                println!("tenant id: {id}\napi key:   {}", api_key.expose_secret());
                match until {
                    Some(t) => eprintln!("(the old key works until {t})"),
                    None => eprintln!("(the old key no longer works)"),
                }
                eprintln!("(the API key is shown only this once; botgate keeps only its hash)");
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate { no_new_key, retire },
        } => rotate(&settings, no_new_key, retire).await,
        // Handled above, before the settings are loaded.
        Command::Keys {
            command: KeysCommand::Generate { .. },
        }
        | Command::Emulator { .. }
        | Command::Demo { .. }
        | Command::Send(_)
        | Command::Bench(_) => Ok(()),
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database_url, settings.database_max_connections).await
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings.clone()).await?;
    if let Some(token) = &app.generated_admin_token {
        // Printed once, to the terminal, never logged: only its hash is kept.
        // One write, and a closed stdout is no reason to stop serving.
        let message = zeroize::Zeroizing::new(format!(
            "\nbotgate generated an admin token (shown only this once; its hash is in {}):\n\n    {}\n\n\
             Sign in with it at {} to create a tenant.\n",
            bootstrap::admin_token_path(&settings).display(),
            token.expose_secret(),
            settings.public_link("console")
        ));
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut out, message.as_bytes())
            .and_then(|()| std::io::Write::flush(&mut out));
    }
    tracing::info!(
        listen = %settings.listen,
        public_url = %settings.public_url,
        database = %settings.database_url,
        port = app.port(),
        console = %settings.public_link("console"),
        "botgate is serving"
    );
    app.run_until_stopped()
        .await
        .context("the HTTP server failed")
}

/// `botgate keys rotate`.
pub async fn rotate(settings: &Settings, no_new_key: bool, retire: bool) -> anyhow::Result<()> {
    let (ring, source, _) = bootstrap::load_keys(settings)?;
    let vault = match (&source, no_new_key) {
        (KeySource::File(path), false) => {
            let new = MasterKey::generate();
            let old = read_key_file(path)?;
            let mut keys: Vec<&MasterKey> = vec![&new];
            keys.extend(old_keys(&old));
            write_key_file(path, &keys)?;
            eprintln!(
                "new master key {} written first in {}",
                new.id(),
                path.display()
            );
            Vault::new(read_key_file(path)?, source.clone())
        }
        (KeySource::Setting, false) if !no_new_key => {
            anyhow::bail!(
                "the master keys come from BOTGATE_MASTER_KEY, which botgate cannot change: \
                 generate a key with `botgate keys generate`, set BOTGATE_MASTER_KEY=\"<new>,<old>\" \
                 on every replica, then run `botgate keys rotate --no-new-key`"
            )
        }
        _ => Vault::new(ring, source.clone()),
    };
    let vault = std::sync::Arc::new(vault);
    let store = connect(settings)
        .await?
        .with_bodies(vault.clone(), settings.seal_message_data);
    store.migrate().await?;
    let report = reencrypt_all(&store, &vault).await?;
    let current = vault.ring().current().id().to_owned();
    eprintln!(
        "re-encrypted {} value(s) under key {current}; {} changed meanwhile; {} unreadable",
        report.reencrypted, report.raced, report.unreadable
    );
    let counts = store.secret_counts_by_key().await?;
    let left: i64 = counts
        .iter()
        .filter(|(k, _)| *k != current)
        .map(|(_, n)| n)
        .sum();
    if report.unreadable > 0 || left > 0 {
        anyhow::bail!("{left} value(s) are still sealed under older keys; run `botgate keys rotate --no-new-key` again");
    }
    // Message bodies: servers seal new ones under a key file's new key
    // within a second of the change (`Vault::seal_bytes`); those sealed
    // before are re-sealed here.
    if !no_new_key {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let (resealed, unreadable) = store.reseal_bodies().await?;
    eprintln!("re-sealed {resealed} message bod(ies) under key {current}; {unreadable} unreadable");
    if unreadable > 0 && retire {
        anyhow::bail!("{unreadable} message bod(ies) cannot be opened with the keys in the ring; older keys kept");
    }
    if retire {
        let KeySource::File(path) = &source else {
            anyhow::bail!("--retire works on a key file; with BOTGATE_MASTER_KEY, remove the old key from the list yourself");
        };
        write_key_file(path, &[vault.ring().current()])?;
        eprintln!("older keys removed from {}", path.display());
    }
    Ok(())
}

/// `botgate send`: one call to the send API; prints the queued message id.
async fn send(args: SendArgs) -> anyhow::Result<()> {
    let mut body = json!({"content": {"type": "text", "text": args.text}});
    match (args.user, args.channel) {
        (Some(user), _) => body["user_id"] = json!(user),
        (None, Some(channel)) => body["channel_id"] = json!(channel),
        (None, None) => anyhow::bail!("give --user or --channel"),
    }
    if let Some(team) = args.team {
        body["team_id"] = json!(team);
    }
    if let Some(thread) = args.thread {
        body["thread_ts"] = json!(thread);
    }
    if args.split {
        body["split_long_text"] = json!(true);
    }
    let url = format!(
        "{}/api/v1/connections/{}/messages",
        args.url.trim_end_matches('/'),
        args.connection
    );
    let mut request = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .post(url)
        .bearer_auth(&args.api_key)
        .json(&body);
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.context("botgate did not answer")?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "botgate refused the message (HTTP {status}): {answer}"
    );
    println!("{answer}");
    Ok(())
}

async fn emulator(
    command: Option<EmulatorCommand>,
    listen: std::net::SocketAddr,
    config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::emulator::admin::{describe_generated, generate_app, GenerateRequest};
    match command {
        Some(EmulatorCommand::NewApp {
            bot_id,
            domain_id,
            toml,
        }) => {
            let (app, _) = generate_app(&GenerateRequest {
                domain_id,
                bot_id,
                scopes: None,
            })?;
            let (json, toml_text) = describe_generated(&app);
            if toml {
                print!("{toml_text}");
            } else {
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Ok(())
        }
        Some(EmulatorCommand::Callback {
            emulator,
            bot_id,
            kind,
            user_id,
            channel_id,
            text,
            data,
            members,
            webhook_url,
        }) => {
            let body = json!({
                "bot_id": bot_id, "type": kind, "user_id": user_id, "channel_id": channel_id,
                "text": text, "data": data, "webhook_url": webhook_url,
                "members": (!members.is_empty()).then_some(members),
            });
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?
                .post(format!(
                    "{}/emulator/callbacks",
                    emulator.trim_end_matches('/')
                ))
                .json(&body)
                .send()
                .await
                .context("the emulator did not answer")?;
            let ok = response.status().is_success();
            println!("{}", response.text().await?);
            anyhow::ensure!(ok, "the emulator refused the callback");
            Ok(())
        }
        None => {
            let mut config = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    crate::emulator::EmulatorConfig::from_toml(&text).with_context(|| {
                        format!("invalid emulator configuration {}", path.display())
                    })?
                }
                None => crate::emulator::EmulatorConfig::default(),
            };
            if config.apps.is_empty() {
                let (app, app_config) = generate_app(&GenerateRequest::default())?;
                config.apps.push(app_config);
                println!(
                    "No app configured: generated one. Paste these into botgate:\n{}",
                    serde_json::to_string_pretty(&describe_generated(&app).0)?
                );
            }
            let server = crate::emulator::EmulatorServer::build(config, listen)?;
            let url = server.url();
            let slack = server.emulator().slack.generate_app();
            println!(
                "NAVER WORKS emulator on {url}\n  BOTGATE_NAVERWORKS_AUTH_URL={url}/oauth2/v2.0\n  BOTGATE_NAVERWORKS_API_URL={url}/v1.0\n\
                 Slack emulator on {url}/slack\n  BOTGATE_SLACK_API_URL={url}/slack/api\n  \
                 a Slack app: {{\"channel\": \"slack\", \"signing_secret\": \"{}\", \"bot_token\": \"{}\"}} (app_id {}, team {})",
                slack.signing_secret, slack.bot_token, slack.app_id, slack.team_id
            );
            server
                .run_until_stopped()
                .await
                .context("the emulator failed")
        }
    }
}

fn old_keys(ring: &KeyRing) -> Vec<&MasterKey> {
    ring.all_keys().collect()
}
