//! Prompts into text conditioning: SD 1.5's last hidden state, or SDXL's two
//! penultimate hidden states and pooled embedding.

use candle_core::Tensor;

use super::models::Models;
use crate::Result;
use crate::models::sdxl_text::encode_sdxl_text;

/// One prompt's text conditioning.
#[derive(Clone)]
pub struct TextEmbedding {
    /// What cross-attention attends to, `[1, 77, cross_attention_dim]`.
    pub tokens: Tensor,
    /// SDXL's pooled embedding `[1, dim]` for the UNet's added conditioning.
    pub pooled: Option<Tensor>,
}

impl TextEmbedding {
    /// The embedding of "no negative prompt" where the model wants zeros for it
    /// (diffusers' `force_zeros_for_empty_prompt`): zeros shaped like `like`'s.
    pub fn zeros_like(like: &Self) -> Result<Self> {
        Ok(Self {
            tokens: like.tokens.zeros_like()?,
            pooled: like.pooled.as_ref().map(Tensor::zeros_like).transpose()?,
        })
    }
}

/// Encodes one prompt with the loaded text encoders.
pub fn encode_text(models: &Models, text: &str) -> Result<TextEmbedding> {
    if let Some(second) = &models.text_encoder_2 {
        let (tokens, pooled) =
            encode_sdxl_text(models.tokenizer, &models.text_encoder, second, text)?;
        return Ok(TextEmbedding {
            tokens,
            pooled: Some(pooled),
        });
    }
    let ids = models.tokenizer.encode(text);
    let ids = Tensor::new(ids.as_slice(), &models.device)?.unsqueeze(0)?;
    Ok(TextEmbedding {
        tokens: models.text_encoder.forward(&ids)?,
        pooled: None,
    })
}
