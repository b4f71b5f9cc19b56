//! A safetensors file's JSON header, read without its tensors (bounded: a hostile
//! length cannot make Minus allocate or read more than the header limit).

use std::io::{BufReader, Read};
use std::path::Path;

use crate::files::open_regular_file;
use crate::weights::tensor_file::MAX_WEIGHTS_FILE_BYTES;
use crate::{MinusError, Result};

/// Largest header read (the safetensors reader's own limit).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The header's bytes, and the file positioned just after them.
pub fn read_header_bytes(path: &Path) -> Result<(Vec<u8>, BufReader<std::fs::File>)> {
    let bad = |message: String| MinusError::BadWeights {
        path: path.to_path_buf(),
        message,
    };
    let (file, file_bytes) = open_regular_file(path, MAX_WEIGHTS_FILE_BYTES)?;
    let mut reader = BufReader::new(file);
    let mut size = [0u8; 8];
    reader
        .read_exact(&mut size)
        .map_err(|_| bad("too short to be a safetensors file".to_string()))?;
    let header_bytes = u64::from_le_bytes(size);
    if header_bytes > MAX_HEADER_BYTES || header_bytes > file_bytes.saturating_sub(8) {
        return Err(bad(format!(
            "not a safetensors file (its header would be {header_bytes} bytes of {file_bytes})"
        )));
    }
    let mut header = Vec::new();
    (&mut reader)
        .take(header_bytes)
        .read_to_end(&mut header)
        .map_err(|e| MinusError::io(path, e))?;
    Ok((header, reader))
}
