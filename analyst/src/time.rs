//! Points in time on the command line (RFC 3339) and in the log (milliseconds since the epoch).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use podium_schemas::events::Millis;

/// A moment, to the millisecond. Parsed from RFC 3339 (`2026-01-01T12:00:00Z`,
/// `2026-01-01T13:00:00.250+01:00`); shown in UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub Millis);

impl Timestamp {
    pub fn millis(self) -> Millis {
        self.0
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }
}

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-01-01T12:00:00Z: {e}"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => write!(f, "{} ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions_and_prints_utc() {
        let t: Timestamp = "2026-01-01T13:00:00.250+01:00".parse().expect("parses");
        assert_eq!(t, Timestamp(1_767_268_800_250));
        assert_eq!(t.to_string(), "2026-01-01T12:00:00.250Z");
        assert!("yesterday".parse::<Timestamp>().is_err());
    }
}
