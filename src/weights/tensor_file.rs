//! A set of named tensors read from one weights file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, SliceSafetensors};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::files::open_regular_file;
use crate::{MinusError, Result};

/// Largest weights file read (a full-EMA SD 1.5 checkpoint is 7.7 GB).
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 64 << 30;

/// The tensors of one file, in host memory, kept with the file's path for error messages.
#[derive(Clone)]
pub struct TensorFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

/// A float tensor in the run's number format; other tensors (token ids) as they are.
///
/// Done on the CPU before anything goes to the device, so a GPU never holds the
/// stored f32 copy beside the f16 one.
pub fn to_run_dtype(tensor: Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if tensor.dtype().is_float() && tensor.dtype() != dtype {
        tensor.to_dtype(dtype)
    } else {
        Ok(tensor)
    }
}

impl TensorFile {
    /// Reads a `.safetensors` file into host memory, each float tensor cast to `dtype`.
    ///
    /// The file is memory-mapped, so no second copy of it is read into a buffer, and
    /// each tensor's pages are handed back to the system once it is copied out, so
    /// the resident peak is the cast tensors plus about one stored tensor. The price
    /// of a map: the file must not change while it is read. A file rewritten
    /// meanwhile gives mixed weights, and one truncated meanwhile ends the process
    /// (SIGBUS). Weight files are not edited during a load of seconds, and the
    /// checks that matter for hostile files hold: only a regular file is mapped, its
    /// header size and every tensor's bounds are checked against the mapped length
    /// (by the safetensors reader) before any tensor is read.
    pub fn load_safetensors(path: &Path, dtype: DType) -> Result<Self> {
        let (file, _) = open_regular_file(path, MAX_WEIGHTS_FILE_BYTES)?;
        let bad = |e: candle_core::Error| MinusError::BadWeights {
            path: path.to_path_buf(),
            message: format!("not a readable safetensors file ({})", root_cause(&e)),
        };
        // SAFETY: the map is only read, and only while `map` lives; a file changed
        // by another process meanwhile is the documented trade-off above.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| MinusError::io(path, e))?;
        let safetensors = SliceSafetensors::new(&map).map_err(bad)?;
        let mut tensors = HashMap::new();
        for (name, view) in safetensors.tensors() {
            let tensor = view.load(&Device::Cpu).map_err(bad)?;
            tensors.insert(name, to_run_dtype(tensor, dtype).map_err(bad)?);
            release_pages(&map, view.data());
        }
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

    /// A candle `VarBuilder` over the tensors, converting them to `dtype` and
    /// uploading each to `device` as a network takes it.
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

/// Lets the system drop the mapped pages of `data` (a part of `map`) from this
/// process's resident memory: they were copied out and are not read again.
#[cfg(unix)]
fn release_pages(map: &memmap2::Mmap, data: &[u8]) {
    let offset = (data.as_ptr() as usize).saturating_sub(map.as_ptr() as usize);
    // SAFETY: a read-only private map of a file: dropped pages are read back from
    // the file if touched again, so no reader sees anything but the file's bytes.
    let released = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, data.len())
    };
    // Only memory use depends on it.
    let _ = released;
}

#[cfg(not(unix))]
fn release_pages(_: &memmap2::Mmap, _: &[u8]) {}

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
