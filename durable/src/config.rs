//! Configuration from the environment, and the one call that turns it into a store.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;

use crate::migrations::{self, Migration};
use crate::{Error, Result, ScyllaDurableStore};

/// ScyllaDB settings; `#[command(flatten)]` them into a service's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ScyllaConfig {
    /// ScyllaDB contact points, comma-separated `host:port`. Unset or empty disables the durable
    /// read model.
    #[arg(long = "scylla-nodes", env = "SCYLLA_NODES", value_delimiter = ',')]
    pub nodes: Option<Vec<String>>,
    /// Keyspace of the durable read model; created by the migrations if missing.
    #[arg(
        long = "scylla-keyspace",
        env = "PODIUM_SCYLLA_KEYSPACE",
        default_value = "podium"
    )]
    pub keyspace: Keyspace,
    /// Consistency level of every read and write: ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM or
    /// LOCAL_ONE.
    #[arg(
        long = "scylla-consistency",
        env = "PODIUM_SCYLLA_CONSISTENCY",
        default_value = "LOCAL_QUORUM",
        value_parser = parse_consistency
    )]
    pub consistency: Consistency,
    /// Replication factor per datacenter, used when the keyspace is created.
    #[arg(
        long = "scylla-replication",
        env = "PODIUM_SCYLLA_REPLICATION",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub replication: u32,
}

impl ScyllaConfig {
    /// The configured contact points, or `None` when the durable read model is disabled.
    pub fn contact_points(&self) -> Option<Vec<&str>> {
        let nodes: Vec<&str> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        (!nodes.is_empty()).then_some(nodes)
    }
}

/// A keyspace name safe to splice into CQL: `[a-z][a-z0-9_]{0,47}`. Lowercase only, because
/// CQL folds unquoted names to lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keyspace(String);

impl Keyspace {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Keyspace {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let mut chars = name.chars();
        let valid = name.len() <= 48
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::InvalidKeyspace(name.to_owned()))
        }
    }
}

impl fmt::Display for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a consistency level name such as `LOCAL_QUORUM` (case-insensitive, `-` or `_`).
/// Write-only (ANY, EACH_QUORUM) and read-only (SERIAL, LOCAL_SERIAL) levels are refused:
/// the store uses one level for reads and writes.
pub fn parse_consistency(name: &str) -> Result<Consistency> {
    match name.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "ONE" => Ok(Consistency::One),
        "TWO" => Ok(Consistency::Two),
        "THREE" => Ok(Consistency::Three),
        "QUORUM" => Ok(Consistency::Quorum),
        "ALL" => Ok(Consistency::All),
        "LOCAL_QUORUM" => Ok(Consistency::LocalQuorum),
        "LOCAL_ONE" => Ok(Consistency::LocalOne),
        _ => Err(Error::InvalidConsistency(name.to_owned())),
    }
}

/// Connects, applies pending migrations and prepares the store's statements. `Ok(None)` when
/// `SCYLLA_NODES` is not set: the durable read model is disabled, and one log line says so.
pub async fn connect(config: &ScyllaConfig) -> Result<Option<ScyllaDurableStore>> {
    let Some(nodes) = config.contact_points() else {
        tracing::info!("durable read model disabled: SCYLLA_NODES is not set");
        return Ok(None);
    };
    // The default policy, explicitly token-aware: prepared statements carry their partition
    // key, so each request goes straight to a replica (and shard) owning the data.
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(DefaultPolicy::builder().token_aware(true).build())
        .consistency(config.consistency)
        .build();
    let session = SessionBuilder::new()
        .known_nodes(&nodes)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await?;
    let session = Arc::new(session);
    let applied = migrations::migrate(
        &session,
        &config.keyspace,
        config.replication,
        &Migration::embedded()?,
    )
    .await?;
    tracing::info!(
        keyspace = %config.keyspace,
        nodes = ?nodes,
        consistency = %config.consistency,
        applied = ?applied,
        "durable read model connected to ScyllaDB",
    );
    ScyllaDurableStore::new(session, config.keyspace.clone(), config.consistency)
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        scylla: ScyllaConfig,
    }

    #[test]
    fn consistency_names_parse_loosely() -> Result<()> {
        assert_eq!(parse_consistency("LOCAL_QUORUM")?, Consistency::LocalQuorum);
        assert_eq!(parse_consistency("local-quorum")?, Consistency::LocalQuorum);
        assert_eq!(parse_consistency(" quorum ")?, Consistency::Quorum);
        assert_eq!(parse_consistency("ONE")?, Consistency::One);
        assert_eq!(parse_consistency("Local_One")?, Consistency::LocalOne);
        assert_eq!(parse_consistency("all")?, Consistency::All);
        Ok(())
    }

    #[test]
    fn one_sided_and_unknown_consistency_levels_are_refused() {
        for name in ["ANY", "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "", "FIVE"] {
            assert!(
                matches!(parse_consistency(name), Err(Error::InvalidConsistency(_))),
                "{name} should be refused"
            );
        }
    }

    #[test]
    fn keyspace_names_are_safe_identifiers() {
        for good in ["podium", "p", "podium_test_42", &"k".repeat(48)] {
            assert!(good.parse::<Keyspace>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "Podium",
            "1podium",
            "_podium",
            "pod-ium",
            "pod;ium",
            &"k".repeat(49),
        ] {
            assert!(bad.parse::<Keyspace>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_leave_the_durable_model_disabled() -> std::result::Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["podium"])?;
        // SCYLLA_NODES may be set by whoever runs the tests; the flags below do not depend on it.
        assert_eq!(cli.scylla.keyspace.as_str(), "podium");
        assert_eq!(cli.scylla.consistency, Consistency::LocalQuorum);
        assert_eq!(cli.scylla.replication, 1);
        Ok(())
    }

    #[test]
    fn flags_parse_into_a_config() -> std::result::Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "podium",
            "--scylla-nodes",
            "a:9042, b:9042,,",
            "--scylla-keyspace",
            "podium_eu",
            "--scylla-consistency",
            "quorum",
            "--scylla-replication",
            "3",
        ])?;
        assert_eq!(cli.scylla.contact_points(), Some(vec!["a:9042", "b:9042"]));
        assert_eq!(cli.scylla.keyspace.as_str(), "podium_eu");
        assert_eq!(cli.scylla.consistency, Consistency::Quorum);
        assert_eq!(cli.scylla.replication, 3);
        assert!(Cli::try_parse_from(["podium", "--scylla-replication", "0"]).is_err());
        assert!(Cli::try_parse_from(["podium", "--scylla-consistency", "ANY"]).is_err());
        assert!(Cli::try_parse_from(["podium", "--scylla-keyspace", "Bad"]).is_err());
        Ok(())
    }

    #[test]
    fn empty_nodes_disable_the_durable_model() -> std::result::Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["podium", "--scylla-nodes", ""])?;
        assert_eq!(cli.scylla.contact_points(), None);
        Ok(())
    }
}
