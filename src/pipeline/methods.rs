//! The field's other ways to say "not this", as cubiq's ComfyUI_IPAdapter_plus
//! defines them: combining several images on a side and weight types over the UNet's
//! attention layers. (Embeds scaling lives with the attention, in
//! `models::unet::EmbedsScaling`; the noised negative in `noise_image`.)

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::models::unet::UNetPart;

/// How the conditioned side's images become one set of image features
/// (`IPAdapterPlus.py`, `ipadapter_execute`, "combine the embeddings if needed").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The weighted average of the features (Minus' own, as before these modes).
    #[default]
    Concat,
    /// The sum of the features.
    Add,
    /// The first image minus the mean of the others, negative images included.
    Subtract,
    /// The plain mean of the features.
    Average,
    /// The mean of each image's features divided, element by element, by their norm
    /// across the images.
    NormAverage,
}

impl Combine {
    /// All modes, in menu order.
    pub const ALL: [Self; 5] = [
        Self::Concat,
        Self::Add,
        Self::Subtract,
        Self::Average,
        Self::NormAverage,
    ];

    /// The command-line / settings name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Concat => "concat",
            Self::Add => "add",
            Self::Subtract => "subtract",
            Self::Average => "average",
            Self::NormAverage => "norm-average",
        }
    }

    /// Combines image features `[1, ...]` (each already multiplied by its image's
    /// weight, in pane order; at least two) as cubiq does over his batch axis.
    pub fn apply(self, features: &[Tensor]) -> candle_core::Result<Tensor> {
        let stacked = Tensor::cat(features, 0)?;
        match self {
            // `concat` never gets here: it keeps the weighted average.
            Self::Concat | Self::Average => stacked.mean_keepdim(0),
            Self::Add => stacked.sum_keepdim(0),
            Self::Subtract => {
                let rest = stacked.narrow(0, 1, features.len() - 1)?.mean_keepdim(0)?;
                stacked.narrow(0, 0, 1)? - rest
            }
            Self::NormAverage => {
                let norm = stacked.sqr()?.sum_keepdim(0)?.sqrt()?;
                stacked.broadcast_div(&norm)?.mean_keepdim(0)
            }
        }
    }
}

/// cubiq's SD 1.5 weight types: a factor on the image scale by attention layer
/// (`CrossAttentionPatch.py`, `ipadapter_attention`, the `weight_type` branches).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum WeightType {
    /// The same scale everywhere (IP-Adapter's own).
    #[default]
    Linear,
    /// Strong in the first layers, fading to 0.05 at the last.
    EaseIn,
    /// Weak in the first layers, growing to full at the last.
    EaseOut,
    /// Strong in the middle of the UNet, weak at both ends.
    EaseInOut,
    /// Weak in the middle of the UNet, strong at both ends.
    ReverseInOut,
    /// 0.2 in the down blocks.
    WeakInput,
    /// 0.2 in the up blocks.
    WeakOutput,
    /// 0.2 in the middle block.
    WeakMiddle,
    /// 0.2 everywhere but the middle block.
    StrongMiddle,
}

impl WeightType {
    /// All types, in menu order.
    pub const ALL: [Self; 9] = [
        Self::Linear,
        Self::EaseIn,
        Self::EaseOut,
        Self::EaseInOut,
        Self::ReverseInOut,
        Self::WeakInput,
        Self::WeakOutput,
        Self::WeakMiddle,
        Self::StrongMiddle,
    ];

    /// The command-line / settings name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::EaseIn => "ease-in",
            Self::EaseOut => "ease-out",
            Self::EaseInOut => "ease-in-out",
            Self::ReverseInOut => "reverse-in-out",
            Self::WeakInput => "weak-input",
            Self::WeakOutput => "weak-output",
            Self::WeakMiddle => "weak-middle",
            Self::StrongMiddle => "strong-middle",
        }
    }

    /// The factor of the layer that runs `index`-th of `layers` (execution order:
    /// down blocks, middle block, up blocks), in `part` of the UNet.
    pub fn factor(self, index: usize, layers: usize, part: UNetPart) -> f64 {
        let (t, n) = (index as f64, layers as f64);
        let weak = |weak: bool| if weak { 0.2 } else { 1.0 };
        match self {
            Self::Linear => 1.0,
            Self::EaseIn => 0.05 + 0.95 * (1.0 - t / n),
            Self::EaseOut => 0.05 + 0.95 * (t / n),
            Self::EaseInOut => 0.05 + 0.95 * (1.0 - (t - n / 2.0).abs() / (n / 2.0)),
            Self::ReverseInOut => 0.05 + 0.95 * ((t - n / 2.0).abs() / (n / 2.0)),
            Self::WeakInput => weak(part == UNetPart::Down),
            Self::WeakOutput => weak(part == UNetPart::Up),
            Self::WeakMiddle => weak(part == UNetPart::Middle),
            Self::StrongMiddle => weak(part != UNetPart::Middle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn weight_types_follow_cubiqs_curves() {
        let order: Vec<UNetPart> = (0..16)
            .map(|i| match i {
                0..=5 => UNetPart::Down,
                6 => UNetPart::Middle,
                _ => UNetPart::Up,
            })
            .collect();
        let factors = |kind: WeightType| -> Vec<f64> {
            (0..16).map(|i| kind.factor(i, 16, order[i])).collect()
        };
        assert!(factors(WeightType::Linear).iter().all(|f| *f == 1.0));
        let ease_in = factors(WeightType::EaseIn);
        assert_eq!(ease_in[0], 1.0);
        assert!(ease_in.windows(2).all(|w| w[0] > w[1]));
        let in_out = factors(WeightType::EaseInOut);
        assert_eq!(in_out[8], 1.0);
        assert!((in_out[0] - 0.05).abs() < 1e-12);
        let strong = factors(WeightType::StrongMiddle);
        assert_eq!(strong[6], 1.0);
        assert_eq!(strong.iter().filter(|f| **f == 0.2).count(), 15);
        assert_eq!(
            factors(WeightType::WeakOutput)
                .iter()
                .filter(|f| **f == 0.2)
                .count(),
            9
        );
    }

    #[test]
    fn combine_modes_match_their_definitions() -> candle_core::Result<()> {
        let a = Tensor::new(&[[3f32, -4.0]], &Device::Cpu)?;
        let b = Tensor::new(&[[1f32, 2.0]], &Device::Cpu)?;
        let c = Tensor::new(&[[5f32, 0.0]], &Device::Cpu)?;
        let features = [a, b, c];
        let got = |mode: Combine| -> candle_core::Result<Vec<f32>> {
            mode.apply(&features)?.flatten_all()?.to_vec1()
        };
        assert_eq!(got(Combine::Add)?, [9.0, -2.0]);
        assert_eq!(got(Combine::Subtract)?, [0.0, -5.0]);
        assert_eq!(got(Combine::Average)?, [3.0, -2.0 / 3.0]);
        let norm = got(Combine::NormAverage)?;
        let n0 = (9f32 + 1.0 + 25.0).sqrt();
        assert!((norm[0] - 9.0 / n0 / 3.0).abs() < 1e-6);
        Ok(())
    }
}
