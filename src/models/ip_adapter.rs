//! IP-Adapter: the projection of CLIP image features to image tokens, and the
//! per-layer key/value projections of the decoupled cross-attention.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::layers::{attention, chunk2_last};
use super::linear::{Linear, linear, linear_no_bias};

/// Which image features an adapter consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFeature {
    /// The projected class token (`image_embeds`), base and light adapters.
    Embeds,
    /// All tokens of the second-to-last encoder layer, Plus / Plus Face / Full Face.
    PenultimateHidden,
}

/// The adapter family, recognised from the tensors in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// `image_proj.proj` + `norm`: base and light adapters.
    Linear,
    /// The Perceiver resampler: Plus and Plus Face.
    Resampler,
    /// `proj.0`/`proj.2`/`proj.3`: Full Face.
    Mlp,
}

impl AdapterKind {
    /// The image features this kind of adapter projects.
    pub fn image_feature(self) -> ImageFeature {
        match self {
            Self::Linear => ImageFeature::Embeds,
            Self::Resampler | Self::Mlp => ImageFeature::PenultimateHidden,
        }
    }
}

/// Base/light projection: one linear layer to `tokens × dim`, then LayerNorm.
struct LinearProjection {
    proj: Linear,
    norm: LayerNorm,
    tokens: usize,
    dim: usize,
}

struct PerceiverAttention {
    norm1: LayerNorm,
    norm2: LayerNorm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    heads: usize,
}

/// Head size fixed by the tencent-ailab Resampler.
const RESAMPLER_HEAD_DIM: usize = 64;

impl PerceiverAttention {
    fn load(vb: VarBuilder, dim: usize, inner: usize) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            to_q: linear_no_bias(dim, inner, vb.pp("to_q"))?,
            to_kv: linear_no_bias(dim, 2 * inner, vb.pp("to_kv"))?,
            to_out: linear_no_bias(inner, dim, vb.pp("to_out"))?,
            heads: inner / RESAMPLER_HEAD_DIM,
        })
    }

    fn forward(&self, features: &Tensor, latents: &Tensor) -> candle_core::Result<Tensor> {
        let features = self.norm1.forward(features)?;
        let latents = self.norm2.forward(latents)?;
        let q = self.to_q.forward(&latents)?;
        let kv_input = Tensor::cat(&[&features, &latents], 1)?;
        let (k, v) = chunk2_last(&self.to_kv.forward(&kv_input)?)?;
        self.to_out.forward(&attention(
            &q,
            &k.contiguous()?,
            &v.contiguous()?,
            self.heads,
            None,
        )?)
    }
}

struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn load(vb: VarBuilder, dim: usize, hidden: usize) -> candle_core::Result<Self> {
        Ok(Self {
            norm: candle_nn::layer_norm(dim, 1e-5, vb.pp("0"))?,
            up: linear_no_bias(dim, hidden, vb.pp("1"))?,
            down: linear_no_bias(hidden, dim, vb.pp("3"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.up.forward(&self.norm.forward(xs)?)?.gelu_erf()?;
        self.down.forward(&xs)
    }
}

/// Plus / Plus Face projection: the Perceiver resampler.
struct Resampler {
    latents: Tensor,
    proj_in: Linear,
    layers: Vec<(PerceiverAttention, FeedForward)>,
    proj_out: Linear,
    norm_out: LayerNorm,
}

impl Resampler {
    fn forward(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        let batch = features.dim(0)?;
        let features = self.proj_in.forward(features)?;
        let mut latents = self.latents.repeat((batch, 1, 1))?;
        for (attn, ff) in &self.layers {
            latents = (attn.forward(&features, &latents)? + &latents)?;
            latents = (ff.forward(&latents)? + &latents)?;
        }
        self.norm_out.forward(&self.proj_out.forward(&latents)?)
    }
}

/// Full Face projection: Linear → GELU → Linear → LayerNorm on every token.
struct MlpProjection {
    fc1: Linear,
    fc2: Linear,
    norm: LayerNorm,
}

enum Projection {
    Linear(LinearProjection),
    Resampler(Resampler),
    Mlp(MlpProjection),
}

/// The image key/value projections of one `attn2` layer.
pub struct IpAttentionWeights {
    /// `to_k_ip`: cross-attention dim → layer hidden size.
    pub to_k: Linear,
    /// `to_v_ip`: cross-attention dim → layer hidden size.
    pub to_v: Linear,
}

/// The sizes of one Perceiver layer of the resampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResamplerLayerConfig {
    /// Width of the attention (`to_q` outputs; heads of 64).
    pub inner_dim: usize,
    /// Width of the feed-forward's hidden layer.
    pub hidden_dim: usize,
}

/// The sizes of the image projection, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionConfig {
    /// Base/light: `tokens` image tokens from one linear layer.
    Linear { tokens: usize },
    /// Plus / Plus Face: `num_queries` latents of `latent_dim` through the Perceiver layers.
    Resampler {
        latent_dim: usize,
        num_queries: usize,
        layers: Vec<ResamplerLayerConfig>,
    },
    /// Full Face: a hidden layer of `hidden_dim`.
    Mlp { hidden_dim: usize },
}

/// An adapter's sizes; h94 files carry no config, so these are read off tensor shapes
/// (see `weights::shapes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAdapterConfig {
    pub projection: ProjectionConfig,
    /// Size of the image features the projection takes.
    pub image_feature_dim: usize,
    /// Size of the image tokens it makes (the UNet's cross-attention dim).
    pub cross_attention_dim: usize,
    /// Output width of each `attn2` layer's `to_k_ip`/`to_v_ip`, in the UNet's `attn2` order.
    pub layer_widths: Vec<usize>,
}

impl IpAdapterConfig {
    /// The adapter family these sizes describe.
    pub fn kind(&self) -> AdapterKind {
        match self.projection {
            ProjectionConfig::Linear { .. } => AdapterKind::Linear,
            ProjectionConfig::Resampler { .. } => AdapterKind::Resampler,
            ProjectionConfig::Mlp { .. } => AdapterKind::Mlp,
        }
    }
}

/// A loaded IP-Adapter: the image projection plus one pair of projections per `attn2`
/// layer (16 for SD 1.5, 70 for SDXL).
pub struct IpAdapter {
    kind: AdapterKind,
    projection: Projection,
    layers: Vec<IpAttentionWeights>,
    image_feature_dim: usize,
    cross_attention_dim: usize,
}

impl IpAdapter {
    /// Loads an adapter of `config`'s sizes; `vb` holds `image_proj.*` and `ip_adapter.*`.
    pub fn load(vb: VarBuilder, config: &IpAdapterConfig) -> candle_core::Result<Self> {
        let projection = load_projection(vb.pp("image_proj"), config)?;
        let layers = config
            .layer_widths
            .iter()
            .enumerate()
            .map(|(layer, &width)| {
                // The h94 files number the `attn2` layers 1, 3, 5, ...
                let vb = vb.pp(format!("ip_adapter.{}", 2 * layer + 1));
                Ok(IpAttentionWeights {
                    to_k: linear_no_bias(config.cross_attention_dim, width, vb.pp("to_k_ip"))?,
                    to_v: linear_no_bias(config.cross_attention_dim, width, vb.pp("to_v_ip"))?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            kind: config.kind(),
            projection,
            layers,
            image_feature_dim: config.image_feature_dim,
            cross_attention_dim: config.cross_attention_dim,
        })
    }

    /// The adapter family.
    pub fn kind(&self) -> AdapterKind {
        self.kind
    }

    /// Size of the image features the projection expects (projection dim or encoder hidden size).
    pub fn image_feature_dim(&self) -> usize {
        self.image_feature_dim
    }

    /// Size of the produced image tokens (the UNet's cross-attention dim).
    pub fn cross_attention_dim(&self) -> usize {
        self.cross_attention_dim
    }

    /// The per-layer image key/value projections, in the UNet's `attn2` order.
    pub fn attention_weights(&self) -> &[IpAttentionWeights] {
        &self.layers
    }

    /// Projects image features to image tokens `[batch, tokens, cross_attention_dim]`.
    pub fn project(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        match &self.projection {
            Projection::Linear(p) => {
                let batch = features.dim(0)?;
                let tokens = p
                    .proj
                    .forward(features)?
                    .reshape((batch, p.tokens, p.dim))?;
                p.norm.forward(&tokens)
            }
            Projection::Resampler(r) => r.forward(features),
            Projection::Mlp(m) => {
                let xs = m.fc1.forward(features)?.gelu_erf()?;
                m.norm.forward(&m.fc2.forward(&xs)?)
            }
        }
    }
}

fn load_projection(vb: VarBuilder, config: &IpAdapterConfig) -> candle_core::Result<Projection> {
    let (input, cross) = (config.image_feature_dim, config.cross_attention_dim);
    Ok(match &config.projection {
        &ProjectionConfig::Linear { tokens } => Projection::Linear(LinearProjection {
            proj: linear(input, tokens * cross, vb.pp("proj"))?,
            norm: candle_nn::layer_norm(cross, 1e-5, vb.pp("norm"))?,
            tokens,
            dim: cross,
        }),
        ProjectionConfig::Resampler {
            latent_dim,
            num_queries,
            layers,
        } => {
            let latent_dim = *latent_dim;
            let layers = layers
                .iter()
                .enumerate()
                .map(|(i, layer)| {
                    let vb = vb.pp(format!("layers.{i}"));
                    Ok((
                        PerceiverAttention::load(vb.pp("0"), latent_dim, layer.inner_dim)?,
                        FeedForward::load(vb.pp("1"), latent_dim, layer.hidden_dim)?,
                    ))
                })
                .collect::<candle_core::Result<_>>()?;
            Projection::Resampler(Resampler {
                latents: vb.get((1, *num_queries, latent_dim), "latents")?,
                proj_in: linear(input, latent_dim, vb.pp("proj_in"))?,
                layers,
                proj_out: linear(latent_dim, cross, vb.pp("proj_out"))?,
                norm_out: candle_nn::layer_norm(cross, 1e-5, vb.pp("norm_out"))?,
            })
        }
        &ProjectionConfig::Mlp { hidden_dim } => Projection::Mlp(MlpProjection {
            fc1: linear(input, hidden_dim, vb.pp("proj.0"))?,
            fc2: linear(hidden_dim, cross, vb.pp("proj.2"))?,
            norm: candle_nn::layer_norm(cross, 1e-5, vb.pp("proj.3"))?,
        }),
    })
}
