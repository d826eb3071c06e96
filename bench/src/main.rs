use clap::Parser;
use podium_bench::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-bench");
    match cli.command {
        Some(Command::HelloWorld { listen, redis }) => {
            podium_bench::hello_world(listen, redis).await
        }
        Some(Command::Settings {
            out,
            lingers,
            in_flight,
            partitions,
            seconds,
        }) => podium_bench::settings(&out, &lingers, &in_flight, &partitions, seconds).await,
        Some(Command::MockBroker { topic_prefix }) => {
            podium_bench::mock_broker::serve(&topic_prefix)
        }
        Some(Command::Chaos { bin_dir, out }) => podium_bench::chaos(bin_dir.as_ref(), &out).await,
        Some(Command::Failover {
            bin_dir,
            out,
            log_events,
        }) => podium_bench::failover(bin_dir.as_ref(), &out, log_events).await,
        Some(Command::Restart {
            bin_dir,
            out,
            events,
        }) => podium_bench::restart(bin_dir.as_ref(), &out, &events).await,
        None => {
            let results = podium_bench::run(&cli.run).await?;
            results.print_table();
            results.check()
        }
    }
}
