//! One generation: conditioning, the CFG denoising loop, noise, previews, decoding.

pub mod conditioning;
pub mod generate;
pub mod memory;
pub mod models;
pub mod preprocess;
pub mod preview;
pub mod request;
pub mod resample;

pub use generate::{Flow, Generation, StepReport, generate};
pub use models::Models;
pub use preview::PreviewKind;
pub use request::{ImagePrompt, Request, Window};
