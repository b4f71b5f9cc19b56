//! How much the image tokens count in each `attn2` layer: a per-layer, per-sample
//! scale and the way it is applied (cubiq's "embeds scaling").

use super::super::layers::attention;
use crate::choices::named_choices;
use candle_core::Tensor;

named_choices! {
    /// Where the image scale `w` enters the image attention, as cubiq's
    /// ComfyUI_IPAdapter_plus defines it (`CrossAttentionPatch.py`, `ipadapter_attention`,
    /// the `embeds_scaling` branches). `C` is the layer's hidden size.
    #[derive(Default)]
    pub enum EmbedsScaling {
        /// `w · attn(q, k, v)`: IP-Adapter's own scale (what the reference does).
        #[default]
        VOnly = "v-only",
        /// `attn(q, w·k, w·v)`.
        KV = "k-v",
        /// `attn(q, w'·k, w'·v)` with `w' = w · C / 1280`.
        KVCPenalty = "k-v-c-penalty",
        /// `attn(q, w'·k, (v − mean(v)) + w'·mean(v))` with `w' = w · C / 1280`, the mean
        /// taken over each sample's own image tokens.
        KMeanVCPenalty = "k-mean-v-c-penalty",
    }
}

impl EmbedsScaling {
    /// The label cubiq's nodes use.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::VOnly => "V only",
            Self::KV => "K+V",
            Self::KVCPenalty => "K+V w/ C penalty",
            Self::KMeanVCPenalty => "K+mean(V) w/ C penalty",
        }
    }
}

/// One step's image scales: `[batch, 1, 1]` per `attn2` layer in IP-Adapter order
/// (so a weight type can differ by layer and CFG half), and how they apply.
pub struct IpScales {
    pub layers: Vec<Tensor>,
    pub scaling: EmbedsScaling,
}

impl IpScales {
    /// The same scale in every layer, applied as IP-Adapter does.
    pub fn uniform(scale: Tensor, layers: usize) -> Self {
        Self {
            layers: vec![scale; layers],
            scaling: EmbedsScaling::VOnly,
        }
    }

    /// Layer `layer`'s `[batch, 1, 1]` scale.
    pub(super) fn layer(&self, layer: usize) -> candle_core::Result<&Tensor> {
        self.layers.get(layer).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "image scales for {} attention layers, the UNet needs more",
                self.layers.len()
            ))
        })
    }
}

/// The scaled image attention of one `attn2` layer, to be added to the text attention.
pub(super) fn scaled_image_attention(
    q: &Tensor,
    (k, v): (&Tensor, &Tensor),
    heads: usize,
    scale: &Tensor,
    scaling: EmbedsScaling,
) -> candle_core::Result<Tensor> {
    if scaling == EmbedsScaling::VOnly {
        return attention(q, k, v, heads, None)?.broadcast_mul(scale);
    }
    let channels = k.dim(2)?;
    let scale = match scaling {
        EmbedsScaling::KVCPenalty | EmbedsScaling::KMeanVCPenalty => {
            scale.affine(channels as f64 / 1280.0, 0.0)?
        }
        _ => scale.clone(),
    };
    let k = k.broadcast_mul(&scale)?;
    let v = if scaling == EmbedsScaling::KMeanVCPenalty {
        let mean = v.mean_keepdim(1)?;
        (v.broadcast_sub(&mean)? + mean.broadcast_mul(&scale)?.broadcast_as(v.shape())?)?
    } else {
        v.broadcast_mul(&scale)?
    };
    // A half whose scale is 0 adds nothing: with K scaled to 0 the attention is a plain
    // mean of V, which `K+mean(V)` only cancels up to rounding.
    let on = scale.ne(0f32)?.to_dtype(q.dtype())?;
    attention(q, &k, &v, heads, None)?.broadcast_mul(&on)
}
