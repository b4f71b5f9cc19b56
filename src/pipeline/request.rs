//! What to generate: plain serialisable data, embedded in every saved PNG.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::decoded::FinalDecode;
use super::methods::{Combine, WeightType};
use super::preprocess::FitMode;
use crate::models::family::ModelFamily;
use crate::models::unet::EmbedsScaling;
use crate::schedulers::{DEFAULT_ETA, SamplerKind};
use crate::weights::lora::LoraChoice;
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
    /// Switched off in the window: kept in the settings (so a restore brings it back
    /// off), never read or encoded.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub enabled: bool,
    /// Where the image acts: a grayscale picture fitted to the output, white = here
    /// (none: everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskFile>,
    /// Switched off in the window: the mask is kept, the image acts everywhere.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub mask_enabled: bool,
}

/// A mask file, referenced like a prompt image: by path, with the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskFile {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, filled in when the mask is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl MaskFile {
    /// The mask at `path`, not yet read.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            sha256: None,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// serde's default for switches that are on unless saved off.
pub(crate) fn yes() -> bool {
    true
}

/// Whether a switch is on (then it is left out of the saved settings).
pub(crate) fn is_yes(value: &bool) -> bool {
    *value
}

impl ImagePrompt {
    /// An image with weight 1.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            weight: 1.0,
            sha256: None,
            enabled: true,
            mask: None,
            mask_enabled: true,
        }
    }

    /// The mask that applies: none when there is none or it is switched off.
    pub fn active_mask(&self) -> Option<&MaskFile> {
        self.mask.as_ref().filter(|_| self.mask_enabled)
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
    /// TCD's stochasticity (the paper's gamma), 0..1: 0 is deterministic.
    pub eta: f64,
    pub steps: usize,
    pub cfg: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    /// Images per run (the batch size of each CFG half).
    pub batch: usize,
    /// How non-square prompt images are made square.
    pub fit: FitMode,
    /// cubiq's noise, 0..1: the unconditioned side gets noised versions of the
    /// negative images (of the positive ones when there are none); 0 = none.
    pub noise: f64,
    /// How several positive images become one (cubiq's combine modes).
    pub combine: Combine,
    /// Per-layer factor on the conditioned half's image scale.
    pub weight_type: WeightType,
    /// Per-layer factor on the unconditioned half's image scale.
    pub negative_weight_type: WeightType,
    /// Where the image scale enters the image attention.
    pub embeds_scaling: EmbedsScaling,
    /// The LoRAs merged into the models that ran, with their strengths and hashes
    /// (filled in from the models by `generate`; saved so a restore can find them).
    pub loras: Vec<LoraChoice>,
    /// The decoder of the final picture (TAESD for a fast draft). Left out of the saved
    /// settings when it is the full VAE, so results saved before it existed read the same.
    #[serde(skip_serializing_if = "FinalDecode::is_vae")]
    pub final_decode: FinalDecode,
    /// The family of the model that ran (filled in by `generate`). Left out of the saved
    /// settings for SD 1.5, so its results saved before SDXL read the same.
    #[serde(default, skip_serializing_if = "ModelFamily::is_sd15")]
    pub family: ModelFamily,
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
            eta: DEFAULT_ETA,
            steps: 25,
            cfg: 7.5,
            seed: 0,
            width: 512,
            height: 512,
            batch: 1,
            fit: FitMode::Crop,
            noise: 0.0,
            combine: Combine::WeightedAverage,
            weight_type: WeightType::Linear,
            negative_weight_type: WeightType::Linear,
            embeds_scaling: EmbedsScaling::VOnly,
            loras: Vec::new(),
            final_decode: FinalDecode::Vae,
            family: ModelFamily::Sd15,
        }
    }
}

/// Largest side accepted, to turn typos into messages instead of out-of-memory errors.
pub const MAX_SIDE_PX: usize = 4096;
/// Range of the IP-Adapter scales (the window offers 0..2; beyond ±10 images are noise).
pub const IP_WEIGHT_RANGE: RangeInclusive<f64> = -10.0..=10.0;
/// Range of the CFG scale.
pub const CFG_RANGE: RangeInclusive<f64> = 0.0..=100.0;
/// Range of an image's weight among the images of its side.
pub const IMAGE_WEIGHT_RANGE: RangeInclusive<f64> = 0.0..=100.0;
/// Range of the start and end of an image prompt's window (fractions of the run).
pub const WINDOW_RANGE: RangeInclusive<f64> = 0.0..=1.0;
/// Range of cubiq's noise amount.
pub const NOISE_RANGE: RangeInclusive<f64> = 0.0..=1.0;
/// Range of TCD's eta.
pub const ETA_RANGE: RangeInclusive<f64> = 0.0..=1.0;

/// One message for every number of a request: NaN, infinities and values out of
/// range would otherwise give black images and settings that cannot be restored.
fn check_number(name: &str, value: f64, range: RangeInclusive<f64>) -> Result<()> {
    if value.is_finite() && range.contains(&value) {
        return Ok(());
    }
    Err(MinusError::InvalidRequest(format!(
        "{name} must be a number from {} to {}, got {value}",
        range.start(),
        range.end()
    )))
}

impl Request {
    /// Checks every setting, so that nothing fails deep inside the networks and every
    /// saved request can be restored. The CLI, the window, restored PNGs and
    /// `pipeline::generate` all call this.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(MinusError::InvalidRequest(message));
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if side == 0 || side % 8 != 0 || side > MAX_SIDE_PX {
                return bad(format!(
                    "{name} must be a multiple of 8 between 8 and {MAX_SIDE_PX}, got {side}"
                ));
            }
        }
        let max_steps = self.sampler.max_steps();
        if self.steps == 0 || self.steps > max_steps {
            return bad(format!(
                "steps must be 1..={max_steps} with {}, got {}",
                self.sampler.display_name(),
                self.steps
            ));
        }
        if self.batch == 0 || self.batch > 64 {
            return bad(format!("images per run must be 1..=64, got {}", self.batch));
        }
        check_number("CFG scale", self.cfg, CFG_RANGE)?;
        check_number("image prompt weight", self.ip_weight, IP_WEIGHT_RANGE)?;
        check_number(
            "negative image prompt weight",
            self.negative_ip_weight,
            IP_WEIGHT_RANGE,
        )?;
        check_number("noise", self.noise, NOISE_RANGE)?;
        check_number("eta", self.eta, ETA_RANGE)?;
        for (name, window) in [
            ("image prompt", self.ip_window),
            ("negative image prompt", self.negative_ip_window),
        ] {
            check_number(&format!("{name} start"), window.start, WINDOW_RANGE)?;
            check_number(&format!("{name} end"), window.end, WINDOW_RANGE)?;
        }
        for image in self.images.iter().chain(&self.negative_images) {
            let name = format!("weight of {}", image.path.display());
            check_number(&name, image.weight, IMAGE_WEIGHT_RANGE)?;
        }
        for lora in &self.loras {
            lora.check_strength()?;
        }
        if self.combine != Combine::WeightedAverage && self.has_masks() {
            return bad(format!(
                "masks work with the weighted average of images only: combine {} mixes \
                 images that masks keep apart",
                self.combine.name()
            ));
        }
        Ok(())
    }

    /// The negative-image method's settings that differ from the seed's method, as
    /// `Name: value` pairs for the saved settings line (empty for the seed's method).
    pub fn method_text(&self) -> String {
        let defaults = Self::default();
        let mut parts = Vec::new();
        if self.noise != defaults.noise {
            parts.push(format!("Noise: {}", self.noise));
        }
        if self.combine != defaults.combine {
            parts.push(format!("Combine: {}", self.combine.name()));
        }
        if self.weight_type != defaults.weight_type {
            parts.push(format!("Weight type: {}", self.weight_type.name()));
        }
        if self.negative_weight_type != defaults.negative_weight_type {
            let name = self.negative_weight_type.name();
            parts.push(format!("Negative weight type: {name}"));
        }
        if self.embeds_scaling != defaults.embeds_scaling {
            parts.push(format!("Embeds scaling: {}", self.embeds_scaling.name()));
        }
        parts.join(", ")
    }

    /// Whether guidance is off (CFG 1) or turned around (below 1): the negative image
    /// prompts then push nothing away, since they act through the unconditioned half.
    pub fn guidance_off(&self) -> bool {
        self.cfg <= 1.0
    }

    /// Whether any switched-on image has a switched-on mask.
    pub fn has_masks(&self) -> bool {
        self.images
            .iter()
            .chain(&self.negative_images)
            .any(|image| image.enabled && image.active_mask().is_some())
    }

    /// Whether any image prompt is on (otherwise the run is plain text-to-image).
    pub fn has_image_prompts(&self) -> bool {
        self.images
            .iter()
            .chain(&self.negative_images)
            .any(|image| image.enabled)
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
        let refused = request.validate();
        assert!(
            matches!(&refused, Err(MinusError::InvalidRequest(message))
                if message == "width must be a multiple of 8 between 8 and 4096, got 100"),
            "{refused:?}"
        );
        assert!(Request::default().validate().is_ok());
    }

    #[test]
    fn rejects_every_number_that_is_not_finite_or_in_range() {
        type Setter = fn(&mut Request, f64);
        let cases: [(&str, Setter); 9] = [
            ("CFG scale", |r, v| r.cfg = v),
            ("eta", |r, v| r.eta = v),
            ("noise", |r, v| r.noise = v),
            ("image prompt weight", |r, v| r.ip_weight = v),
            ("negative image prompt weight", |r, v| {
                r.negative_ip_weight = v
            }),
            ("image prompt start", |r, v| r.ip_window.start = v),
            ("negative image prompt end", |r, v| {
                r.negative_ip_window.end = v
            }),
            ("weight of a.png", |r, v| r.images[0].weight = v),
            ("weight of b.png", |r, v| r.negative_images[0].weight = v),
        ];
        for (name, set) in cases {
            for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e9] {
                let mut request = Request {
                    images: vec![ImagePrompt::new("a.png")],
                    negative_images: vec![ImagePrompt::new("b.png")],
                    ..Request::default()
                };
                assert!(request.validate().is_ok());
                set(&mut request, value);
                let message = request.validate().expect_err("refused").to_string();
                assert!(message.contains(name), "{name} = {value}: {message}");
                assert!(message.contains("must be a number"), "{message}");
            }
        }
    }

    #[test]
    fn few_step_samplers_take_at_most_their_50_distilled_steps() {
        let request = |sampler, steps| Request {
            sampler,
            steps,
            ..Request::default()
        };
        assert!(request(SamplerKind::Tcd, 50).validate().is_ok());
        assert!(request(SamplerKind::Ddim, 51).validate().is_ok());
        for sampler in [SamplerKind::Tcd, SamplerKind::Lcm] {
            let refused = request(sampler, 51).validate();
            let name = sampler.display_name();
            assert!(
                matches!(&refused, Err(MinusError::InvalidRequest(message))
                    if *message == format!("steps must be 1..=50 with {name}, got 51")),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn switched_off_images_are_kept_but_do_not_count() -> serde_json::Result<()> {
        let off = ImagePrompt {
            enabled: false,
            ..ImagePrompt::new("/off.png")
        };
        let request = Request {
            negative_images: vec![off],
            ..Request::default()
        };
        assert!(!request.has_image_prompts());
        let json = serde_json::to_string(&request)?;
        assert_eq!(serde_json::from_str::<Request>(&json)?, request);
        // Settings saved before the field existed are on.
        let old: ImagePrompt = serde_json::from_str(r#"{"path": "/a.png", "weight": 0.5}"#)?;
        assert!(old.enabled);
        Ok(())
    }

    #[test]
    fn masks_are_kept_with_their_hash_and_on_off_state() -> serde_json::Result<()> {
        let masked = ImagePrompt {
            mask: Some(MaskFile {
                path: "/left.png".into(),
                sha256: Some("ab".repeat(32)),
            }),
            mask_enabled: false,
            ..ImagePrompt::new("/a.png")
        };
        let mut request = Request {
            images: vec![masked],
            ..Request::default()
        };
        assert!(!request.has_masks());
        let json = serde_json::to_string(&request)?;
        assert_eq!(serde_json::from_str::<Request>(&json)?, request);
        request.images[0].mask_enabled = true;
        assert!(request.has_masks());
        // Settings saved before masks existed have none, and a mask is on by default.
        let old: ImagePrompt = serde_json::from_str(r#"{"path": "/a.png"}"#)?;
        assert_eq!((old.mask, old.mask_enabled), (None, true));
        let new: ImagePrompt =
            serde_json::from_str(r#"{"path": "/a.png", "mask": {"path": "/m.png"}}"#)?;
        assert_eq!(new.active_mask(), Some(&MaskFile::new("/m.png")));
        Ok(())
    }

    #[test]
    fn settings_saved_before_the_methods_read_as_the_seeds_method() -> serde_json::Result<()> {
        let old: Request = serde_json::from_str(r#"{"prompt": "a house", "seed": 3}"#)?;
        assert_eq!(old.noise, 0.0);
        assert_eq!(old.combine, Combine::WeightedAverage);
        assert_eq!(old.weight_type, WeightType::Linear);
        assert_eq!(old.negative_weight_type, WeightType::Linear);
        assert_eq!(old.embeds_scaling, EmbedsScaling::VOnly);
        assert!(old.loras.is_empty());
        assert_eq!(old.eta, 0.3);
        assert_eq!(old.final_decode, FinalDecode::Vae);
        let new: Request = serde_json::from_str(
            r#"{"combine": "norm-average", "weight_type": "ease-in-out", "embeds_scaling": "k-mean-v-c-penalty"}"#,
        )?;
        assert_eq!(new.combine, Combine::NormAverage);
        assert_eq!(new.weight_type, WeightType::EaseInOut);
        assert_eq!(new.embeds_scaling, EmbedsScaling::KMeanVCPenalty);
        Ok(())
    }

    #[test]
    fn the_settings_line_names_the_method_options_that_differ() {
        assert_eq!(Request::default().method_text(), "");
        let request = Request {
            noise: 0.35,
            negative_weight_type: WeightType::WeakOutput,
            embeds_scaling: EmbedsScaling::KVCPenalty,
            ..Request::default()
        };
        assert_eq!(
            request.method_text(),
            "Noise: 0.35, Negative weight type: weak-output, Embeds scaling: k-v-c-penalty"
        );
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
