//! Tetragon `TracingPolicy` files: parsing and validation with located errors.
use std::path::Path;

use pipeline::config::{self, ConfigError};
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "cilium.io/v1alpha1";
pub const KINDS: [&str; 2] = ["TracingPolicy", "TracingPolicyNamespaced"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: serde_norway::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(flatten)]
    pub extra: serde_norway::Mapping,
}

/// Parses and validates one policy file.
pub fn load(path: &Path) -> Result<TracingPolicy, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&name, format!("cannot read: {e}")))?;
    parse(&name, &text)
}

/// Parses and validates policy text named `source` in errors.
pub fn parse(source: &str, text: &str) -> Result<TracingPolicy, ConfigError> {
    let p: TracingPolicy = config::from_str(source, text)?;
    let locate = |key: &str| {
        let line = text.lines().position(|l| l.trim_start().starts_with(&format!("{key}:"))).map(|i| i + 1);
        (line, key.to_owned())
    };
    let err = |key: &str, message: String| {
        let (line, key_path) = locate(key);
        ConfigError { source_name: source.to_owned(), line, column: None, key_path, message }
    };
    if p.api_version != API_VERSION {
        return Err(err("apiVersion", format!("expected {API_VERSION:?}, got {:?}", p.api_version)));
    }
    if !KINDS.contains(&p.kind.as_str()) {
        return Err(err("kind", format!("expected one of {KINDS:?}, got {:?}", p.kind)));
    }
    if p.metadata.name.trim().is_empty() {
        return Err(err("name", "metadata.name must not be empty".into()));
    }
    if !p.spec.is_mapping() {
        return Err(err("spec", "spec must be a mapping".into()));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_kind_is_located() {
        let e =
            parse("p.yaml", "apiVersion: cilium.io/v1alpha1\nkind: Pod\nmetadata:\n  name: x\nspec: {}\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("expected one of"), "{e}");
    }

    #[test]
    fn minimal_policy_parses() {
        let p = parse(
            "p.yaml",
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\nspec:\n  kprobes: []\n",
        )
        .unwrap();
        assert_eq!(p.metadata.name, "x");
    }
}
