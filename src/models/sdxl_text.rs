//! SDXL's text conditioning: two CLIP text towers whose penultimate hidden states are
//! joined along the width, and the second one's projected pooled output, which feeds
//! the UNet's added embedding (diffusers' `StableDiffusionXLPipeline.encode_prompt`).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::clip_text::{ClipTextConfig, ClipTextModel, text_model_level};
use super::linear::{Linear, linear_no_bias};
use super::tokenizer::ClipTokenizer;

/// The second text encoder (`CLIPTextModelWithProjection`: OpenCLIP bigG in SDXL).
pub struct SecondTextEncoder {
    model: ClipTextModel,
    projection: Linear,
    /// The id its tokenizer pads with (`!` for SDXL's).
    pad_token: u32,
}

impl SecondTextEncoder {
    /// Loads the tower and `text_projection` from `vb` (the file's root).
    pub fn load(
        vb: VarBuilder,
        config: &ClipTextConfig,
        pad_token: u32,
    ) -> candle_core::Result<Self> {
        let projection_dim = config.projection_dim.ok_or_else(|| {
            candle_core::Error::Msg("`projection_dim` is missing from its config.json".into())
        })?;
        let projection =
            linear_no_bias(config.hidden_size, projection_dim, vb.pp("text_projection"))?;
        Ok(Self {
            model: ClipTextModel::load(text_model_level(vb), config)?,
            projection,
            pad_token,
        })
    }

    /// Width of the pooled embedding.
    pub fn pooled_dim(&self) -> candle_core::Result<usize> {
        self.projection.weight().dim(0)
    }
}

/// One prompt's SDXL conditioning: `[1, 77, hidden₁ + hidden₂]` and the pooled
/// `[1, projection_dim]`.
pub fn encode_sdxl_text(
    tokenizer: &ClipTokenizer,
    first: &ClipTextModel,
    second: &SecondTextEncoder,
    text: &str,
) -> candle_core::Result<(Tensor, Tensor)> {
    let ids = tokenizer.encode(text);
    let device = second.projection.weight().device();
    let first_hidden = first.penultimate(&Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?)?;
    let ids = tokenizer.encode_padded(text, second.pad_token);
    let (second_hidden, pooled) = second.model.penultimate_and_pooled(&ids)?;
    let pooled = second.projection.forward(&pooled)?;
    Ok((Tensor::cat(&[first_hidden, second_hidden], 2)?, pooled))
}
