//! The whole config: one YAML file whose sections belong to the crates that use them.
use std::{net::SocketAddr, process::ExitCode};

use pipeline::{
    config::{self as cfg, ConfigError, Override},
    stages::PipelineConfig,
};
use serde::{Deserialize, Serialize};

use crate::cli::{ConfigArgs, Global, LogFormat};

/// The built-in default: config/default.yaml, which documents every key.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yaml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Node name in every event; empty means the host name.
    pub node_name: String,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub sensor: sensor::SensorConfig,
    pub control: ControlConfig,
    pub sources: pipeline::sources::SourcesConfig,
    pub pipeline: PipelineConfig,
    pub sinks: sinks::SinksConfig,
    pub export: ExportConfig,
    pub server: ServerConfig,
}

/// `server:` Tetragon's gRPC API (`tetra` talks to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `host:port`, or `unix:///path` for a unix socket (mode 0600, root only); "" for none.
    pub address: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { address: "localhost:54321".into() }
    }
}

/// `export:` what every exported event carries beyond Tetragon's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub extensions: pipeline::event::Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    #[serde(deserialize_with = "log_level")]
    pub level: String,
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A tracing filter: a level, or `target=level` directives (`info,nightjar_sensor=debug`).
/// A bare word that is not a level is refused: tracing would read it as a target name and
/// silently log nothing else.
pub fn check_log_level(s: &str) -> Result<(), String> {
    let expected = || {
        format!("expected a level ({}) or target=level directives, e.g. info,nightjar_sensor=debug", LEVELS.join(", "))
    };
    for d in s.split(',').map(str::trim) {
        if d.is_empty() || !(LEVELS.contains(&d.to_ascii_lowercase().as_str()) || d.contains('=')) {
            return Err(format!("{d:?} is not a log filter: {}", expected()));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(drop)
        .map_err(|e| format!("{s:?} is not a log filter ({e}): {}", expected()))
}

fn log_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a log filter such as info or info,nightjar_sensor=debug")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<String, E> {
            check_log_level(s).map_err(E::custom)?;
            Ok(s.to_owned())
        }
    }
    // Inside the deserializer, so that the error carries the line and column.
    d.deserialize_str(V)
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Also export tetragon_events_total, tetragon_policy_events_total,
    /// tetragon_process_exec_total and tetragon_missed_events_total.
    pub tetragon_names: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: "0.0.0.0:2112".parse().expect("literal address"), tetragon_names: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub socket: std::path::PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { socket: "/run/nightjar/nightjar.sock".into() }
    }
}

impl Config {
    pub fn node_name(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    }
}

/// Loads the config named by `--config` (or the built-in default), then applies
/// `NIGHTJAR__*` environment variables and `--set` flags, in that order.
pub fn load(global: &Global) -> Result<Config, ConfigError> {
    load_named(global).map(|(_, c)| c)
}

/// An override as its errors name it: a long value is cut (the error says where in it).
fn abridged(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// [`load`], and the name the config's errors are reported under.
fn load_named(global: &Global) -> Result<(String, Config), ConfigError> {
    let (name, text) = match &global.config {
        Some(p) => (p.display().to_string(), cfg::read_file(p)?),
        None => ("<built-in config/default.yaml>".to_owned(), DEFAULT_YAML.to_owned()),
    };
    let mut overrides = Override::from_env(std::env::vars())?;
    for s in &global.set {
        overrides.push(Override::parse(&format!("--set {}", abridged(s)), s)?);
    }
    let mut c: Config = cfg::from_str_with_overrides(&name, &text, &overrides)?;
    if let Some(f) = global.log_format {
        c.log.format = f;
    }
    if let Some(l) = &global.log_level {
        check_log_level(l).map_err(|e| ConfigError::new("--log-level (NIGHTJAR_LOG)", e))?;
        c.log.level = l.clone();
    }
    Ok((name, c))
}

/// Everything `nightjar run` would refuse in its input, found without starting anything:
/// the config (syntax, types, ranges), what its sections build (filters, regexes, stage
/// settings), the control socket path and the policies directory. Returns the config and
/// the parsed policies.
pub fn load_checked(global: &Global) -> Result<(Config, Vec<sensor::policy::Loaded>), ConfigError> {
    let (name, c) = load_named(global)?;
    let at = |key_path: &str, message: String| ConfigError {
        key_path: key_path.to_owned(),
        ..ConfigError::new(&name, message)
    };
    let ctx = pipeline::stages::Context { node_name: c.node_name() };
    pipeline::stages::check(&c.pipeline, &ctx).map_err(|e| ConfigError::new(&name, e.to_string()))?;
    crate::control::check_socket_path(&c.control.socket).map_err(|e| at("control.socket", e))?;
    let policies = if c.sensor.policies_dir.as_os_str().is_empty() {
        Vec::new()
    } else {
        read_policies(&c.sensor.policies_dir).map_err(|e| match e {
            PoliciesError::Dir(why) => at("sensor.policies_dir", why),
            PoliciesError::Policy(e) => e,
        })?
    };
    Ok((c, policies))
}

enum PoliciesError {
    Dir(String),
    Policy(ConfigError),
}

/// Policy files of a directory, sorted, each parsed and validated (located errors); two
/// files with the same `metadata.name` are refused, naming both.
fn read_policies(dir: &std::path::Path) -> Result<Vec<sensor::policy::Loaded>, PoliciesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PoliciesError::Dir(format!("{}: {e} (set sensor.policies_dir, or \"\" for none)", dir.display()))
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut out: Vec<sensor::policy::Loaded> = Vec::with_capacity(files.len());
    for f in &files {
        let l = sensor::policy::load(f).map_err(PoliciesError::Policy)?;
        let name = &l.policy.metadata.name;
        if let Some(first) = out.iter().find(|o| o.policy.metadata.name == *name) {
            return Err(PoliciesError::Policy(l.error(
                "metadata.name",
                format!("policy name {name:?} is also the name of {}: names must be unique", first.source),
            )));
        }
        out.push(l);
    }
    Ok(out)
}

/// Loads the config or prints the one-line located error and returns exit code 2.
pub fn load_or_exit(global: &Global) -> Result<Config, ExitCode> {
    load(global).map_err(usage_error)
}

/// [`load_checked`], or the one-line located error and exit code 2.
pub fn load_checked_or_exit(global: &Global) -> Result<(Config, Vec<sensor::policy::Loaded>), ExitCode> {
    load_checked(global).map_err(usage_error)
}

fn usage_error(e: ConfigError) -> ExitCode {
    eprintln!("nightjar: invalid config: {e}");
    ExitCode::from(crate::EXIT_USAGE)
}

pub fn print_main(global: &Global, args: ConfigArgs) -> ExitCode {
    let loaded = if args.check { load_checked_or_exit(global).map(|(c, _)| c) } else { load_or_exit(global) };
    let c = match loaded {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.check {
        match serde_norway_to_string(&c) {
            Ok(s) => print!("{s}"),
            Err(e) => {
                eprintln!("nightjar: cannot print config: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn serde_norway_to_string(c: &Config) -> Result<String, String> {
    serde_norway::to_string(c).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for ok in ["info", "WARN", "info,nightjar_sensor=debug", "nightjar=trace", "off"] {
            check_log_level(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["verbose-please", "", "info,", "nightjar_sensor", "x=loud"] {
            assert!(check_log_level(bad).is_err(), "{bad:?} must be refused");
        }
        let e = cfg::from_str::<Config>("c.yaml", "log:\n  level: verbose-please\n").unwrap_err();
        assert_eq!((e.line, e.key_path.as_str()), (Some(2), "log.level"), "{e}");
    }

    #[test]
    fn default_yaml_documents_the_defaults() {
        let c: Config = cfg::from_str("default.yaml", DEFAULT_YAML).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn every_default_key_is_written_in_default_yaml() {
        // Serialize the defaults and check each leaf key path appears in the YAML.
        let v = serde_json::to_value(Config::default()).unwrap();
        let doc: serde_json::Value =
            serde_json::to_value(cfg::from_str::<serde_norway::Value>("default.yaml", DEFAULT_YAML).unwrap()).unwrap();
        fn walk(v: &serde_json::Value, doc: &serde_json::Value, path: &str) {
            if let serde_json::Value::Object(m) = v {
                for (k, sub) in m {
                    let p = format!("{path}.{k}");
                    let d = doc.get(k).unwrap_or_else(|| panic!("default.yaml does not document `{p}`"));
                    walk(sub, d, &p);
                }
            }
        }
        walk(&v, &doc, "");
    }
}
