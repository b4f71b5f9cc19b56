//! Minus: negative image prompts for Stable Diffusion 1.5 with IP-Adapter.
//!
//! The crate is laid out in layers, each importing only from the layers below it
//! (`tests/layers.rs` checks this):
//!
//! `app` (the window) → `engine` (the worker thread) → `output` (saved PNGs) →
//! `pipeline` (one generation) → `weights` (finding and loading files) → `models`
//! (the networks) → `schedulers` (the samplers), with `rng`, `device`, `files`, `error`,
//! `allocator`, `version` and `choices` (option names) as leaves any layer may use (and `scratch`, test folders).

// Anything a user or a file can influence is handled, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod allocator;
#[cfg(feature = "gui")]
pub mod app;
mod choices;
pub mod device;
pub mod engine;
pub mod error;
pub mod files;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod rng;
pub mod schedulers;
#[cfg(any(test, feature = "test-support"))]
pub mod scratch;
pub mod version;
pub mod weights;

pub use error::{MinusError, Result};
