//! Embeds the git commit the binary was built from (`MINUS_COMMIT`), shown in the
//! window and written into every saved image's settings text.

use std::process::Command;

/// Runs `git` with `args` in the package folder; its trimmed output, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    // A source tarball has no git: the version alone is still true.
    let commit = git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MINUS_COMMIT={commit}");
    // Rebuild when HEAD moves: the HEAD file (branch switches), the branch's ref file
    // (commits) and packed-refs (after `git gc`). Worktrees keep these apart, so ask git.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
