//! One generation: conditioning, the CFG denoising loop, noise, previews, decoding.

pub mod conditioning;
pub mod decoded;
pub mod fast_preset;
pub mod generate;
mod lru;
pub mod masks;
pub mod memory;
pub mod methods;
pub mod models;
pub mod noise_image;
pub mod phase;
pub mod preprocess;
pub mod preview;
pub mod request;
pub mod resample;
mod slots;
pub mod text;

pub use crate::models::unet::EmbedsScaling;
pub use decoded::FinalDecode;
pub use generate::{Flow, Generation, StepReport, generate};
pub use methods::{Combine, WeightType};
pub use models::Models;
pub use phase::Phase;
pub use preview::PreviewKind;
pub use request::{ImagePrompt, MaskFile, Request, Window};
