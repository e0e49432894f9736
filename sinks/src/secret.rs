//! Credentials of the remote sinks: read from an environment variable or a file, never
//! from the config itself, and never printed (`Debug` and `Display` show `***`).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a secret comes from: an environment variable, else a file (its first line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSource {
    /// Name of the environment variable holding the secret ("" : not from the environment).
    pub env: String,
    /// File holding the secret, e.g. a mounted Kubernetes secret ("" : not from a file).
    pub file: PathBuf,
}

/// A secret value; its `Debug`/`Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what}: environment variable {var} is not set")]
    MissingEnv { what: &'static str, var: String },
    #[error("{what}: cannot read {}: {source}", path.display())]
    File { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what}: no secret configured (set its `env` or `file`)")]
    NotConfigured { what: &'static str },
}

impl SecretSource {
    pub fn is_set(&self) -> bool {
        !self.env.is_empty() || !self.file.as_os_str().is_empty()
    }

    /// Reads the secret; `what` names it in errors (`sinks.elasticsearch.auth.secret`).
    pub fn load(&self, what: &'static str) -> Result<Secret, SecretError> {
        if !self.env.is_empty() {
            return std::env::var(&self.env)
                .map(Secret)
                .map_err(|_| SecretError::MissingEnv { what, var: self.env.clone() });
        }
        if !self.file.as_os_str().is_empty() {
            let s = std::fs::read_to_string(&self.file).map_err(|source| SecretError::File {
                what,
                path: self.file.clone(),
                source,
            })?;
            return Ok(Secret(s.lines().next().unwrap_or_default().to_owned()));
        }
        Err(SecretError::NotConfigured { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_from_file_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        let s = SecretSource { file: f, ..Default::default() }.load("t").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "***");
        let e = SecretSource { env: "NIGHTJAR_TEST_UNSET_VAR_X".into(), ..Default::default() }.load("t").unwrap_err();
        assert!(e.to_string().contains("NIGHTJAR_TEST_UNSET_VAR_X"), "{e}");
    }
}
