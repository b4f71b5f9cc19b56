//! Reading JSON configuration files.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{MinusError, Result};

/// Reads and parses a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| MinusError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| MinusError::BadConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
