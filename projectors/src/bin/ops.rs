//! Operator tools for Podium's event log.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};
use podium_projectors::RedisArgs;
use podium_projectors::rebuild::{RebuildOptions, rebuild};
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

        /// Partitions of the answers topic: the most projectors that can share the answers.
        /// 3 is measured on nisshi, where more partitions cost produce throughput; a Kafka
        /// cluster that wants more projectors can take more (docs/deploy.md).
        #[arg(long, env = "PODIUM_ANSWERS_PARTITIONS", default_value_t = podium_schemas::topics::ANSWERS_PARTITIONS,
              value_parser = clap::value_parser!(i32).range(1..=1024))]
        answers_partitions: i32,
    },
    /// Apply the pending ScyllaDB migrations of deploy/scylla (each version is recorded in the
    /// keyspace's schema_migrations table); the projector also applies them when it starts.
    MigrateScylla {
        #[command(flatten)]
        scylla: podium_durable::ScyllaConfig,
    },
    /// Rebuild the Redis read models from the beginning of the topics without downtime.
    ///
    /// Folds the whole log into a fresh generation while the active one keeps serving, switches
    /// readers and projectors to it in one step once it has caught up, then deletes the old
    /// generation after a grace period. Shows a progress bar on a terminal.
    Rebuild {
        #[command(flatten)]
        redis: RedisArgs,

        /// Most records folded in one atomic step.
        #[arg(long, env = "PODIUM_BATCH_MAX", default_value_t = 1000)]
        batch_max: usize,

        /// Seconds the old generation is kept after the switch, for reads under way; at least
        /// 1, since a query API goes on reading the generation it knows for up to 250 ms.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        grace_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = podium_runtime::init_telemetry("podium-ops");
    match cli.command {
        Command::CreateTopics {
            replication,
            answers_partitions,
        } => {
            let created = podium_projectors::admin::create_topics(
                &cli.kafka,
                replication,
                answers_partitions,
            )
            .await?;
            for (topic, partitions) in &created {
                println!("created {topic} with {partitions} partitions");
            }
            if created.is_empty() {
                println!("topics already exist");
            }
        }
        Command::MigrateScylla { scylla } => {
            if scylla.contact_points().is_none() {
                anyhow::bail!("SCYLLA_NODES is not set: there is no ScyllaDB to migrate");
            }
            let _ = podium_durable::connect(&scylla).await?;
            println!("ScyllaDB keyspace {} is up to date", scylla.keyspace);
        }
        Command::Rebuild {
            redis,
            batch_max,
            grace_seconds,
        } => {
            let store = podium_projectors::connect(&redis).await?;
            let options = RebuildOptions {
                batch_max: batch_max.max(1),
                grace: Duration::from_secs(grace_seconds),
                progress: std::io::stderr().is_terminal(),
            };
            let report = rebuild(&cli.kafka, &store, &options).await?;
            println!(
                "rebuilt {} events into {} in {:.1?}, active after {:.1?} (was {}; {} undecodable records skipped; {} old keys deleted)",
                report.events,
                report.to,
                report.elapsed,
                report.switched_after,
                report.from.as_deref().unwrap_or("none"),
                report.undecodable,
                report.dropped_keys
            );
        }
    }
    Ok(())
}
