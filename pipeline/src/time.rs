//! Wall-clock timestamps in the text form Tetragon's export uses: RFC 3339, UTC, `Z`,
//! with 0, 3, 6 or 9 fractional digits (protojson). A parsed timestamp remembers how many
//! fractional digits its text had, so re-exporting someone else's line changes nothing.
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Nanoseconds since the Unix epoch, UTC (equality and order ignore the text form).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timestamp {
    nanos: i128,
    /// Fractional digits of the text it was parsed from; `AUTO` means protojson's rule.
    digits: u8,
}

impl PartialEq for Timestamp {
    fn eq(&self, o: &Self) -> bool {
        self.nanos == o.nanos
    }
}
impl Eq for Timestamp {}
impl PartialOrd for Timestamp {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timestamp {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&o.nanos)
    }
}
impl std::hash::Hash for Timestamp {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.nanos.hash(h)
    }
}

const AUTO: u8 = u8::MAX;

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp::from_unix_nanos(d.as_nanos() as i128)
    }
    pub fn from_unix_nanos(nanos: i128) -> Self {
        Timestamp { nanos, digits: AUTO }
    }
    pub fn unix_nanos(self) -> i128 {
        self.nanos
    }
    /// Parses RFC 3339 (any offset; kept as UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|e| format!("invalid RFC 3339 timestamp {s:?}: {e}"))?;
        let secs = dt.timestamp() as i128;
        let digits =
            s.find('.').map(|i| s[i + 1..].bytes().take_while(u8::is_ascii_digit).count().min(9) as u8).unwrap_or(0);
        Ok(Timestamp { nanos: secs * 1_000_000_000 + dt.timestamp_subsec_nanos() as i128, digits })
    }
    fn to_datetime(self) -> Option<DateTime<Utc>> {
        let secs = self.nanos.div_euclid(1_000_000_000);
        let nanos = self.nanos.rem_euclid(1_000_000_000) as u32;
        DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dt) = self.to_datetime() else {
            return write!(f, "<out of range: {}ns>", self.nanos);
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        let nanos = dt.nanosecond() % 1_000_000_000;
        let digits = match self.digits {
            AUTO if nanos == 0 => 0,
            AUTO if nanos % 1_000_000 == 0 => 3,
            AUTO if nanos % 1_000 == 0 => 6,
            AUTO => 9,
            d => d.min(9) as u32,
        };
        if digits > 0 {
            let v = nanos / 10u32.pow(9 - digits);
            write!(f, ".{:0width$}", v, width = digits as usize)?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_text_is_kept() {
        for s in [
            "2023-10-06T22:03:57.700327580Z",
            "2026-06-24T06:21:49.03061266Z",
            "2023-10-06T21:52:41Z",
            "1970-01-01T00:00:00.000000001Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn generated_uses_protojson_digits() {
        let cases = [
            (1_700_000_000_000_000_000i128, "2023-11-14T22:13:20Z"),
            (1_700_000_000_120_000_000, "2023-11-14T22:13:20.120Z"),
            (1_700_000_000_120_300_000, "2023-11-14T22:13:20.120300Z"),
            (1_700_000_000_120_300_001, "2023-11-14T22:13:20.120300001Z"),
        ];
        for (n, want) in cases {
            assert_eq!(Timestamp::from_unix_nanos(n).to_string(), want);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
