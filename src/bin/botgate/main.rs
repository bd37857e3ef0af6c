//! The `botgate` executable: parses the command line and runs it. The
//! load generator (`botgate bench`) lives here, beside the library rather
//! than in it, so that no server carries it.

mod bench;

use botgate::cli::{Cli, Command};
use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse() {
        Cli {
            command: Some(Command::Bench(options)),
        } => {
            botgate::telemetry::init(botgate::config::LogFormat::Pretty, "warn,sqlx=error");
            bench::run(options).await
        }
        cli => botgate::commands::run(cli).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
