//! What a LoRA's safetensors file says before its tensors: the header's metadata (where
//! diffusers keeps a PEFT adapter's alpha), and the hash A1111 and kohya give LoRA files,
//! which skips the header so that editing the metadata keeps the hash.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::weights::safetensors_header::read_header_bytes;
use crate::{MinusError, Result};

/// The header's `__metadata__` strings and the file's addnet hash.
pub struct LoraHeader {
    pub metadata: HashMap<String, String>,
    /// SHA-256 (hex) of every byte after the header: A1111's and kohya's
    /// `addnet_hash_safetensors`, the first 12 digits of which A1111 writes into
    /// `Lora hashes`.
    pub addnet_hash: String,
}

/// Reads the header of the safetensors file at `path` and hashes the rest.
pub fn read_header(path: &Path) -> Result<LoraHeader> {
    let (header, mut reader) = read_header_bytes(path)?;
    let metadata = parse_metadata(&header).map_err(|e| MinusError::BadWeights {
        path: path.to_path_buf(),
        message: format!("not a safetensors file (header: {e})"),
    })?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|e| MinusError::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(LoraHeader {
        metadata,
        addnet_hash: hex::encode(hasher.finalize()),
    })
}

/// The string values of the header's `__metadata__` (other values are not metadata
/// safetensors allows, and are skipped).
fn parse_metadata(header: &[u8]) -> serde_json::Result<HashMap<String, String>> {
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)?;
    let Some(serde_json::Value::Object(metadata)) = header.get("__metadata__") else {
        return Ok(HashMap::new());
    };
    Ok(metadata
        .iter()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    fn file_with(header: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn the_hash_covers_the_bytes_after_the_header_only() -> Result<()> {
        let dir = ScratchDir::new("lora-header-hash");
        let body = b"0123456789abcdef";
        let first = dir.path().join("a.safetensors");
        let second = dir.path().join("b.safetensors");
        std::fs::write(&first, file_with(r#"{"__metadata__":{"k":"v"}}"#, body))
            .map_err(|e| MinusError::io(&first, e))?;
        std::fs::write(&second, file_with("{}", body)).map_err(|e| MinusError::io(&second, e))?;
        let (a, b) = (read_header(&first)?, read_header(&second)?);
        assert_eq!(a.addnet_hash, hex::encode(Sha256::digest(body)));
        assert_eq!(a.addnet_hash, b.addnet_hash);
        assert_eq!(a.metadata.get("k").map(String::as_str), Some("v"));
        assert!(b.metadata.is_empty());
        Ok(())
    }

    #[test]
    fn a_header_longer_than_the_file_is_refused() -> Result<()> {
        let dir = ScratchDir::new("lora-header-cut");
        let path = dir.path().join("cut.safetensors");
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).map_err(|e| MinusError::io(&path, e))?;
        let message = read_header(&path).err().map(|e| e.to_string());
        assert!(
            message.as_deref().is_some_and(
                |m| m.contains("cut.safetensors") && m.contains("header would be 1000 bytes")
            ),
            "{message:?}"
        );
        Ok(())
    }
}
