//! SDXL's added conditioning (`addition_embed_type: "text_time"`): the pooled text
//! embedding and the six size ids, embedded and added to the timestep embedding.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::super::linear::{Linear, linear};
use super::sinusoid::{SinusoidStyle, sinusoids};

/// What one run adds to every step's timestep embedding.
#[derive(Clone)]
pub struct TextTime {
    /// The second text encoder's pooled, projected embedding, `[batch, dim]`, batch as
    /// the UNet input (each CFG half its own prompt's).
    pub pooled: Tensor,
    /// Original height and width, crop top and left, target height and width
    /// (diffusers' `add_time_ids`), the same for every sample.
    pub size_ids: [f64; 6],
}

impl TextTime {
    /// The ids diffusers gives an uncropped `width`×`height` picture.
    pub fn uncropped(pooled: Tensor, width: usize, height: usize) -> Self {
        let (w, h) = (width as f64, height as f64);
        Self {
            pooled,
            size_ids: [h, w, 0.0, 0.0, h, w],
        }
    }
}

/// `add_time_proj` + `add_embedding`.
pub(super) struct TextTimeEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    /// Width of each size id's sinusoid (`addition_time_embed_dim`).
    id_dim: usize,
    style: SinusoidStyle,
}

/// The sizes a text-time embedding is built with.
pub(super) struct TextTimeSizes {
    pub id_dim: usize,
    /// `projection_class_embeddings_input_dim`: pooled width + 6 × `id_dim`.
    pub input_dim: usize,
    pub temb_channels: usize,
    pub style: SinusoidStyle,
}

impl TextTimeEmbedding {
    /// Loads `add_embedding` from `vb` (the UNet's root).
    pub fn load(vb: &VarBuilder, sizes: TextTimeSizes) -> candle_core::Result<Self> {
        let vb = vb.pp("add_embedding");
        Ok(Self {
            linear_1: linear(sizes.input_dim, sizes.temb_channels, vb.pp("linear_1"))?,
            linear_2: linear(sizes.temb_channels, sizes.temb_channels, vb.pp("linear_2"))?,
            id_dim: sizes.id_dim,
            style: sizes.style,
        })
    }

    /// `[batch, temb_channels]`, in the dtype of `text_time.pooled`.
    pub fn forward(&self, text_time: &TextTime) -> candle_core::Result<Tensor> {
        let pooled = &text_time.pooled;
        let (batch, pooled_dim) = pooled.dims2()?;
        let expected = self.linear_1.weight().dim(1)?;
        if pooled_dim + 6 * self.id_dim != expected {
            return Err(candle_core::Error::Msg(format!(
                "the pooled text embedding is {pooled_dim} wide; this UNet takes {} (text encoders of another model?)",
                expected.saturating_sub(6 * self.id_dim)
            )));
        }
        let ids = sinusoids(
            &text_time.size_ids,
            self.id_dim,
            self.style,
            pooled.device(),
        )?
        .reshape((1, 6 * self.id_dim))?
        .to_dtype(pooled.dtype())?
        .repeat((batch, 1))?;
        let input = Tensor::cat(&[pooled, &ids], 1)?;
        self.linear_2
            .forward(&self.linear_1.forward(&input)?.silu()?)
    }
}
