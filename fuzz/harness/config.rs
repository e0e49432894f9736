//! The config loader: any text, with any overrides, loads or gives a located error, and
//! a config that loads passes or fails the stage check — never a panic, a hang, or an
//! allocation as large as a number asks for. Lines `#@ KEY=VALUE` (YAML comments) are
//! also applied as `--set` overrides. Generic over the config type: the cargo-fuzz target
//! gives a stand-in of the library sections, the binary's tests its real `Config`.
use pipeline::config::{from_str_with_overrides, Override};

/// Runs one input; `check` validates a config that loaded. True when it was accepted.
pub fn one<C: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8], check: impl Fn(&C) -> bool) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let overrides: Vec<Override> =
        text.lines().filter_map(|l| l.strip_prefix("#@ ")).filter_map(|s| Override::parse("--set", s).ok()).collect();
    match from_str_with_overrides::<C>("fuzz.yaml", text, &overrides) {
        Ok(c) => check(&c),
        Err(e) => {
            // Located: the file (or the override) it is in, and what is wrong.
            assert!(!e.source_name.is_empty() && !e.message.is_empty(), "an unlocated error: {e:?}");
            false
        }
    }
}
