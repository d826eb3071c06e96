use clap::Parser;
use podium_projectors::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-projector");
    podium_projectors::run(&config, podium_runtime::shutdown_signal()).await?;
    Ok(())
}
