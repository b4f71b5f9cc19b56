//! The field's other ways to say "not this", as cubiq's ComfyUI_IPAdapter_plus
//! defines them: combining several images on a side and weight types over the UNet's
//! attention layers. (Embeds scaling lives with the attention, in
//! `models::unet::EmbedsScaling`; the noised negative in `noise_image`.)

use candle_core::Tensor;

use crate::choices::named_choices;
use crate::models::unet::{CrossAttentionPlace, UNetPart};

named_choices! {
    /// How the conditioned side's images become one set of image features
    /// (`IPAdapterPlus.py`, `ipadapter_execute`, "combine the embeddings if needed").
    #[derive(Default)]
    pub enum Combine {
        /// The average of the features weighted by the images' weights (Minus' own, as
        /// before these modes). Saved images made before it had its name say `concat`,
        /// cubiq's name for the mode it stands in for.
        #[default]
        WeightedAverage = "weighted-average" | "concat",
        /// The sum of the features.
        Add = "add",
        /// The first image minus the mean of the others, negative images included.
        Subtract = "subtract",
        /// The plain mean of the features.
        Average = "average",
        /// The mean of each image's features divided, element by element, by their norm
        /// across the images.
        NormAverage = "norm-average",
    }
}

impl Combine {
    /// Combines image features `[1, ...]` (each already multiplied by its image's
    /// weight, in pane order; at least two) as cubiq does over his batch axis.
    pub fn apply(self, features: &[Tensor]) -> candle_core::Result<Tensor> {
        let stacked = Tensor::cat(features, 0)?;
        match self {
            // The weighted average never gets here: the weights were applied already.
            Self::WeightedAverage | Self::Average => stacked.mean_keepdim(0),
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

named_choices! {
    /// cubiq's weight types: a factor on the image scale by transformer
    /// (`CrossAttentionPatch.py`, `ipadapter_attention`, and `IPAdapterPlus.py`,
    /// `ipadapter_execute`, for the InstantStyle ones, whose transformers differ between
    /// SD 1.5 and SDXL).
    #[derive(Default)]
    pub enum WeightType {
        /// The same scale everywhere (IP-Adapter's own).
        #[default]
        Linear = "linear",
        /// Strong in the first layers, fading to 0.05 at the last.
        EaseIn = "ease-in",
        /// Weak in the first layers, growing to full at the last.
        EaseOut = "ease-out",
        /// Strong in the middle of the UNet, weak at both ends.
        EaseInOut = "ease-in-out",
        /// Weak in the middle of the UNet, strong at both ends.
        ReverseInOut = "reverse-in-out",
        /// 0.2 in the down blocks.
        WeakInput = "weak-input",
        /// 0.2 in the up blocks.
        WeakOutput = "weak-output",
        /// 0.2 in the middle block.
        WeakMiddle = "weak-middle",
        /// 0.2 everywhere but the middle block.
        StrongMiddle = "strong-middle",
        /// Only the transformer that carries style (SDXL: the first up block's second,
        /// InstantStyle's); 0 elsewhere.
        StyleTransfer = "style-transfer",
        /// Only the transformer that carries layout (SDXL: the last down block's second).
        Composition = "composition",
        /// Every transformer but the layout one.
        StrongStyleTransfer = "strong-style-transfer",
        /// The style and the layout transformers.
        StyleAndComposition = "style-and-composition",
    }
}

impl WeightType {
    /// The factor of a layer at `place`, in a UNet of `transformers` transformers (SDXL's
    /// when `sdxl`).
    pub fn factor(self, place: CrossAttentionPlace, transformers: usize, sdxl: bool) -> f64 {
        let (t, n) = (place.transformer as f64, transformers as f64);
        let part = place.part;
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
            _ => instant_style_factor(self, place.transformer, sdxl),
        }
    }
}

/// cubiq's InstantStyle weight types: the factor of transformer `index` (execution
/// order). SDXL: 3 is the last down block's second transformer (layout), 6 the first up
/// block's second (style). SD 1.5 spreads both over more transformers.
fn instant_style_factor(kind: WeightType, index: usize, sdxl: bool) -> f64 {
    let style = if sdxl {
        index == 6
    } else {
        matches!(index, 0..=3 | 9..=15)
    };
    let composition = match (sdxl, index) {
        (true, 3) | (false, 5) => 1.0,
        (false, 4) => 0.25,
        _ => 0.0,
    };
    let on = |on: bool| if on { 1.0 } else { 0.0 };
    match kind {
        WeightType::StyleTransfer => on(style),
        WeightType::Composition => composition,
        WeightType::StrongStyleTransfer if sdxl => on(index != 3),
        WeightType::StrongStyleTransfer => on(!matches!(index, 4 | 5)),
        WeightType::StyleAndComposition => on(style).max(composition),
        _ => 1.0,
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
            (0..16)
                .map(|i| {
                    let place = CrossAttentionPlace {
                        part: order[i],
                        transformer: i,
                    };
                    kind.factor(place, 16, false)
                })
                .collect()
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
