use clap::Parser;
use podium_command_api::{App, Config};

/// mimalloc: the command API spent 158 µs of CPU an answer with glibc's allocator and 129 with
/// this one, in one bench profile (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-command-api");
    let shutdown = podium_runtime::shutdown_signal();
    App::build(&config).await?.run_until(shutdown).await
}
