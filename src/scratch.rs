//! Throw-away folders for tests (feature `test-support`): each is removed when its
//! guard drops, so repeated test runs do not fill the temp folder.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// An empty folder under the system temp folder, removed with everything in it on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `minus-<name>-<pid>` under the temp folder, emptying what a crashed run
    /// with the same process id left there.
    ///
    /// # Panics
    /// When the folder cannot be created: a test cannot go on without it.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("minus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(error) = std::fs::create_dir_all(&path) {
            panic!("cannot create {}: {error}", path.display());
        }
        Self { path }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

// So `&scratch` converts into a `PathBuf` wherever a `&PathBuf` would.
impl AsRef<OsStr> for ScratchDir {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_goes_when_the_guard_drops() {
        let scratch = ScratchDir::new("scratch-drop");
        let kept = scratch.to_path_buf();
        std::fs::write(scratch.join("a.txt"), b"a").expect("write");
        assert!(kept.join("a.txt").is_file());
        drop(scratch);
        assert!(!kept.exists(), "{} is still there", kept.display());
    }
}
