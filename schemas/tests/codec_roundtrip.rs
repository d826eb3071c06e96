//! Every event survives encode → decode unchanged, and bad bytes are refused with a reason.

use podium_schemas::events::*;
use podium_schemas::{Codec, DecodeError};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn question() -> impl Strategy<Value = QuestionSpec> {
    (
        text(),
        prop::collection::vec(text(), 0..6),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(
            |(text, choices, correct_choice, points, time_limit_ms)| QuestionSpec {
                text,
                choices,
                correct_choice,
                points,
                time_limit_ms,
            },
        )
}

fn reason() -> impl Strategy<Value = CloseReason> {
    prop_oneof![
        Just(CloseReason::Deadline),
        Just(CloseReason::Host),
        Just(CloseReason::NextQuestion),
        Just(CloseReason::QuizFinished),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            text(),
            text(),
            text(),
            prop::collection::vec(question(), 0..4),
            any::<i64>()
        )
            .prop_map(|(quiz_id, title, join_code, questions, created_at)| {
                Event::QuizCreated(QuizCreated {
                    quiz_id,
                    title,
                    join_code,
                    questions,
                    created_at,
                })
            }),
        (text(), text(), text(), any::<i64>()).prop_map(|(quiz_id, player_id, name, joined_at)| {
            Event::PlayerJoined(PlayerJoined {
                quiz_id,
                player_id,
                name,
                joined_at,
            })
        }),
        (text(), any::<i64>()).prop_map(|(quiz_id, locked_at)| Event::JoiningLocked(
            JoiningLocked { quiz_id, locked_at }
        )),
        (text(), any::<i32>(), any::<i64>(), any::<i64>()).prop_map(
            |(quiz_id, question, started_at, deadline)| Event::QuestionStarted(QuestionStarted {
                quiz_id,
                question,
                started_at,
                deadline
            })
        ),
        (text(), any::<i32>(), any::<i64>(), any::<i32>(), reason()).prop_map(
            |(quiz_id, question, closed_at, correct_choice, reason)| {
                Event::QuestionClosed(QuestionClosed {
                    quiz_id,
                    question,
                    closed_at,
                    correct_choice,
                    reason,
                })
            }
        ),
        (text(), any::<i64>()).prop_map(|(quiz_id, finished_at)| Event::QuizFinished(
            QuizFinished {
                quiz_id,
                finished_at
            }
        )),
        (
            (
                text(),
                text(),
                any::<i32>(),
                any::<i32>(),
                any::<i64>(),
                any::<i32>()
            ),
            (
                any::<bool>(),
                any::<i32>(),
                any::<i32>(),
                any::<i32>(),
                any::<i32>()
            ),
            prop::option::of(text())
        )
            .prop_map(
                |(
                    (quiz_id, player_id, question, choice, received_at, elapsed_ms),
                    (correct, points, streak, streak_bonus, rule_version),
                    idempotency_key,
                )| {
                    Event::AnswerSubmitted(AnswerSubmitted {
                        quiz_id,
                        player_id,
                        question,
                        choice,
                        received_at,
                        elapsed_ms,
                        correct,
                        points,
                        streak,
                        streak_bonus,
                        rule_version,
                        idempotency_key,
                    })
                }
            ),
    ]
}

proptest! {
    #[test]
    fn every_event_round_trips(event in event()) {
        let codec = Codec::new();
        let bytes = codec.encode(&event).expect("encodes");
        prop_assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        prop_assert_eq!(codec.decode(&bytes).expect("decodes"), event);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Codec::new().decode(&bytes);
    }

    #[test]
    fn truncated_records_are_refused(event in event(), cut in 1usize..8) {
        let codec = Codec::new();
        let bytes = codec.encode(&event).expect("encodes");
        let cut = cut.min(bytes.len() - 10);
        if cut > 0 {
            prop_assert!(codec.decode(&bytes[..bytes.len() - cut]).is_err());
        }
    }
}

#[test]
fn records_without_the_magic_are_not_single_object() {
    let err = Codec::new()
        .decode(b"{\"json\": true}")
        .expect_err("JSON is not Avro");
    assert!(matches!(err, DecodeError::NotSingleObject), "{err}");
}

#[test]
fn an_unknown_fingerprint_is_reported_as_such() {
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&[0xAB; 8]);
    bytes.extend_from_slice(&[0, 0]);
    let err = Codec::new()
        .decode(&bytes)
        .expect_err("unknown fingerprint");
    assert!(
        matches!(err, DecodeError::UnknownSchema(ref f) if f == "abababababababab"),
        "{err}"
    );
}

#[test]
fn event_type_names_match_the_avro_record_names() {
    let codec = Codec::new();
    for (name, _) in podium_schemas::codec::SCHEMAS {
        let schema = codec.schema(name).expect("known");
        assert_eq!(schema.name().map(|n| n.name()), Some(name));
    }
}

/// The specification's fingerprints, as fastavro's `fingerprint()` and Java's
/// `SchemaNormalization.parsingFingerprint64` compute them (docs/analysts.md), little-endian.
const SPECIFICATION_FINGERPRINTS: [(&str, &str); 8] = [
    ("QuizCreated", "a5bf60be844c5bee"),
    ("PlayerJoined", "f481c3e1015c00f7"),
    ("PlayerKicked", "245f0e98d0ee5da7"),
    ("JoiningLocked", "a4864c28f58c77aa"),
    ("QuestionStarted", "912baa1f82182d6c"),
    ("QuestionClosed", "120dbc571697cf47"),
    ("QuizFinished", "db0de716f957c526"),
    ("AnswerSubmitted", "89c8838b7bf39777"),
];

#[test]
fn records_carrying_the_specifications_fingerprint_decode_too() {
    let codec = Codec::new();
    for (name, avsc) in podium_schemas::codec::SCHEMAS {
        let hex: String = podium_schemas::codec::specification_fingerprint(avsc)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expected = SPECIFICATION_FINGERPRINTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f);
        assert_eq!(Some(hex.as_str()), expected, "{name}");
    }
    let event = Event::QuizFinished(QuizFinished {
        quiz_id: "q1".into(),
        finished_at: 1_800_000_000_000,
    });
    let mut bytes = codec.encode(&event).unwrap_or_default();
    let finished = podium_schemas::codec::SCHEMAS
        .iter()
        .find(|(name, _)| *name == "QuizFinished")
        .map_or("", |(_, avsc)| avsc);
    bytes[2..10].copy_from_slice(&podium_schemas::codec::specification_fingerprint(finished));
    assert_eq!(codec.decode(&bytes).ok(), Some(event));
}
