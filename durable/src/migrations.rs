//! Schema migrations: plain CQL files in `deploy/scylla/`, named `NNNN_name.cql`, applied in
//! version order and recorded in `schema_migrations`. They are embedded in the binary, so it
//! does not depend on the working directory. Every statement must be idempotent (`IF NOT
//! EXISTS`): a migration that fails halfway is applied again from its start, and two services
//! starting together may both apply it.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use scylla::client::session::Session;

use crate::{Error, Keyspace, Result};

/// The files of `deploy/scylla/`, in order. A unit test checks that none is missing.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "0001_initial.cql",
        include_str!("../../deploy/scylla/0001_initial.cql"),
    ),
    (
        "0002_kicked_players.cql",
        include_str!("../../deploy/scylla/0002_kicked_players.cql"),
    ),
    (
        "0003_claim_markers.cql",
        include_str!("../../deploy/scylla/0003_claim_markers.cql"),
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    pub cql: String,
}

impl Migration {
    /// A migration from its file name (`0001_initial.cql`: version 1, name `initial`).
    pub fn from_file(file_name: &str, cql: &str) -> Result<Self> {
        let invalid = || Error::InvalidMigrationName(file_name.to_owned());
        let stem = file_name.strip_suffix(".cql").ok_or_else(invalid)?;
        let (digits, name) = stem.split_once('_').ok_or_else(invalid)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return Err(invalid());
        }
        let version: i32 = digits.parse().map_err(|_| invalid())?;
        if version <= 0 {
            return Err(invalid());
        }
        Ok(Self {
            version,
            name: name.to_owned(),
            cql: cql.to_owned(),
        })
    }

    /// The migrations compiled into this binary, in version order.
    pub fn embedded() -> Result<Vec<Self>> {
        let mut migrations = EMBEDDED
            .iter()
            .map(|(file, cql)| Self::from_file(file, cql))
            .collect::<Result<Vec<_>>>()?;
        migrations.sort_by_key(|m| m.version);
        if let Some(pair) = migrations.windows(2).find(|p| p[0].version == p[1].version) {
            return Err(Error::DuplicateMigration(pair[0].version));
        }
        Ok(migrations)
    }

    /// The file's statements, without comments.
    pub fn statements(&self) -> Vec<String> {
        split_statements(&self.cql)
    }
}

/// Splits CQL text into statements at `;`, dropping `--`, `//` and `/* */` comments and empty
/// statements. Semicolons inside 'strings', "identifiers" and $$bodies$$ do not split.
pub fn split_statements(cql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = cql.chars().peekable();
    let mut flush = |current: &mut String| {
        let statement = current.trim();
        if !statement.is_empty() {
            statements.push(statement.to_owned());
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '-' | '/' if chars.peek() == Some(&c) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                current.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                let _ = chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
                current.push(' ');
            }
            '\'' | '"' => {
                // A doubled quote is an escaped quote: the loop leaves and re-enters the literal.
                current.push(c);
                for inner in chars.by_ref() {
                    current.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '$' if chars.peek() == Some(&'$') => {
                current.push_str("$$");
                let _ = chars.next();
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    current.push(inner);
                    if previous == '$' && inner == '$' {
                        break;
                    }
                    previous = inner;
                }
            }
            ';' => flush(&mut current),
            _ => current.push(c),
        }
    }
    flush(&mut current);
    statements
}

/// The migrations not yet applied, in version order.
pub fn pending<'a>(migrations: &'a [Migration], applied: &BTreeSet<i32>) -> Vec<&'a Migration> {
    let mut pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    pending
}

/// Creates the keyspace (NetworkTopologyStrategy, `replication` replicas in every datacenter)
/// and applies the pending migrations in it. Switches `session` to the keyspace, because the
/// migration files name tables without one. Returns the versions it applied.
pub async fn migrate(
    session: &Session,
    keyspace: &Keyspace,
    replication: u32,
    migrations: &[Migration],
) -> Result<Vec<i32>> {
    let _ = session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication}}}"
            ),
            (),
        )
        .await?;
    session.use_keyspace(keyspace.as_str(), false).await?;
    let _ = session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations \
                 (version int PRIMARY KEY, name text, applied_at timestamp)"
            ),
            (),
        )
        .await?;

    let mut read = session
        .prepare(format!("SELECT version FROM {keyspace}.schema_migrations"))
        .await?;
    read.set_is_idempotent(true);
    let applied: BTreeSet<i32> = session
        .execute_iter(read, ())
        .await?
        .rows_stream::<(i32,)>()?
        .map_ok(|(version,)| version)
        .try_collect()
        .await?;
    let mut record = session
        .prepare(format!(
            "INSERT INTO {keyspace}.schema_migrations (version, name, applied_at) \
             VALUES (?, ?, toTimestamp(now()))"
        ))
        .await?;
    record.set_is_idempotent(true);

    let mut done = Vec::new();
    for migration in pending(migrations, &applied) {
        for statement in migration.statements() {
            if let Err(source) = session.query_unpaged(statement.as_str(), ()).await {
                return Err(Error::Migration {
                    version: migration.version,
                    name: migration.name.clone(),
                    statement,
                    source: Box::new(source),
                });
            }
        }
        let _ = session
            .execute_unpaged(&record, (migration.version, migration.name.as_str()))
            .await?;
        tracing::info!(%keyspace, version = migration.version, name = %migration.name, "applied migration");
        done.push(migration.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(version: i32) -> Migration {
        Migration {
            version,
            name: format!("m{version}"),
            cql: String::new(),
        }
    }

    #[test]
    fn splits_at_semicolons_outside_literals_and_comments() {
        let cql = "-- header; with a semicolon\n\
                   CREATE TABLE a (k text PRIMARY KEY); // trailing; comment\n\
                   /* block; comment */ INSERT INTO a (k) VALUES ('x;''y');\n\
                   CREATE TABLE \"b;c\" (k int PRIMARY KEY)\n\
                   ;;\n\
                   CREATE FUNCTION f() RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE lua AS $$ return 1; $$;\n\
                   SELECT k FROM a WHERE k = 'it''s -- not a comment'\n";
        assert_eq!(
            split_statements(cql),
            [
                "CREATE TABLE a (k text PRIMARY KEY)",
                "INSERT INTO a (k) VALUES ('x;''y')",
                "CREATE TABLE \"b;c\" (k int PRIMARY KEY)",
                "CREATE FUNCTION f() RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE lua AS $$ return 1; $$",
                "SELECT k FROM a WHERE k = 'it''s -- not a comment'",
            ]
        );
    }

    #[test]
    fn comment_only_text_has_no_statements() {
        assert!(split_statements("-- nothing\n/* here */\n  ;\n").is_empty());
        assert!(split_statements("").is_empty());
    }

    #[test]
    fn pending_is_the_unapplied_set_in_version_order() {
        let migrations = [migration(3), migration(1), migration(2)];
        let versions = |applied: &[i32]| -> Vec<i32> {
            let applied: BTreeSet<i32> = applied.iter().copied().collect();
            pending(&migrations, &applied)
                .iter()
                .map(|m| m.version)
                .collect()
        };
        assert_eq!(versions(&[]), [1, 2, 3]);
        assert_eq!(versions(&[1]), [2, 3]);
        assert_eq!(versions(&[2]), [1, 3]);
        assert_eq!(versions(&[1, 2, 3, 4]), Vec::<i32>::new());
    }

    #[test]
    fn file_names_give_version_and_name() -> Result<()> {
        let m = Migration::from_file("0012_player_history.cql", "x")?;
        assert_eq!((m.version, m.name.as_str()), (12, "player_history"));
        for bad in [
            "0001initial.cql",
            "0001_initial.sql",
            "_initial.cql",
            "0000_zero.cql",
            "x1_a.cql",
            "0001_.cql",
        ] {
            assert!(Migration::from_file(bad, "").is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn every_file_in_deploy_scylla_is_embedded() -> Result<()> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/scylla");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::Corrupt(format!("{dir}: {e}")))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".cql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(file, _)| *file).collect();
        assert_eq!(on_disk, embedded);
        let migrations = Migration::embedded()?;
        assert!(migrations.iter().all(|m| !m.statements().is_empty()));
        Ok(())
    }

    #[test]
    fn the_initial_migration_creates_every_table_idempotently() -> Result<()> {
        let initial = &Migration::embedded()?[0];
        let statements = initial.statements();
        for table in [
            "answers",
            "quizzes",
            "players",
            "final_results",
            "player_history",
        ] {
            assert!(
                statements
                    .iter()
                    .any(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {table} ("))),
                "{table}"
            );
        }
        assert!(statements.iter().all(|s| s.contains("IF NOT EXISTS")));
        Ok(())
    }
}
