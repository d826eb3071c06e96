//! Records a projector cannot read go to the dead-letter topic, unchanged, with the reason and
//! their origin in the headers. The projector waits for the broker's ack before it moves past
//! them, so none is dropped silently, and it never stalls on one.

use std::time::Duration;

use podium_runtime::KafkaArgs;
use podium_schemas::DecodeError;
use podium_schemas::codec::SCHEMAS;
use podium_schemas::topics::{
    HEADER_DEAD_LETTER_DETAIL, HEADER_DEAD_LETTER_REASON, HEADER_EVENT_TYPE, HEADER_ORIGIN_OFFSET,
    HEADER_ORIGIN_PARTITION, HEADER_ORIGIN_TOPIC,
};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::backoff::Backoff;
use crate::error::Result;

/// Why a record was dead-lettered: the `dead_letter_reason` header and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not single-object Avro, or a body that does not match its schema.
    Undecodable,
    /// A writer schema of an event type this projector does not know.
    UnknownEventType,
    /// A known event type written with a schema this projector does not know yet.
    NewerSchema,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::NewerSchema => "newer_schema",
        }
    }

    /// Classifies a decode failure; the `event_type` header tells a newer schema of a known
    /// event from an event type nobody here knows.
    pub fn of(error: &DecodeError, event_type: Option<&str>) -> Self {
        match error {
            DecodeError::UnknownSchema(_)
                if event_type.is_some_and(|t| SCHEMAS.iter().any(|(name, _)| *name == t)) =>
            {
                Reason::NewerSchema
            }
            DecodeError::UnknownSchema(_) => Reason::UnknownEventType,
            DecodeError::NotSingleObject | DecodeError::Malformed { .. } => Reason::Undecodable,
        }
    }
}

/// The `event_type` header of a record, if it has one.
pub fn event_type_header(message: &OwnedMessage) -> Option<String> {
    header(message, HEADER_EVENT_TYPE)
}

/// A record header's value, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Writes dead letters.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(kafka: &KafkaArgs) -> Result<Self> {
        let producer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        Ok(Self {
            producer,
            topic: kafka.topics().dead_letters,
        })
    }

    /// Sends `message` to the dead-letter topic and waits for the ack, retrying until the broker
    /// takes it: moving past it before that would lose it.
    pub async fn send(&self, message: &OwnedMessage, reason: Reason, detail: &str) {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(h);
            }
        }
        let ours = [
            (HEADER_DEAD_LETTER_REASON, reason.as_str()),
            (HEADER_DEAD_LETTER_DETAIL, detail),
            (HEADER_ORIGIN_TOPIC, message.topic()),
            (HEADER_ORIGIN_PARTITION, partition.as_str()),
            (HEADER_ORIGIN_OFFSET, offset.as_str()),
        ];
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let payload = message.payload().unwrap_or_default();
        let mut backoff = Backoff::new();
        loop {
            let mut record = FutureRecord::to(&self.topic)
                .payload(payload)
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => {
                    metrics::counter!("podium_projector_dead_letters_total", "reason" => reason.as_str())
                        .increment(1);
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason = reason.as_str(),
                        detail,
                        "record dead-lettered"
                    );
                    return;
                }
                Err((e, _)) => backoff.wait("dead-lettering", &e).await,
            }
        }
    }
}
