//! The image slots of a run with masks: each image of a masked side attends on its
//! own tokens (a slot), with where it acts; a side without masks is one slot that acts
//! everywhere.

use candle_core::Tensor;

use super::models::{ImagePromptModels, Models};
use crate::models::unet::{Coverage, CrossContext, ImageTokens, Regions};
use crate::{MinusError, Result};

/// Where each image slot acts, `[uncond, cond]`, the slots being the batch axis of
/// `Conditioning::ip_tokens`.
pub type MaskSlots = Vec<[Coverage; 2]>;

/// One CFG half's image features: one set that acts everywhere, or one per image slot
/// with where it acts (when masks split the side).
pub(super) enum HalfFeatures {
    Whole(Tensor),
    Slots(Vec<(Tensor, Coverage)>),
}

/// Projects both halves' features to image tokens `(uncond, cond)`; with slots, each
/// half is padded to the same number of slots (a padding slot acts nowhere).
pub(super) fn image_tokens(
    image: &ImagePromptModels,
    (uncond, cond): (HalfFeatures, HalfFeatures),
) -> Result<((Tensor, Tensor), Option<MaskSlots>)> {
    if let (HalfFeatures::Whole(uncond), HalfFeatures::Whole(cond)) = (&uncond, &cond) {
        let project = |features: &Tensor| image.adapter.project(features);
        return Ok(((project(uncond)?, project(cond)?), None));
    }
    let [uncond, cond] = [uncond, cond].map(|half| match half {
        HalfFeatures::Whole(features) => {
            let everywhere = Coverage {
                mask: None,
                weight: 1.0,
            };
            vec![(features, everywhere)]
        }
        HalfFeatures::Slots(slots) => slots,
    });
    let count = uncond.len().max(cond.len());
    let (uncond_tokens, uncond_coverage) = stacked_slots(image, uncond, count)?;
    let (cond_tokens, cond_coverage) = stacked_slots(image, cond, count)?;
    let slots = uncond_coverage
        .into_iter()
        .zip(cond_coverage)
        .map(|(uncond, cond)| [uncond, cond])
        .collect();
    Ok(((uncond_tokens, cond_tokens), Some(slots)))
}

/// One half's slots projected and stacked to `[count, T, dim]`, padded with slots that
/// act nowhere, and their coverage.
fn stacked_slots(
    image: &ImagePromptModels,
    slots: Vec<(Tensor, Coverage)>,
    count: usize,
) -> Result<(Tensor, Vec<Coverage>)> {
    let mut tokens = Vec::with_capacity(count);
    let mut coverage = Vec::with_capacity(count);
    for (features, covered) in slots {
        tokens.push(image.adapter.project(&features)?);
        coverage.push(covered);
    }
    let padding = match tokens.first() {
        Some(first) => first.zeros_like()?,
        None => {
            return Err(MinusError::InvalidRequest(
                "an image half without images".into(),
            ));
        }
    };
    tokens.resize(count, padding);
    coverage.resize(count, Coverage::NOWHERE);
    Ok((Tensor::cat(&tokens, 0)?, coverage))
}

/// Repeats a `[1, ...]` tensor `n` times along the batch axis.
pub(super) fn repeat_batch(t: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    let mut reps = vec![1; t.rank()];
    reps[0] = n;
    t.repeat(reps.as_slice())
}

/// What the UNet's cross-attention layers attend to in a run of `n` images per half:
/// `text` (`[2n, 77, dim]`) and both halves' image tokens, slot after slot (each slot
/// `n` unconditioned rows, then `n` conditioned ones) and in `slots` when masks split
/// them.
pub(super) fn cross_context<'a>(
    models: &'a Models,
    ip_tokens: Option<&(Tensor, Tensor)>,
    slots: Option<&[[Coverage; 2]]>,
    text: Tensor,
    n: usize,
) -> Result<CrossContext<'a>> {
    let image = match (ip_tokens, &models.image) {
        (Some((uncond, cond)), Some(image)) => {
            let count = uncond.dim(0)?;
            if count != slots.map_or(1, <[_]>::len) || cond.dim(0)? != count {
                return Err(MinusError::UnexpectedShape(format!(
                    "{count} slots of image tokens for {} masked slots",
                    slots.map_or(0, <[_]>::len)
                )));
            }
            let mut rows = Vec::with_capacity(2 * count);
            for slot in 0..count {
                rows.push(repeat_batch(&uncond.narrow(0, slot, 1)?, n)?);
                rows.push(repeat_batch(&cond.narrow(0, slot, 1)?, n)?);
            }
            Some(ImageTokens {
                tokens: Tensor::cat(&rows, 0)?,
                layers: image.adapter.attention_weights(),
            })
        }
        _ => None,
    };
    let context = CrossContext::new(text, image);
    Ok(match slots {
        Some(slots) => context.with_regions(Regions::new(slots.to_vec(), n)),
        None => context,
    })
}
