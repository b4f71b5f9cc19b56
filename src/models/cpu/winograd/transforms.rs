//! The transforms of Winograd's F(4×4, 3×3): `G·g·Gᵀ` for the kernels, `Bᵀ·d·B`
//! for the input patches, `Aᵀ·M·A` back to output tiles, computed on
//! [`LANES`] tiles at once so they run as vector instructions.

use super::super::conv_geometry::Geometry;
use super::super::{Product, gemm};

/// Output pixels per tile side.
pub(super) const TILE: usize = 4;
/// Input pixels per tile side (the tile plus the kernel's reach).
const PATCH: usize = TILE + 2;
/// Points of the transform, `PATCH²`: one GEMM each.
pub(super) const POINTS: usize = PATCH * PATCH;
/// `G·g·Gᵀ` for the 3×3 kernels of output channels `channels`, into `kernels`
/// laid out `[POINTS, channels, c_in]` (point ξ's matrix at `ξ·channels·c_in`,
/// row stride `c_in`): one GEMM of `G ⊗ G` (36×9) with the weights read as
/// `[9, channels·c_in]`.
pub(super) fn transform_kernels(
    g: &Geometry,
    weight: &[f32],
    channels: std::ops::Range<usize>,
    kernels: &mut Vec<f32>,
) {
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

/// Tiles processed together: one vector register of f32 on AVX-512.
const LANES: usize = 16;
/// One value per lane.
type Lanes = [f32; LANES];

/// Applies a six-value transform lane by lane (the compiler turns the loop into
/// vector instructions).
#[inline(always)]
fn per_lane<const N: usize>(
    values: &[Lanes; PATCH],
    transform: impl Fn([f32; PATCH]) -> [f32; N],
) -> [Lanes; N] {
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
pub(super) struct PatchRow {
    /// First output row of the tiles (the patches start `padding` rows above).
    pub(super) first_y: usize,
    pub(super) tile_cols: usize,
    /// The row's first tile among the band's.
    pub(super) offset: usize,
    /// Tiles in the band: the distance between two points' values.
    pub(super) stride: usize,
}

impl PatchRow {
    /// `Bᵀ·d·B` of the row's patches of `plane` into `dst` (`[POINTS, stride]`).
    ///
    /// The transform runs down the columns first, over whole padded rows (side by
    /// side, so it vectorises); the transformed rows are then split into the four
    /// pixel phases of a tile, which makes the pass along the rows a sum of
    /// side-by-side arrays too.
    #[inline(always)]
    pub(super) fn transform(
        &self,
        g: &Geometry,
        plane: &[f32],
        scratch: &mut Vec<f32>,
        dst: &mut [f32],
    ) {
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
                store(
                    &mut columns[a * line_len + start..(a + 1) * line_len],
                    lanes,
                );
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
                let values: [Lanes; PATCH] =
                    std::array::from_fn(|k| std::array::from_fn(|lane| pixels[TILE * lane + k]));
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
            let y = (self.first_y + i)
                .checked_sub(g.padding)
                .filter(|&y| y < g.in_h);
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
pub(super) fn untransform_tile_row(
    g: &Geometry,
    points: &[f32],
    (tiles, offset): (usize, usize),
    bias: f32,
    rows: &mut [f32],
) {
    let tile_cols = g.out_w.div_ceil(TILE);
    for start in (0..tile_cols).step_by(LANES) {
        let m: [Lanes; POINTS] = std::array::from_fn(|point| {
            load(&points[point * tiles + offset..][..tile_cols], start)
        });
        // Down the columns: for each column b, four values from the six points (a, b).
        let columns: [[Lanes; TILE]; PATCH] = std::array::from_fn(|b| {
            per_lane(&std::array::from_fn(|a| m[a * PATCH + b]), output_transform)
        });
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
