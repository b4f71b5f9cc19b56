//! CLIP's text tower (`CLIPTextModel`): token ids → last hidden state, or the
//! penultimate one and the pooled output SDXL uses.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use super::clip_transformer::{ClipEncoder, ClipTransformerConfig};
use super::config_check::{
    CheckedConfig, ConfigProblem, TransformerSizes, check_transformer, positive_at_most,
};
use super::layers::Activation;

/// The fields of a transformers `CLIPTextConfig` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_text_act")]
    pub hidden_act: String,
    /// transformers pools at the first `eos_token_id`, or at the largest id when it is 2
    /// (the value in older configs, SDXL's among them).
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    /// Width of `text_projection` (read only for SDXL's second encoder).
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn default_eos() -> u32 {
    super::tokenizer::EOS_TOKEN
}

fn default_eps() -> f64 {
    1e-5
}

fn default_text_act() -> String {
    "quick_gelu".to_string()
}

impl CheckedConfig for ClipTextConfig {
    fn check(&self) -> Result<(), ConfigProblem> {
        check_transformer(TransformerSizes {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
        })?;
        positive_at_most("vocab_size", self.vocab_size, 1 << 20)?;
        // Prompts are always padded to 77 tokens.
        if self.max_position_embeddings < 77 || self.max_position_embeddings > 4096 {
            return Err(ConfigProblem {
                field: "max_position_embeddings",
                message: format!("is {}, expected 77 to 4096", self.max_position_embeddings),
            });
        }
        Ok(())
    }
}

impl ClipTextConfig {
    fn transformer(&self) -> candle_core::Result<ClipTransformerConfig> {
        let activation = Activation::from_config_name(&self.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!("unsupported hidden_act `{}`", self.hidden_act))
        })?;
        Ok(ClipTransformerConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            activation,
        })
    }
}

/// The CLIP text encoder used by SD 1.5 (output: last hidden state after the final norm).
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Tensor,
    encoder: ClipEncoder,
    final_layer_norm: LayerNorm,
    num_layers: usize,
    eos_token_id: u32,
}

impl ClipTextModel {
    /// Loads the model; `vb` points at the level holding `embeddings`, `encoder`, `final_layer_norm`.
    pub fn load(vb: VarBuilder, config: &ClipTextConfig) -> candle_core::Result<Self> {
        let transformer = config.transformer()?;
        let h = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let token_embedding =
            candle_nn::embedding(config.vocab_size, h, embeddings.pp("token_embedding"))?;
        let position_embedding = embeddings.get(
            (config.max_position_embeddings, h),
            "position_embedding.weight",
        )?;
        Ok(Self {
            token_embedding,
            position_embedding,
            encoder: ClipEncoder::load(vb.pp("encoder"), &transformer)?,
            final_layer_norm: candle_nn::layer_norm(
                h,
                config.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            num_layers: config.num_hidden_layers,
            eos_token_id: config.eos_token_id,
        })
    }

    /// Encodes a batch of token ids `[batch, seq]` (u32) into `[batch, seq, hidden]`.
    pub fn forward(&self, token_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (xs, mask) = self.embed(token_ids)?;
        let xs = self.encoder.forward(&xs, Some(&mask), self.num_layers)?;
        self.final_layer_norm.forward(&xs)
    }

    /// `hidden_states[-2]`: the output of the last layer but one, without the final norm
    /// (what SDXL's pipelines condition on).
    pub fn penultimate(&self, token_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (xs, mask) = self.embed(token_ids)?;
        self.encoder
            .forward(&xs, Some(&mask), self.num_layers.saturating_sub(1))
    }

    /// `hidden_states[-2]` and the pooled output `[batch, hidden]`: the final (normed)
    /// hidden state at each sequence's end token, as transformers picks it.
    pub fn penultimate_and_pooled(&self, ids: &[u32]) -> candle_core::Result<(Tensor, Tensor)> {
        let token_ids = Tensor::new(ids, self.position_embedding.device())?.unsqueeze(0)?;
        let (xs, mask) = self.embed(&token_ids)?;
        let last = self.num_layers.saturating_sub(1);
        let penultimate = self.encoder.forward(&xs, Some(&mask), last)?;
        let xs = self
            .encoder
            .forward_layers(&penultimate, Some(&mask), last..self.num_layers)?;
        let normed = self.final_layer_norm.forward(&xs)?;
        let pooled = normed.narrow(1, self.pooled_position(ids), 1)?.squeeze(1)?;
        Ok((penultimate, pooled))
    }

    /// Where transformers' `CLIPTextTransformer` pools: the first largest id when
    /// `eos_token_id` is 2, else the first `eos_token_id` (position 0 without one, as
    /// transformers' argmax gives).
    fn pooled_position(&self, ids: &[u32]) -> usize {
        let found = if self.eos_token_id == 2 {
            let largest = ids.iter().copied().max();
            ids.iter().position(|&id| Some(id) == largest)
        } else {
            ids.iter().position(|&id| id == self.eos_token_id)
        };
        found.unwrap_or(0)
    }

    /// Token plus position embeddings, and the causal mask.
    fn embed(&self, token_ids: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let seq_len = token_ids.dim(1)?;
        let tokens = self.token_embedding.forward(token_ids)?;
        let positions = self.position_embedding.narrow(0, 0, seq_len)?;
        let xs = tokens.broadcast_add(&positions)?;
        let mask = causal_mask(seq_len, xs.dtype(), xs.device())?;
        Ok((xs, mask))
    }
}

/// `[seq, seq]` additive mask hiding later positions.
fn causal_mask(seq_len: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..seq_len)
        .flat_map(|i| (0..seq_len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq_len, seq_len), device)?.to_dtype(dtype)
}

/// Where a text encoder file keeps the tower: under `text_model.` (transformers' usual
/// layout, SDXL's second encoder) or at the root (files from recent transformers).
pub fn text_model_level(vb: VarBuilder) -> VarBuilder {
    if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
        vb.pp("text_model")
    } else {
        vb
    }
}
