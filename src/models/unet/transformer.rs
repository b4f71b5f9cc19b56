//! The UNet's spatial transformer (`Transformer2DModel`) with IP-Adapter's
//! decoupled image cross-attention in every `attn2`.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::super::conv::Conv2d;
use super::super::cpu;
use super::super::group_norm::GroupNorm;
use super::super::layers::{attention, chunk2_last};
use super::super::linear::{Linear, linear, linear_no_bias};
use super::super::resnet::conv1x1;
use super::super::timing::{LayerKind, timed};
use super::context::CrossContext;
use super::ip_scaling::{IpScales, scaled_image_attention};
use super::regions::add_regional_attention;

/// What every `attn2` of one UNet call gets: the run's context, and this step's
/// per-layer, per-sample image scales (`None`: the image tokens sit this step out).
#[derive(Clone, Copy)]
pub struct CrossInputs<'a> {
    pub context: &'a CrossContext<'a>,
    pub ip_scale: Option<&'a IpScales>,
    /// The step's batch. A feature map of half as many images holds one copy of a
    /// batch whose two halves are equal (see `UNet::forward`); the first
    /// cross-attention, where the halves' contexts part, doubles it.
    pub batch: usize,
}

impl CrossInputs<'_> {
    /// `xs` with the step's whole batch: as it is, or doubled where it is one copy
    /// of the batch's two equal halves.
    pub fn whole_batch(&self, xs: Tensor) -> candle_core::Result<Tensor> {
        if xs.dim(0)? == self.batch {
            Ok(xs)
        } else {
            Tensor::cat(&[&xs, &xs], 0)
        }
    }
}

/// diffusers `Attention` as the UNet uses it: no q/k/v bias, `to_out.0` with bias.
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl CrossAttention {
    fn load(
        vb: VarBuilder,
        channels: usize,
        context_dim: usize,
        heads: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            to_q: linear_no_bias(channels, channels, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, channels, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, channels, vb.pp("to_v"))?,
            to_out: linear(channels, channels, vb.pp("to_out.0"))?,
            heads,
        })
    }

    /// Self-attention.
    fn forward_self(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(xs)?;
        let v = self.to_v.forward(xs)?;
        self.to_out
            .forward(&attention(&q, &k, &v, self.heads, None)?)
    }

    /// Attention to the text and, where `ip_scale` is given, to the image tokens, as
    /// IP-Adapter layer `layer` (slot by slot, each times its mask, when the context
    /// has regions).
    fn forward_cross(
        &self,
        xs: &Tensor,
        context: &CrossContext,
        layer: usize,
        ip_scale: Option<&IpScales>,
    ) -> candle_core::Result<Tensor> {
        let q = self.to_q.forward(xs)?;
        let keys = context.layer_keys(layer, &self.to_k, &self.to_v)?;
        let (k, v) = &keys.text;
        let mut hidden = attention(&q, k, v, self.heads, None)?;
        if let (Some(scales), Some((k_ip, v_ip))) = (ip_scale, &keys.image) {
            let scale = scales.layer(layer)?;
            hidden = match context.regions() {
                Some(regions) => add_regional_attention(
                    hidden,
                    &q,
                    (k_ip, v_ip),
                    self.heads,
                    (scale, scales.scaling),
                    regions,
                )?,
                None => {
                    let image = scaled_image_attention(
                        &q,
                        (k_ip, v_ip),
                        self.heads,
                        scale,
                        scales.scaling,
                    )?;
                    (hidden + image)?
                }
            };
        }
        self.to_out.forward(&hidden)
    }
}

/// Projections of more values than this (64 MiB of f32) the CPU makes a chunk of
/// token rows at a time. Whole, each was a fresh block of pages from the system,
/// written out to memory and read back for the gate: a 512² step's 64×64 layers
/// (84 MB projections) took 180 ms each, in chunks 130 ms. At 32×32 (42 MB) the
/// chunks cost 5% more than the whole.
const FEED_FORWARD_WHOLE_ELEMENTS: usize = 1 << 24;
/// About how many values of the projection a chunk holds (16 MiB).
const FEED_FORWARD_CHUNK_ELEMENTS: usize = 1 << 22;

/// Token rows per chunk of a projection `width` values wide over `rows` rows: the
/// rows in equal chunks (multiples of 16, which the GEMM's tiles take whole).
fn feed_forward_chunk_rows(rows: usize, width: usize) -> usize {
    if rows * width <= FEED_FORWARD_WHOLE_ELEMENTS {
        return rows;
    }
    let chunks = (rows * width).div_ceil(FEED_FORWARD_CHUNK_ELEMENTS);
    rows.div_ceil(chunks).next_multiple_of(16)
}

/// GEGLU feed-forward: `net.0.proj` to twice the inner width, gate with exact GELU, `net.2`.
struct GegluFeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl GegluFeedForward {
    fn load(vb: VarBuilder, channels: usize) -> candle_core::Result<Self> {
        let inner = 4 * channels;
        Ok(Self {
            proj_in: linear(channels, 2 * inner, vb.pp("net.0.proj"))?,
            proj_out: linear(inner, channels, vb.pp("net.2"))?,
        })
    }

    /// `xs`: `[..., channels]`; on the CPU a chunk of rows at a time (every row's
    /// result is independent of the others').
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let channels = xs.dim(candle_core::D::Minus1)?;
        let rows = xs.elem_count() / channels.max(1);
        let chunk_rows = feed_forward_chunk_rows(rows, self.proj_in.weight().dim(0)?);
        if !cpu::applies_to(xs) || rows <= chunk_rows {
            return self.forward_whole(xs);
        }
        let flat = xs.reshape((rows, channels))?;
        let chunks = (0..rows)
            .step_by(chunk_rows)
            .map(|start| {
                self.forward_whole(&flat.narrow(0, start, chunk_rows.min(rows - start))?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&chunks, 0)?.reshape(xs.shape())
    }

    fn forward_whole(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let projected = self.proj_in.forward(xs)?;
        let gated = timed(LayerKind::Geglu, projected.device(), || {
            if cpu::applies_to(&projected) {
                return projected.contiguous()?.apply_op1_no_bwd(&cpu::CpuGeglu);
            }
            let (hidden, gate) = chunk2_last(&projected)?;
            hidden * gate.gelu_erf()?
        })?;
        self.proj_out.forward(&gated)
    }
}

struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: CrossAttention,
    norm2: LayerNorm,
    attn2: CrossAttention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
}

impl BasicTransformerBlock {
    fn load(
        vb: VarBuilder,
        channels: usize,
        context_dim: usize,
        heads: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: candle_nn::layer_norm(channels, 1e-5, vb.pp("norm1"))?,
            attn1: CrossAttention::load(vb.pp("attn1"), channels, channels, heads)?,
            norm2: candle_nn::layer_norm(channels, 1e-5, vb.pp("norm2"))?,
            attn2: CrossAttention::load(vb.pp("attn2"), channels, context_dim, heads)?,
            norm3: candle_nn::layer_norm(channels, 1e-5, vb.pp("norm3"))?,
            ff: GegluFeedForward::load(vb.pp("ff"), channels)?,
        })
    }

    /// `xs` may be one copy of the batch's two equal halves: the self-attention
    /// runs on it, the cross-attention on the whole batch.
    fn forward(
        &self,
        xs: &Tensor,
        cross: &CrossInputs,
        layer: usize,
    ) -> candle_core::Result<Tensor> {
        let xs = (self.attn1.forward_self(&self.norm1.forward(xs)?)? + xs)?;
        let xs = cross.whole_batch(xs)?;
        let normed = self.norm2.forward(&xs)?;
        let attended = self
            .attn2
            .forward_cross(&normed, cross.context, layer, cross.ip_scale)?;
        let xs = (attended + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// How the transformer maps between the image and the token sequence.
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// Sizes of one spatial transformer.
#[derive(Debug, Clone, Copy)]
pub struct TransformerConfig {
    pub channels: usize,
    pub context_dim: usize,
    pub heads: usize,
    pub groups: usize,
    pub depth: usize,
    pub linear_projection: bool,
}

/// `Transformer2DModel`: GroupNorm → proj_in → transformer blocks → proj_out, plus the input.
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
    /// Index of this transformer's first `attn2` among the UNet's (IP-Adapter layer order).
    first_ip_layer: usize,
}

impl Transformer2D {
    /// Loads a transformer whose first `attn2` has IP-Adapter layer index `first_ip_layer`.
    pub fn load(
        vb: VarBuilder,
        config: TransformerConfig,
        first_ip_layer: usize,
    ) -> candle_core::Result<Self> {
        let c = config.channels;
        let projection = |name: &str| -> candle_core::Result<Projection> {
            Ok(if config.linear_projection {
                Projection::Linear(linear(c, c, vb.pp(name))?)
            } else {
                Projection::Conv(conv1x1(c, c, vb.pp(name))?)
            })
        };
        let blocks = (0..config.depth)
            .map(|i| {
                BasicTransformerBlock::load(
                    vb.pp(format!("transformer_blocks.{i}")),
                    c,
                    config.context_dim,
                    config.heads,
                )
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            norm: GroupNorm::load(vb.pp("norm"), config.groups, c, 1e-6)?,
            proj_in: projection("proj_in")?,
            blocks,
            proj_out: projection("proj_out")?,
            first_ip_layer,
        })
    }

    /// Number of `attn2` layers (one per transformer block).
    pub fn cross_attention_layers(&self) -> usize {
        self.blocks.len()
    }

    /// `xs`: `[batch, channels, h, w]`, or one copy of the batch's two equal halves
    /// (then the output is the whole batch).
    pub fn forward(&self, xs: &Tensor, cross: &CrossInputs) -> candle_core::Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let normed = self.norm.forward(xs)?;
        let to_tokens = |t: Tensor| -> candle_core::Result<Tensor> {
            t.permute((0, 2, 3, 1))?
                .reshape((batch, height * width, channels))
        };
        let mut hidden = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(&normed)?)?,
            Projection::Linear(linear) => linear.forward(&to_tokens(normed)?)?,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            hidden = block.forward(&hidden, cross, self.first_ip_layer + i)?;
        }
        let to_image = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((t.dim(0)?, height, width, channels))?
                .permute((0, 3, 1, 2))?
                .contiguous()
        };
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(hidden)?)?,
            Projection::Linear(linear) => to_image(linear.forward(&hidden)?)?,
        };
        out + cross.whole_batch(xs.clone())?
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use super::{FEED_FORWARD_WHOLE_ELEMENTS, GegluFeedForward, feed_forward_chunk_rows};
    use crate::models::cpu::test_support::seeded_randn;

    #[test]
    fn the_feed_forward_in_chunks_matches_it_whole() -> candle_core::Result<()> {
        let channels = 64;
        let inner = 4 * channels;
        let tensors = HashMap::from([
            (
                "net.0.proj.weight".into(),
                seeded_randn(1, 0.1, &[2 * inner, channels])?,
            ),
            (
                "net.0.proj.bias".into(),
                seeded_randn(2, 0.1, &[2 * inner])?,
            ),
            (
                "net.2.weight".into(),
                seeded_randn(3, 0.05, &[channels, inner])?,
            ),
            ("net.2.bias".into(), seeded_randn(4, 0.1, &[channels])?),
        ]);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let feed_forward = GegluFeedForward::load(vb, channels)?;
        // Two images, just too many rows to project whole: chunks cut across the
        // images, and the last is shorter.
        let tokens = FEED_FORWARD_WHOLE_ELEMENTS / (2 * inner) / 2 + 8;
        let chunk_rows = feed_forward_chunk_rows(2 * tokens, 2 * inner);
        assert!(
            chunk_rows < tokens && !(2 * tokens).is_multiple_of(chunk_rows),
            "{chunk_rows}"
        );
        let xs = seeded_randn(5, 1.0, &[2, tokens, channels])?;
        let chunked = feed_forward.forward(&xs)?;
        let whole = feed_forward.forward_whole(&xs)?;
        assert_eq!(chunked.dims(), xs.dims());
        let difference = (chunked - whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference <= 1e-6, "{difference}");
        Ok(())
    }
}
