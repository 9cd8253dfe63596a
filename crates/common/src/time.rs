//! Timestamps in the spellings OpenStack APIs use.
use chrono::{DateTime, SecondsFormat, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// `2026-11-23T10:00:00.000000Z` (Keystone token `expires_at`/`issued_at`).
pub fn keystone_token_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `2026-11-23T10:00:00Z`.
pub fn iso_seconds(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses the timestamp spellings clients send (RFC 3339 with or without a
/// zone; a missing zone means UTC, as oslo's timeutils does).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_common_spellings() {
        assert!(parse_time("2026-11-23T10:00:00Z").is_some());
        assert!(parse_time("2026-11-23T10:00:00.123456Z").is_some());
        assert!(parse_time("2026-11-23T10:00:00+01:00").is_some());
        assert!(parse_time("2026-11-23T10:00:00").is_some());
        assert!(parse_time("garbage").is_none());
    }
}
