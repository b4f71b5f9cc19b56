//! The command-line subcommands.

pub mod bench;
mod bench_memory;
mod bench_weights;
pub mod generate;
pub mod models;
