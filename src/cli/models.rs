//! `minus models`: what is present, downloading the defaults, verifying the cache.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::bail;
use clap::{Args, Subcommand};
use minus::weights::catalogue::{Catalogue, FIRST_RUN};
use minus::weights::hub::{BlobCheck, Hub, verify_cache};
use minus::weights::local;

/// Flags of `minus models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// List the default models (present or missing) and model files in --models-dir folders.
    List {
        /// ComfyUI or A1111 folders (or their `models` folders) to search.
        #[arg(long = "models-dir")]
        models_dirs: Vec<PathBuf>,
    },
    /// Download catalogue entries into the Hugging Face cache (default: what a first run
    /// needs).
    Download {
        /// Catalogue names (see `minus models list`): the defaults, the other adapters,
        /// the few-step LoRAs `tcd-sd15-lora` and `hyper-sd15-8steps-cfg-lora`.
        names: Vec<String>,
    },
    /// Check the cached downloads against their SHA-256.
    Verify,
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Runs `minus models ...`.
pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    let catalogue = Catalogue::built_in()?;
    let hub = Hub::from_env();
    match &args.command {
        ModelsCommand::List { models_dirs } => {
            println!("Hugging Face cache: {}", hub.cache_dir().display());
            for entry in &catalogue.entries {
                match entry.cached_path(&hub) {
                    Some(path) => println!("  present  {:<22} {}", entry.name, path.display()),
                    None => println!(
                        "  missing  {:<22} {} (about {} MB)",
                        entry.name, entry.repo, entry.approx_mb
                    ),
                }
            }
            for dir in models_dirs {
                println!("{}:", dir.display());
                let found = local::scan(dir)?;
                if found.is_empty() {
                    println!("  no model files found");
                }
                for model in found {
                    println!(
                        "  {:<22} {:>9.1} MB  {}",
                        model.kind.label(),
                        megabytes(model.size_bytes),
                        model.path.display()
                    );
                }
            }
        }
        ModelsCommand::Download { names } => {
            let names: Vec<String> = if names.is_empty() {
                FIRST_RUN.iter().map(|s| s.to_string()).collect()
            } else {
                names.clone()
            };
            let cancel = AtomicBool::new(false);
            for name in names {
                let entry = catalogue.get(&name)?;
                let path = entry.download(
                    &hub,
                    &mut |file, p| {
                        let total = p
                            .total
                            .map(|t| format!("{:.1}", megabytes(t)))
                            .unwrap_or("?".into());
                        eprint!(
                            "\r{name}: {file} {:.1}/{total} MB  {:.1} MB/s   ",
                            megabytes(p.bytes),
                            megabytes(p.bytes_per_sec as u64)
                        );
                        // Progress only; a closed stderr must not stop the download.
                        let _ = std::io::stderr().flush();
                    },
                    &cancel,
                )?;
                eprintln!("\r{name}: {}", path.display());
            }
        }
        ModelsCommand::Verify => verify(catalogue, &hub)?,
    }
    Ok(())
}

/// Checks every cached blob of the catalogue's repos, reporting each problem and
/// going on; fails at the end if any blob is corrupt or unreadable.
fn verify(catalogue: &Catalogue, hub: &Hub) -> anyhow::Result<()> {
    let mut repos: Vec<&str> = catalogue.entries.iter().map(|e| e.repo.as_str()).collect();
    repos.sort_unstable();
    repos.dedup();
    let (mut matching, mut bad, mut skipped) = (0, 0, 0);
    for repo in repos {
        let report = match verify_cache(hub, repo) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("unreadable: {error}");
                bad += 1;
                continue;
            }
        };
        for (path, check) in report.blobs {
            match check {
                BlobCheck::Matches => matching += 1,
                BlobCheck::Corrupt => {
                    eprintln!("corrupt: {}", path.display());
                    bad += 1;
                }
                BlobCheck::Unreadable(reason) => {
                    eprintln!("unreadable: {}: {reason}", path.display());
                    bad += 1;
                }
                BlobCheck::NotAFile => {
                    eprintln!("skipped (not a regular file): {}", path.display());
                    skipped += 1;
                }
            }
        }
    }
    let skipped_note = if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    };
    if bad > 0 {
        bail!(
            "{bad} cached file(s) do not match their checksum or cannot be read \
             ({matching} match{skipped_note}); delete them and download again"
        );
    }
    println!("{matching} cached download(s) match their checksums{skipped_note}");
    Ok(())
}
