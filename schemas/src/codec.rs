//! Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint
//! of the writer schema, then the Avro binary body. Any Avro library can decode a record given the
//! `.avsc` files; no registry service is involved.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::Event;

/// The `.avsc` text of every event, by record name. The files are the contract; Rust types follow.
pub const SCHEMAS: [(&str, &str); 8] = [
    ("QuizCreated", include_str!("../avro/QuizCreated.avsc")),
    ("PlayerJoined", include_str!("../avro/PlayerJoined.avsc")),
    ("PlayerKicked", include_str!("../avro/PlayerKicked.avsc")),
    ("JoiningLocked", include_str!("../avro/JoiningLocked.avsc")),
    (
        "QuestionStarted",
        include_str!("../avro/QuestionStarted.avsc"),
    ),
    (
        "QuestionClosed",
        include_str!("../avro/QuestionClosed.avsc"),
    ),
    ("QuizFinished", include_str!("../avro/QuizFinished.avsc")),
    (
        "AnswerSubmitted",
        include_str!("../avro/AnswerSubmitted.avsc"),
    ),
];

const HEADER_LEN: usize = 10;
const MAGIC: [u8; 2] = [0xC3, 0x01];

/// Why a record could not be decoded. Each is a reason to dead-letter the record, never to stall.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not Avro single-object encoded (missing C3 01 header)")]
    NotSingleObject,
    #[error("unknown writer schema fingerprint {0}: an unknown event type or a newer schema")]
    UnknownSchema(String),
    #[error("malformed {event_type} body: {reason}")]
    Malformed {
        event_type: &'static str,
        reason: String,
    },
}

/// Encoding failures are programming errors (a Rust type out of step with its schema).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {event_type}: {reason}")]
pub struct EncodeError {
    pub event_type: &'static str,
    pub reason: String,
}

#[derive(Debug)]
struct Known {
    name: &'static str,
    schema: Schema,
    header: Vec<u8>,
}

/// Encoder and decoder for every event. Parse once, share by reference.
#[derive(Debug)]
pub struct Codec {
    by_name: HashMap<&'static str, usize>,
    by_fingerprint: HashMap<[u8; 8], usize>,
    known: Vec<Known>,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// Parses the embedded schemas. They are compiled in and tested, so a failure here is a bug.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let mut known = Vec::with_capacity(SCHEMAS.len());
        let mut by_name = HashMap::new();
        let mut by_fingerprint = HashMap::new();
        for (i, (name, text)) in SCHEMAS.iter().enumerate() {
            let schema = Schema::parse_str(text).expect("embedded .avsc parses");
            // Records carry the specification's fingerprint; those written before it carry
            // apache-avro's, which readers keep accepting for as long as the log holds them.
            let library = RabinFingerprintHeader::from_schema(&schema).build_header();
            let mut legacy = [0u8; 8];
            legacy.copy_from_slice(&library[2..HEADER_LEN]);
            let standard = specification_fingerprint(text);
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&standard);
            let _ = by_name.insert(*name, i);
            let _ = by_fingerprint.insert(legacy, i);
            let _ = by_fingerprint.insert(standard, i);
            known.push(Known {
                name,
                schema,
                header,
            });
        }
        Self {
            by_name,
            by_fingerprint,
            known,
        }
    }

    /// The writer schema of an event type.
    pub fn schema(&self, event_type: &str) -> Option<&Schema> {
        self.by_name.get(event_type).map(|&i| &self.known[i].schema)
    }

    pub fn encode(&self, event: &Event) -> Result<Vec<u8>, EncodeError> {
        match event {
            Event::QuizCreated(e) => self.encode_as("QuizCreated", e),
            Event::PlayerJoined(e) => self.encode_as("PlayerJoined", e),
            Event::PlayerKicked(e) => self.encode_as("PlayerKicked", e),
            Event::JoiningLocked(e) => self.encode_as("JoiningLocked", e),
            Event::QuestionStarted(e) => self.encode_as("QuestionStarted", e),
            Event::QuestionClosed(e) => self.encode_as("QuestionClosed", e),
            Event::QuizFinished(e) => self.encode_as("QuizFinished", e),
            Event::AnswerSubmitted(e) => self.encode_as("AnswerSubmitted", e),
        }
    }

    fn encode_as<T: Serialize>(
        &self,
        event_type: &'static str,
        body: &T,
    ) -> Result<Vec<u8>, EncodeError> {
        let err = |reason: String| EncodeError { event_type, reason };
        let known = self
            .by_name
            .get(event_type)
            .map(|&i| &self.known[i])
            .ok_or_else(|| err("no schema".into()))?;
        let datum = GenericDatumWriter::builder(&known.schema)
            .build()
            .and_then(|w| w.write_ser_to_vec(body))
            .map_err(|e| err(e.to_string()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.extend_from_slice(&known.header);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
            return Err(DecodeError::NotSingleObject);
        }
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
        let known = self
            .by_fingerprint
            .get(&fingerprint)
            .map(|&i| &self.known[i])
            .ok_or_else(|| {
                DecodeError::UnknownSchema(fingerprint.iter().map(|b| format!("{b:02x}")).collect())
            })?;
        let body = &bytes[HEADER_LEN..];
        Ok(match known.name {
            "QuizCreated" => Event::QuizCreated(decode_body(known, body)?),
            "PlayerJoined" => Event::PlayerJoined(decode_body(known, body)?),
            "PlayerKicked" => Event::PlayerKicked(decode_body(known, body)?),
            "JoiningLocked" => Event::JoiningLocked(decode_body(known, body)?),
            "QuestionStarted" => Event::QuestionStarted(decode_body(known, body)?),
            "QuestionClosed" => Event::QuestionClosed(decode_body(known, body)?),
            "QuizFinished" => Event::QuizFinished(decode_body(known, body)?),
            _ => Event::AnswerSubmitted(decode_body(known, body)?),
        })
    }
}

/// The CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form as the Avro specification
/// defines it, which other languages' libraries compute, and which writers put in every record.
/// apache-avro 0.22 keeps a logical type's `{"type":"long"}` where the specification strips it to
/// `"long"`, so its fingerprints (on records written before the switch) differ for all our
/// schemas; readers accept both (docs/schemas.md).
#[allow(clippy::expect_used)]
pub fn specification_fingerprint(avsc: &str) -> [u8; 8] {
    fn strip_logical_types(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                let _ = map.remove("logicalType");
                map.values_mut().for_each(strip_logical_types);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_logical_types),
            _ => {}
        }
    }
    let mut json: serde_json::Value = serde_json::from_str(avsc).expect("embedded .avsc is JSON");
    strip_logical_types(&mut json);
    let schema = Schema::parse(&json).expect("embedded .avsc parses without logical types");
    let header = RabinFingerprintHeader::from_schema(&schema).build_header();
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&header[2..HEADER_LEN]);
    fingerprint
}

fn decode_body<T: DeserializeOwned>(known: &Known, body: &[u8]) -> Result<T, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed {
        event_type: known.name,
        reason,
    };
    let mut reader = body;
    let value: T = GenericDatumReader::builder(&known.schema)
        .build()
        .and_then(|r| r.read_deser(&mut reader))
        .map_err(|e| malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(malformed(format!("{} trailing bytes", reader.len())));
    }
    Ok(value)
}
