//! What to generate: plain serialisable data, embedded in every saved PNG.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::preprocess::FitMode;
use crate::schedulers::SamplerKind;
use crate::{MinusError, Result};

/// One prompt image and its weight within its side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePrompt {
    /// The image file.
    pub path: PathBuf,
    /// Relative weight when several images are averaged on one side.
    #[serde(default = "one")]
    pub weight: f64,
    /// SHA-256 of the file's bytes, filled in when the image is encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl ImagePrompt {
    /// An image with weight 1.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            weight: 1.0,
            sha256: None,
        }
    }
}

/// The part of the denoising run, as fractions 0..1, during which an image prompt acts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            start: 0.0,
            end: 1.0,
        }
    }
}

impl Window {
    /// Whether step `step` of `steps` (0-based) is inside `start <= step/steps < end`.
    pub fn contains(&self, step: usize, steps: usize) -> bool {
        let position = step as f64 / steps as f64;
        self.start <= position && position < self.end
    }
}

/// Every setting of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    pub prompt: String,
    pub negative_prompt: String,
    /// Positive image prompts: they condition the conditioned half of CFG.
    pub images: Vec<ImagePrompt>,
    /// Negative image prompts: they condition the "unconditioned" half.
    pub negative_images: Vec<ImagePrompt>,
    /// IP-Adapter scale of the conditioned half.
    pub ip_weight: f64,
    /// IP-Adapter scale of the unconditioned half.
    pub negative_ip_weight: f64,
    pub ip_window: Window,
    pub negative_ip_window: Window,
    pub sampler: SamplerKind,
    pub karras: bool,
    pub steps: usize,
    pub cfg: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    /// Images per run (the batch size of each CFG half).
    pub batch: usize,
    /// How non-square prompt images are made square.
    pub fit: FitMode,
}

impl Default for Request {
    /// The reference demo's defaults: DDIM, 25 steps, CFG 7.5, 512×512, weights 1.
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            images: Vec::new(),
            negative_images: Vec::new(),
            ip_weight: 1.0,
            negative_ip_weight: 1.0,
            ip_window: Window::default(),
            negative_ip_window: Window::default(),
            sampler: SamplerKind::Ddim,
            karras: false,
            steps: 25,
            cfg: 7.5,
            seed: 0,
            width: 512,
            height: 512,
            batch: 1,
            fit: FitMode::Crop,
        }
    }
}

/// Largest side accepted, to turn typos into messages instead of out-of-memory errors.
pub const MAX_SIDE_PX: usize = 4096;

impl Request {
    /// Checks the settings that would otherwise fail deep inside the networks.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(MinusError::InvalidRequest(message));
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if side == 0 || side % 8 != 0 || side > MAX_SIDE_PX {
                return bad(format!(
                    "{name} must be a multiple of 8 between 8 and {MAX_SIDE_PX}, got {side}"
                ));
            }
        }
        if self.steps == 0 || self.steps > 1000 {
            return bad(format!("steps must be 1..=1000, got {}", self.steps));
        }
        if self.batch == 0 || self.batch > 64 {
            return bad(format!("images per run must be 1..=64, got {}", self.batch));
        }
        if !self.cfg.is_finite() {
            return bad("CFG scale must be a number".to_string());
        }
        for (name, window) in [
            ("image", self.ip_window),
            ("negative image", self.negative_ip_window),
        ] {
            if !(0.0..=1.0).contains(&window.start) || !(0.0..=1.0).contains(&window.end) {
                return bad(format!("{name} prompt start/end must lie in 0..1"));
            }
        }
        let images = self.images.iter().chain(&self.negative_images);
        if let Some(image) = images
            .clone()
            .find(|i| !i.weight.is_finite() || i.weight < 0.0)
        {
            return bad(format!("weight of {} must be >= 0", image.path.display()));
        }
        Ok(())
    }

    /// Whether any image prompt is given (otherwise the run is plain text-to-image).
    pub fn has_image_prompts(&self) -> bool {
        !self.images.is_empty() || !self.negative_images.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_includes_start_and_excludes_end() {
        let window = Window {
            start: 0.2,
            end: 0.7,
        };
        let active: Vec<bool> = (0..10).map(|i| window.contains(i, 10)).collect();
        assert_eq!(
            active,
            [
                false, false, true, true, true, true, true, false, false, false
            ]
        );
        assert!(Window::default().contains(9, 10));
    }

    #[test]
    fn rejects_sizes_that_are_not_multiples_of_8() {
        let request = Request {
            width: 100,
            ..Request::default()
        };
        assert!(request.validate().is_err());
        assert!(Request::default().validate().is_ok());
    }

    #[test]
    fn round_trips_through_json() -> serde_json::Result<()> {
        let request = Request {
            images: vec![ImagePrompt::new("a.png")],
            seed: 7,
            ..Request::default()
        };
        let json = serde_json::to_string(&request)?;
        assert_eq!(serde_json::from_str::<Request>(&json)?, request);
        Ok(())
    }
}
