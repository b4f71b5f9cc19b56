//! The decoder of TAESD (diffusers' `AutoencoderTiny`): a small network of plain
//! convolutions and ReLUs that turns SD latents into a picture at a few percent of
//! the VAE's cost, for live previews.
//!
//! Layout (`decoder.layers.N`, as diffusers numbers its `nn.Sequential`): a 3×3
//! convolution and a ReLU; then for every stage its blocks, and between stages a
//! nearest upsampling followed by a 3×3 convolution without bias; the last stage
//! ends in a 3×3 convolution with bias to the output channels.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config_check::{
    CheckedConfig, ConfigProblem, MAX_LAYERS, channel_list, positive_at_most, positive_finite,
};
use super::conv::Conv2d;

/// The most a decoder may enlarge its latents (SD's VAE and TAESD: 8×).
const MAX_UPSCALE: usize = 16;

/// The fields of a diffusers `AutoencoderTiny` config the decoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct TaesdConfig {
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_out_channels")]
    pub out_channels: usize,
    #[serde(default = "default_block_out_channels")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "default_num_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "default_upsampling")]
    pub upsampling_scaling_factor: usize,
    #[serde(default = "default_act_fn")]
    pub act_fn: String,
    #[serde(default = "default_upsample_fn")]
    pub upsample_fn: String,
    /// Latents are divided by this before decoding (1.0 for TAESD: it decodes the
    /// UNet's latents as they are).
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
}

fn default_latent_channels() -> usize {
    4
}
fn default_out_channels() -> usize {
    3
}
fn default_block_out_channels() -> Vec<usize> {
    vec![64; 4]
}
fn default_num_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn default_upsampling() -> usize {
    2
}
fn default_act_fn() -> String {
    "relu".to_string()
}
fn default_upsample_fn() -> String {
    "nearest".to_string()
}
fn default_scaling() -> f64 {
    1.0
}

impl Default for TaesdConfig {
    /// `madebyollin/taesd`, the TAESD of SD 1.x and 2.x.
    fn default() -> Self {
        Self {
            latent_channels: default_latent_channels(),
            out_channels: default_out_channels(),
            decoder_block_out_channels: default_block_out_channels(),
            num_decoder_blocks: default_num_blocks(),
            upsampling_scaling_factor: default_upsampling(),
            act_fn: default_act_fn(),
            upsample_fn: default_upsample_fn(),
            scaling_factor: default_scaling(),
        }
    }
}

impl CheckedConfig for TaesdConfig {
    fn check(&self) -> Result<(), ConfigProblem> {
        positive_at_most("latent_channels", self.latent_channels, 64)?;
        positive_at_most("out_channels", self.out_channels, 64)?;
        let channels = &self.decoder_block_out_channels;
        channel_list("decoder_block_out_channels", channels)?;
        // diffusers ends each stage in a convolution to the stage's own width, so
        // the next stage only fits when it has the same width.
        if channels.windows(2).any(|pair| pair[0] != pair[1]) {
            return Err(ConfigProblem {
                field: "decoder_block_out_channels",
                message: format!("is {channels:?}; AutoencoderTiny needs one width for all"),
            });
        }
        if self.num_decoder_blocks.len() != channels.len() {
            return Err(ConfigProblem {
                field: "num_decoder_blocks",
                message: format!(
                    "has {} entries, decoder_block_out_channels {}",
                    self.num_decoder_blocks.len(),
                    channels.len()
                ),
            });
        }
        for &blocks in &self.num_decoder_blocks {
            if blocks > MAX_LAYERS {
                return Err(ConfigProblem {
                    field: "num_decoder_blocks",
                    message: format!("has {blocks}, expected at most {MAX_LAYERS}"),
                });
            }
        }
        positive_at_most(
            "upsampling_scaling_factor",
            self.upsampling_scaling_factor,
            8,
        )?;
        // The output grows by the factor once per stage boundary: keep it near the
        // VAE's 8× so a config cannot ask for an unbounded picture.
        let growth = u32::try_from(channels.len() - 1)
            .ok()
            .and_then(|n| self.upsampling_scaling_factor.checked_pow(n));
        if growth.is_none_or(|g| g > MAX_UPSCALE) {
            return Err(ConfigProblem {
                field: "upsampling_scaling_factor",
                message: format!(
                    "{} over {} stages enlarges the latents more than {MAX_UPSCALE}×",
                    self.upsampling_scaling_factor,
                    channels.len()
                ),
            });
        }
        for (field, value, supported) in [
            ("act_fn", &self.act_fn, "relu"),
            ("upsample_fn", &self.upsample_fn, "nearest"),
        ] {
            if value != supported {
                return Err(ConfigProblem {
                    field,
                    message: format!("is {value:?}; only {supported:?} (TAESD's) is supported"),
                });
            }
        }
        positive_finite("scaling_factor", self.scaling_factor)
    }
}

/// `relu(conv(relu(conv(relu(conv(x))))) + x)`: diffusers' `AutoencoderTinyBlock`
/// with equal input and output widths (its skip is then the identity).
struct TinyBlock {
    convs: [Conv2d; 3],
}

impl TinyBlock {
    fn load(vb: VarBuilder, channels: usize) -> candle_core::Result<Self> {
        let conv = |i: usize| Conv2d::load(vb.pp(format!("conv.{i}")), channels, channels, 3, 1, 1);
        Ok(Self {
            convs: [conv(0)?, conv(2)?, conv(4)?],
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let [first, second, third] = &self.convs;
        let h = first.forward(xs)?.relu()?;
        let h = second.forward(&h)?.relu()?;
        (third.forward(&h)? + xs)?.relu()
    }
}

/// One stage: its blocks, then (between stages) the upsampling and its convolution.
struct Stage {
    blocks: Vec<TinyBlock>,
    upsample_conv: Option<Conv2d>,
}

/// The TAESD decoder: latents → RGB in about [-1, 1].
pub struct TaesdDecoder {
    conv_in: Conv2d,
    stages: Vec<Stage>,
    conv_out: Conv2d,
    upsampling: usize,
    scaling_factor: f64,
    dtype: DType,
}

impl TaesdDecoder {
    /// Loads the decoder; `vb` points at the model's tensors (`decoder.layers.*`;
    /// the encoder's are not read).
    pub fn load(vb: VarBuilder, config: &TaesdConfig) -> candle_core::Result<Self> {
        let layers = vb.pp("decoder.layers");
        let width = *config
            .decoder_block_out_channels
            .first()
            .ok_or_else(|| candle_core::Error::Msg("decoder_block_out_channels is empty".into()))?;
        let conv_in = Conv2d::load(layers.pp("0"), config.latent_channels, width, 3, 1, 1)?;
        // Index 1 is the ReLU after `conv_in`.
        let mut index = 2;
        let mut stages = Vec::with_capacity(config.num_decoder_blocks.len());
        let last_stage = config.num_decoder_blocks.len().saturating_sub(1);
        for (stage, &count) in config.num_decoder_blocks.iter().enumerate() {
            let mut blocks = Vec::with_capacity(count);
            for _ in 0..count {
                blocks.push(TinyBlock::load(layers.pp(index.to_string()), width)?);
                index += 1;
            }
            let upsample_conv = if stage < last_stage {
                // `index` is the upsampling (no weights), `index + 1` its convolution.
                let conv = Conv2d::load_without_bias(
                    layers.pp((index + 1).to_string()),
                    width,
                    width,
                    3,
                    1,
                    1,
                )?;
                index += 2;
                Some(conv)
            } else {
                None
            };
            stages.push(Stage {
                blocks,
                upsample_conv,
            });
        }
        let conv_out = Conv2d::load(
            layers.pp(index.to_string()),
            width,
            config.out_channels,
            3,
            1,
            1,
        )?;
        Ok(Self {
            conv_in,
            stages,
            conv_out,
            upsampling: config.upsampling_scaling_factor,
            scaling_factor: config.scaling_factor,
            dtype: vb.dtype(),
        })
    }

    /// The dtype of the weights, which the latents must have.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Decodes latents `[batch, 4, h, w]` as the UNet produces them into images
    /// `[batch, 3, 8h, 8w]` (for four stages) in about [-1, 1], unclamped.
    pub fn decode(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (latents / self.scaling_factor)?;
        // TAESD's soft clamp of the latents to (-3, 3).
        let xs = ((xs / 3.0)?.tanh()? * 3.0)?;
        let mut xs = self.conv_in.forward(&xs)?.relu()?;
        for stage in &self.stages {
            for block in &stage.blocks {
                xs = block.forward(&xs)?;
            }
            if let Some(conv) = &stage.upsample_conv {
                let (_, _, h, w) = xs.dims4()?;
                let upsampled = xs.upsample_nearest2d(h * self.upsampling, w * self.upsampling)?;
                xs = conv.forward(&upsampled)?;
            }
        }
        // The network's [0, 1] to the VAE's [-1, 1].
        self.conv_out.forward(&xs)?.affine(2.0, -1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::config_check::CheckedConfig;

    #[test]
    fn the_default_is_madebyollin_taesd_and_passes_its_checks() {
        let config = TaesdConfig::default();
        assert!(config.check().is_ok());
        assert_eq!(config.decoder_block_out_channels, [64, 64, 64, 64]);
        assert_eq!(config.scaling_factor, 1.0);
    }

    #[test]
    fn unequal_widths_and_other_activations_are_refused_by_field() {
        let widths = TaesdConfig {
            decoder_block_out_channels: vec![64, 32, 64, 64],
            ..TaesdConfig::default()
        };
        assert_eq!(
            widths.check().err().map(|p| p.field),
            Some("decoder_block_out_channels")
        );
        let act = TaesdConfig {
            act_fn: "silu".to_string(),
            ..TaesdConfig::default()
        };
        assert_eq!(act.check().err().map(|p| p.field), Some("act_fn"));
        let blocks = TaesdConfig {
            num_decoder_blocks: vec![3, 3],
            ..TaesdConfig::default()
        };
        assert_eq!(
            blocks.check().err().map(|p| p.field),
            Some("num_decoder_blocks")
        );
    }
}
