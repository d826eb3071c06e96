//! librdkafka's mock cluster, served from a process of its own: a broker that keeps records in
//! memory and is never the bottleneck, so the bench can show what Podium's own services do
//! and what an answer costs each of them (issue 15's "Podium's own ceiling").

use std::io::Write;

use anyhow::{Context, Result};
use podium_schemas::topics::Topics;
use rdkafka::mocking::MockCluster;

/// Creates the event topics under `topic_prefix` with the stack's partition counts, prints
/// where the cluster listens, and serves until killed.
pub fn serve(topic_prefix: &str) -> Result<()> {
    let cluster = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    for (topic, partitions) in Topics::with_prefix(topic_prefix).with_partitions() {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating {topic}"))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}{}",
        podium_testkit::MOCK_BROKER_READY,
        cluster.bootstrap_servers()
    )?;
    out.flush()?;
    drop(out);
    // The cluster runs on librdkafka's threads; this one only keeps it alive.
    loop {
        std::thread::park();
    }
}
