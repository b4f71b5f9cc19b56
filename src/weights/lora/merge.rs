//! The arithmetic of merging: `W + Σ strength · scale · up·down`, in f32, cast back to
//! the weight's number format.

use candle_core::{DType, Tensor};

use super::file::LoraLayer;

/// Whether `layer` makes a change of the shape of a weight of `weight_dims`: as many
/// outputs, and `in · k · k` inputs (so a LoCon's `[rank, in, 3, 3]` down fits a 3×3
/// convolution, and a linear layer's change stored as 1×1 convolutions fits a matrix).
pub fn fits(layer: &LoraLayer, weight_dims: &[usize]) -> bool {
    let (Some(&out), Some(&rank)) = (weight_dims.first(), layer.down.dims().first()) else {
        return false;
    };
    let inputs: usize = weight_dims[1..].iter().product();
    let down_inputs = layer.down.elem_count() / rank.max(1);
    let down_kernel = &layer.down.dims()[2..];
    let weight_kernel = weight_dims.get(2..).unwrap_or_default();
    let kernel_ok = down_kernel.iter().all(|&k| k == 1) || down_kernel == weight_kernel;
    layer.up.dims().first() == Some(&out) && down_inputs == inputs && kernel_ok
}

/// The change `layer` makes at strength 1, shaped `weight_dims`: `scale · up·down`, f32.
fn layer_delta(layer: &LoraLayer, weight_dims: &[usize]) -> candle_core::Result<Tensor> {
    let up = layer.up.flatten_from(1)?;
    let down = layer.down.flatten_from(1)?;
    (up.matmul(&down)? * layer.scale)?.reshape(weight_dims)
}

/// `base + Σ strength · delta` over `layers`, added in f32 and cast to `base`'s dtype;
/// `base` itself when every strength is 0, so that strength 0 is the model bit for bit.
pub fn merged_weight<'a>(
    base: &Tensor,
    layers: impl IntoIterator<Item = (f64, &'a LoraLayer)>,
) -> candle_core::Result<Tensor> {
    let mut merged: Option<Tensor> = None;
    for (strength, layer) in layers {
        if strength == 0.0 {
            continue;
        }
        let sum = match merged {
            Some(sum) => sum,
            None => base.to_dtype(DType::F32)?,
        };
        merged = Some((sum + (layer_delta(layer, base.dims())? * strength)?)?);
    }
    match merged {
        Some(sum) => sum.to_dtype(base.dtype()),
        None => Ok(base.clone()),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::weights::lora::names::Network;

    fn layer(down: Tensor, up: Tensor, scale: f64) -> LoraLayer {
        LoraLayer {
            network: Network::Unet,
            module: "m".to_string(),
            down,
            up,
            scale,
        }
    }

    #[test]
    fn a_linear_layer_adds_strength_times_scale_times_up_down() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let base = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &device)?;
        // up·down = [[1, 2], [2, 4]].
        let lora = layer(
            Tensor::new(&[[1f32, 2.0]], &device)?,
            Tensor::new(&[[1f32], [2.0]], &device)?,
            0.5,
        );
        assert!(fits(&lora, base.dims()));
        let merged = merged_weight(&base, [(2.0, &lora)])?;
        assert_eq!(merged.to_vec2::<f32>()?, [[2.0, 4.0], [5.0, 8.0]]);
        Ok(())
    }

    #[test]
    fn convolutions_take_the_kernel_from_down_and_1x1_up() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let base = Tensor::zeros((3, 2, 3, 3), DType::F16, &device)?;
        let down = Tensor::ones((1, 2, 3, 3), DType::F32, &device)?;
        let up = Tensor::new(&[1f32, 2.0, 3.0], &device)?.reshape((3, 1, 1, 1))?;
        let conv = layer(down, up, 1.0);
        assert!(fits(&conv, base.dims()));
        assert!(!fits(&conv, &[3, 18]));
        let merged = merged_weight(&base, [(1.0, &conv)])?;
        assert_eq!(merged.dtype(), DType::F16);
        let sums = merged
            .to_dtype(DType::F32)?
            .sum((1, 2, 3))?
            .to_vec1::<f32>()?;
        assert_eq!(sums, [18.0, 36.0, 54.0]);
        // A linear layer's change stored as 1×1 convolutions fits the matrix.
        let one_by_one = layer(
            Tensor::ones((1, 2, 1, 1), DType::F32, &device)?,
            Tensor::ones((3, 1, 1, 1), DType::F32, &device)?,
            1.0,
        );
        assert!(fits(&one_by_one, &[3, 2]) && fits(&one_by_one, &[3, 2, 1, 1]));
        Ok(())
    }

    #[test]
    fn strength_zero_gives_the_base_weight_itself() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let base = Tensor::new(&[[0.1f32, 0.2]], &device)?.to_dtype(DType::BF16)?;
        let lora = layer(
            Tensor::new(&[[f32::INFINITY, 1.0]], &device)?,
            Tensor::new(&[[1f32]], &device)?,
            1.0,
        );
        let merged = merged_weight(&base, [(0.0, &lora), (0.0, &lora)])?;
        assert_eq!(merged.id(), base.id());
        Ok(())
    }
}
