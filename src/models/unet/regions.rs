//! Regional image prompts: each image attends on its own and its output is multiplied
//! by where it acts, as diffusers' `IPAdapterAttnProcessor2_0` does with
//! `ip_adapter_masks` (diffusers 0.42.1, models/attention_processor.py, lines 4572-4603).

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::ip_scaling::{EmbedsScaling, scaled_image_attention};

/// A mask fitted to the output image, as `IPAdapterMaskProcessor.preprocess` leaves it:
/// `height × width` values (0 or 1), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMask {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Where one image acts in one CFG half, and how strongly.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// `None`: everywhere (a factor of exactly 1, never downsampled).
    pub mask: Option<Arc<RegionMask>>,
    /// Multiplies the image's attention output; 0 for a slot its half leaves empty.
    pub weight: f64,
}

impl Coverage {
    /// A slot the half does not use.
    pub const NOWHERE: Self = Self {
        mask: None,
        weight: 0.0,
    };

    /// The factor of each of a layer's `queries` tokens.
    fn factors(&self, queries: usize) -> Vec<f32> {
        let weight = self.weight as f32;
        match &self.mask {
            Some(mask) => downsample(mask, queries)
                .into_iter()
                .map(|value| value * weight)
                .collect(),
            None => vec![weight; queries],
        }
    }
}

/// The image slots of a run with masks. Slot `s` holds rows `s·2n .. (s+1)·2n` of the
/// image tokens (`n` unconditioned rows, then `n` conditioned ones), and
/// `slots[s] = [uncond, cond]` says where they act.
pub struct Regions {
    slots: Vec<[Coverage; 2]>,
    /// Images per CFG half (`n`).
    batch: usize,
    /// Every slot's factors, per layer size (`queries`), once computed.
    factors: RefCell<Vec<(usize, Vec<Tensor>)>>,
}

impl Regions {
    /// The slots of a run of `batch` images per CFG half.
    pub fn new(slots: Vec<[Coverage; 2]>, batch: usize) -> Self {
        Self {
            slots,
            batch,
            factors: RefCell::new(Vec::new()),
        }
    }

    /// Every slot's `[2n, queries, 1]` factors for a layer of `queries` tokens.
    fn layer_factors(
        &self,
        queries: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Vec<Tensor>> {
        if let Some((_, factors)) = self.factors.borrow().iter().find(|(q, _)| *q == queries) {
            return Ok(factors.clone());
        }
        let factors = self
            .slots
            .iter()
            .map(|halves| {
                let rows: Vec<f32> = halves
                    .iter()
                    .flat_map(|coverage| coverage.factors(queries).repeat(self.batch))
                    .collect();
                Tensor::from_vec(rows, (2 * self.batch, queries, 1), device)?.to_dtype(dtype)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        self.factors.borrow_mut().push((queries, factors.clone()));
        Ok(factors)
    }
}

/// `hidden` plus each slot's scaled image attention times its factors, slot by slot
/// (attention_processor.py 4577-4603: `hidden_states + scale[i] * (attention * mask)`).
pub(super) fn add_regional_attention(
    mut hidden: Tensor,
    q: &Tensor,
    (k, v): (&Tensor, &Tensor),
    heads: usize,
    (scale, scaling): (&Tensor, EmbedsScaling),
    regions: &Regions,
) -> candle_core::Result<Tensor> {
    let rows = q.dim(0)?;
    let factors = regions.layer_factors(q.dim(1)?, q.dtype(), q.device())?;
    if k.dim(0)? != rows * factors.len() {
        candle_core::bail!(
            "{} image token rows for {} slots of {rows}",
            k.dim(0)?,
            factors.len()
        );
    }
    for (slot, factor) in factors.iter().enumerate() {
        let k = k.narrow(0, slot * rows, rows)?;
        let v = v.narrow(0, slot * rows, rows)?;
        let attended = scaled_image_attention(q, (&k, &v), heads, scale, scaling)?;
        hidden = (hidden + attended.broadcast_mul(factor)?)?;
    }
    Ok(hidden)
}

/// diffusers' `IPAdapterMaskProcessor.downsample` (image_processor.py 1319-1378) for a
/// layer of `queries` tokens: a grid of the output's aspect ratio with `queries` cells
/// or a few fewer (`mask_h = int(sqrt(queries / ratio))`, one more unless it divides
/// `queries`, `mask_w = queries // mask_h`), bicubic, then flattened and padded with
/// zeros or cut to `queries`. Where the grid's shape is not the layer's, the values
/// land on other tokens, as they do in diffusers. Where diffusers would divide by zero
/// (an aspect ratio beyond the layer's token count), the grid has one row.
pub fn downsample(mask: &RegionMask, queries: usize) -> Vec<f32> {
    let ratio = mask.width as f64 / mask.height as f64;
    let mut grid_h = ((queries as f64 / ratio).sqrt() as usize).max(1);
    if !queries.is_multiple_of(grid_h) {
        grid_h += 1;
    }
    let grid_w = queries / grid_h;
    let mut out = if grid_w == 0 {
        Vec::new()
    } else {
        interpolate_bicubic(mask, grid_h, grid_w)
    };
    out.resize(queries, 0.0);
    out
}

/// The four input rows (or columns) an output index of torch's bicubic reads, clamped
/// to the input, and their weights (ATen UpSample.h: `area_pixel_compute_source_index`
/// with `align_corners=False`, `guard_index_and_lambda`,
/// `get_cubic_upsample_coefficients` with A = -0.75), in f32 as torch computes them.
fn cubic_taps(in_size: usize, out_size: usize) -> Vec<([usize; 4], [f32; 4])> {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = in_size as f32 / out_size as f32;
    let last = in_size as i64 - 1;
    (0..out_size)
        .map(|i| {
            let real = scale * (i as f32 + 0.5) - 0.5;
            let index = (real.floor() as i64).min(last);
            let t = (real - index as f32).clamp(0.0, 1.0);
            let tap = |j: i64| (index - 1 + j).clamp(0, last) as usize;
            (
                [tap(0), tap(1), tap(2), tap(3)],
                [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)],
            )
        })
        .collect()
}

/// `Σ value(tap) · weight`, summed in torch's order (first term, then `+=` the others).
fn weighted_sum(value: impl Fn(usize) -> f32, (taps, weights): &([usize; 4], [f32; 4])) -> f32 {
    let mut sum = value(taps[0]) * weights[0];
    for j in 1..4 {
        sum += value(taps[j]) * weights[j];
    }
    sum
}

/// `F.interpolate(mask, size=(out_h, out_w), mode="bicubic")` (no antialias), row-major:
/// along each row first, then across the rows.
fn interpolate_bicubic(mask: &RegionMask, out_h: usize, out_w: usize) -> Vec<f32> {
    let rows = cubic_taps(mask.height, out_h);
    let columns = cubic_taps(mask.width, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for row in &rows {
        for column in &columns {
            let along_row = |y: usize| {
                let line = &mask.values[y * mask.width..(y + 1) * mask.width];
                weighted_sum(|x| line[x], column)
            };
            out.push(weighted_sum(along_row, row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(width: usize, height: usize, value: impl Fn(usize, usize) -> f32) -> RegionMask {
        let values = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| value(x, y))
            .collect();
        RegionMask {
            width,
            height,
            values,
        }
    }

    #[test]
    fn the_grid_follows_diffusers_including_its_transposed_and_padded_shapes() {
        let square = mask(64, 64, |_, _| 1.0);
        assert_eq!(downsample(&square, 64).len(), 64);
        // 64 wide, 72 high: the 5 × 4 layer gets a 4 × 5 grid (diffusers' own rounding).
        let tall = mask(64, 72, |x, _| if x < 32 { 1.0 } else { 0.0 });
        let layer = downsample(&tall, 20);
        assert_eq!(layer.len(), 20);
        let left_of_grid: Vec<f32> = (0..4).map(|row| layer[row * 5]).collect();
        assert!(
            left_of_grid.iter().all(|v| (v - 1.0).abs() < 1e-6),
            "{layer:?}"
        );
        // Beyond the layer's token count in aspect: one row, the rest padded with zeros.
        let wide = mask(4096, 8, |_, _| 1.0);
        let values = downsample(&wide, 256);
        assert_eq!(values.len(), 256);
        // Taller than the tokens allow: an empty grid, all zeros.
        let narrow = mask(8, 4096, |_, _| 1.0);
        assert!(downsample(&narrow, 64).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn complementary_masks_sum_to_one_on_every_token() {
        let left = mask(96, 64, |x, _| if x < 40 { 1.0 } else { 0.0 });
        let right = mask(96, 64, |x, _| if x < 40 { 0.0 } else { 1.0 });
        for queries in [96, 24, 6, 2] {
            let (a, b) = (downsample(&left, queries), downsample(&right, queries));
            for (a, b) in a.iter().zip(&b) {
                assert!((a + b - 1.0).abs() < 1e-5, "{queries}: {a} + {b}");
            }
        }
    }
}
