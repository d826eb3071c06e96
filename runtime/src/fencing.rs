//! The readers' fencing rule (ADR 0011, `podium_schemas::fence`) applied to records as
//! librdkafka delivers them: one place that reads the stamp and marker headers.

use podium_schemas::fence::{Fence, HEADER_EPOCH, HEADER_SHARD, SHARD_CLAIMED, Stamp, Verdict};
use podium_schemas::topics::HEADER_EVENT_TYPE;
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// A header's value as text, if the record has it and it is UTF-8.
pub fn header_text<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A record's stamp, if it has one.
fn stamp_of<M: Message>(message: &M) -> Option<Stamp> {
    Stamp::parse(
        header_text(message, HEADER_SHARD),
        header_text(message, HEADER_EPOCH),
    )
}

fn is_claim<M: Message>(message: &M) -> bool {
    header_text(message, HEADER_EVENT_TYPE) == Some(SHARD_CLAIMED)
}

/// Judges a record, read in its partition's order, against the epochs seen so far.
pub fn judge<M: Message>(fence: &mut Fence, message: &M) -> Verdict {
    let claim = is_claim(message);
    fence.judge(
        message.topic(),
        message.partition(),
        stamp_of(message),
        claim,
    )
}

/// The stamp of a claim marker; `None` for any other record.
pub fn claim_of<M: Message>(message: &M) -> Option<Stamp> {
    if is_claim(message) {
        stamp_of(message)
    } else {
        None
    }
}

/// Adds the headers that say which owner, of which shard, appended a record.
pub fn with_stamp(headers: OwnedHeaders, stamp: Stamp) -> OwnedHeaders {
    let (shard, epoch) = (stamp.shard.to_string(), stamp.epoch.to_string());
    headers
        .insert(Header {
            key: HEADER_SHARD,
            value: Some(shard.as_str()),
        })
        .insert(Header {
            key: HEADER_EPOCH,
            value: Some(epoch.as_str()),
        })
}

/// The headers of a claim marker for `stamp`.
pub fn marker_headers(stamp: Stamp) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: HEADER_EVENT_TYPE,
        value: Some(SHARD_CLAIMED),
    });
    with_stamp(headers, stamp)
}
