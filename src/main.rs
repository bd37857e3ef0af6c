use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = botgate::cli::Cli::parse();
    match botgate::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
