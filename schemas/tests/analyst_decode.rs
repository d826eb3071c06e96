//! Decodes a record as an analyst would: with nothing but the `.avsc` file and the Avro
//! specification. The fingerprint is checked against the value other implementations compute,
//! not against our own code.

use std::path::Path;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use podium_schemas::Codec;
use podium_schemas::events::{AnswerSubmitted, Event};

/// The CRC-64-AVRO fingerprint of `AnswerSubmitted.avsc`'s Parsing Canonical Form, as Java's
/// `SchemaNormalization.parsingFingerprint64` and fastavro compute it (the "observe it" issue
/// quotes it; `e2e/tests/second_avro_implementation.rs` checks every schema with fastavro live).
const ANSWER_SUBMITTED_FINGERPRINT: u64 = 0x7797_f37b_8b83_c889;

#[test]
fn an_answer_decodes_with_only_its_avsc_file() {
    let answer = AnswerSubmitted {
        quiz_id: "q-1".into(),
        player_id: "p-7".into(),
        question: 2,
        choice: 1,
        received_at: 1_700_000_000_123,
        elapsed_ms: 4_321,
        correct: true,
        points: 892,
        streak: 2,
        streak_bonus: 100,
        rule_version: 1,
        idempotency_key: Some("k-1".into()),
    };
    let record = Codec::new()
        .encode(&Event::AnswerSubmitted(answer))
        .expect("encodes");

    // The analyst's side: a schema file and the bytes of a record value.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/AnswerSubmitted.avsc");
    let schema = Schema::parse_str(&std::fs::read_to_string(path).expect("avsc readable"))
        .expect("avsc parses");
    assert_eq!(&record[..2], &[0xC3, 0x01], "single-object marker");
    assert_eq!(
        record[2..10],
        ANSWER_SUBMITTED_FINGERPRINT.to_le_bytes(),
        "little-endian CRC-64-AVRO of the specification's canonical form"
    );

    let mut body = &record[10..];
    let value = GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("body decodes");
    assert!(body.is_empty(), "no trailing bytes");
    let Value::Record(fields) = value else {
        panic!("a record, got {value:?}")
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("field {name}"))
    };
    assert_eq!(get("player_id"), Value::String("p-7".into()));
    assert_eq!(get("question"), Value::Int(2));
    assert_eq!(
        get("received_at"),
        Value::TimestampMillis(1_700_000_000_123)
    );
    assert_eq!(get("correct"), Value::Boolean(true));
    assert_eq!(get("points"), Value::Int(892));
    assert_eq!(
        get("idempotency_key"),
        Value::Union(1, Box::new(Value::String("k-1".into())))
    );
}
