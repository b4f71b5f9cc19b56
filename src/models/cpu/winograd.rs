//! 3×3 stride-1 convolution by Winograd's minimal filtering, F(4×4, 3×3).
//!
//! Each 4×4 block of output pixels (a tile) comes from a 6×6 patch of input.
//! Transformed into Winograd's domain (`Bᵀ·d·B` for the patch, `G·g·Gᵀ` for the
//! 3×3 kernel), the convolution becomes 36 independent products, one per point
//! of the 6×6 transform: for point ξ, `M_ξ[c_out, tiles] = U_ξ[c_out, c_in] ·
//! V_ξ[c_in, tiles]`, 36 GEMMs that together do a quarter of im2col's
//! multiplications (36 per tile and channel pair instead of 144). `Aᵀ·M·A` turns
//! each tile back into 4×4 pixels. The transforms cost a few percent of the
//! GEMMs; the interpolation points 0, ±1, ±2 keep f32 rounding within a few
//! ulps of the direct sum for the sizes the networks use.
//!
//! Work goes in bands of tile rows, sized so a band's transformed input and
//! products stay within a budget; inside a band each stage runs in
//! parallel (over input channels, transform points, output channels).

use rayon::prelude::*;

use super::conv_geometry::Geometry;
use super::math::dispatch;
use super::{Product, SharedOut, gemm};

/// Output pixels per tile side.
const TILE: usize = 4;
/// Input pixels per tile side (the tile plus the kernel's reach).
const PATCH: usize = TILE + 2;
/// Points of the transform, `PATCH²`: one GEMM each.
const POINTS: usize = PATCH * PATCH;
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

/// 32 MiB of f32 for a band, 16 MiB for kernels.
const BUDGET: Budget = Budget {
    band_elements: 1 << 23,
    kernel_elements: 1 << 22,
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
pub(super) fn convolve(g: &Geometry, batch: usize, xs: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    convolve_within(g, batch, (xs, weight, bias), BUDGET)
}

/// [`convolve`] holding no more than `budget` of transformed data at once.
fn convolve_within(g: &Geometry, batch: usize, (xs, weight, bias): (&[f32], &[f32], &[f32]), budget: Budget) -> Vec<f32> {
    let (tile_rows, tile_cols) = tiles(g);
    let group = (budget.kernel_elements / (POINTS * g.c_in))
        .max(budget.min_group_channels)
        .min(g.c_out.max(1));
    let band_rows = (budget.band_elements / (POINTS * (g.c_in + group) * tile_cols)).clamp(1, batch * tile_rows);
    let mut out = vec![0f32; batch * g.c_out * g.out_h * g.out_w];
    let out_ptr = SharedOut(out.as_mut_ptr());
    let (mut inputs, mut kernels, mut products) = (Vec::new(), Vec::new(), Vec::new());
    let groups: Vec<_> = (0..g.c_out).step_by(group).map(|first| first..(first + group).min(g.c_out)).collect();
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

/// `G·g·Gᵀ` for the 3×3 kernels of output channels `channels`, into `kernels`
/// laid out `[POINTS, channels, c_in]` (point ξ's matrix at `ξ·channels·c_in`,
/// row stride `c_in`): one GEMM of `G ⊗ G` (36×9) with the weights read as
/// `[9, channels·c_in]`.
fn transform_kernels(g: &Geometry, weight: &[f32], channels: std::ops::Range<usize>, kernels: &mut Vec<f32>) {
    let pairs = channels.len() * g.c_in;
    let g_rows: [[f32; 3]; PATCH] = [
        [0.25, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let kron: Vec<f32> = (0..POINTS * 9)
        .map(|i| {
            let (point, tap) = (i / 9, i % 9);
            g_rows[point / PATCH][tap / 3] * g_rows[point % PATCH][tap % 3]
        })
        .collect();
    kernels.resize(POINTS * pairs, 0.0);
    let taps = &weight[channels.start * g.c_in * 9..][..pairs * 9];
    // SAFETY: kron is [POINTS, 9]; taps, [pairs, 9], is read transposed as [9, pairs]
    // (row stride 1, column stride 9); kernels is [POINTS, pairs].
    unsafe {
        gemm(
            (POINTS, pairs, 9),
            kernels.as_mut_ptr(),
            pairs,
            kron.as_ptr(),
            9,
            taps.as_ptr(),
            (1, 9),
            Product {
                scale: 1.0,
                accumulate: false,
                parallel: true,
            },
        )
    };
}

/// `Bᵀ·d` for six input values: the patch transform along one axis.
#[inline(always)]
fn input_transform([d0, d1, d2, d3, d4, d5]: [f32; PATCH]) -> [f32; PATCH] {
    [
        4.0 * d0 - 5.0 * d2 + d4,
        -4.0 * (d1 + d2) + d3 + d4,
        4.0 * (d1 - d2) - d3 + d4,
        2.0 * (d3 - d1) + d4 - d2,
        2.0 * (d1 - d3) + d4 - d2,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// `Aᵀ·m` for six transformed values: four output values along one axis.
#[inline(always)]
fn output_transform([m0, m1, m2, m3, m4, m5]: [f32; PATCH]) -> [f32; TILE] {
    let (sum12, diff12) = (m1 + m2, m1 - m2);
    let (sum34, diff34) = (m3 + m4, m3 - m4);
    [
        m0 + sum12 + sum34,
        diff12 + 2.0 * diff34,
        sum12 + 4.0 * sum34,
        diff12 + 8.0 * diff34 + m5,
    ]
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
    fn multiply(&self, g: &Geometry, channels: usize, kernels: &[f32], inputs: &[f32], products: &mut Vec<f32>) {
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
    unsafe fn transform_outputs(&self, g: &Geometry, products: &[f32], (first_channel, bias): (usize, &[f32]), out: SharedOut) {
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
                        std::slice::from_raw_parts_mut(out.at(plane + first_y * g.out_w), rows * g.out_w)
                    };
                    let offset = row * self.tile_cols;
                    dispatch!(|| untransform_tile_row(g, points, (tiles, offset), bias[channel], plane_rows));
                }
            });
    }
}

/// Tiles processed together: one vector register of f32 on AVX-512.
const LANES: usize = 16;
/// One value per lane.
type Lanes = [f32; LANES];

/// Applies a six-value transform lane by lane (the compiler turns the loop into
/// vector instructions).
#[inline(always)]
fn per_lane<const N: usize>(values: &[Lanes; PATCH], transform: impl Fn([f32; PATCH]) -> [f32; N]) -> [Lanes; N] {
    let mut out = [[0f32; LANES]; N];
    for lane in 0..LANES {
        let result = transform(std::array::from_fn(|k| values[k][lane]));
        for (dst, value) in out.iter_mut().zip(result) {
            dst[lane] = value;
        }
    }
    out
}

/// Lanes `start..start + LANES` of `values`, zero past its end.
#[inline(always)]
fn load(values: &[f32], start: usize) -> Lanes {
    // A whole chunk is one fixed-size copy (a vector load); only the last is partial.
    if let Some(Ok(lanes)) = values.get(start..start + LANES).map(Lanes::try_from) {
        return lanes;
    }
    let mut lanes = [0f32; LANES];
    let available = values.get(start..).unwrap_or(&[]);
    let len = available.len().min(LANES);
    lanes[..len].copy_from_slice(&available[..len]);
    lanes
}

/// Writes as many of `lanes` as `dst` holds (all of them unless it is the last chunk).
#[inline(always)]
fn store(dst: &mut [f32], lanes: &Lanes) {
    if let Some(whole) = dst.get_mut(..LANES) {
        whole.copy_from_slice(lanes);
    } else {
        let len = dst.len();
        dst.copy_from_slice(&lanes[..len]);
    }
}

/// One tile row of input patches, and where its transforms go in the band.
#[derive(Debug, Clone, Copy)]
struct PatchRow {
    /// First output row of the tiles (the patches start `padding` rows above).
    first_y: usize,
    tile_cols: usize,
    /// The row's first tile among the band's.
    offset: usize,
    /// Tiles in the band: the distance between two points' values.
    stride: usize,
}

impl PatchRow {
    /// `Bᵀ·d·B` of the row's patches of `plane` into `dst` (`[POINTS, stride]`).
    ///
    /// The transform runs down the columns first, over whole padded rows (side by
    /// side, so it vectorises); the transformed rows are then split into the four
    /// pixel phases of a tile, which makes the pass along the rows a sum of
    /// side-by-side arrays too.
    #[inline(always)]
    fn transform(&self, g: &Geometry, plane: &[f32], scratch: &mut Vec<f32>, dst: &mut [f32]) {
        // Padded rows hold input x = p − padding at p, for one tile more than the row
        // has, so each tile's six values are its four phases and the next tile's first two.
        let line_len = TILE * self.tile_cols + 2;
        scratch.resize(2 * PATCH * line_len, 0.0);
        let (lines, columns) = scratch.split_at_mut(PATCH * line_len);
        self.pad_lines(g, plane, line_len, lines);
        for start in (0..line_len).step_by(LANES) {
            let values = std::array::from_fn(|i| load(&lines[i * line_len..][..line_len], start));
            let transformed = per_lane(&values, input_transform);
            for (a, lanes) in transformed.iter().enumerate() {
                store(&mut columns[a * line_len + start..(a + 1) * line_len], lanes);
            }
        }
        for (a, column) in columns.chunks_exact(line_len).enumerate() {
            for start in (0..self.tile_cols).step_by(LANES) {
                // The chunk's tiles' pixels and the next tile's first two, read with
                // fixed offsets (shuffles, not scattered loads).
                let mut pixels = [0f32; TILE * LANES + 2];
                let available = &column[TILE * start..];
                let len = available.len().min(pixels.len());
                pixels[..len].copy_from_slice(&available[..len]);
                let values: [Lanes; PATCH] = std::array::from_fn(|k| std::array::from_fn(|lane| pixels[TILE * lane + k]));
                let transformed = per_lane(&values, input_transform);
                for (j, lanes) in transformed.iter().enumerate() {
                    let row = (a * PATCH + j) * self.stride + self.offset;
                    store(&mut dst[row + start..row + self.tile_cols], lanes);
                }
            }
        }
    }

    /// The six input rows of the patches, zero outside the image.
    fn pad_lines(&self, g: &Geometry, plane: &[f32], line_len: usize, lines: &mut [f32]) {
        for (i, line) in lines.chunks_exact_mut(line_len).enumerate() {
            line.fill(0.0);
            let y = (self.first_y + i).checked_sub(g.padding).filter(|&y| y < g.in_h);
            if let Some(y) = y {
                let start = g.padding.min(line_len);
                let len = g.in_w.min(line_len - start);
                line[start..start + len].copy_from_slice(&plane[y * g.in_w..][..len]);
            }
        }
    }
}

/// `Aᵀ·M·A` of one tile row of one output channel's products (`points`,
/// `[POINTS, tiles]`, the row's tiles from `offset`) plus `bias`, into the
/// tile row's output rows `rows` (up to four rows of `out_w`).
#[inline(always)]
fn untransform_tile_row(g: &Geometry, points: &[f32], (tiles, offset): (usize, usize), bias: f32, rows: &mut [f32]) {
    let tile_cols = g.out_w.div_ceil(TILE);
    for start in (0..tile_cols).step_by(LANES) {
        let m: [Lanes; POINTS] =
            std::array::from_fn(|point| load(&points[point * tiles + offset..][..tile_cols], start));
        // Down the columns: for each column b, four values from the six points (a, b).
        let columns: [[Lanes; TILE]; PATCH] =
            std::array::from_fn(|b| per_lane(&std::array::from_fn(|a| m[a * PATCH + b]), output_transform));
        let first_x = start * TILE;
        let width = (LANES * TILE).min(g.out_w - first_x);
        for (y, row) in rows.chunks_exact_mut(g.out_w).enumerate() {
            let pixels = per_lane(&std::array::from_fn(|b| columns[b][y]), output_transform);
            let mut interleaved = [0f32; LANES * TILE];
            for (lane, quad) in interleaved.chunks_exact_mut(TILE).enumerate() {
                for (x, value) in quad.iter_mut().enumerate() {
                    *value = pixels[x][lane] + bias;
                }
            }
            row[first_x..first_x + width].copy_from_slice(&interleaved[..width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::{BUDGET, Budget, Geometry, applies, convolve_within};
    use crate::models::cpu::test_support::seeded_randn;

    /// The largest and the mean `|ours − expected| / (1 + |expected|)`.
    fn differences(ours: &[f32], expected: &Tensor) -> candle_core::Result<(f32, f32)> {
        let expected = expected.flatten_all()?.to_vec1::<f32>()?;
        let relative: Vec<f32> = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).collect();
        let max = relative.iter().fold(0f32, |m, &d| m.max(d));
        Ok((max, relative.iter().sum::<f32>() / relative.len() as f32))
    }

    #[test]
    fn matches_direct_convolution_at_every_edge_band_and_group() -> candle_core::Result<()> {
        // (batch, c_in, h, w, c_out, padding, budget): outputs of 32 to 37 pixels
        // leave 0 to 3 pixels in the last tiles; padding 0 and 2 move the patches; a
        // small budget cuts bands across images and output channels in groups.
        let small = Budget {
            band_elements: 40_000,
            kernel_elements: 20_000,
            min_group_channels: 16,
        };
        let cases = [
            (2, 16, 32, 32, 16, 1, BUDGET),
            (1, 24, 35, 33, 20, 1, BUDGET),
            (1, 16, 34, 37, 32, 0, BUDGET),
            (1, 20, 31, 30, 16, 2, BUDGET),
            (2, 64, 16, 16, 48, 1, BUDGET),
            (3, 32, 21, 19, 40, 1, small),
        ];
        for (seed, (batch, c_in, h, w, c_out, padding, budget)) in (20..).zip(cases) {
            // Kernels scaled as trained networks' are, so outputs are about 1.
            let std = 1.0 / (9.0 * c_in as f64).sqrt();
            let xs = seeded_randn(3 * seed, 1.0, &[batch, c_in, h, w])?;
            let weight = seeded_randn(3 * seed + 1, std, &[c_out, c_in, 3, 3])?;
            let bias = seeded_randn(3 * seed + 2, 1.0, &[c_out])?;
            let g = Geometry {
                c_in,
                in_h: h,
                in_w: w,
                c_out,
                k_h: 3,
                k_w: 3,
                out_h: h + 2 * padding - 2,
                out_w: w + 2 * padding - 2,
                stride: 1,
                padding,
            };
            assert!(applies(&g));
            let operands = [&xs, &weight, &bias].map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()));
            let [xs_values, weight_values, bias_values] = operands;
            let ours = convolve_within(&g, batch, (&xs_values?, &weight_values?, &bias_values?), budget);
            let expected = xs
                .conv2d(&weight, padding, 1, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            let (max, mean) = differences(&ours, &expected)?;
            // Measured: max 1.1e-5 to 1.8e-5, mean 3.2e-7 to 5.7e-7 (candle's direct sum
            // is within 1e-7 of the exact one, so this is Winograd's own rounding).
            assert!(max < 4e-5 && mean < 1e-6, "{batch}x{c_in}x{h}x{w} -> {c_out} p{padding}: max {max}, mean {mean}");
        }
        Ok(())
    }

    #[test]
    fn an_image_gives_the_same_bits_alone_or_in_a_batch() -> candle_core::Result<()> {
        // A generation's pictures must not depend on what else shares its batch (the
        // negative image's half of a CFG batch, say), although bands span images.
        let (c_in, size, c_out) = (32, 16, 24);
        let g = Geometry {
            c_in,
            in_h: size,
            in_w: size,
            c_out,
            k_h: 3,
            k_w: 3,
            out_h: size,
            out_w: size,
            stride: 1,
            padding: 1,
        };
        let values = |seed, shape: &[usize]| seeded_randn(seed, 0.2, shape)?.flatten_all()?.to_vec1::<f32>();
        let pair = values(1, &[2, c_in, size, size])?;
        let weight = values(2, &[c_out, c_in, 3, 3])?;
        let bias = values(3, &[c_out])?;
        let first_alone = &pair[..c_in * size * size];
        let batch = [(2, &pair[..]), (1, first_alone)].map(|(n, xs)| convolve_within(&g, n, (xs, &weight, &bias), BUDGET));
        assert!(applies(&g));
        assert!(batch[0][..c_out * size * size] == batch[1][..], "the first image changed with the second beside it");
        for (c_in, size, c_out, n) in [(32usize, 64usize, 32usize, 1usize), (64, 32, 64, 2), (32, 64, 3, 1), (128, 32, 64, 1)] {
            let g = Geometry { c_in, in_h: size, in_w: size, c_out, k_h: 3, k_w: 3, out_h: size, out_w: size, stride: 1, padding: 1 };
            let xs = values(5, &[n, c_in, size, size])?;
            let weight = values(6, &[c_out, c_in, 3, 3])?;
            let bias = values(7, &[c_out])?;
            let first = convolve_within(&g, n, (&xs, &weight, &bias), BUDGET);
            for _ in 0..20 {
                let again = convolve_within(&g, n, (&xs, &weight, &bias), BUDGET);
                let diff = first.iter().zip(&again).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{c_in} {size} {c_out} {n}");
            }
        }
        Ok(())
    }

    #[test]
    fn small_or_strided_convolutions_are_left_to_im2col() {
        let g = Geometry {
            c_in: 320,
            in_h: 8,
            in_w: 8,
            c_out: 320,
            k_h: 3,
            k_w: 3,
            out_h: 8,
            out_w: 8,
            stride: 1,
            padding: 1,
        };
        assert!(!applies(&g), "an 8x8 image has 4 tiles");
        let g = Geometry { out_h: 16, out_w: 16, in_h: 16, in_w: 16, ..g };
        assert!(applies(&g));
        assert!(!applies(&Geometry { stride: 2, ..g }));
        assert!(!applies(&Geometry { c_out: 3, ..g }));
        assert!(!applies(&Geometry { k_h: 1, k_w: 1, ..g }));
    }
}
