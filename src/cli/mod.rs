//! The command-line subcommands.

pub mod generate;
