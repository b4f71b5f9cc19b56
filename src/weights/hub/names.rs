//! Checks on every name that becomes part of a cache path, whether it comes from
//! the caller (repo, file) or from the server (commit, etag): a name that could
//! leave the cache folder is refused, never cleaned up and used.

use std::path::{Component, Path};

/// Longest repo name part the hub allows.
const MAX_REPO_PART_CHARS: usize = 96;
/// Longest etag accepted (hub etags are 40 or 64 hex characters).
const MAX_ETAG_CHARS: usize = 128;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A repo id as the hub allows it: `name` or `owner/name`, each part of ASCII
/// letters, digits, `-`, `_` and `.`, without `--` or `..` (the cache folder
/// name replaces `/` with `--`, so `--` would make two repos share a folder).
pub fn check_repo(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    let well_formed = (1..=2).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.len() <= MAX_REPO_PART_CHARS
                && part.chars().all(is_name_char)
                && !part.starts_with(['.', '-'])
                && !part.contains("--")
                && !part.contains("..")
        });
    if well_formed {
        Ok(())
    } else {
        Err(format!("`{repo}` is not a valid repo id"))
    }
}

/// A file path inside a repo: relative, `/`-separated, with no `.`, `..`, root
/// or drive parts, and no backslashes (a folder separator on Windows).
pub fn check_file(file: &str) -> Result<(), String> {
    let path = Path::new(file);
    let relative = !file.is_empty()
        && !file.contains(['\\', '\0'])
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
        && file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if relative {
        Ok(())
    } else {
        Err(format!("`{file}` is not a file path inside a repo"))
    }
}

/// A git commit hash: 40 hex digits.
pub fn check_commit(commit: &str) -> Result<(), String> {
    if is_hex(commit, 40) {
        Ok(())
    } else {
        Err(format!(
            "the hub sent `{}` as the commit, not a 40-digit hex hash",
            shorten(commit)
        ))
    }
}

/// An etag, used as the blob's file name: ASCII letters, digits, `-`, `_`, `.`,
/// not starting with `.` (no hidden files, no `..`).
pub fn check_etag(etag: &str) -> Result<(), String> {
    let usable = !etag.is_empty()
        && etag.len() <= MAX_ETAG_CHARS
        && etag.chars().all(is_name_char)
        && !etag.starts_with('.');
    if usable {
        Ok(())
    } else {
        Err(format!("unusable etag `{}`", shorten(etag)))
    }
}

/// Whether `text` is exactly `digits` hex digits.
pub fn is_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A server-sent value cut to a length fit for one error line.
fn shorten(text: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    let shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_cache_are_refused() {
        for repo in [
            "h94/IP-Adapter",
            "gpt2",
            "SG161222/Realistic_Vision_V4.0_noVAE",
        ] {
            assert_eq!(check_repo(repo), Ok(()), "{repo}");
        }
        for repo in [
            "", "/x", "a/b/c", "../x", "a/..", "a--b/c", "a/.git", "a b/c",
        ] {
            assert_eq!(
                check_repo(repo),
                Err(format!("`{repo}` is not a valid repo id"))
            );
        }
        for file in ["model.safetensors", "models/image_encoder/config.json"] {
            assert_eq!(check_file(file), Ok(()), "{file}");
        }
        for file in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a\\..\\b",
            "a//b",
        ] {
            assert_eq!(
                check_file(file),
                Err(format!("`{file}` is not a file path inside a repo"))
            );
        }
        assert_eq!(check_commit(&"ab".repeat(20)), Ok(()));
        for commit in ["/tmp/evil", "../../../x", "main", &"ab".repeat(21)] {
            assert!(
                check_commit(commit).is_err_and(|e| e.contains("not a 40-digit hex hash")),
                "{commit}"
            );
        }
        for etag in ["", ".", "..", "../x", "a/b", ".hidden"] {
            assert_eq!(check_etag(etag), Err(format!("unusable etag `{etag}`")));
        }
    }
}
