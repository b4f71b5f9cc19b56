//! 3×3 stride-1 convolution by Winograd's minimal filtering, F(4×4, 3×3).
//!
//! Each 4×4 block of output pixels (a tile) comes from a 6×6 patch of input.
//! Transformed into Winograd's domain (`Bᵀ·d·B` for the patch, `G·g·Gᵀ` for the
//! 3×3 kernel), the convolution becomes 36 independent products, one per point
//! of the 6×6 transform: for point ξ, `M_ξ[c_out, tiles] = U_ξ[c_out, c_in] ·
//! V_ξ[c_in, tiles]`, 36 GEMMs that together do a quarter of im2col's
//! multiplications (36 per tile and channel pair instead of 144). `Aᵀ·M·A` turns
//! each tile back into 4×4 pixels (`transforms.rs`). The transforms cost a few
//! percent of the GEMMs. With the interpolation points 0, ±1, ±2 the f32
//! rounding is about 20 times a direct sum's (1e-5 of the output's size at
//! worst, against 5e-7), far below what f16 gives on a GPU.
//!
//! Work goes in bands of tile rows, sized so a band's transformed input and
//! products stay within a budget; inside a band each stage runs in
//! parallel (over input channels, transform points, output channels).

#[cfg(test)]
mod tests;
mod transforms;

use rayon::prelude::*;

use self::transforms::{POINTS, PatchRow, TILE, transform_kernels, untransform_tile_row};
use super::conv_geometry::Geometry;
use super::math::dispatch;
use super::{Product, SharedOut, gemm};

/// Fewest tiles per image for the transforms to pay: below this (a 16×16 image)
/// the GEMMs are too narrow and im2col is faster.
const MIN_TILES: usize = 16;
/// Fewest input and output channels: with fewer, the transforms cost more than
/// the multiplications they save.
const MIN_CHANNELS: usize = 16;
/// How much transformed data the convolution holds at once.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Transformed input plus products of one band of tile rows.
    band_elements: usize,
    /// Transformed kernels: deep layers take their output channels in groups, so
    /// the kernels are not four times the weights.
    kernel_elements: usize,
    /// Fewest output channels per group, so the GEMMs' rows stay many.
    min_group_channels: usize,
}

/// 32 MiB of f32 for a band, 32 MiB for kernels (more would be fresh pages from the
/// system on every call: glibc maps blocks of 32 MiB and up, `src/allocator.rs`).
const BUDGET: Budget = Budget {
    band_elements: 1 << 23,
    kernel_elements: 1 << 23,
    min_group_channels: 64,
};

/// Whether `g` is a convolution this kernel computes, and large enough to gain.
/// The choice never depends on the batch: an image comes out the same alone or
/// beside others.
pub(super) fn applies(g: &Geometry) -> bool {
    let (tile_rows, tile_cols) = tiles(g);
    g.k_h == 3
        && g.k_w == 3
        && g.stride == 1
        && g.padding <= 2
        && g.c_in.min(g.c_out) >= MIN_CHANNELS
        && tile_rows * tile_cols >= MIN_TILES
}

/// Tile rows and columns covering the output.
fn tiles(g: &Geometry) -> (usize, usize) {
    (g.out_h.div_ceil(TILE), g.out_w.div_ceil(TILE))
}

/// The convolution of a batch of `[c_in, h, w]` images plus `bias`,
/// `[batch, c_out, out_h, out_w]`.
///
/// The images' tile rows are taken as one sequence, cut into bands; output
/// channels go in groups whose transformed kernels fit the budget.
pub(super) fn convolve(
    g: &Geometry,
    batch: usize,
    xs: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    convolve_within(g, batch, (xs, weight, bias), BUDGET)
}

/// [`convolve`] holding about `budget` of transformed data at once (more only
/// when a single tile row, or the fewest channels of a group, need it).
fn convolve_within(
    g: &Geometry,
    batch: usize,
    (xs, weight, bias): (&[f32], &[f32], &[f32]),
    budget: Budget,
) -> Vec<f32> {
    let (tile_rows, tile_cols) = tiles(g);
    let group = (budget.kernel_elements / (POINTS * g.c_in))
        .max(budget.min_group_channels)
        .min(g.c_out.max(1));
    let band_rows = (budget.band_elements / (POINTS * (g.c_in + group) * tile_cols))
        .clamp(1, (batch * tile_rows).max(1));
    let mut out = vec![0f32; batch * g.c_out * g.out_h * g.out_w];
    let out_ptr = SharedOut(out.as_mut_ptr());
    let (mut inputs, mut kernels, mut products) = (Vec::new(), Vec::new(), Vec::new());
    let groups: Vec<_> = (0..g.c_out)
        .step_by(group)
        .map(|first| first..(first + group).min(g.c_out))
        .collect();
    if let [only] = groups.as_slice() {
        transform_kernels(g, weight, only.clone(), &mut kernels);
    }
    for first_row in (0..batch * tile_rows).step_by(band_rows) {
        let band = Band {
            first_row,
            rows: band_rows.min(batch * tile_rows - first_row),
            tile_rows,
            tile_cols,
        };
        band.transform_inputs(g, xs, &mut inputs);
        for channels in &groups {
            if groups.len() > 1 {
                transform_kernels(g, weight, channels.clone(), &mut kernels);
            }
            band.multiply(g, channels.len(), &kernels, &inputs, &mut products);
            // SAFETY: out is [batch, c_out, out_h, out_w], and the band's rows of these
            // channels are written by this call alone.
            unsafe { band.transform_outputs(g, &products, (channels.start, bias), out_ptr) };
        }
    }
    out
}

/// Tile rows `first_row..first_row + rows` of the batch's tile rows (image by
/// image, `tile_rows` each).
#[derive(Debug, Clone, Copy)]
struct Band {
    first_row: usize,
    rows: usize,
    tile_rows: usize,
    tile_cols: usize,
}

impl Band {
    /// Tiles in the band: the GEMMs' width.
    fn tiles(&self) -> usize {
        self.rows * self.tile_cols
    }

    /// The image and the tile row within it of the band's row `row`.
    fn image_row(&self, row: usize) -> (usize, usize) {
        let global = self.first_row + row;
        (global / self.tile_rows, global % self.tile_rows)
    }

    /// `Bᵀ·d·B` of every patch of the band, into `inputs` laid out
    /// `[c_in, POINTS, tiles]` (point ξ's matrix at row stride `POINTS·tiles`).
    fn transform_inputs(&self, g: &Geometry, xs: &[f32], inputs: &mut Vec<f32>) {
        let tiles = self.tiles();
        let plane_len = g.in_h * g.in_w;
        inputs.resize(g.c_in * POINTS * tiles, 0.0);
        inputs
            .par_chunks_mut(POINTS * tiles)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (c_in, dst)| {
                for row in 0..self.rows {
                    let (image, tile_row) = self.image_row(row);
                    let plane = &xs[(image * g.c_in + c_in) * plane_len..][..plane_len];
                    let patches = PatchRow {
                        first_y: tile_row * TILE,
                        tile_cols: self.tile_cols,
                        offset: row * self.tile_cols,
                        stride: tiles,
                    };
                    dispatch!(|| patches.transform(g, plane, scratch, dst));
                }
            });
    }

    /// The 36 products `U_ξ · V_ξ` for `channels` output channels into `products`,
    /// laid out `[channels, POINTS, tiles]`.
    fn multiply(
        &self,
        g: &Geometry,
        channels: usize,
        kernels: &[f32],
        inputs: &[f32],
        products: &mut Vec<f32>,
    ) {
        let tiles = self.tiles();
        products.resize(channels * POINTS * tiles, 0.0);
        let dst = SharedOut(products.as_mut_ptr());
        (0..POINTS).into_par_iter().for_each(|point| {
            // SAFETY: kernels is [POINTS, channels, c_in], inputs [c_in, POINTS, tiles] and
            // products [channels, POINTS, tiles]; point ξ's input and product matrices
            // start ξ rows in and step by POINTS rows; each task writes only its own rows.
            unsafe {
                gemm(
                    (channels, tiles, g.c_in),
                    dst.at(point * tiles),
                    POINTS * tiles,
                    kernels[point * channels * g.c_in..].as_ptr(),
                    g.c_in,
                    inputs[point * tiles..].as_ptr(),
                    (POINTS * tiles, 1),
                    Product {
                        scale: 1.0,
                        accumulate: false,
                        parallel: false,
                    },
                )
            }
        });
    }

    /// `Aᵀ·M·A` of every tile plus the bias, for the output channels from
    /// `first_channel` whose products `products` holds, into their planes of `out`.
    ///
    /// # Safety
    /// `out` must address the whole output, `[batch, c_out, out_h, out_w]`, and no
    /// other thread may write these channels' rows of the band at the same time.
    unsafe fn transform_outputs(
        &self,
        g: &Geometry,
        products: &[f32],
        (first_channel, bias): (usize, &[f32]),
        out: SharedOut,
    ) {
        let tiles = self.tiles();
        products
            .par_chunks(POINTS * tiles)
            .enumerate()
            .for_each(|(index, points)| {
                let channel = first_channel + index;
                for row in 0..self.rows {
                    let (image, tile_row) = self.image_row(row);
                    let first_y = tile_row * TILE;
                    let rows = TILE.min(g.out_h - first_y);
                    let plane = (image * g.c_out + channel) * g.out_h * g.out_w;
                    // SAFETY: these output rows of this channel's plane belong to this task
                    // alone (the caller's promise, and one task per channel).
                    let plane_rows = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.at(plane + first_y * g.out_w),
                            rows * g.out_w,
                        )
                    };
                    let offset = row * self.tile_cols;
                    dispatch!(|| untransform_tile_row(
                        g,
                        points,
                        (tiles, offset),
                        bias[channel],
                        plane_rows
                    ));
                }
            });
    }
}
