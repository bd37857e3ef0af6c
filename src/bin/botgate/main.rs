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
            command:
                Some(Command::Bench {
                    database_url,
                    duration,
                    concurrency,
                    peak_concurrency,
                    only,
                    connections,
                    events,
                    rates,
                    ceiling,
                }),
            ..
        } => {
            botgate::telemetry::init(botgate::config::LogFormat::Pretty, "warn,sqlx=error");
            bench::run(bench::BenchOptions {
                database_url,
                duration: std::time::Duration::from_secs(duration),
                concurrency,
                peak_concurrency,
                only,
                connections,
                events,
                rates,
                ceiling,
            })
            .await
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
