use clap::Parser;
use podium_projectors::Config;

/// mimalloc, as the command API: fewer cycles in malloc and free on the ingest path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-projector");
    podium_projectors::run(&config, podium_runtime::shutdown_signal()).await?;
    Ok(())
}
