//! 2-D convolution as im2col plus one GEMM per band of output rows.
//!
//! The column matrix is laid out `[c_in·kh·kw, pixels]`, so each of its rows is
//! a shifted copy of one input row (a `memcpy` for stride 1) and the weight
//! tensor is already the left operand, `[c_out, c_in·kh·kw]`. The product lands
//! directly in NCHW order. The output is cut into bands of rows; each thread
//! builds the column matrix of its band and multiplies it while it is still in
//! cache, which also keeps the VAE's 512×512 layers from needing gigabytes.
//! For deep layers (the UNet's up blocks take up to 2560 channels) a band's
//! matrix is built and multiplied a slice of input channels at a time.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::conv_geometry::Geometry;
use super::{Product, SharedOut, contiguous_f32, gemm, threads, winograd};

/// Column-matrix elements built at once (4 MiB: they stay in cache while the
/// GEMM reads them). A band has this many unless it is deep and narrow; then it
/// is built this many at a time, a slice of input channels after another.
const BAND_COLUMNS: usize = 1 << 20;
/// Fewest output pixels per band, so the GEMM's columns stay wide enough to be fast.
const MIN_BAND_PIXELS: usize = 512;

/// `conv2d(x, weight) + bias` with square stride and padding, dilation 1, one group.
#[derive(Debug, Clone, Copy)]
pub struct CpuConv2d {
    pub stride: usize,
    pub padding: usize,
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
        let (batch, geometry) = self.geometry(xs_layout, weight_layout, bias_layout)?;
        let xs = contiguous_f32(xs, xs_layout, name)?;
        let weight = contiguous_f32(weight, weight_layout, name)?;
        let bias = contiguous_f32(bias, bias_layout, name)?;
        let out = if winograd::applies(&geometry) {
            winograd::convolve(&geometry, batch, xs, weight, bias)
        } else {
            convolve(&geometry, batch, xs, weight, bias)
        };
        let shape = Shape::from((batch, geometry.c_out, geometry.out_h, geometry.out_w));
        Ok((CpuStorage::F32(out), shape))
    }
}

impl CpuConv2d {
    /// The batch and the sizes of convolving `xs` with `weight` and `bias`, or why
    /// their shapes do not fit.
    fn geometry(
        &self,
        xs_layout: &Layout,
        weight_layout: &Layout,
        bias_layout: &Layout,
    ) -> candle_core::Result<(usize, Geometry)> {
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
        Ok((batch, geometry))
    }
}

/// The convolution of a batch of `[c_in, h, w]` images, `[batch, c_out, out_h, out_w]`,
/// band of output rows by band.
fn convolve(g: &Geometry, batch: usize, xs: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let out_pixels = g.out_h * g.out_w;
    // Every plane starts as its bias (written once: a zeroed buffer would be written twice).
    let mut out = Vec::with_capacity(batch * g.c_out * out_pixels);
    for plane in 0..batch * g.c_out {
        out.resize(out.len() + out_pixels, bias[plane % g.c_out]);
    }
    let image_len = g.c_in * g.in_h * g.in_w;
    let out_image_len = g.c_out * out_pixels;
    let band_rows = g.band_rows();
    let bands = g.out_h.div_ceil(band_rows);
    let tasks = batch * bands;
    let out_ptr = SharedOut(out.as_mut_ptr());
    let run = |task: usize, columns: &mut Vec<f32>, parallel_gemm: bool| {
        let (image, band) = (task / bands, task % bands);
        let first_row = band * band_rows;
        let band = Band {
            first_row,
            rows: band_rows.min(g.out_h - first_row),
        };
        let image_in = &xs[image * image_len..][..image_len];
        // SAFETY: tasks write disjoint row bands of their own image's output planes.
        unsafe {
            convolve_band(
                g,
                image_in,
                weight,
                out_ptr.at(image * out_image_len),
                band,
                columns,
                parallel_gemm,
            )
        };
    };
    if tasks >= 2 * threads() {
        // Enough bands to keep every thread busy: each runs whole bands, so its
        // column matrix is still in cache when its GEMM reads it.
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |columns, task| run(task, columns, false));
    } else {
        let mut columns = Vec::new();
        (0..tasks).for_each(|task| run(task, &mut columns, true));
    }
    out
}

impl Geometry {
    /// Rows of the column matrix: input channels times kernel taps.
    fn depth(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }

    /// Output rows per band: about [`BAND_COLUMNS`] column elements, at least
    /// [`MIN_BAND_PIXELS`] pixels (or the whole image) so the GEMM stays wide.
    fn band_rows(&self) -> usize {
        let by_budget = BAND_COLUMNS / (self.depth() * self.out_w).max(1);
        let by_width = MIN_BAND_PIXELS.div_ceil(self.out_w);
        by_budget.max(by_width).clamp(1, self.out_h)
    }
}

/// Output rows `first_row..first_row + rows`.
#[derive(Debug, Clone, Copy)]
struct Band {
    first_row: usize,
    rows: usize,
}

/// Adds the convolution of one `[c_in, h, w]` image, for one band of output rows,
/// to `out` (`[c_out, out_h, out_w]`, already holding the bias).
///
/// # Safety
/// `out` must address the image's whole output, and no other thread may write
/// this band of it at the same time.
unsafe fn convolve_band(
    g: &Geometry,
    image: &[f32],
    weight: &[f32],
    out: *mut f32,
    band: Band,
    columns: &mut Vec<f32>,
    parallel_gemm: bool,
) {
    let out_pixels = g.out_h * g.out_w;
    let band_pixels = band.rows * g.out_w;
    let band_start = band.first_row * g.out_w;
    let taps = g.k_h * g.k_w;
    let pointwise = taps == 1 && g.stride == 1 && g.padding == 0;
    // A thread working alone on a deep layer would build a column matrix far larger
    // than its cache: it builds and multiplies a slice of input channels at a time
    // instead, accumulating into `out`. (A shared GEMM reads it from the shared cache.)
    let chunk_channels = if pointwise || parallel_gemm {
        g.c_in
    } else {
        (BAND_COLUMNS / (taps * band_pixels)).clamp(1, g.c_in)
    };
    for first_channel in (0..g.c_in).step_by(chunk_channels) {
        let channels = chunk_channels.min(g.c_in - first_channel);
        let chunk_depth = channels * taps;
        let depth_offset = first_channel * taps;
        // A 1×1 convolution is already a GEMM over the input as it lies.
        let (rhs, rhs_row_stride) = if pointwise {
            (image[band_start..].as_ptr(), out_pixels)
        } else {
            columns.resize(chunk_depth * band_pixels, 0.0);
            for (row, dst) in columns.chunks_exact_mut(band_pixels).enumerate() {
                fill_column_row(g, image, depth_offset + row, band.first_row, dst);
            }
            (columns.as_ptr(), band_pixels)
        };
        // SAFETY: weight is [c_out, depth], of which this chunk uses `chunk_depth`
        // columns from `depth_offset`; rhs is [chunk_depth, band_pixels] at the given
        // row stride; the band of `out` starts at `band_start` of each plane (the
        // caller guarantees nobody else writes it).
        unsafe {
            gemm(
                (g.c_out, band_pixels, chunk_depth),
                out.add(band_start),
                out_pixels,
                weight[depth_offset..].as_ptr(),
                g.depth(),
                rhs,
                (rhs_row_stride, 1),
                Product {
                    scale: 1.0,
                    accumulate: true,
                    parallel: parallel_gemm,
                },
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
    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};

    #[test]
    fn matches_candle_for_every_shape_the_networks_use() -> candle_core::Result<()> {
        // (batch, c_in, h, w, c_out, kernel, stride, padding). The fifth spans two
        // bands; the last (with up to 8 threads) multiplies its bands' column
        // matrices in two slices of input channels.
        let cases = [
            (2, 5, 9, 7, 4, 3, 1, 1),
            (1, 3, 8, 8, 6, 3, 2, 1),
            (2, 6, 5, 11, 3, 1, 1, 0),
            (1, 4, 3, 3, 2, 3, 1, 1),
            (1, 64, 140, 128, 8, 3, 1, 1),
            (2, 256, 64, 64, 4, 3, 1, 1),
        ];
        for (seed, (batch, c_in, h, w, c_out, kernel, stride, padding)) in (0..).zip(cases) {
            let xs = seeded_randn(3 * seed, 1.0, &[batch, c_in, h, w])?;
            let weight = seeded_randn(3 * seed + 1, 0.2, &[c_out, c_in, kernel, kernel])?;
            let bias = seeded_randn(3 * seed + 2, 1.0, &[c_out])?;
            let ours = xs.apply_op3_no_bwd(&weight, &bias, &CpuConv2d { stride, padding })?;
            let expected = xs
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            assert_eq!(ours.dims(), expected.dims());
            let difference = max_relative_difference(&ours, &expected)?;
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
        let message = xs
            .apply_op3_no_bwd(&weight, &bias, &op)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("input [1, 3, 4, 4], weight [2, 5, 3, 3] and bias [2] do not fit"),
            "{message}"
        );
        Ok(())
    }
}
