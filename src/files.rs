//! Reading input files safely: only regular files, and only up to a size cap, so a
//! path to `/dev/zero`, a FIFO or a huge file gives an error naming it instead of
//! filling memory or blocking a thread.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{MinusError, Result};

/// Largest image file read as a prompt image or a saved result (a 100-megapixel
/// PNG is well below this).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Largest JSON or text file read as a model's configuration or a tokenizer's vocabulary
/// (CLIP's `vocab.json` is 1.6 MB).
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;

/// Opens `path` if it is a regular file (symbolic links are followed) of at most
/// `limit_bytes`; the checks hold for the open file, whatever the path names later.
pub fn open_regular_file(path: &Path, limit_bytes: u64) -> Result<(File, u64)> {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    let metadata = std::fs::metadata(path).map_err(|e| MinusError::io(path, e))?;
    check_regular(path, &metadata, limit_bytes)?;
    let file = File::open(path).map_err(|e| MinusError::io(path, e))?;
    // Checked again on the open file, in case the path was replaced in between.
    let metadata = file.metadata().map_err(|e| MinusError::io(path, e))?;
    check_regular(path, &metadata, limit_bytes)?;
    Ok((file, metadata.len()))
}

/// Reads `path` whole if it is a regular file (symbolic links are followed) of at
/// most `limit_bytes`.
pub fn read_regular_file(path: &Path, limit_bytes: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular_file(path, limit_bytes)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // A file that grows while it is read still stops at the cap.
    file.take(limit_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| MinusError::io(path, e))?;
    if bytes.len() as u64 > limit_bytes {
        return Err(too_large(path, limit_bytes));
    }
    Ok(bytes)
}

/// Reads `path` whole as UTF-8 text, with [`read_regular_file`]'s checks.
pub fn read_text_file(path: &Path, limit_bytes: u64) -> Result<String> {
    String::from_utf8(read_regular_file(path, limit_bytes)?).map_err(|e| MinusError::Refused {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text ({e})"),
    })
}

fn check_regular(path: &Path, metadata: &std::fs::Metadata, limit_bytes: u64) -> Result<()> {
    if !metadata.is_file() {
        return Err(MinusError::Refused {
            path: path.to_path_buf(),
            message: format!("not a regular file ({})", kind(metadata)),
        });
    }
    if metadata.len() > limit_bytes {
        return Err(too_large(path, limit_bytes));
    }
    Ok(())
}

fn too_large(path: &Path, limit_bytes: u64) -> MinusError {
    MinusError::Refused {
        path: path.to_path_buf(),
        message: format!("file is larger than the {} MiB limit", limit_bytes >> 20),
    }
}

/// A word for what a non-regular file is, for messages.
pub fn kind(metadata: &std::fs::Metadata) -> &'static str {
    let file_type = metadata.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scratch::ScratchDir;

    #[test]
    fn reads_regular_files_up_to_the_cap() {
        let scratch = ScratchDir::new("files-cap");
        let path = scratch.join("five.bin");
        std::fs::write(&path, b"12345").expect("write");
        assert_eq!(read_regular_file(&path, 5).expect("fits"), b"12345");
        let error = read_regular_file(&path, 4).expect_err("over the cap");
        assert!(error.to_string().contains("five.bin"), "{error}");
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_devices_folders_and_fifos_without_blocking() {
        let dir = ScratchDir::new("files-kinds");
        let fifo = dir.join("pipe");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        for (path, what) in [
            (Path::new("/dev/zero"), "a device"),
            (dir.path(), "a folder"),
            (fifo.as_path(), "a FIFO"),
        ] {
            let error = read_regular_file(path, 1 << 20).expect_err("refused");
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(what), "{message}");
        }
    }
}
