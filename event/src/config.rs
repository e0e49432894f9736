//! Loading YAML config with errors that say where and what: `file:line:column: key.path: message`.
//!
//! Every config struct in nightjar uses `#[serde(deny_unknown_fields)]`; this module turns
//! serde's complaint into a [`ConfigError`] that names the file, the line and column, the
//! key path and what was expected. Overrides (`--set key.path=value`, `NIGHTJAR__KEY__PATH`)
//! are applied after the file parses, and an error they cause names the override.
use std::{fmt, path::Path};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_norway::Value;

/// A config or policy file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<override KEY=VALUE>`) the problem is in.
    pub source_name: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path (`sinks.file.max_backups`), empty at the top.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        f.write_str(": ")?;
        // serde_path_to_error writes `?` for a position it could not name (syntax errors).
        let key_path = self.key_path.trim_end_matches(".?").trim_end_matches('?');
        if !key_path.is_empty() && key_path != "." {
            write!(f, "{key_path}: ")?;
        }
        // One line, and no location twice: serde_norway repeats it in its message.
        let msg = strip_location(&self.message);
        // serde_norway may also start its message with the key path, or a parent's.
        let msg = msg
            .split_once(": ")
            .filter(|(p, _)| !p.is_empty() && self.key_path.starts_with(p) && !p.contains(' '))
            .map(|(_, rest)| rest)
            .unwrap_or(&msg);
        f.write_str(&msg.replace('\n', " "))
    }
}

/// Removes serde_norway's " at line X column Y" (the location is shown in front).
fn strip_location(msg: &str) -> String {
    let mut out = msg.to_owned();
    while let Some(i) = out.find(" at line ") {
        let rest = &out[i + " at line ".len()..];
        let Some(col) = rest.find(" column ") else { break };
        let after = &rest[col + " column ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[..col].bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        let end = i + " at line ".len() + col + " column ".len() + digits;
        out.replace_range(i..end, "");
    }
    out
}

impl ConfigError {
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source_name: source_name.into(),
            line: None,
            column: None,
            key_path: String::new(),
            message: message.into(),
        }
    }
}

/// Deepest nesting of mappings and sequences a config or policy file may have (nightjar's
/// and Tetragon's need under 16); deeper documents are refused before they are parsed.
pub const MAX_DEPTH: usize = 64;

/// Largest config or policy file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Refuses `text` when its nesting is deeper than [`MAX_DEPTH`], in time linear in its
/// length. The YAML parser behind serde takes time quadratic in the depth of flow
/// collections (100,000 `[` took 45 s), so this runs first, on a streaming parser whose
/// own flow depth is capped at 255. A document that streaming parser cannot read is left
/// to serde for the error message, unless more than [`MAX_DEPTH`] brackets follow the
/// point where it stopped.
pub fn check_depth(source_name: &str, text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::parser::{Event, Parser};
    let too_deep = |line: usize, col: usize| ConfigError {
        line: Some(line),
        column: Some(col),
        ..ConfigError::new(source_name, format!("nested deeper than {MAX_DEPTH} levels of mappings and sequences"))
    };
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok((Event::MappingStart(..) | Event::SequenceStart(..), m)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep(m.line(), m.col() + 1));
                }
            }
            Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(e) => {
                let m = e.marker();
                if e.info().contains("recursion limit") {
                    return Err(too_deep(m.line(), m.col() + 1));
                }
                let rest = text.chars().skip(m.index());
                if depth + rest.filter(|c| matches!(c, '[' | '{')).count() > MAX_DEPTH {
                    return Err(ConfigError {
                        line: Some(m.line()),
                        column: Some(m.col() + 1),
                        ..ConfigError::new(
                            source_name,
                            format!("{} (and too many brackets after it to parse)", e.info()),
                        )
                    });
                }
                return Ok(());
            }
        }
    }
}

/// Reads a config or policy file of at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let name = path.display().to_string();
    let err = |e: std::io::Error| ConfigError::new(&name, format!("cannot read: {e}"));
    let f = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::new(&name, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(text)
}

/// Parses `text` (named `source_name` in errors) into `T`.
pub fn from_str<T: DeserializeOwned>(source_name: &str, text: &str) -> Result<T, ConfigError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::new(source_name, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    check_depth(source_name, text)?;
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key_path = e.path().to_string();
        let inner = e.into_inner();
        let mut loc = inner.location().map(|l| (l.line(), l.column()));
        // A value's own check (a bound, a URL) fails after serde_norway moved on: it then
        // reports no position or the document's start. Find the key in the text instead.
        let last = key_path.rsplit('.').next().unwrap_or("");
        let points_at_key = loc
            .and_then(|(l, _)| text.lines().nth(l.saturating_sub(1)))
            .is_some_and(|line| last.is_empty() || line.contains(last));
        if !points_at_key {
            // Only forward: a syntax error is reported where the parser stopped, after
            // the key it was in.
            if let Some(found) = locate(text, &key_path).filter(|f| loc.is_none_or(|l| f.0 > l.0)) {
                loc = Some(found);
            }
        }
        ConfigError {
            source_name: source_name.to_owned(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key_path,
            message: inner.to_string(),
        }
    })
}

/// Line and column (1-based) of the key at `key_path` (`sinks.file.mode`) in block-style
/// YAML: each segment is looked for as `segment:` on a line more indented than its parent,
/// after it.
pub fn locate(text: &str, key_path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut min_indent, mut found) = (0usize, 0usize, None);
    for seg in key_path.split('.').filter(|s| !s.is_empty() && *s != "?") {
        let hit = (from..lines.len()).find(|&i| {
            let l = lines[i];
            let indent = l.len() - l.trim_start().len();
            indent >= min_indent && l.trim_start().strip_prefix(seg).is_some_and(|r| r.trim_start().starts_with(':'))
        })?;
        let indent = lines[hit].len() - lines[hit].trim_start().len();
        found = Some((hit + 1, indent + 1));
        from = hit + 1;
        min_indent = indent + 1;
    }
    found
}

/// Parses a YAML `Value` (already built from a file plus overrides) into `T`.
pub fn from_value<T: DeserializeOwned>(source_name: &str, v: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| ConfigError {
        source_name: source_name.to_owned(),
        line: None,
        column: None,
        key_path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

/// Reads and parses a file.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    from_str(&path.display().to_string(), &read_file(path)?)
}

/// One `key.path=value` override; the value is read as YAML (`true`, `5`, `[a, b]`, text).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub origin: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl Override {
    /// Parses `key.path=value` (from `--set`).
    pub fn parse(origin: &str, s: &str) -> Result<Self, ConfigError> {
        let (k, v) =
            s.split_once('=').ok_or_else(|| ConfigError::new(origin, format!("expected KEY.PATH=VALUE, got {s:?}")))?;
        let path: Vec<String> = k.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(origin, format!("empty key in {k:?}")));
        }
        let value = if v.is_empty() {
            Value::String(String::new())
        } else {
            // A value is YAML too: its nesting is bounded before the parser sees it.
            check_depth(origin, v)?;
            serde_norway::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_owned()))
        };
        Ok(Override { origin: origin.to_owned(), path, value })
    }

    /// Overrides from the environment: `NIGHTJAR__SINKS__FILE__PATH=/x` sets `sinks.file.path`.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Self>, ConfigError> {
        let mut out = Vec::new();
        for (k, v) in vars {
            let Some(rest) = k.strip_prefix("NIGHTJAR__") else { continue };
            let key = rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join(".");
            out.push(Override::parse(&format!("environment variable {k}"), &format!("{key}={v}"))?);
        }
        Ok(out)
    }

    fn apply(&self, root: &mut Value) -> Result<(), ConfigError> {
        let mut cur = root;
        for (i, seg) in self.path.iter().enumerate() {
            if cur.is_null() {
                *cur = Value::Mapping(Default::default());
            }
            let Value::Mapping(m) = cur else {
                return Err(ConfigError {
                    key_path: self.path[..i].join("."),
                    ..ConfigError::new(&self.origin, "cannot set a key inside a value that is not a mapping")
                });
            };
            let key = Value::String(seg.clone());
            if i + 1 == self.path.len() {
                m.insert(key, self.value.clone());
                return Ok(());
            }
            cur = m.entry(key).or_insert(Value::Null);
        }
        Ok(())
    }
}

/// Parses `text`, then applies `overrides` in order. Errors in the file are located in it;
/// errors an override causes name that override.
pub fn from_str_with_overrides<T: DeserializeOwned + Serialize>(
    source_name: &str,
    text: &str,
    overrides: &[Override],
) -> Result<T, ConfigError> {
    let parsed: T = from_str(source_name, text)?;
    if overrides.is_empty() {
        return Ok(parsed);
    }
    let mut v = serde_norway::to_value(&parsed).map_err(|e| ConfigError::new(source_name, e.to_string()))?;
    for o in overrides {
        o.apply(&mut v)?;
        // Re-check after each one so the error names the override that broke it.
        let _: T = from_value(&o.origin, v.clone())?;
    }
    from_value(source_name, v)
}

/// A size in bytes written as a number or with a unit: `8388608`, `8MiB`, `512KiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct ByteSize(pub u64);

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Number { min: 0, max: u64::MAX, size: true }).map(ByteSize)
    }
}

/// A number of `MIN..=MAX`, for config fields:
/// `#[serde(deserialize_with = "pipeline::config::bounded::<_, _, 1, 1_048_576>")]`.
/// Out of range is a located error naming the range, never an allocation at start.
pub fn bounded<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(Number { min: MIN, max: MAX, size: false })?;
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} does not fit this platform")))
}

/// A [`ByteSize`] of `MIN..=MAX` bytes (see [`bounded`]).
pub fn bounded_size<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<ByteSize, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_any(Number { min: MIN, max: MAX, size: true }).map(ByteSize)
}

/// A [`ByteSize`] of `MIN..=MAX` bytes that is a power of two (ring buffers).
pub fn power_of_two_size<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<ByteSize, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_any(PowerOfTwo(Number { min: MIN, max: MAX, size: true })).map(ByteSize)
}

/// Reads a number (or, with `size`, a size with a unit) and checks its range inside the
/// deserializer, so that the error carries the value's line and column.
#[derive(Clone, Copy)]
struct Number {
    min: u64,
    max: u64,
    size: bool,
}

impl Number {
    fn check<E: serde::de::Error>(&self, n: u64) -> Result<u64, E> {
        let unit = if self.size { " bytes" } else { "" };
        if (self.min..=self.max).contains(&n) {
            Ok(n)
        } else {
            Err(E::custom(format!("{n}{unit} is out of range: expected {} to {}{unit}", self.min, self.max)))
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Number {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.size, self.max) {
            (true, u64::MAX) => f.write_str("a size: a number of bytes or a string like \"8MiB\""),
            (true, _) => write!(f, "a size of {} to {} bytes (a number or a string like \"8MiB\")", self.min, self.max),
            (false, _) => write!(f, "a whole number from {} to {}", self.min, self.max),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
        self.check(n)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
        match u64::try_from(n) {
            Ok(n) => self.check(n),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
        }
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
        if !self.size {
            return Err(E::invalid_type(serde::de::Unexpected::Str(s), &self));
        }
        self.check(parse_size(s).map_err(E::custom)?)
    }
}

struct PowerOfTwo(Number);

impl<'de> serde::de::Visitor<'de> for PowerOfTwo {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(", a power of two")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
        self.pow2(self.0.visit_u64(n)?)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
        self.pow2(self.0.visit_i64(n)?)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
        self.pow2(self.0.visit_str(s)?)
    }
}

impl PowerOfTwo {
    fn pow2<E: serde::de::Error>(&self, n: u64) -> Result<u64, E> {
        if n.is_power_of_two() {
            return Ok(n);
        }
        let up = n.checked_next_power_of_two().unwrap_or(self.0.max).min(self.0.max);
        Err(E::custom(format!("{n} bytes is not a power of two (e.g. {} or {up})", (up / 2).max(self.0.min))))
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("expected a size like \"8MiB\", got {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?} (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_value_is_bounded_in_depth_like_a_file() {
        // 100,000 `[` in a --set value took the YAML parser seconds, then became a string.
        for v in ["[".repeat(100_000), "{a: ".repeat(20_000)] {
            let e = Override::parse("--set x", &format!("pipeline.filter={v}")).unwrap_err();
            assert_eq!(e.source_name, "--set x");
            assert!(e.message.contains("nested deeper than 64 levels"), "{e}");
        }
        let ok = Override::parse("--set x", "a.b=[[1, 2], {c: [3]}]").unwrap();
        assert!(matches!(ok.value, Value::Sequence(_)));
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        size: Option<ByteSize>,
    }
    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Top {
        name: String,
        inner: Inner,
    }

    #[test]
    fn unknown_key_is_located() {
        let e = from_str::<Top>("c.yaml", "name: a\ninner:\n  port: 1\n  prot: 2\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        let s = e.to_string();
        assert!(s.starts_with("c.yaml:4:"), "{s}");
        assert!(s.contains("unknown field `prot`"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn wrong_type_names_key_path() {
        let e = from_str::<Top>("c.yaml", "name: a\ninner:\n  port: lots\n").unwrap_err();
        assert_eq!(e.key_path, "inner.port");
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("inner.port: invalid type"), "{e}");
    }

    #[test]
    fn bad_yaml_is_located() {
        let e = from_str::<Top>("c.yaml", "name: a\ninner: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn overrides_apply_and_errors_name_them() {
        let text = "name: a\ninner:\n  port: 1\n";
        let o = Override::parse("--set", "inner.port=8080").unwrap();
        let t: Top = from_str_with_overrides("c.yaml", text, &[o]).unwrap();
        assert_eq!(t.inner.port, 8080);
        let bad = Override::parse("--set inner.port=x", "inner.port=x").unwrap();
        let e = from_str_with_overrides::<Top>("c.yaml", text, &[bad]).unwrap_err();
        assert_eq!(e.source_name, "--set inner.port=x");
        assert_eq!(e.key_path, "inner.port");
    }

    #[test]
    fn env_overrides() {
        let o = Override::from_env([("NIGHTJAR__INNER__SIZE".to_string(), "8MiB".to_string())]).unwrap();
        let t: Top = from_str_with_overrides("c.yaml", "name: a\ninner:\n  port: 1\n", &o).unwrap();
        assert_eq!(t.inner.size, Some(ByteSize(8 << 20)));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limited {
        #[serde(deserialize_with = "bounded::<_, _, 1, 1000>")]
        n: usize,
        #[serde(default = "default_ring", deserialize_with = "power_of_two_size::<_, 4096, 1073741824>")]
        ring: ByteSize,
    }

    fn default_ring() -> ByteSize {
        ByteSize(8192)
    }

    #[test]
    fn bounded_numbers_are_located() {
        let ok: Limited = from_str("c.yaml", "n: 1000\nring: 64KiB\n").unwrap();
        assert_eq!(ok, Limited { n: 1000, ring: ByteSize(65536) });
        let e = from_str::<Limited>("c.yaml", "n: 1\n\nn2: 0\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = from_str::<Limited>("c.yaml", "ring: 8192\nn: 1000000000000000\n").unwrap_err();
        assert_eq!((e.line, e.key_path.as_str()), (Some(2), "n"), "{e}");
        assert!(e.to_string().contains("n: 1000000000000000 is out of range: expected 1 to 1000"), "{e}");
        let e = from_str::<Limited>("c.yaml", "n: 5\nring: 5000\n").unwrap_err();
        assert_eq!((e.line, e.key_path.as_str()), (Some(2), "ring"), "{e}");
        assert!(e.to_string().contains("5000 bytes is not a power of two (e.g. 4096 or 8192)"), "{e}");
        let e = from_str::<Limited>("c.yaml", "n: 5\nring: 2GiB\n").unwrap_err();
        assert!(e.to_string().contains("2147483648 bytes is out of range: expected 4096 to 1073741824 bytes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_in_linear_time() {
        // 100,000 `[` took serde_norway 45 s; the check stops at the 65th level.
        for text in ["[".repeat(100_000), format!("a: {}", "[".repeat(100_000)), "- ".repeat(100_000)] {
            let e = from_str::<Value>("deep.yaml", &text).unwrap_err();
            assert_eq!(e.line, Some(1), "{e}");
            assert!(e.to_string().contains("nested deeper than 64 levels"), "{e}");
        }
        let nested_blocks: String = (0..70).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        let e = from_str::<Value>("deep.yaml", &nested_blocks).unwrap_err();
        assert_eq!(e.line, Some(65), "{e}");
        // 64 levels are fine, and so is a document serde refuses for another reason.
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        from_str::<Value>("ok.yaml", &ok).unwrap();
        let e = from_str::<Value>("bad.yaml", "a: [\n").unwrap_err();
        assert!(!e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn locate_finds_nested_keys() {
        let t = "a:\n  b: 1\nc:\n  b: 2\n  d:\n    e: x\n";
        assert_eq!(locate(t, "c.b"), Some((4, 3)));
        assert_eq!(locate(t, "c.d.e"), Some((6, 5)));
        assert_eq!(locate(t, "c.z"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("8 parsecs").is_err());
    }
}
