//! Sources other than the sensor that feed the same pipeline.
pub mod tetragon_file;

use serde::{Deserialize, Serialize};

/// `sources:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub tetragon_file: tetragon_file::TetragonFileConfig,
}
