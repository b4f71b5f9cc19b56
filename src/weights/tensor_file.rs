//! A set of named tensors read from one weights file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{MinusError, Result};

/// The tensors of one file, kept with the file's path for error messages.
#[derive(Clone)]
pub struct TensorFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl TensorFile {
    /// Reads a `.safetensors` file onto `device` (tensors keep their stored dtype).
    pub fn load_safetensors(path: &Path, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(MinusError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            ));
        }
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| MinusError::BadWeights {
                path: path.to_path_buf(),
                message: format!("not a readable safetensors file ({})", root_cause(&e)),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Wraps tensors that came from elsewhere (a converted checkpoint, a test).
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            path: path.into(),
            tensors,
        }
    }

    /// The file the tensors came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One tensor by name.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// All tensors by name.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// All tensor names.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape of one tensor, or a "missing tensor" error naming it.
    pub fn dims(&self, key: &str) -> Result<Vec<usize>> {
        self.tensors
            .get(key)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| self.missing(key))
    }

    /// One axis of a tensor's shape, or an error naming the tensor when it is missing
    /// or has fewer axes.
    pub fn dim(&self, key: &str, axis: usize) -> Result<usize> {
        let dims = self.dims(key)?;
        dims.get(axis)
            .copied()
            .ok_or_else(|| MinusError::BadWeights {
                path: self.path.clone(),
                message: format!(
                    "tensor `{key}` has shape {dims:?}, expected at least {} axes",
                    axis + 1
                ),
            })
    }

    /// The error for a tensor this file should have and does not.
    pub fn missing(&self, key: &str) -> MinusError {
        MinusError::MissingTensor {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    /// A candle `VarBuilder` over the tensors, converting them to `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), dtype, device)
    }

    /// Turns an error raised while building a network from this file into one that
    /// names the file and, for a missing tensor, the key.
    pub fn load_error(&self, error: candle_core::Error) -> MinusError {
        match strip_context(&error) {
            candle_core::Error::CannotFindTensor { path } => self.missing(path),
            candle_core::Error::UnexpectedShape { msg, expected, got } => MinusError::BadWeights {
                path: self.path.clone(),
                message: format!("{msg}: expected shape {expected:?}, found {got:?}"),
            },
            other => MinusError::BadWeights {
                path: self.path.clone(),
                message: other.to_string(),
            },
        }
    }
}

/// Candle wraps errors in backtraces and context; find the error underneath.
fn strip_context(error: &candle_core::Error) -> &candle_core::Error {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => strip_context(inner),
        candle_core::Error::Context { inner, .. } => strip_context(inner),
        candle_core::Error::WithPath { inner, .. } => strip_context(inner),
        other => other,
    }
}

/// The innermost message of an error, without candle's backtrace noise.
fn root_cause(error: &candle_core::Error) -> String {
    strip_context(error).to_string()
}
