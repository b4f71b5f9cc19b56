//! Reading JSON configuration files, with their values checked on the way in.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::models::config_check::CheckedConfig;
use crate::{MinusError, Result};

/// Reads and parses a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| MinusError::io(path, e))?;
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
