//! The command-line subcommands.

pub mod generate;
pub mod models;
