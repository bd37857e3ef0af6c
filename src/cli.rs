//! The command line (DESIGN.md, "Command line").

use clap::{Parser, Subcommand};

use crate::secrets::debug_fields;

#[derive(Debug, Parser)]
#[command(
    name = "botgate",
    version,
    about = "A self-hostable, multi-tenant chatbot channel gateway for NAVER WORKS and Slack bots",
    long_about = "A self-hostable, multi-tenant chatbot channel gateway for NAVER WORKS and Slack bots.\n\n\
        With no command, botgate migrates its database and serves. Settings come from \
        built-in defaults, then config/default.toml (or the file named by BOTGATE_CONFIG), \
        then BOTGATE_* environment variables (see config/default.toml for every setting)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Migrate the database, then serve HTTP (the default command).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Manage tenants (one tenant = one chatbot).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Work with botgate's database as a whole.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Manage the master keys that encrypt stored credentials.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Send a text to a user or a room through a connection (the send API),
    /// e.g. from a cron job: `BOTGATE_API_KEY=bgk_… botgate send --connection
    /// con_… --channel 12345 "nightly backup done"`.
    Send(SendArgs),
    /// Run the benchmarks of BENCHMARKS.md against an in-process botgate,
    /// emulator and ceiling server (build with --release).
    Bench(BenchArgs),
    /// Run the NAVER WORKS and Slack emulator (tokens, Bot API and Web API,
    /// OAuth, signed callbacks), or use a running one. Point botgate at it
    /// with BOTGATE_NAVERWORKS_AUTH_URL=http://ADDR/oauth2/v2.0,
    /// BOTGATE_NAVERWORKS_API_URL=http://ADDR/v1.0 and
    /// BOTGATE_SLACK_API_URL=http://ADDR/slack/api.
    Emulator {
        #[command(subcommand)]
        command: Option<EmulatorCommand>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        /// Configuration file (TOML): apps, bots and behaviours. Without it, one
        /// app is generated and printed.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Try a bot in the browser: the gateway (SQLite in --data-dir), the
    /// emulator, a demo tenant and connection, and one printed link that
    /// signs you into the console's chat playground. Never talks to the
    /// real NAVER WORKS or Slack; a second run reuses the demo data.
    Demo {
        /// The gateway's address (the console is here).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The emulator's address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        emulator_listen: std::net::SocketAddr,
        /// Where the demo keeps its database, keys and ids.
        #[arg(long, default_value = "data/demo")]
        data_dir: std::path::PathBuf,
        /// Your own http engine (DESIGN.md's engine protocol) instead of echo.
        #[arg(long)]
        engine_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Generate a ready-to-use app (RSA key pair, ids, secrets) and print the
    /// values to paste into botgate, and the TOML to load it into an emulator.
    NewApp {
        #[arg(long)]
        bot_id: Option<String>,
        #[arg(long)]
        domain_id: Option<i64>,
        /// Print the emulator TOML instead of JSON.
        #[arg(long)]
        toml: bool,
    },
    /// Make a running emulator send a signed callback, as if a user had typed.
    Callback {
        /// The running emulator.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        emulator: String,
        #[arg(long)]
        bot_id: String,
        /// message, postback, join, leave, joined, left, begin or end.
        #[arg(long = "type", default_value = "message")]
        kind: String,
        #[arg(long)]
        user_id: Option<String>,
        #[arg(long)]
        channel_id: Option<String>,
        /// Text of a text message.
        #[arg(long)]
        text: Option<String>,
        /// Data of a postback.
        #[arg(long)]
        data: Option<String>,
        /// Members of joined/left, comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Where to send it; defaults to the bot's callback URL.
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id and API key (shown only this once).
    Create {
        /// The tenant's display name.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Give a tenant a new API key and print it (shown only this once); the
    /// old key stops working at once, or after --previous-valid-seconds.
    RotateKey {
        /// The tenant's id (ten_…).
        #[arg(long)]
        tenant: String,
        /// How long the old key keeps working, in seconds (at most a week).
        #[arg(long, default_value_t = 0)]
        previous_valid_seconds: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every row of botgate's database (BOTGATE_DATABASE_URL) into a
    /// new one, e.g. from the embedded SQLite to PostgreSQL: tenants,
    /// connections (their URLs stay the same), sealed credentials, tokens,
    /// installations, queues and history. Stop botgate first (the copy is a
    /// snapshot), then start it on the new database with the same master
    /// key. The source is not changed.
    Copy {
        /// The database to copy into (postgres://… or sqlite://…): migrated
        /// first, and refused unless it is then empty.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (base64), e.g. for BOTGATE_MASTER_KEY.
    Generate {
        /// Print `.env` lines instead: BOTGATE_MASTER_KEY and a new
        /// BOTGATE_ADMIN_TOKEN, for `docker compose up`
        /// (`botgate keys generate --env > .env`).
        #[arg(long)]
        env: bool,
    },
    /// Re-encrypt every stored secret under a new master key.
    ///
    /// With a key file (BOTGATE_MASTER_KEY_FILE or the generated data/master.key),
    /// a new key is generated and put first in the file, the old ones kept after
    /// it so that they still decrypt; running servers pick the new key up from
    /// the file. With BOTGATE_MASTER_KEY, put the new key first in the list
    /// ("new,old") on every replica, then run this to re-encrypt under it.
    Rotate {
        /// Re-encrypt under the current first key without generating a new one.
        #[arg(long)]
        no_new_key: bool,
        /// Afterwards, remove from the key file every key no value is sealed under.
        #[arg(long)]
        retire: bool,
    },
}

/// `botgate bench`'s options (the load generator is the executable's).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// PostgreSQL URL of an empty database; SQLite in a temporary file if absent.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Requests in flight in the closed-loop runs.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The ceiling and B1's maximum are also measured with this many
    /// requests in flight, and each takes the higher of its two figures
    /// (group commit grows its batches with the load); 0 skips it.
    #[arg(long, default_value_t = 256)]
    pub peak_concurrency: usize,
    /// Only these benchmarks (b1 … b7; comma-separated); all if absent.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Connections in B4's large case.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Events in B5's backlog.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// B2's rates, as fractions of the ceiling (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0.01, 0.05])]
    pub rates: Vec<f64>,
    /// Take this ceiling (req/s) instead of measuring it: for comparing
    /// two builds at the same rates. A report's figures are measured
    /// against its own run's ceiling.
    #[arg(long)]
    pub ceiling: Option<f64>,
    /// B2 with a status hook set (at a receiver in the bench process that
    /// answers 204): the cost of posting every message's final status, and
    /// how long after the last reply the last post arrives.
    #[arg(long)]
    pub status_hook: bool,
}

/// `botgate send`'s arguments; their `Debug` masks the API key.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The connection id (con_…).
    #[arg(long)]
    pub connection: String,
    /// The user to message (id or login e-mail)…
    #[arg(long, conflicts_with = "channel", required_unless_present = "channel")]
    pub user: Option<String>,
    /// …or the room.
    #[arg(long)]
    pub channel: Option<String>,
    /// Slack: the workspace (team id, T…) to send through; required for a
    /// connection that sends through its installations.
    #[arg(long)]
    pub team: Option<String>,
    /// Slack: the thread to answer in (its ts, e.g. 1700000000.000100).
    #[arg(long)]
    pub thread: Option<String>,
    /// NAVER WORKS: send a text over 2,000 characters as several messages.
    #[arg(long)]
    pub split: bool,
    /// Makes a retried run send only once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// botgate's address.
    #[arg(long, env = "BOTGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The tenant's API key.
    #[arg(long, env = "BOTGATE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The text to send.
    pub text: String,
}

// The API key is left out.
debug_fields!(SendArgs {
    connection,
    team,
    url
});
