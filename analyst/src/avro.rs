//! The Avro export's writer schema: one `io.podium.export.Record` per Kafka record, with where it
//! is in the log and the event itself as a union of every event schema, exactly as in
//! `schemas/avro/`. The schema is embedded in the Object Container File, so fastavro, Spark,
//! DuckDB or `avro-tools` read the file with nothing else.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use podium_schemas::Codec;
use podium_schemas::codec::SCHEMAS;
use serde_json::json;

use crate::error::{Error, Result};
use crate::log::LogRecord;

/// Single-object encoding's header: `C3 01` and the 8-byte fingerprint.
const SINGLE_OBJECT_HEADER: usize = 10;

/// The export's writer schema, and how to turn a record into a value of it.
#[derive(Debug)]
pub struct ExportSchema {
    schema: Schema,
}

impl ExportSchema {
    pub fn new() -> Result<Self> {
        let events = SCHEMAS
            .iter()
            .map(|(_, text)| serde_json::from_str::<serde_json::Value>(text))
            .collect::<Result<Vec<_>, _>>()?;
        let wrapper = json!({
            "type": "record",
            "name": "Record",
            "namespace": "io.podium.export",
            "doc": "One record of Podium's event topics, exported by podium-analyst.",
            "fields": [
                {"name": "topic", "type": "string"},
                {"name": "partition", "type": "int"},
                {"name": "offset", "type": "long"},
                {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"},
                 "doc": "the Kafka record timestamp; -1 when the broker gave none"},
                {"name": "key", "type": ["null", "string"], "default": null},
                {"name": "event_id", "type": ["null", "string"], "default": null,
                 "doc": "the event_id record header"},
                {"name": "event_type", "type": "string", "doc": "the name of the event's record type"},
                {"name": "event", "type": events},
            ],
        });
        Ok(Self {
            schema: Schema::parse(&wrapper)?,
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The value of one decoded record. The event's body is read again with its own writer
    /// schema, so every field is carried exactly as written.
    pub fn value(&self, codec: &Codec, record: &LogRecord, event_type: &str) -> Result<Value> {
        let (branch, (_, _)) = SCHEMAS
            .iter()
            .enumerate()
            .find(|(_, (name, _))| *name == event_type)
            .ok_or_else(|| Error::Usage(format!("no schema for {event_type}")))?;
        let writer = codec
            .schema(event_type)
            .ok_or_else(|| Error::Usage(format!("no schema for {event_type}")))?;
        let mut body = record
            .payload
            .get(SINGLE_OBJECT_HEADER..)
            .unwrap_or_default();
        let event = GenericDatumReader::builder(writer)
            .build()?
            .read_value(&mut body)?;
        let optional = |s: &Option<String>| match s {
            Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        Ok(Value::Record(vec![
            ("topic".into(), Value::String(record.topic.clone())),
            ("partition".into(), Value::Int(record.partition)),
            ("offset".into(), Value::Long(record.offset)),
            ("timestamp".into(), Value::TimestampMillis(record.timestamp)),
            ("key".into(), optional(&record.key)),
            ("event_id".into(), optional(&record.event_id)),
            ("event_type".into(), Value::String(event_type.to_owned())),
            (
                "event".into(),
                Value::Union(u32::try_from(branch).unwrap_or(0), Box::new(event)),
            ),
        ]))
    }
}
