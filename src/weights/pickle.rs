//! PyTorch pickles (`.bin`, `.ckpt`, `.pt`): parsed by candle's restricted pickle
//! reader, never executed.

use std::path::Path;

use candle_core::Device;

use super::TensorFile;
use crate::{MinusError, Result};

/// Reads the tensors of the dict under `key` (or of the top-level dict).
fn read_dict(
    path: &Path,
    key: Option<&str>,
    device: &Device,
) -> Result<Vec<(String, candle_core::Tensor)>> {
    let tensors =
        candle_core::pickle::read_all_with_key(path, key).map_err(|e| MinusError::BadWeights {
            path: path.to_path_buf(),
            message: format!(
                "not a readable PyTorch file ({})",
                first_line(&e.to_string())
            ),
        })?;
    tensors
        .into_iter()
        .map(|(name, tensor)| Ok((name, tensor.to_device(device)?)))
        .collect()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Loads a pickled state dict: a checkpoint's `state_dict`, the two sub-dicts of an
/// h94 IP-Adapter `.bin` (`image_proj`, `ip_adapter`, keys prefixed accordingly), or a flat dict.
pub fn load_pickle(path: &Path, device: &Device) -> Result<TensorFile> {
    if !path.is_file() {
        return Err(MinusError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    let nested = |key: &str| read_dict(path, Some(key), device).unwrap_or_default();
    let state_dict = nested("state_dict");
    let tensors = if !state_dict.is_empty() {
        state_dict
    } else {
        let mut adapter: Vec<_> = ["image_proj", "ip_adapter"]
            .into_iter()
            .flat_map(|key| {
                nested(key)
                    .into_iter()
                    .map(move |(name, tensor)| (format!("{key}.{name}"), tensor))
            })
            .collect();
        if adapter.is_empty() {
            adapter = read_dict(path, None, device)?;
        }
        adapter
    };
    if tensors.is_empty() {
        return Err(MinusError::BadWeights {
            path: path.to_path_buf(),
            message: "the pickle holds no tensors Minus can use".to_string(),
        });
    }
    Ok(TensorFile::from_tensors(
        path,
        tensors.into_iter().collect(),
    ))
}

/// Loads `.safetensors` directly and anything else as a PyTorch pickle.
pub fn load_weights_file(path: &Path, device: &Device) -> Result<TensorFile> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        TensorFile::load_safetensors(path, device)
    } else {
        load_pickle(path, device)
    }
}
