//! Schema evolution, enforced. Every released version of every event schema is kept under
//! `schemas/avro/released/v<N>/`, with one encoded record of each event, exactly as it travels on
//! the topics, under `schemas/fixtures/v<N>/<EventType>.avro`. The rules (`docs/schemas.md`):
//!
//! - the current schemas are the latest release: a change is released with its fixtures;
//! - every current reader reads every old fixture (Avro schema resolution), and so does
//!   `Codec::decode`;
//! - every released reader reads what the current writer writes;
//! - a new event type enters in a release and is in every later one; records of it are
//!   dead-lettered by readers built before that release, so readers are upgraded first;
//! - between releases, fields are only added, each with a default; nothing is renamed, removed or
//!   retyped, no enum symbol or union branch is added or removed.
//!
//! To release a change: `cargo test -p podium-schemas --test schema_evolution -- --ignored`
//! copies the current `.avsc` files into a new `released/v<N+1>/` and writes its fixtures. It
//! never rewrites a fixture that exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::types::Value;
use podium_schemas::Codec;
use podium_schemas::codec::SCHEMAS;
use podium_schemas::events::*;
use serde_json::Value as Json;

const HEADER_LEN: usize = 10;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn released_dir(version: u32) -> PathBuf {
    root().join(format!("avro/released/v{version}"))
}

fn fixtures_dir(version: u32) -> PathBuf {
    root().join(format!("fixtures/v{version}"))
}

/// Released versions, oldest first: 1, 2, … with no gaps.
fn released_versions() -> Vec<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir(root().join("avro/released"))
        .expect("schemas/avro/released exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=u32::try_from(versions.len()).unwrap_or(0)).collect::<Vec<_>>(),
        "released versions are numbered 1, 2, … without gaps"
    );
    versions
}

/// The releases that hold `event_type`: from the one it entered in to the latest, without gaps.
fn releases_of(event_type: &str) -> Vec<u32> {
    let versions = released_versions();
    let held: Vec<u32> = versions
        .iter()
        .copied()
        .filter(|&v| released_dir(v).join(format!("{event_type}.avsc")).exists())
        .collect();
    if let Some(&first) = held.first() {
        assert_eq!(
            held,
            (first..=versions.last().copied().unwrap_or(0)).collect::<Vec<_>>(),
            "{event_type} is in every release after the one it entered in"
        );
    }
    held
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn released_text(version: u32, event_type: &str) -> String {
    read(&released_dir(version).join(format!("{event_type}.avsc")))
}

fn parse(text: &str) -> Schema {
    Schema::parse_str(text).expect("schema parses")
}

fn current_text(event_type: &str) -> &'static str {
    SCHEMAS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, text)| *text)
        .expect("a current schema")
}

fn event_types() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().map(|(name, _)| *name)
}

/// The header apache-avro computes: what records written before the switch to the
/// specification's fingerprints carry (the v1 fixtures among them).
fn legacy_header(schema: &Schema) -> Vec<u8> {
    RabinFingerprintHeader::from_schema(schema).build_header()
}

/// The header writers put on records now: `C3 01` and the specification's fingerprint.
fn single_object_header(text: &str) -> Vec<u8> {
    let mut header = vec![0xC3, 0x01];
    header.extend_from_slice(&podium_schemas::codec::specification_fingerprint(text));
    header
}

/// One event of each type, with every optional field set: what the fixtures of a new release
/// hold. Adding a field to an event makes this fail to compile until it is given a value.
fn samples() -> Vec<Event> {
    let t = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    vec![
        Event::QuizCreated(QuizCreated {
            quiz_id: "quiz-fixture".into(),
            title: "Capitals of Europe".into(),
            join_code: "ACDEFG".into(),
            questions: vec![
                QuestionSpec {
                    text: "Capital of France?".into(),
                    choices: vec!["Lyon".into(), "Paris".into()],
                    correct_choice: 1,
                    points: 1000,
                    time_limit_ms: 20_000,
                },
                QuestionSpec {
                    text: "Capital of Italy?".into(),
                    choices: vec!["Rome".into(), "Milan".into(), "Turin".into()],
                    correct_choice: 0,
                    points: 2000,
                    time_limit_ms: 30_000,
                },
            ],
            created_at: t,
        }),
        Event::PlayerJoined(PlayerJoined {
            quiz_id: "quiz-fixture".into(),
            player_id: "player-ada".into(),
            name: "Ada".into(),
            joined_at: t + 1_000,
        }),
        Event::JoiningLocked(JoiningLocked {
            quiz_id: "quiz-fixture".into(),
            locked_at: t + 2_000,
        }),
        Event::PlayerKicked(PlayerKicked {
            quiz_id: "quiz-fixture".into(),
            player_id: "player-mallory".into(),
            kicked_at: t + 2_500,
        }),
        Event::QuestionStarted(QuestionStarted {
            quiz_id: "quiz-fixture".into(),
            question: 1,
            started_at: t + 3_000,
            deadline: t + 23_000,
        }),
        Event::AnswerSubmitted(AnswerSubmitted {
            quiz_id: "quiz-fixture".into(),
            player_id: "player-ada".into(),
            question: 1,
            choice: 1,
            received_at: t + 7_000,
            elapsed_ms: 4_000,
            correct: true,
            points: 900,
            streak: 1,
            streak_bonus: 0,
            rule_version: 1,
            idempotency_key: Some("answer-1".into()),
        }),
        Event::QuestionClosed(QuestionClosed {
            quiz_id: "quiz-fixture".into(),
            question: 1,
            closed_at: t + 10_000,
            correct_choice: 1,
            reason: CloseReason::Host,
        }),
        Event::QuizFinished(QuizFinished {
            quiz_id: "quiz-fixture".into(),
            finished_at: t + 11_000,
        }),
    ]
}

/// Decodes a fixture's body with `writer`, resolved into `reader` when given.
fn read_body(
    bytes: &[u8],
    writer: &Schema,
    reader: Option<&Schema>,
) -> apache_avro::AvroResult<Value> {
    let mut body = &bytes[HEADER_LEN..];
    let value = match reader {
        Some(reader) => GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()?
            .read_value(&mut body)?,
        None => GenericDatumReader::builder(writer)
            .build()?
            .read_value(&mut body)?,
    };
    assert!(body.is_empty(), "no trailing bytes");
    Ok(value)
}

/// Every field `old` has, `new` has with an equal value (recursively); fields only `new` has
/// were filled from their defaults by the resolution.
fn assert_carries_over(old: &Value, new: &Value, path: &str) {
    match (old, new) {
        (Value::Record(old_fields), Value::Record(new_fields)) => {
            for (name, old_value) in old_fields {
                let new_value = new_fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| panic!("{path}.{name} is gone"));
                assert_carries_over(old_value, new_value, &format!("{path}.{name}"));
            }
        }
        (Value::Array(old_items), Value::Array(new_items)) => {
            assert_eq!(old_items.len(), new_items.len(), "{path}: array length");
            for (i, (o, n)) in old_items.iter().zip(new_items).enumerate() {
                assert_carries_over(o, n, &format!("{path}[{i}]"));
            }
        }
        (Value::Union(_, o), Value::Union(_, n)) => assert_carries_over(o, n, path),
        (o, n) => assert_eq!(o, n, "{path}"),
    }
}

#[test]
fn every_release_has_every_schema_and_a_fixture_of_each() {
    let versions = released_versions();
    assert!(!versions.is_empty(), "at least one release");
    for event_type in event_types() {
        for version in releases_of(event_type) {
            let text = released_text(version, event_type);
            let schema = parse(&text);
            let fixture = fixtures_dir(version).join(format!("{event_type}.avro"));
            let bytes = std::fs::read(&fixture).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (write it with `cargo test -p podium-schemas --test schema_evolution -- --ignored`)",
                    fixture.display()
                )
            });
            assert!(
                bytes[..HEADER_LEN] == single_object_header(&text)[..]
                    || bytes[..HEADER_LEN] == legacy_header(&schema)[..],
                "{}: C3 01 and the fingerprint of v{version}/{event_type}.avsc",
                fixture.display()
            );
            let _ = read_body(&bytes, &schema, None)
                .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        }
    }
}

#[test]
fn the_current_schemas_are_the_latest_release() {
    let latest = released_versions().last().copied().unwrap_or(0);
    for event_type in event_types() {
        let released = parse(&released_text(latest, event_type));
        let current = parse(current_text(event_type));
        assert_eq!(
            released.canonical_form(),
            current.canonical_form(),
            "{event_type}.avsc changed since release v{latest}: release it with \
             `cargo test -p podium-schemas --test schema_evolution -- --ignored`, \
             which writes released/v{} and its fixtures",
            latest + 1
        );
    }
}

#[test]
fn current_readers_read_every_old_fixture() {
    let codec = Codec::new();
    for event_type in event_types() {
        for version in releases_of(event_type) {
            let writer = parse(&released_text(version, event_type));
            let reader = parse(current_text(event_type));
            let bytes = std::fs::read(fixtures_dir(version).join(format!("{event_type}.avro")))
                .expect("the fixture exists");
            let as_written = read_body(&bytes, &writer, None).expect("decodes as written");
            let as_read = read_body(&bytes, &writer, Some(&reader)).unwrap_or_else(|e| {
                panic!("v{version} {event_type} under the current reader: {e}")
            });
            assert_carries_over(&as_written, &as_read, &format!("v{version}/{event_type}"));
            // The services read it too: the codec knows the writer schema by its fingerprint.
            let event = codec
                .decode(&bytes)
                .unwrap_or_else(|e| panic!("Codec::decode of v{version} {event_type}: {e}"));
            assert_eq!(event.event_type(), event_type);
        }
    }
}

#[test]
fn every_released_reader_reads_what_the_current_writer_writes() {
    let codec = Codec::new();
    for event in samples() {
        let event_type = event.event_type();
        let bytes = codec.encode(&event).expect("encodes");
        let writer = parse(current_text(event_type));
        assert_eq!(
            bytes[..HEADER_LEN],
            single_object_header(current_text(event_type))[..]
        );
        let as_written = read_body(&bytes, &writer, None).expect("decodes as written");
        for version in releases_of(event_type) {
            let reader = parse(&released_text(version, event_type));
            let as_read = read_body(&bytes, &writer, Some(&reader)).unwrap_or_else(|e| {
                panic!("the v{version} reader of {event_type} on current data: {e}")
            });
            // What the old reader knows is what was written.
            assert_carries_over(
                &as_read,
                &as_written,
                &format!("{event_type} as v{version}"),
            );
        }
    }
}

#[test]
fn releases_only_add_fields_with_defaults() {
    let mut pairs: Vec<(String, String, String)> = Vec::new(); // (label, old text, new text)
    for event_type in event_types() {
        let versions = releases_of(event_type);
        for window in versions.windows(2) {
            pairs.push((
                format!("{event_type} v{} → v{}", window[0], window[1]),
                released_text(window[0], event_type),
                released_text(window[1], event_type),
            ));
        }
        if let Some(latest) = versions.last() {
            pairs.push((
                format!("{event_type} v{latest} → current"),
                released_text(*latest, event_type),
                current_text(event_type).to_owned(),
            ));
        }
    }
    for (label, old, new) in pairs {
        let problems = evolution_problems(&old, &new);
        assert!(problems.is_empty(), "{label}: {problems:#?}");
        assert_eq!(
            SchemaCompatibility::mutual_read(&parse(&old), &parse(&new))
                .unwrap_or_else(|e| panic!("{label}: {e}")),
            Compatibility::Full,
            "{label}"
        );
    }
}

/// Why `new` may not follow `old`: the rules of `docs/schemas.md` on the `.avsc` JSON.
fn evolution_problems(old: &str, new: &str) -> Vec<String> {
    let old: Json = serde_json::from_str(old).expect("old schema is JSON");
    let new: Json = serde_json::from_str(new).expect("new schema is JSON");
    let mut problems = Vec::new();
    compare(&old, &new, "", &mut problems);
    problems
}

fn type_name(schema: &Json) -> Option<&str> {
    match schema {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("type").and_then(Json::as_str),
        _ => None,
    }
}

fn compare(old: &Json, new: &Json, path: &str, problems: &mut Vec<String>) {
    match (old, new) {
        (Json::Array(old_branches), Json::Array(new_branches)) => {
            let names = |branches: &[Json]| -> Vec<String> {
                branches
                    .iter()
                    .map(|b| match b {
                        Json::Object(o) => o
                            .get("name")
                            .or_else(|| o.get("type"))
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        other => other.as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            };
            if names(old_branches) != names(new_branches) {
                problems.push(format!(
                    "{path}: union branches changed from {:?} to {:?}",
                    names(old_branches),
                    names(new_branches)
                ));
                return;
            }
            for (o, n) in old_branches.iter().zip(new_branches) {
                compare(o, n, path, problems);
            }
        }
        (Json::Object(o), Json::Object(n)) => {
            let (ot, nt) = (type_name(old), type_name(new));
            if ot != nt {
                problems.push(format!("{path}: type changed from {ot:?} to {nt:?}"));
                return;
            }
            if o.get("logicalType") != n.get("logicalType") {
                problems.push(format!("{path}: logical type changed"));
            }
            if o.get("name") != n.get("name") || o.get("namespace") != n.get("namespace") {
                problems.push(format!("{path}: the named type was renamed"));
            }
            match ot {
                Some("record") => compare_fields(o, n, path, problems),
                Some("enum") => {
                    let symbols = |x: &serde_json::Map<String, Json>| -> Vec<String> {
                        x.get("symbols")
                            .and_then(Json::as_array)
                            .map(|s| {
                                s.iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let (os, ns) = (symbols(o), symbols(n));
                    if let Some(gone) = os.iter().find(|s| !ns.contains(s)) {
                        problems.push(format!("{path}: enum symbol {gone} removed"));
                    }
                    let added = ns.iter().any(|s| !os.contains(s));
                    if added && o.get("default").is_none() {
                        problems.push(format!(
                            "{path}: enum symbols added, but old readers have no default symbol to read them as"
                        ));
                    }
                }
                Some("array") => match (o.get("items"), n.get("items")) {
                    (Some(oi), Some(ni)) => compare(oi, ni, &format!("{path}[]"), problems),
                    _ => problems.push(format!("{path}: array without items")),
                },
                Some("map") => match (o.get("values"), n.get("values")) {
                    (Some(ov), Some(nv)) => compare(ov, nv, &format!("{path}{{}}"), problems),
                    _ => problems.push(format!("{path}: map without values")),
                },
                Some("fixed") if o.get("size") != n.get("size") => {
                    problems.push(format!("{path}: fixed size changed"));
                }
                _ => {}
            }
        }
        (o, n) => {
            let (ot, nt) = (type_name(o), type_name(n));
            if ot != nt {
                problems.push(format!("{path}: type changed from {ot:?} to {nt:?}"));
            }
        }
    }
}

fn compare_fields(
    old: &serde_json::Map<String, Json>,
    new: &serde_json::Map<String, Json>,
    path: &str,
    problems: &mut Vec<String>,
) {
    let fields = |x: &serde_json::Map<String, Json>| -> BTreeMap<String, Json> {
        x.get("fields")
            .and_then(Json::as_array)
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| Some((f.get("name")?.as_str()?.to_owned(), f.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (of, nf) = (fields(old), fields(new));
    for (name, field) in &of {
        match nf.get(name) {
            Some(new_field) => compare(
                field.get("type").unwrap_or(&Json::Null),
                new_field.get("type").unwrap_or(&Json::Null),
                &format!("{path}.{name}"),
                problems,
            ),
            None => problems.push(format!("{path}.{name}: removed or renamed")),
        }
    }
    for (name, field) in &nf {
        if !of.contains_key(name) && field.get("default").is_none() {
            problems.push(format!("{path}.{name}: added without a default"));
        }
    }
}

/// The checker itself: each rule catches what it should, and lets a good change through.
mod rules {
    use super::evolution_problems;

    const BASE: &str = r#"{"type": "record", "name": "E", "namespace": "io.podium.events", "fields": [
        {"name": "a", "type": "string"},
        {"name": "r", "type": {"type": "enum", "name": "R", "symbols": ["X", "Y"]}}
    ]}"#;

    fn with_fields(fields: &str) -> String {
        format!(
            r#"{{"type": "record", "name": "E", "namespace": "io.podium.events", "fields": [{fields}]}}"#
        )
    }

    const R: &str =
        r#"{"name": "r", "type": {"type": "enum", "name": "R", "symbols": ["X", "Y"]}}"#;

    #[test]
    fn an_added_field_with_a_default_is_fine() {
        let new = with_fields(&format!(
            r#"{{"name": "a", "type": "string", "doc": "docs may change"}}, {R}, {{"name": "b", "type": ["null", "int"], "default": null}}"#
        ));
        assert_eq!(evolution_problems(BASE, &new), Vec::<String>::new());
    }

    #[test]
    fn an_added_field_without_a_default_is_refused() {
        let new = with_fields(&format!(
            r#"{{"name": "a", "type": "string"}}, {R}, {{"name": "b", "type": "int"}}"#
        ));
        assert_eq!(evolution_problems(BASE, &new).len(), 1);
    }

    #[test]
    fn a_renamed_or_removed_field_is_refused() {
        let renamed = with_fields(&format!(
            r#"{{"name": "a2", "type": "string", "default": ""}}, {R}"#
        ));
        assert!(
            evolution_problems(BASE, &renamed)
                .iter()
                .any(|p| p.contains(".a: removed or renamed"))
        );
        let removed = with_fields(R);
        assert!(!evolution_problems(BASE, &removed).is_empty());
    }

    #[test]
    fn a_retyped_field_is_refused() {
        let new = with_fields(&format!(r#"{{"name": "a", "type": "bytes"}}, {R}"#));
        assert!(!evolution_problems(BASE, &new).is_empty());
    }

    #[test]
    fn enum_symbols_are_neither_removed_nor_added_without_a_default() {
        let removed = with_fields(
            r#"{"name": "a", "type": "string"}, {"name": "r", "type": {"type": "enum", "name": "R", "symbols": ["X"]}}"#,
        );
        assert!(!evolution_problems(BASE, &removed).is_empty());
        let added = with_fields(
            r#"{"name": "a", "type": "string"}, {"name": "r", "type": {"type": "enum", "name": "R", "symbols": ["X", "Y", "Z"]}}"#,
        );
        assert!(!evolution_problems(BASE, &added).is_empty());
    }
}

/// Releases the current schemas when they differ from the latest release, and writes whatever
/// fixture of the latest release is missing. Never rewrites an existing fixture.
#[test]
#[ignore = "writes files: run it to release a schema change"]
fn release_the_current_schemas_and_write_missing_fixtures() {
    let versions = released_versions();
    let latest = versions.last().copied().unwrap_or(0);
    let changed = latest == 0
        || event_types().any(|t| {
            !released_dir(latest).join(format!("{t}.avsc")).exists()
                || parse(&released_text(latest, t)).canonical_form()
                    != parse(current_text(t)).canonical_form()
        });
    let version = if changed { latest + 1 } else { latest };
    let schemas = released_dir(version);
    std::fs::create_dir_all(&schemas).expect("release directory");
    for event_type in event_types() {
        let path = schemas.join(format!("{event_type}.avsc"));
        if !path.exists() {
            std::fs::write(&path, current_text(event_type)).expect("schema written");
            println!("released {}", path.display());
        }
    }
    let fixtures = fixtures_dir(version);
    std::fs::create_dir_all(&fixtures).expect("fixtures directory");
    let codec = Codec::new();
    for event in samples() {
        let path = fixtures.join(format!("{}.avro", event.event_type()));
        if path.exists() {
            continue;
        }
        std::fs::write(&path, codec.encode(&event).expect("encodes")).expect("fixture written");
        println!("wrote {}", path.display());
    }
}
