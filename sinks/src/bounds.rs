//! Bounds of every size and count in the sinks' config, checked while the YAML is read,
//! so an out-of-range value is a located error (`file:line:column: key.path: ...`) for
//! `run` and `config --check` alike, never an allocation that aborts the agent.
use pipeline::config::ByteSize;
use serde::{de::Error, Deserialize, Deserializer};

fn range<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64, unit: &str) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v < lo || v > hi {
        return Err(D::Error::custom(format!("{v} is out of range: expected {lo} to {hi} {unit}")));
    }
    Ok(v)
}

fn size_range<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64) -> Result<ByteSize, D::Error> {
    let v = ByteSize::deserialize(d)?;
    if v.0 < lo || v.0 > hi {
        return Err(D::Error::custom(format!("{} bytes is out of range: expected {lo} to {hi} bytes", v.0)));
    }
    Ok(v)
}

/// Events held in memory (a buffer, a batch): 1 to 10 million.
pub fn events<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    range(d, 1, 10_000_000, "events").map(|v| v as usize)
}

/// Events in one batch: 1 to 1 million.
pub fn batch_events<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    range(d, 1, 1_000_000, "events").map(|v| v as usize)
}

/// Bytes of a batch or request held in memory: 0 (no limit) to 1 GiB.
pub fn memory_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    range(d, 0, 1 << 30, "bytes").map(|v| v as usize)
}

/// A size held in memory, with units: 0 to 1 GiB.
pub fn memory_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    size_range(d, 0, 1 << 30)
}

/// A disk buffer or file size: 64 KiB to 16 TiB.
pub fn disk_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    size_range(d, 64 << 10, 16 << 40)
}

/// A file size that may be 0 (never rotate): 0 to 16 TiB.
pub fn file_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    size_range(d, 0, 16 << 40)
}

/// A duration in milliseconds: 0 to 7 days.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    range(d, 0, 7 * 86_400_000, "milliseconds")
}

/// A duration in seconds: 0 to 7 days.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    range(d, 0, 7 * 86_400, "seconds")
}

/// A count of retries (0: until delivered), concurrent requests, backups...: 0 to 1 million.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    range(d, 0, 1_000_000, "").map(|v| v as u32)
}

/// Requests in flight: 1 to 1 million.
pub fn concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    range(d, 1, 1_000_000, "requests").map(|v| v as usize)
}

/// Permission bits of a file: 0 to 0o7777.
pub fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u64::deserialize(d)?;
    if v > 0o7777 {
        return Err(D::Error::custom(format!(
            "file mode {v:#o} is not a permission mode: expected 0o0 to 0o7777 (e.g. 0o600)"
        )));
    }
    Ok(v as u32)
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[serde(deserialize_with = "super::batch_events")]
        max_events: usize,
        #[serde(default, deserialize_with = "super::mode")]
        mode: u32,
    }

    #[test]
    fn out_of_range_values_are_located() {
        let e = pipeline::config::from_str::<T>("c.yaml", "max_events: 1000000000000000\n").unwrap_err();
        assert_eq!((e.line, e.key_path.as_str()), (Some(1), "max_events"), "{e}");
        assert!(e.to_string().contains("out of range: expected 1 to 1000000 events"), "{e}");
        let e = pipeline::config::from_str::<T>("c.yaml", "max_events: 5\nmode: 0o17777\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("mode: file mode 0o17777 is not a permission mode"), "{e}");
        let t = pipeline::config::from_str::<T>("c.yaml", "max_events: 5\nmode: 0o600\n").unwrap();
        assert_eq!((t.max_events, t.mode), (5, 0o600));
    }
}
