//! Reading JSON configuration files, with their values checked on the way in.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::files::{MAX_CONFIG_FILE_BYTES, read_text_file};
use crate::models::config_check::CheckedConfig;
use crate::{MinusError, Result};

/// Reads and parses a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text_file(path, MAX_CONFIG_FILE_BYTES)?;
    serde_json::from_str(&text).map_err(|e| MinusError::BadConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a network config and checks its values, naming the file and the field.
pub fn read_config<T: DeserializeOwned + CheckedConfig>(path: &Path) -> Result<T> {
    let config: T = read_json(path)?;
    check_config(config, path)
}

/// Checks a config's values; `origin` names where it came from in the error.
pub fn check_config<T: CheckedConfig>(config: T, origin: &Path) -> Result<T> {
    config.check().map_err(|problem| MinusError::BadConfig {
        path: origin.to_path_buf(),
        message: format!("`{}` {}", problem.field, problem.message),
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config is read through the bounded reader: a huge file is refused by its
    /// size before anything is read.
    #[test]
    fn a_huge_config_is_refused_by_size_without_reading_it() -> anyhow::Result<()> {
        let scratch = crate::scratch::ScratchDir::new("config-huge");
        let path = scratch.path().join("config.json");
        // Sparse: no disk is used.
        std::fs::File::create(&path)?.set_len(MAX_CONFIG_FILE_BYTES + 1)?;
        let error = read_json::<serde_json::Value>(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("larger than the 64 MiB limit"), "{error}");
        assert!(error.contains("config.json"), "{error}");
        Ok(())
    }
}
