//! The readers' fencing rule (ADR 0011, `podium_schemas::fence`) applied to records as
//! librdkafka delivers them: one place that reads the stamp and marker headers.

use podium_schemas::fence::{Fence, HEADER_EPOCH, HEADER_SHARD, SHARD_CLAIMED, Stamp, Verdict};
use podium_schemas::topics::HEADER_EVENT_TYPE;
use rdkafka::Message;
use rdkafka::message::Headers;

/// A header's value as text, if the record has it and it is UTF-8.
pub fn header_text<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// Judges a record, read in its partition's order, against the epochs seen so far.
pub fn judge<M: Message>(fence: &mut Fence, message: &M) -> Verdict {
    let claim = header_text(message, HEADER_EVENT_TYPE) == Some(SHARD_CLAIMED);
    let stamp = Stamp::parse(
        header_text(message, HEADER_SHARD),
        header_text(message, HEADER_EPOCH),
    );
    fence.judge(message.topic(), message.partition(), stamp, claim)
}
