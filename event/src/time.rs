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

    /// Fractional digits to print: the parsed text's, or protojson's rule (0, 3, 6 or 9).
    fn frac_digits(&self, nanos: u32) -> u32 {
        match self.digits {
            AUTO if nanos == 0 => 0,
            AUTO if nanos % 1_000_000 == 0 => 3,
            AUTO if nanos % 1_000 == 0 => 6,
            AUTO => 9,
            d => d.min(9) as u32,
        }
    }

    /// RFC 3339 text into `out` without the formatting machinery (every event carries up
    /// to three timestamps, encoded on the agent's hot path); `None` outside years 0–9999.
    fn format_into(&self, out: &mut [u8; 32]) -> Option<usize> {
        let dt = self.to_datetime()?;
        let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
        fn put(out: &mut [u8], at: usize, v: u32, width: usize) {
            let mut v = v;
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        out[..20].copy_from_slice(b"0000-00-00T00:00:00Z");
        put(out, 0, year, 4);
        put(out, 5, dt.month(), 2);
        put(out, 8, dt.day(), 2);
        put(out, 11, dt.hour(), 2);
        put(out, 14, dt.minute(), 2);
        put(out, 17, dt.second(), 2);
        let nanos = dt.nanosecond() % 1_000_000_000;
        let digits = self.frac_digits(nanos) as usize;
        let mut n = 19;
        if digits > 0 {
            out[n] = b'.';
            put(out, n + 1, nanos / 10u32.pow(9 - digits as u32), digits);
            n += 1 + digits;
        }
        out[n] = b'Z';
        Some(n + 1)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        if let Some(n) = self.format_into(&mut buf) {
            return f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?);
        }
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
        let digits = self.frac_digits(nanos);
        if digits > 0 {
            let v = nanos / 10u32.pow(9 - digits);
            write!(f, ".{:0width$}", v, width = digits as usize)?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        match self.format_into(&mut buf) {
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
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
    fn fast_path_matches_the_formatter_and_far_years_still_print() {
        for n in [0i128, 1, 999_999_999, 1_700_000_000_123_456_789, 253_402_300_799_999_999_999] {
            let t = Timestamp::from_unix_nanos(n);
            let mut buf = [0u8; 32];
            let len = t.format_into(&mut buf).unwrap();
            let dt = t.to_datetime().unwrap();
            let want = dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), want, "{n}");
        }
        // Year 10000 and before 1 BC: outside the fast path, still printed.
        let far = Timestamp::from_unix_nanos(253_402_300_800 * 1_000_000_000);
        assert_eq!(far.to_string(), "10000-01-01T00:00:00Z");
        assert_eq!(serde_json::to_string(&far).unwrap(), "\"10000-01-01T00:00:00Z\"");
        let old = Timestamp::from_unix_nanos(-62_198_755_200 * 1_000_000_000);
        assert!(old.to_string().starts_with("-"), "{old}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
