//! Turning prompts into what the UNet attends to: text embeddings and image tokens.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Tensor;
use image::RgbImage;
use sha2::{Digest, Sha256};

use super::lru::Lru;
use super::masks::read_mask;
use super::methods::Combine;
use super::models::{ImagePromptModels, Models};
use super::noise_image::noised_pixel_values;
use super::phase::Phase;
use super::preprocess::{FitMode, clip_square, decode_rgb, normalize};
use super::request::{ImagePrompt, Request};
use super::slots::{HalfFeatures, MaskSlots, image_tokens};
pub use super::text::{TextEmbedding, encode_text};
use crate::files::{MAX_IMAGE_FILE_BYTES, read_regular_file};
use crate::models::ip_adapter::ImageFeature;
use crate::models::unet::{Coverage, RegionMask};
use crate::{MinusError, Result};

/// Image features (before projection) of prompt images, keyed by content, of
/// cubiq's noised images, and text embeddings of prompts, so re-running with the same
/// prompts skips the encoders.
#[derive(Default)]
pub struct EmbeddingCache {
    /// Features of prompt images by content, and the "no image" features.
    entries: Lru<CacheKey, Tensor, MAX_IMAGES>,
    /// The features of each noised image of a side, in the side's order.
    noised: Lru<NoisedKey, Vec<Tensor>, MAX_NOISED>,
    encoder_runs: usize,
    /// Text embeddings keyed by (text encoder id, prompt).
    texts: Lru<TextKey, TextEmbedding, MAX_TEXTS>,
    text_encoder_runs: usize,
}

/// (text encoder id, prompt).
type TextKey = (String, String);

/// Prompts whose embeddings are kept (about 240 KB each in f32): the least recently
/// used go first.
const MAX_TEXTS: usize = 64;

/// Prompt images whose features are kept (about 1.3 MB each for Plus in f32, 4 KB
/// for the base adapter's image embeds): a session of many images stays bounded.
const MAX_IMAGES: usize = 64;

/// Noised sides whose features are kept: a new seed each run would otherwise add one
/// per run (a side's features are about 1.3 MB per image for Plus, in f32).
const MAX_NOISED: usize = 8;

/// What a side's noised images depend on: the images in order, how they are squared,
/// the amount and the seed (the noise is drawn from it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NoisedKey {
    models_id: String,
    contents: Vec<String>,
    fit: FitMode,
    noise_bits: u64,
    seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    models_id: String,
    /// SHA-256 of the image file, or `None` for the "no image" features.
    content: Option<String>,
    fit: FitMode,
}

impl EmbeddingCache {
    /// How many times the image encoder actually ran (cache misses).
    pub fn encoder_runs(&self) -> usize {
        self.encoder_runs
    }

    /// How many prompts the text encoder actually encoded (cache misses).
    pub fn text_encoder_runs(&self) -> usize {
        self.text_encoder_runs
    }

    /// Keeps only what `models` would encode again the same way: a reload that changes
    /// the UNet, the VAE or TAESD keeps every encoding; one that changes an encoder, the
    /// device or the dtype drops that encoder's (`None`: no models, drop everything).
    pub fn keep_only(&mut self, models: Option<&Models>) {
        let image_id = models.and_then(|m| m.image.as_ref()).map(|image| &image.id);
        let text_id = models.map(|m| &m.text_id);
        self.entries.retain(|key| Some(&key.models_id) == image_id);
        self.noised.retain(|key| Some(&key.models_id) == image_id);
        self.texts.retain(|(id, _)| Some(id) == text_id);
    }

    /// The embeddings of `text`, encoded only the first time.
    fn text(&mut self, models: &Models, text: &str) -> Result<TextEmbedding> {
        let key = (models.text_id.clone(), text.to_string());
        self.texts.get_or_try_insert_with(key, || {
            self.text_encoder_runs += 1;
            encode_text(models, text)
        })
    }
}

/// Both CFG halves' conditioning.
pub struct Conditioning {
    pub text_uncond: Tensor,
    pub text_cond: Tensor,
    /// SDXL's pooled text embeddings `(uncond, cond)`, each `[1, dim]`.
    pub pooled: Option<(Tensor, Tensor)>,
    /// Image tokens `(uncond, cond)`, `None` for plain text-to-image: `[1, T, dim]`, or
    /// with masks `[slots, T, dim]`, one image slot per batch item.
    pub ip_tokens: Option<(Tensor, Tensor)>,
}

/// Both halves' conditioning and, with masks, where each image slot acts.
pub struct Prepared {
    pub conditioning: Conditioning,
    /// `Some` when any image has a mask.
    pub slots: Option<MaskSlots>,
}

/// Computes the text and image conditioning of a `request` without masks, filling in
/// the content hash of every prompt image; `on_phase` hears which encoder is next.
/// A request with masks is refused here: it needs [`prepare_with_masks`].
pub fn prepare(
    models: &Models,
    request: &mut Request,
    cache: &mut EmbeddingCache,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<Conditioning> {
    let prepared = prepare_with_masks(models, request, cache, on_phase)?;
    if prepared.slots.is_some() {
        return Err(MinusError::InvalidRequest(
            "masks need their slots: prepare with prepare_with_masks".to_string(),
        ));
    }
    Ok(prepared.conditioning)
}

/// [`prepare`] for any request: with masks, each image of a masked side gets its own
/// slot of image tokens (diffusers' `ip_adapter_masks`), the hashes of the masks are
/// filled in too.
pub fn prepare_with_masks(
    models: &Models,
    request: &mut Request,
    cache: &mut EmbeddingCache,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<Prepared> {
    on_phase(Phase::EncodingPrompts);
    let text_cond = cache.text(models, &request.prompt)?;
    // An empty field means "no negative prompt" (diffusers' `None`).
    let text_uncond = if request.negative_prompt.is_empty() && models.zero_empty_negative {
        TextEmbedding::zeros_like(&text_cond)?
    } else {
        cache.text(models, &request.negative_prompt)?
    };
    let (ip_tokens, slots) = if request.has_image_prompts() {
        let image = models.image.as_ref().ok_or_else(|| {
            MinusError::InvalidRequest(
                "image prompts need an IP-Adapter and its image encoder".to_string(),
            )
        })?;
        on_phase(Phase::EncodingImages);
        let size = (request.width, request.height);
        let positives = read_side(&mut request.images, size)?;
        let negatives = read_side(&mut request.negative_images, size)?;
        let halves = half_features(image, request, (&positives, &negatives), cache)?;
        let (tokens, slots) = image_tokens(image, halves)?;
        (Some(tokens), slots)
    } else {
        (None, None)
    };
    Ok(Prepared {
        conditioning: Conditioning {
            pooled: text_uncond.pooled.zip(text_cond.pooled),
            text_uncond: text_uncond.tokens,
            text_cond: text_cond.tokens,
            ip_tokens,
        },
        slots,
    })
}

/// The features of both halves `(uncond, cond)`: the positive images in the
/// conditioned half, the negative ones (or their noised copies) in the unconditioned
/// half; without negative images but with masked positive ones, each positive slot
/// holds the "no image" features (or its noised copy) under its own mask.
fn half_features(
    image: &ImagePromptModels,
    request: &Request,
    (positives, negatives): (&[SideImage], &[SideImage]),
    cache: &mut EmbeddingCache,
) -> Result<(HalfFeatures, HalfFeatures)> {
    let fit = request.fit;
    let encode = |side: &[SideImage], cache: &mut EmbeddingCache| -> Result<Vec<Weighted>> {
        side.iter()
            .map(|prompt| Ok((features(image, prompt, fit, cache)?, prompt.weight)))
            .collect()
    };
    let positive_features = encode(positives, cache)?;
    let negative_features = encode(negatives, cache)?;
    let cond = if masked(positives) {
        HalfFeatures::Slots(slots_of(positive_features.clone(), positives))
    } else {
        let combine = request.combine;
        let both = (positive_features.as_slice(), negative_features.as_slice());
        HalfFeatures::Whole(combined(image, both, combine, (fit, cache))?)
    };
    let (uncond_side, uncond_features) = if negatives.is_empty() {
        let empty = empty_features(image, fit, cache)?;
        let empties = positives.iter().map(|p| (empty.clone(), p.weight));
        (positives, empties.collect())
    } else {
        (negatives, negative_features)
    };
    let uncond_features = if request.noise > 0.0 {
        noised_features(image, uncond_side, request, (fit, cache))?
    } else {
        uncond_features
    };
    let uncond = if masked(uncond_side) {
        HalfFeatures::Slots(slots_of(uncond_features, uncond_side))
    } else if negatives.is_empty() && request.noise == 0.0 {
        HalfFeatures::Whole(empty_features(image, fit, cache)?)
    } else {
        HalfFeatures::Whole(weighted_average(image, &uncond_features, fit, cache)?)
    };
    Ok((uncond, cond))
}

/// Whether any image of a side has a mask.
fn masked(side: &[SideImage]) -> bool {
    side.iter().any(|prompt| prompt.mask.is_some())
}

/// Each image's features with where it acts and its weight.
fn slots_of(features: Vec<Weighted>, side: &[SideImage]) -> Vec<(Tensor, Coverage)> {
    features
        .into_iter()
        .zip(side)
        .map(|((features, weight), prompt)| {
            let mask = prompt.mask.clone();
            (features, Coverage { mask, weight })
        })
        .collect()
}

/// Image features `[1, ...]` and the weight of their image.
type Weighted = (Tensor, f64);

/// One switched-on image of a side with a weight above 0, read and hashed, and its
/// mask fitted to the output.
struct SideImage {
    path: PathBuf,
    bytes: Vec<u8>,
    hash: String,
    weight: f64,
    mask: Option<Arc<RegionMask>>,
}

/// Reads (and hashes, for the saved settings) every switched-on image of a side and
/// its mask; those of weight 0 are left out. Masks are fitted to `(width, height)`.
fn read_side(
    images: &mut [ImagePrompt],
    (width, height): (usize, usize),
) -> Result<Vec<SideImage>> {
    let mut side = Vec::new();
    for prompt in images.iter_mut().filter(|prompt| prompt.enabled) {
        let bytes = read_regular_file(&prompt.path, MAX_IMAGE_FILE_BYTES)?;
        let hash = hex::encode(Sha256::digest(&bytes));
        prompt.sha256 = Some(hash.clone());
        let mask_enabled = prompt.mask_enabled;
        let mask = match prompt.mask.as_mut().filter(|_| mask_enabled) {
            Some(file) => {
                let mask_bytes = read_regular_file(&file.path, MAX_IMAGE_FILE_BYTES)?;
                file.sha256 = Some(hex::encode(Sha256::digest(&mask_bytes)));
                Some(Arc::new(read_mask(&file.path, &mask_bytes, width, height)?))
            }
            None => None,
        };
        if prompt.weight > 0.0 {
            side.push(SideImage {
                path: prompt.path.clone(),
                bytes,
                hash,
                weight: prompt.weight,
                mask,
            });
        }
    }
    Ok(side)
}

/// The image's square crop, as the encoder sees it.
fn square(models: &ImagePromptModels, prompt: &SideImage, fit: FitMode) -> Result<RgbImage> {
    let rgb = decode_rgb(&prompt.bytes).map_err(|message| MinusError::BadImage {
        path: prompt.path.clone(),
        message,
    })?;
    Ok(clip_square(&rgb, models.encoder.config().image_size, fit))
}

/// Encodes normalised pixel values `[3, size, size]`.
fn encode_values(models: &ImagePromptModels, values: Vec<f32>) -> Result<Tensor> {
    let size = models.encoder.config().image_size;
    let pixels =
        Tensor::from_vec(values, (1, 3, size, size), &models.device)?.to_dtype(models.dtype)?;
    encode_pixels(models, &pixels)
}

/// The image's features, encoded only the first time.
fn features(
    models: &ImagePromptModels,
    prompt: &SideImage,
    fit: FitMode,
    cache: &mut EmbeddingCache,
) -> Result<Tensor> {
    let key = CacheKey {
        models_id: models.id.clone(),
        content: Some(prompt.hash.clone()),
        fit,
    };
    cache.entries.get_or_try_insert_with(key, || {
        cache.encoder_runs += 1;
        encode_values(models, normalize(&square(models, prompt, fit)?))
    })
}

/// The features of cubiq's noised images of a side, encoded once per seed and amount.
fn noised_features(
    models: &ImagePromptModels,
    side: &[SideImage],
    request: &Request,
    (fit, cache): (FitMode, &mut EmbeddingCache),
) -> Result<Vec<Weighted>> {
    let key = NoisedKey {
        models_id: models.id.clone(),
        contents: side.iter().map(|prompt| prompt.hash.clone()).collect(),
        fit,
        noise_bits: request.noise.to_bits(),
        seed: request.seed,
    };
    let features = cache.noised.get_or_try_insert_with(key, || {
        let squares = side
            .iter()
            .map(|prompt| square(models, prompt, fit))
            .collect::<Result<Vec<_>>>()?;
        cache.encoder_runs += squares.len();
        noised_pixel_values(&squares, request.noise, request.seed)
            .into_iter()
            .map(|values| encode_values(models, values))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(features
        .into_iter()
        .zip(side)
        .map(|(features, prompt)| (features, prompt.weight))
        .collect())
}

/// The conditioned side's features: the weighted average, or cubiq's
/// combine over the images, each times its weight, when there are two or more
/// (for `subtract`, the negative images count as images to take away).
fn combined(
    models: &ImagePromptModels,
    (positives, negatives): (&[Weighted], &[Weighted]),
    combine: Combine,
    (fit, cache): (FitMode, &mut EmbeddingCache),
) -> Result<Tensor> {
    let images: Vec<&Weighted> = match combine {
        Combine::WeightedAverage => Vec::new(),
        Combine::Subtract if !positives.is_empty() => positives.iter().chain(negatives).collect(),
        _ => positives.iter().collect(),
    };
    if images.len() < 2 {
        return weighted_average(models, positives, fit, cache);
    }
    let scaled = images
        .iter()
        .map(|(features, weight)| features * *weight)
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(combine.apply(&scaled)?)
}

/// The weighted average of one side's image features; the "empty" features when
/// the side has no image.
fn weighted_average(
    models: &ImagePromptModels,
    side: &[Weighted],
    fit: FitMode,
    cache: &mut EmbeddingCache,
) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    let mut total_weight = 0.0;
    for (features, weight) in side {
        let weighted = (features * *weight)?;
        sum = Some(match sum {
            Some(sum) => (sum + weighted)?,
            None => weighted,
        });
        total_weight += weight;
    }
    match sum {
        Some(sum) => Ok((sum / total_weight)?),
        None => empty_features(models, fit, cache),
    }
}

/// Runs the image encoder for the features the adapter consumes.
pub fn encode_pixels(models: &ImagePromptModels, pixel_values: &Tensor) -> Result<Tensor> {
    Ok(match models.adapter.kind().image_feature() {
        ImageFeature::Embeds => models.encoder.image_embeds(pixel_values)?,
        ImageFeature::PenultimateHidden => {
            models.encoder.penultimate_hidden_states(pixel_values)?
        }
    })
}

/// What a side without images gets: zeros for `image_embeds` adapters, the
/// encoder's output on all-zero (normalised) pixels for the others.
fn empty_features(
    models: &ImagePromptModels,
    fit: FitMode,
    cache: &mut EmbeddingCache,
) -> Result<Tensor> {
    let key = CacheKey {
        models_id: models.id.clone(),
        content: None,
        fit,
    };
    cache.entries.get_or_try_insert_with(key, || {
        let (device, dtype) = (&models.device, models.dtype);
        Ok(match models.adapter.kind().image_feature() {
            ImageFeature::Embeds => {
                Tensor::zeros((1, models.encoder.config().projection_dim), dtype, device)?
            }
            ImageFeature::PenultimateHidden => {
                let size = models.encoder.config().image_size;
                let zeros = Tensor::zeros((1, 3, size, size), dtype, device)?;
                models.encoder.penultimate_hidden_states(&zeros)?
            }
        })
    })
}
