//! Podium's contract, shared by every service and depending on none of them.
//!
//! - [`events`]: the Rust types of every event, one per Avro schema in `schemas/avro/`.
//! - [`codec`]: Avro single-object encoding of those events.
//! - [`topics`]: topic names, record keys and record headers.
//! - [`fence`]: ownership epochs, and which records every reader voids.
//! - [`domain`]: the quiz rules as pure functions, used by the command side and the projectors.

pub mod codec;
pub mod domain;
pub mod events;
pub mod fence;
pub mod read_model;
pub mod topics;

pub use codec::{Codec, DecodeError};
pub use events::Event;
