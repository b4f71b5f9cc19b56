//! 2-D convolution as im2col plus one GEMM per band of output rows.
//!
//! The column matrix is laid out `[c_in·kh·kw, pixels]`, so each of its rows is
//! a shifted copy of one input row (a `memcpy` for stride 1) and the weight
//! tensor is already the left operand, `[c_out, c_in·kh·kw]`. The product lands
//! directly in NCHW order. Bands bound the column matrix to [`COLUMN_BUDGET`]
//! elements, which keeps the VAE's 512×512 layers from needing gigabytes.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::{contiguous_f32, gemm_accumulate};

/// Largest column matrix built at once, in f32 elements (32 MiB).
const COLUMN_BUDGET: usize = 8 << 20;

/// `conv2d(x, weight) + bias` with square stride and padding, dilation 1, one group.
#[derive(Debug, Clone, Copy)]
pub struct CpuConv2d {
    pub stride: usize,
    pub padding: usize,
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c_in: usize,
    in_h: usize,
    in_w: usize,
    c_out: usize,
    k_h: usize,
    k_w: usize,
    out_h: usize,
    out_w: usize,
    stride: usize,
    padding: usize,
}

impl CustomOp3 for CpuConv2d {
    fn name(&self) -> &'static str {
        "minus-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (batch, c_in, in_h, in_w) = xs_layout.shape().dims4()?;
        let (c_out, weight_c_in, k_h, k_w) = weight_layout.shape().dims4()?;
        if weight_c_in != c_in || bias_layout.shape().elem_count() != c_out {
            candle_core::bail!(
                "{name}: input {:?}, weight {:?} and bias {:?} do not fit together",
                xs_layout.shape(),
                weight_layout.shape(),
                bias_layout.shape()
            );
        }
        let (stride, padding) = (self.stride.max(1), self.padding);
        if in_h + 2 * padding < k_h || in_w + 2 * padding < k_w {
            candle_core::bail!(
                "{name}: a {in_h}x{in_w} input is smaller than the {k_h}x{k_w} kernel"
            );
        }
        let geometry = Geometry {
            c_in,
            in_h,
            in_w,
            c_out,
            k_h,
            k_w,
            out_h: (in_h + 2 * padding - k_h) / stride + 1,
            out_w: (in_w + 2 * padding - k_w) / stride + 1,
            stride,
            padding,
        };
        let xs = contiguous_f32(xs, xs_layout, name)?;
        let weight = contiguous_f32(weight, weight_layout, name)?;
        let bias = contiguous_f32(bias, bias_layout, name)?;

        let out_pixels = geometry.out_h * geometry.out_w;
        let mut out = vec![0f32; batch * c_out * out_pixels];
        let mut columns = Vec::new();
        for (image, out_image) in xs
            .chunks_exact(c_in * in_h * in_w)
            .zip(out.chunks_exact_mut(c_out * out_pixels))
        {
            out_image
                .par_chunks_mut(out_pixels)
                .zip(bias.par_iter())
                .for_each(|(plane, &b)| plane.fill(b));
            convolve_image(&geometry, image, weight, out_image, &mut columns);
        }
        let shape = Shape::from((batch, c_out, geometry.out_h, geometry.out_w));
        Ok((CpuStorage::F32(out), shape))
    }
}

/// Adds the convolution of one `[c_in, h, w]` image to `out` (`[c_out, out_h, out_w]`).
fn convolve_image(
    g: &Geometry,
    image: &[f32],
    weight: &[f32],
    out: &mut [f32],
    columns: &mut Vec<f32>,
) {
    let depth = g.c_in * g.k_h * g.k_w;
    let out_pixels = g.out_h * g.out_w;
    let pointwise = g.k_h == 1 && g.k_w == 1 && g.stride == 1 && g.padding == 0;
    if pointwise {
        // A 1×1 convolution is already a GEMM over the input as it lies.
        // SAFETY: weight is [c_out, c_in], image [c_in, pixels], out [c_out, pixels].
        unsafe {
            gemm_accumulate(
                (g.c_out, out_pixels, depth),
                out.as_mut_ptr(),
                out_pixels,
                weight.as_ptr(),
                depth,
                image.as_ptr(),
                out_pixels,
                true,
            )
        };
        return;
    }
    let band_rows = (COLUMN_BUDGET / (depth * g.out_w)).clamp(1, g.out_h);
    columns.resize(depth * band_rows * g.out_w, 0.0);
    for first_row in (0..g.out_h).step_by(band_rows) {
        let rows = band_rows.min(g.out_h - first_row);
        let band_pixels = rows * g.out_w;
        let band = &mut columns[..depth * band_pixels];
        band.par_chunks_mut(band_pixels)
            .enumerate()
            .for_each(|(row, dst)| fill_column_row(g, image, row, first_row, dst));
        // SAFETY: out is [c_out, out_pixels]; the band starts at row `first_row` of
        // each output plane and spans `band_pixels` elements of it.
        unsafe {
            gemm_accumulate(
                (g.c_out, band_pixels, depth),
                out.as_mut_ptr().add(first_row * g.out_w),
                out_pixels,
                weight.as_ptr(),
                depth,
                band.as_ptr(),
                band_pixels,
                true,
            )
        };
    }
}

/// Writes row `row` (`(c, ky, kx)` flattened) of the column matrix for output
/// rows `first_row..` into `dst`: the input pixel each output pixel sees through
/// that kernel tap, or 0 in the padding.
fn fill_column_row(g: &Geometry, image: &[f32], row: usize, first_row: usize, dst: &mut [f32]) {
    let channel = row / (g.k_h * g.k_w);
    let ky = (row / g.k_w) % g.k_h;
    let kx = row % g.k_w;
    let plane = &image[channel * g.in_h * g.in_w..][..g.in_h * g.in_w];
    for (i, dst_row) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let in_y = ((first_row + i) * g.stride + ky).checked_sub(g.padding);
        let Some(src) = in_y
            .filter(|&y| y < g.in_h)
            .map(|y| &plane[y * g.in_w..][..g.in_w])
        else {
            dst_row.fill(0.0);
            continue;
        };
        if g.stride == 1 {
            // Output x reads input x + kx - padding: one contiguous run, zeros around it.
            let start = g.padding.saturating_sub(kx).min(g.out_w);
            let end = (g.in_w + g.padding)
                .saturating_sub(kx)
                .clamp(start, g.out_w);
            dst_row[..start].fill(0.0);
            dst_row[end..].fill(0.0);
            if end > start {
                let offset = start + kx - g.padding;
                dst_row[start..end].copy_from_slice(&src[offset..offset + end - start]);
            }
        } else {
            for (x, value) in dst_row.iter_mut().enumerate() {
                *value = (x * g.stride + kx)
                    .checked_sub(g.padding)
                    .and_then(|in_x| src.get(in_x))
                    .copied()
                    .unwrap_or(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::CpuConv2d;

    fn max_difference(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn matches_candle_for_every_shape_the_networks_use() -> candle_core::Result<()> {
        let device = Device::Cpu;
        // (batch, c_in, h, w, c_out, kernel, stride, padding); the last one spans two bands.
        let cases = [
            (2, 5, 9, 7, 4, 3, 1, 1),
            (1, 3, 8, 8, 6, 3, 2, 1),
            (2, 6, 5, 11, 3, 1, 1, 0),
            (1, 4, 3, 3, 2, 3, 1, 1),
            (1, 64, 140, 128, 8, 3, 1, 1),
        ];
        for (batch, c_in, h, w, c_out, kernel, stride, padding) in cases {
            let xs = Tensor::randn(0f32, 1.0, (batch, c_in, h, w), &device)?;
            let weight = Tensor::randn(0f32, 0.2, (c_out, c_in, kernel, kernel), &device)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &device)?;
            let ours = xs.apply_op3_no_bwd(&weight, &bias, &CpuConv2d { stride, padding })?;
            let expected = xs
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            assert_eq!(ours.dims(), expected.dims());
            let difference = max_difference(&ours, &expected)?;
            assert!(
                difference < 1e-4,
                "{c_in}x{h}x{w} k{kernel} s{stride}: {difference}"
            );
        }
        Ok(())
    }

    #[test]
    fn mismatched_weights_are_errors() -> candle_core::Result<()> {
        let xs = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
        let weight = Tensor::zeros((2, 5, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
        let bias = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu)?;
        let op = CpuConv2d {
            stride: 1,
            padding: 1,
        };
        assert!(xs.apply_op3_no_bwd(&weight, &bias, &op).is_err());
        Ok(())
    }
}
