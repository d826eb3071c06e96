use clap::Parser;
use podium_command_api::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-command-api");
    let shutdown = podium_runtime::shutdown_signal();
    App::build(&config).await?.run_until(shutdown).await
}
