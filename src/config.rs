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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
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
    let (name, text) = match &global.config {
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::new(&name, format!("cannot read: {e}")))?;
            (name, text)
        }
        None => ("<built-in config/default.yaml>".to_owned(), DEFAULT_YAML.to_owned()),
    };
    let mut overrides = Override::from_env(std::env::vars())?;
    for s in &global.set {
        overrides.push(Override::parse(&format!("--set {s}"), s)?);
    }
    let mut c: Config = cfg::from_str_with_overrides(&name, &text, &overrides)?;
    if let Some(f) = global.log_format {
        c.log.format = f;
    }
    if let Some(l) = &global.log_level {
        c.log.level = l.clone();
    }
    Ok(c)
}

/// Loads the config or prints the one-line located error and returns exit code 2.
pub fn load_or_exit(global: &Global) -> Result<Config, ExitCode> {
    load(global).map_err(|e| {
        eprintln!("nightjar: invalid config: {e}");
        ExitCode::from(crate::EXIT_USAGE)
    })
}

pub fn print_main(global: &Global, args: ConfigArgs) -> ExitCode {
    let c = match load_or_exit(global) {
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
