//! PyTorch files (`.bin`, `.ckpt`, `.pt`: a zip of a pickle and the tensors'
//! storages): the pickle is read by the bounded reader and never executed, and
//! each storage is read once, checked against the size its tensors claim.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::TensorFile;
use super::bounded_pickle::{self, NodeKind, Value};
use super::tensor_file::to_run_dtype;
use crate::{MinusError, Result};

/// The largest `data.pkl` read (real ones are well under 1 MiB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// One open PyTorch zip: where its storages are, and those read so far.
struct Archive {
    zip: zip::ZipArchive<BufReader<File>>,
    /// `archive/data/` for `archive/data.pkl`.
    storage_prefix: String,
    file_bytes: u64,
    storages: HashMap<String, Tensor>,
}

/// Where a tensor's values are: a view into a storage.
struct TensorRef {
    storage_key: String,
    dtype: DType,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn unreadable(path: &Path, reason: impl std::fmt::Display) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message: format!("not a readable PyTorch file ({reason})"),
    }
}

impl Archive {
    /// Opens the zip and reads its pickle, within the bounds.
    fn open(path: &Path) -> Result<(Self, Value)> {
        let file = File::open(path).map_err(|e| MinusError::io(path, e))?;
        let file_bytes = file.metadata().map_err(|e| MinusError::io(path, e))?.len();
        let mut zip =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|e| unreadable(path, e))?;
        let pickle_name = zip
            .file_names()
            .filter_map(std::result::Result::ok)
            .find(|name| name.ends_with("data.pkl"))
            .map(|name| name.into_owned())
            .ok_or_else(|| unreadable(path, "no data.pkl inside"))?;
        let mut entry = zip.by_name(&pickle_name).map_err(|e| unreadable(path, e))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(unreadable(
                path,
                format!("its pickle is larger than {} MiB", MAX_PICKLE_BYTES >> 20),
            ));
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_PICKLE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(path, e))?;
        drop(entry);
        let root = bounded_pickle::read(&bytes, bounded_pickle::LIMITS)
            .map_err(|e| unreadable(path, e))?;
        let storage_prefix = format!("{}/", pickle_name.trim_end_matches(".pkl"));
        let archive = Self {
            zip,
            storage_prefix,
            file_bytes,
            storages: HashMap::new(),
        };
        Ok((archive, unwrap_module(root)))
    }

    /// The tensors of a dict value (other entries are skipped).
    fn tensors(&mut self, path: &Path, dict: &Value) -> Result<Vec<(String, Tensor)>> {
        let Some(items) = dict.node(NodeKind::Dict) else {
            return Ok(Vec::new());
        };
        let mut tensors = Vec::new();
        for pair in items.chunks_exact(2) {
            let Some(name) = pair[0].as_str() else {
                continue;
            };
            let Some(found) =
                tensor_ref(&pair[1]).map_err(|e| unreadable(path, format!("`{name}`: {e}")))?
            else {
                continue;
            };
            let tensor = self
                .view(&found)
                .map_err(|e| unreadable(path, format!("`{name}`: {e}")))?;
            tensors.push((name.to_string(), tensor));
        }
        Ok(tensors)
    }

    /// The tensor `found` points to, from its storage (read once).
    fn view(&mut self, found: &TensorRef) -> std::result::Result<Tensor, String> {
        let storage = self.storage(&found.storage_key, found.dtype)?;
        let available = storage.elem_count();
        let elem_count = found
            .size
            .iter()
            .try_fold(1usize, |count, dim| count.checked_mul(*dim))
            .ok_or("its size overflows")?;
        if found
            .offset
            .checked_add(elem_count)
            .is_none_or(|end| end > available)
        {
            return Err(format!(
                "it needs {elem_count} values from {}, and the storage holds {available}",
                found.offset
            ));
        }
        let flat = storage
            .narrow(0, found.offset, elem_count)
            .map_err(|e| e.to_string())?;
        let reshaped = if is_contiguous(&found.size, &found.stride, false) {
            flat.reshape(found.size.as_slice())
        } else if is_contiguous(&found.size, &found.stride, true) {
            let reversed: Vec<usize> = found.size.iter().rev().copied().collect();
            let order: Vec<usize> = (0..found.size.len()).rev().collect();
            flat.reshape(reversed).and_then(|t| t.permute(order))
        } else {
            return Err("its strides are not contiguous".to_string());
        };
        reshaped.map_err(|e| e.to_string())
    }

    /// A storage as a flat tensor; its size is the zip entry's, so a tensor can
    /// never claim more values than the file holds.
    fn storage(&mut self, key: &str, dtype: DType) -> std::result::Result<Tensor, String> {
        if let Some(storage) = self.storages.get(key) {
            return Ok(storage.clone());
        }
        let name = format!("{}{key}", self.storage_prefix);
        let mut entry = self
            .zip
            .by_name(&name)
            .map_err(|e| format!("storage `{name}`: {e}"))?;
        let claimed = entry.size().min(self.file_bytes);
        let mut bytes = Vec::with_capacity(usize::try_from(claimed).unwrap_or(0));
        (&mut entry)
            .take(claimed)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("storage `{name}`: {e}"))?;
        let values = bytes.len() / dtype.size_in_bytes();
        bytes.truncate(values * dtype.size_in_bytes());
        let storage = Tensor::from_raw_buffer(&bytes, dtype, &[values], &Device::Cpu)
            .map_err(|e| format!("storage `{name}`: {e}"))?;
        self.storages.insert(key.to_string(), storage.clone());
        Ok(storage)
    }
}

/// A TorchScript module's state, or the value itself.
fn unwrap_module(root: Value) -> Value {
    let state = root.node(NodeKind::Build).and_then(|parts| {
        let callable = parts[0].node(NodeKind::Call)?.first()?;
        (callable.as_global() == Some(("__torch__", "Module"))).then(|| parts[1].clone())
    });
    state.unwrap_or(root)
}

/// Whether `stride` lays `size` out row-major (or column-major with `fortran`).
fn is_contiguous(size: &[usize], stride: &[usize], fortran: bool) -> bool {
    let mut expected = 1usize;
    let dims: Vec<usize> = if fortran {
        (0..size.len()).collect()
    } else {
        (0..size.len()).rev().collect()
    };
    for dim in dims {
        if size[dim] > 1 && stride[dim] != expected {
            return false;
        }
        expected = expected.saturating_mul(size[dim]);
    }
    true
}

/// The tensor a state-dict value rebuilds (`torch._utils._rebuild_tensor_v2`,
/// possibly wrapped as a parameter or a tensor subclass), `None` for other
/// values and storage types Minus does not read.
fn tensor_ref(value: &Value) -> std::result::Result<Option<TensorRef>, String> {
    let Some([callable, args]) = value.node(NodeKind::Call) else {
        return Ok(None);
    };
    let malformed = |what: &str| format!("malformed tensor ({what})");
    let (callable, args) = match callable.as_global() {
        Some(("torch._tensor", "_rebuild_from_type_v2")) => {
            let parts = args.node(NodeKind::Tuple).ok_or(malformed("subclass"))?;
            match parts {
                [function, _, args, ..] => (function, args),
                _ => return Err(malformed("subclass")),
            }
        }
        Some(("torch._utils", "_rebuild_parameter")) => {
            let data = args
                .node(NodeKind::Tuple)
                .and_then(|parts| parts.first())
                .and_then(|data| data.node(NodeKind::Call))
                .ok_or(malformed("parameter"))?;
            match data {
                [function, args] => (function, args),
                _ => return Err(malformed("parameter")),
            }
        }
        _ => (callable, args),
    };
    if callable.as_global() != Some(("torch._utils", "_rebuild_tensor_v2")) {
        return Ok(None);
    }
    let Some([storage, offset, size, stride, ..]) = args.node(NodeKind::Tuple) else {
        return Err(malformed("arguments"));
    };
    // ("storage", torch.FloatStorage, key, location, size)
    let storage = storage
        .node(NodeKind::PersistentId)
        .and_then(|id| id.first())
        .and_then(|id| id.node(NodeKind::Tuple))
        .ok_or(malformed("storage"))?;
    let [_, class, key, ..] = storage else {
        return Err(malformed("storage"));
    };
    let dtype = match class.as_global().ok_or(malformed("storage type"))?.1 {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "LongStorage" => DType::I64,
        _ => return Ok(None),
    };
    let index = |value: &Value| value.as_int().and_then(|v| usize::try_from(v).ok());
    let indices = |value: &Value, what: &str| -> std::result::Result<Vec<usize>, String> {
        value
            .node(NodeKind::Tuple)
            .and_then(|parts| parts.iter().map(index).collect::<Option<Vec<_>>>())
            .ok_or(malformed(what))
    };
    let size = indices(size, "size")?;
    let stride = indices(stride, "stride")?;
    if size.len() != stride.len() {
        return Err(malformed("stride"));
    }
    Ok(Some(TensorRef {
        storage_key: key.as_str().ok_or(malformed("storage key"))?.to_string(),
        dtype,
        offset: index(offset).ok_or(malformed("offset"))?,
        size,
        stride,
    }))
}

/// Loads a pickled state dict: a checkpoint's `state_dict`, the two sub-dicts of an
/// h94 IP-Adapter `.bin` (`image_proj`, `ip_adapter`, keys prefixed accordingly), or a
/// flat dict; float tensors are cast to `dtype`, in host memory.
pub fn load_pickle(path: &Path, dtype: DType) -> Result<TensorFile> {
    if !path.is_file() {
        return Err(MinusError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    let (mut archive, root) = Archive::open(path)?;
    let mut tensors = match root.dict_get("state_dict") {
        Some(state_dict) => archive.tensors(path, state_dict)?,
        None => Vec::new(),
    };
    if tensors.is_empty() {
        for key in ["image_proj", "ip_adapter"] {
            if let Some(dict) = root.dict_get(key) {
                let prefixed = archive.tensors(path, dict)?.into_iter();
                tensors.extend(prefixed.map(|(name, tensor)| (format!("{key}.{name}"), tensor)));
            }
        }
    }
    if tensors.is_empty() {
        tensors = archive.tensors(path, &root)?;
    }
    if tensors.is_empty() {
        return Err(MinusError::BadWeights {
            path: path.to_path_buf(),
            message: "the pickle holds no tensors Minus can use".to_string(),
        });
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, tensor)| Ok((name, to_run_dtype(tensor, dtype)?)))
        .collect::<Result<_>>()?;
    Ok(TensorFile::from_tensors(path, tensors))
}

/// Loads `.safetensors` directly and anything else as a PyTorch pickle, float
/// tensors cast to `dtype`, in host memory.
pub fn load_weights_file(path: &Path, dtype: DType) -> Result<TensorFile> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        TensorFile::load_safetensors(path, dtype)
    } else {
        load_pickle(path, dtype)
    }
}
