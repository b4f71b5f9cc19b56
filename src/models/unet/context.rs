//! What the UNet's cross-attention layers attend to during one run.

use std::cell::RefCell;

use candle_core::{Module, Tensor};

use super::super::ip_adapter::IpAttentionWeights;
use super::super::linear::Linear;
use super::regions::Regions;
use super::text_time::TextTime;

/// Image tokens and the adapter's per-layer key/value projections for them.
pub struct ImageTokens<'a> {
    /// Image tokens `[batch, tokens, cross_attention_dim]`, batch as the UNet input.
    pub tokens: Tensor,
    /// The adapter's per-layer projections, in `attn2` order.
    pub layers: &'a [IpAttentionWeights],
}

/// Keys and values of one `attn2` layer for the text, and for the image tokens.
#[derive(Clone)]
pub(super) struct LayerKeys {
    pub text: (Tensor, Tensor),
    pub image: Option<(Tensor, Tensor)>,
}

/// The conditioning of one run: text embeddings `[batch, 77, dim]`, optionally image
/// tokens, and for SDXL the pooled text embedding and size ids. None of them changes from step to step, so neither do their keys and
/// values in each `attn2` layer: the first step computes them, later steps reuse them.
pub struct CrossContext<'a> {
    text: Tensor,
    image: Option<ImageTokens<'a>>,
    /// With masks: the image slots and where each acts (`None`: one slot, everywhere).
    regions: Option<Regions>,
    /// SDXL's added conditioning.
    text_time: Option<TextTime>,
    /// Per `attn2` layer (IP-Adapter order), once computed.
    keys: RefCell<Vec<Option<LayerKeys>>>,
}

impl<'a> CrossContext<'a> {
    /// The context of a run with these text embeddings and image tokens.
    pub fn new(text: Tensor, image: Option<ImageTokens<'a>>) -> Self {
        Self {
            text,
            image,
            regions: None,
            text_time: None,
            keys: RefCell::new(Vec::new()),
        }
    }

    /// The same context with its image tokens in `regions`' slots, each attended on
    /// its own and multiplied by where it acts.
    pub fn with_regions(self, regions: Regions) -> Self {
        Self {
            regions: Some(regions),
            ..self
        }
    }

    /// The same context with SDXL's added conditioning.
    pub fn with_text_time(self, text_time: TextTime) -> Self {
        Self {
            text_time: Some(text_time),
            ..self
        }
    }

    /// SDXL's added conditioning, when the run has it.
    pub(super) fn text_time(&self) -> Option<&TextTime> {
        self.text_time.as_ref()
    }

    /// The image slots, when masks split the image tokens.
    pub(super) fn regions(&self) -> Option<&Regions> {
        self.regions.as_ref()
    }

    /// Layer `layer`'s keys and values, from `to_k`/`to_v` (text) and the adapter's
    /// projections (image tokens) the first time, from the memo afterwards.
    pub(super) fn layer_keys(
        &self,
        layer: usize,
        to_k: &Linear,
        to_v: &Linear,
    ) -> candle_core::Result<LayerKeys> {
        if let Some(Some(keys)) = self.keys.borrow().get(layer) {
            return Ok(keys.clone());
        }
        let image = match &self.image {
            Some(image) => {
                let weights = image.layers.get(layer).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "the IP-Adapter has {} attention layers, the UNet needs more",
                        image.layers.len()
                    ))
                })?;
                Some((
                    weights.to_k.forward(&image.tokens)?,
                    weights.to_v.forward(&image.tokens)?,
                ))
            }
            None => None,
        };
        let keys = LayerKeys {
            text: (to_k.forward(&self.text)?, to_v.forward(&self.text)?),
            image,
        };
        let mut memo = self.keys.borrow_mut();
        if memo.len() <= layer {
            memo.resize(layer + 1, None);
        }
        memo[layer] = Some(keys.clone());
        Ok(keys)
    }
}
