//! CLIP's vision tower with projection (`CLIPVisionModelWithProjection`), the IP-Adapter image encoder.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder};
use serde::Deserialize;

use super::clip_transformer::{ClipEncoder, ClipTransformerConfig};
use super::config_check::{
    CheckedConfig, ConfigProblem, MAX_CHANNELS, TransformerSizes, check_transformer, divisible,
    positive_at_most,
};
use super::layers::Activation;
use super::linear::{Linear, linear_no_bias};

/// The fields of a transformers `CLIPVisionConfig` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub projection_dim: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_vision_act")]
    pub hidden_act: String,
}

fn default_channels() -> usize {
    3
}

fn default_eps() -> f64 {
    1e-5
}

fn default_vision_act() -> String {
    "gelu".to_string()
}

impl CheckedConfig for ClipVisionConfig {
    fn check(&self) -> Result<(), ConfigProblem> {
        check_transformer(TransformerSizes {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
        })?;
        positive_at_most("projection_dim", self.projection_dim, MAX_CHANNELS)?;
        positive_at_most("num_channels", self.num_channels, 4)?;
        positive_at_most("patch_size", self.patch_size, 64)?;
        positive_at_most("image_size", self.image_size, 1024)?;
        divisible("image_size", self.image_size, "patch_size", self.patch_size)
    }
}

/// The ViT image encoder.
pub struct ClipVisionModel {
    class_embedding: Tensor,
    patch_embedding: Conv2d,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: ClipEncoder,
    post_layernorm: LayerNorm,
    visual_projection: Linear,
    config: ClipVisionConfig,
}

impl ClipVisionModel {
    /// Loads the model; `vb` points at the level holding `vision_model` and `visual_projection`.
    pub fn load(vb: VarBuilder, config: &ClipVisionConfig) -> candle_core::Result<Self> {
        let activation = Activation::from_config_name(&config.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!("unsupported hidden_act `{}`", config.hidden_act))
        })?;
        let transformer = ClipTransformerConfig {
            hidden_size: config.hidden_size,
            intermediate_size: config.intermediate_size,
            num_hidden_layers: config.num_hidden_layers,
            num_attention_heads: config.num_attention_heads,
            layer_norm_eps: config.layer_norm_eps,
            activation,
        };
        let h = config.hidden_size;
        let vm = vb.pp("vision_model");
        let embeddings = vm.pp("embeddings");
        let num_positions = (config.image_size / config.patch_size).pow(2) + 1;
        let patch_embedding = candle_nn::conv2d_no_bias(
            config.num_channels,
            h,
            config.patch_size,
            Conv2dConfig {
                stride: config.patch_size,
                ..Default::default()
            },
            embeddings.pp("patch_embedding"),
        )?;
        Ok(Self {
            class_embedding: embeddings.get(h, "class_embedding")?,
            patch_embedding,
            position_embedding: embeddings.get((num_positions, h), "position_embedding.weight")?,
            pre_layrnorm: candle_nn::layer_norm(h, config.layer_norm_eps, vm.pp("pre_layrnorm"))?,
            encoder: ClipEncoder::load(vm.pp("encoder"), &transformer)?,
            post_layernorm: candle_nn::layer_norm(
                h,
                config.layer_norm_eps,
                vm.pp("post_layernorm"),
            )?,
            visual_projection: linear_no_bias(
                h,
                config.projection_dim,
                vb.pp("visual_projection"),
            )?,
            config: config.clone(),
        })
    }

    /// The sizes the model was loaded with.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Patch + class embeddings with positions, after `pre_layrnorm`: `[batch, tokens, hidden]`.
    fn embed(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let batch = pixel_values.dim(0)?;
        let patches = self
            .patch_embedding
            .forward(pixel_values)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let class = self
            .class_embedding
            .reshape((1, 1, self.config.hidden_size))?
            .repeat((batch, 1, 1))?;
        let xs = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        self.pre_layrnorm.forward(&xs)
    }

    /// `image_embeds`: projected, normalised class token, `[batch, projection_dim]`.
    pub fn image_embeds(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.embed(pixel_values)?;
        let xs = self.encoder.forward(&xs, None, self.encoder.num_layers())?;
        let class = xs.narrow(1, 0, 1)?.squeeze(1)?;
        self.visual_projection
            .forward(&self.post_layernorm.forward(&class)?)
    }

    /// `hidden_states[-2]`: the output of the second-to-last layer, all tokens,
    /// `[batch, tokens, hidden]` (what IP-Adapter Plus and Full Face use).
    pub fn penultimate_hidden_states(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.embed(pixel_values)?;
        let layers = self.encoder.num_layers().saturating_sub(1);
        self.encoder.forward(&xs, None, layers)
    }
}
