//! The command-line subcommands.

pub mod bench;
mod bench_memory;
mod bench_weights;
mod bench_weights_sdxl;
mod defaults;
pub mod generate;
pub mod models;

/// A flag value the command line accepted but the run cannot use (out of range, or not
/// matching another flag): reported like clap's own usage errors, with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
