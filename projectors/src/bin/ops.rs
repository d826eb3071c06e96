//! Operator tools for Podium's event log.

use clap::{Parser, Subcommand};
use podium_runtime::KafkaArgs;

#[derive(Debug, Parser)]
#[command(
    name = "podium-ops",
    version,
    about = "Operator tools for Podium's event log."
)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create Podium's topics with their partition counts; existing topics are left alone.
    CreateTopics {
        /// Replication factor of each topic (1 for a single local broker).
        #[arg(long, env = "PODIUM_TOPIC_REPLICATION", default_value_t = 1)]
        replication: i32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    podium_runtime::init_telemetry();
    match cli.command {
        Command::CreateTopics { replication } => {
            let created = podium_projectors::admin::create_topics(&cli.kafka, replication).await?;
            for (topic, partitions) in &created {
                println!("created {topic} with {partitions} partitions");
            }
            if created.is_empty() {
                println!("topics already exist");
            }
        }
    }
    Ok(())
}
