//! IP-Adapter: the projection of CLIP image features to image tokens, and the
//! per-layer key/value projections of the decoupled cross-attention.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::layers::{attention, chunk2_last};
use super::linear::{Linear, linear, linear_no_bias};
use crate::weights::TensorFile;
use crate::{MinusError, Result};

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

/// A loaded IP-Adapter: the image projection plus the 16 per-layer projections.
pub struct IpAdapter {
    kind: AdapterKind,
    projection: Projection,
    layers: Vec<IpAttentionWeights>,
    image_feature_dim: usize,
    cross_attention_dim: usize,
}

impl IpAdapter {
    /// Recognises the adapter kind from the tensors and loads it.
    pub fn load(file: &TensorFile, dtype: DType, device: &Device) -> Result<Self> {
        let kind = detect_kind(file)?;
        let vb = file.var_builder(dtype, device);
        let (projection, image_feature_dim, cross_attention_dim) =
            load_projection(file, kind, vb.pp("image_proj"))?;
        let layers = load_attention_weights(file, &vb, cross_attention_dim)?;
        Ok(Self {
            kind,
            projection,
            layers,
            image_feature_dim,
            cross_attention_dim,
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

fn detect_kind(file: &TensorFile) -> Result<AdapterKind> {
    if file.contains("image_proj.latents") {
        Ok(AdapterKind::Resampler)
    } else if file.contains("image_proj.proj.0.weight") {
        Ok(AdapterKind::Mlp)
    } else if file.contains("image_proj.proj.weight") {
        Ok(AdapterKind::Linear)
    } else {
        Err(MinusError::BadWeights {
            path: file.path().to_path_buf(),
            message: "not an IP-Adapter file (no `image_proj.*` tensors)".to_string(),
        })
    }
}

/// Builds the projection with sizes read from tensor shapes; returns it with
/// (image feature dim, cross-attention dim).
fn load_projection(
    file: &TensorFile,
    kind: AdapterKind,
    vb: VarBuilder,
) -> Result<(Projection, usize, usize)> {
    let err = |e| file.load_error(e);
    match kind {
        AdapterKind::Linear => {
            let out = file.dim("image_proj.proj.weight", 0)?;
            let input = file.dim("image_proj.proj.weight", 1)?;
            let cross = file.dim("image_proj.norm.weight", 0)?;
            let projection = LinearProjection {
                proj: linear(input, out, vb.pp("proj")).map_err(err)?,
                norm: candle_nn::layer_norm(cross, 1e-5, vb.pp("norm")).map_err(err)?,
                tokens: out / cross.max(1),
                dim: cross,
            };
            Ok((Projection::Linear(projection), input, cross))
        }
        AdapterKind::Resampler => {
            let latent_dim = file.dim("image_proj.latents", 2)?;
            let input = file.dim("image_proj.proj_in.weight", 1)?;
            let cross = file.dim("image_proj.proj_out.weight", 0)?;
            let depth = (0..)
                .take_while(|i| file.contains(&format!("image_proj.layers.{i}.0.to_q.weight")))
                .count();
            let mut layers = Vec::with_capacity(depth);
            for i in 0..depth {
                let inner = file.dim(&format!("image_proj.layers.{i}.0.to_q.weight"), 0)?;
                let hidden = file.dim(&format!("image_proj.layers.{i}.1.1.weight"), 0)?;
                let layer = vb.pp(format!("layers.{i}"));
                layers.push((
                    PerceiverAttention::load(layer.pp("0"), latent_dim, inner).map_err(err)?,
                    FeedForward::load(layer.pp("1"), latent_dim, hidden).map_err(err)?,
                ));
            }
            let num_queries = file.dim("image_proj.latents", 1)?;
            let resampler = Resampler {
                latents: vb
                    .get((1, num_queries, latent_dim), "latents")
                    .map_err(err)?,
                proj_in: linear(input, latent_dim, vb.pp("proj_in")).map_err(err)?,
                layers,
                proj_out: linear(latent_dim, cross, vb.pp("proj_out")).map_err(err)?,
                norm_out: candle_nn::layer_norm(cross, 1e-5, vb.pp("norm_out")).map_err(err)?,
            };
            Ok((Projection::Resampler(resampler), input, cross))
        }
        AdapterKind::Mlp => {
            let input = file.dim("image_proj.proj.0.weight", 1)?;
            let hidden = file.dim("image_proj.proj.0.weight", 0)?;
            let cross = file.dim("image_proj.proj.2.weight", 0)?;
            let mlp = MlpProjection {
                fc1: linear(input, hidden, vb.pp("proj.0")).map_err(err)?,
                fc2: linear(hidden, cross, vb.pp("proj.2")).map_err(err)?,
                norm: candle_nn::layer_norm(cross, 1e-5, vb.pp("proj.3")).map_err(err)?,
            };
            Ok((Projection::Mlp(mlp), input, cross))
        }
    }
}

/// Number of `attn2` layers in SD 1.5's UNet, each with its own image projections.
pub const SD15_CROSS_ATTENTION_LAYERS: usize = 16;

fn load_attention_weights(
    file: &TensorFile,
    vb: &VarBuilder,
    cross_attention_dim: usize,
) -> Result<Vec<IpAttentionWeights>> {
    (0..SD15_CROSS_ATTENTION_LAYERS)
        .map(|layer| {
            let id = 2 * layer + 1;
            let key = format!("ip_adapter.{id}.to_k_ip.weight");
            let hidden = file.dim(&key, 0)?;
            let input = file.dim(&key, 1)?;
            if input != cross_attention_dim {
                return Err(MinusError::BadWeights {
                    path: file.path().to_path_buf(),
                    message: format!(
                        "`{key}` takes {input}-dim tokens but the projection makes {cross_attention_dim}-dim ones"
                    ),
                });
            }
            let vb = vb.pp(format!("ip_adapter.{id}"));
            let load = |name: &str| {
                linear_no_bias(input, hidden, vb.pp(name)).map_err(|e| file.load_error(e))
            };
            Ok(IpAttentionWeights {
                to_k: load("to_k_ip")?,
                to_v: load("to_v_ip")?,
            })
        })
        .collect()
}
