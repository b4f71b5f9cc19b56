//! The pre-LayerNorm transformer encoder shared by CLIP's text and vision towers.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::layers::{Activation, attention};
use super::linear::{Linear, linear};

/// Sizes of one CLIP transformer tower (read from a transformers `config.json`).
#[derive(Debug, Clone)]
pub struct ClipTransformerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
}

struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl SelfAttention {
    fn load(vb: VarBuilder, config: &ClipTransformerConfig) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            q_proj: linear(h, h, vb.pp("q_proj"))?,
            k_proj: linear(h, h, vb.pp("k_proj"))?,
            v_proj: linear(h, h, vb.pp("v_proj"))?,
            out_proj: linear(h, h, vb.pp("out_proj"))?,
            heads: config.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let q = self.q_proj.forward(xs)?;
        let k = self.k_proj.forward(xs)?;
        let v = self.v_proj.forward(xs)?;
        self.out_proj
            .forward(&attention(&q, &k, &v, self.heads, mask)?)
    }
}

struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    activation: Activation,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, config: &ClipTransformerConfig) -> candle_core::Result<Self> {
        let (h, m, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(Self {
            self_attn: SelfAttention::load(vb.pp("self_attn"), config)?,
            layer_norm1: candle_nn::layer_norm(h, eps, vb.pp("layer_norm1"))?,
            fc1: linear(h, m, vb.pp("mlp.fc1"))?,
            fc2: linear(m, h, vb.pp("mlp.fc2"))?,
            layer_norm2: candle_nn::layer_norm(h, eps, vb.pp("layer_norm2"))?,
            activation: config.activation,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, mask)?;
        let xs = (xs + attn)?;
        let mlp = self.fc2.forward(
            &self
                .activation
                .forward(&self.fc1.forward(&self.layer_norm2.forward(&xs)?)?)?,
        )?;
        xs + mlp
    }
}

/// The stack of encoder layers (`encoder.layers.{i}`).
pub struct ClipEncoder {
    layers: Vec<EncoderLayer>,
}

impl ClipEncoder {
    /// Loads `config.num_hidden_layers` layers from `vb` (which points at `encoder`).
    pub fn load(vb: VarBuilder, config: &ClipTransformerConfig) -> candle_core::Result<Self> {
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::load(vb.pp(format!("layers.{i}")), config))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { layers })
    }

    /// Runs the first `num_layers` layers (all of them for the final output,
    /// one fewer for `hidden_states[-2]`).
    pub fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        num_layers: usize,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for layer in self.layers.iter().take(num_layers) {
            xs = layer.forward(&xs, mask)?;
        }
        Ok(xs)
    }

    /// Runs layers `first..end` only: from the output of layer `first - 1` (or the
    /// embeddings) to that of layer `end - 1`.
    pub fn forward_layers(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        layers: std::ops::Range<usize>,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for layer in self.layers.get(layers).unwrap_or_default() {
            xs = layer.forward(&xs, mask)?;
        }
        Ok(xs)
    }

    /// Number of layers in the stack.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
