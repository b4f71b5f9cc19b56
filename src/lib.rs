//! Minus: negative image prompts for Stable Diffusion 1.5 with IP-Adapter.
//!
//! The crate is laid out as in the design notes: `models` holds the networks,
//! `schedulers` the samplers, `weights` finds and loads files, `pipeline` runs
//! one generation, `engine` runs generations on a worker thread for the GUI.

pub mod allocator;
pub mod app;
pub mod engine;
pub mod error;
pub mod files;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod schedulers;
pub mod weights;

pub use error::{MinusError, Result};
