//! Attention sixteen queries of one head at a time, with register
//! tiles shaped for narrow heads (Stable Diffusion's are 40 to 160 wide).
//!
//! A GEMM library is a poor fit here: the score product is only `head_dim` deep
//! and the value product only `head_dim` wide, so packing and edge handling cost
//! as much as the arithmetic. Instead each task keeps its scores transposed,
//! `[key, query]`, with the sixteen queries in the vector lanes: the softmax runs
//! down the keys lane by lane, and both products take keys and values as
//! broadcast scalars from rows copied once per call into head-major order.

use rayon::prelude::*;

use super::{CpuAttention, Sizes};
use crate::models::cpu::SharedOut;
use crate::models::cpu::vector::{LANES, Vector, WithVector, dispatch_up_to};

/// Keys per score tile: with [`LANES`] queries, six accumulators with AVX-512 and
/// twelve with AVX2, enough to hide the FMA latency and few enough to stay in
/// registers.
const KEY_ROWS: usize = 6;
/// Multiply-adds a rayon job should hold at least, so short cross-attention
/// tasks (77 keys) are not swamped by scheduling.
const MIN_JOB_FMAS: usize = 1 << 20;

/// One query vector per key: a row of the transposed scores.
type Lanes = [f32; LANES];

/// `softmax(q·kᵀ·scale)·v` for every head, sixteen queries a task; `q`, `k` and
/// `v` contiguous `[batch, len, heads·head_dim]` (sizes in `sizes`).
pub(super) fn attend(
    op: &CpuAttention,
    sizes: &Sizes,
    (q, k, v): (&[f32], &[f32], &[f32]),
) -> Vec<f32> {
    let groups = sizes.q_len.div_ceil(LANES);
    let operands = Operands {
        q,
        keys: by_head(k, sizes),
        values: by_head(v, sizes),
    };
    let mut out = vec![0f32; q.len()];
    let out_ptr = SharedOut(out.as_mut_ptr());
    let task_fmas = 2 * sizes.kv_len * sizes.head_dim * LANES;
    (0..sizes.batch * op.heads * groups)
        .into_par_iter()
        .with_min_len((MIN_JOB_FMAS / task_fmas.max(1)).max(1))
        .for_each_init(Scratch::default, |scratch, task| {
            let group = Group::of_task(sizes, task, op.heads);
            // SAFETY: every task writes the output rows of its own query group and head.
            unsafe { attend_group(op, sizes, &operands, &group, out_ptr, scratch) }
        });
    out
}

/// The query elements of one call, and its keys and values head by head.
struct Operands<'a> {
    q: &'a [f32],
    /// `[batch · heads][kv_len][head_dim]`.
    keys: Vec<f32>,
    /// `[batch · heads][kv_len][head_dim]`.
    values: Vec<f32>,
}

/// `m` (`[batch][kv_len][heads · head_dim]`) as `[batch · heads][kv_len][head_dim]`.
///
/// Every task streams its head's keys and values; rows `heads · head_dim` apart
/// cross a page every few rows, where the prefetchers stop, and cost more than
/// this copy.
fn by_head(m: &[f32], sizes: &Sizes) -> Vec<f32> {
    let Sizes {
        kv_len,
        width,
        head_dim,
        ..
    } = *sizes;
    let heads = width / head_dim;
    let mut packed = vec![0f32; m.len()];
    packed
        .par_chunks_mut(kv_len * head_dim)
        .enumerate()
        .for_each(|(sample_head, dst)| {
            let (sample, head) = (sample_head / heads, sample_head % heads);
            let rows = m[sample * kv_len * width..][..kv_len * width].chunks_exact(width);
            for (dst, row) in dst.chunks_exact_mut(head_dim).zip(rows) {
                dst.copy_from_slice(&row[head * head_dim..][..head_dim]);
            }
        });
    packed
}

/// Where one task reads and writes.
struct Group {
    sample: usize,
    /// `sample · heads + head`.
    sample_head: usize,
    /// The head's first channel in a row.
    column: usize,
    first_row: usize,
    /// Real queries in the group (the rest of the lanes are zero padding).
    rows: usize,
}

impl Group {
    /// Task `task`'s sample, head and query group.
    fn of_task(sizes: &Sizes, task: usize, heads: usize) -> Group {
        let groups = sizes.q_len.div_ceil(LANES);
        let (sample_head, group) = (task / groups, task % groups);
        let first_row = group * LANES;
        Group {
            sample: sample_head / heads,
            sample_head,
            column: sample_head % heads * sizes.head_dim,
            first_row,
            rows: LANES.min(sizes.q_len - first_row),
        }
    }
}

/// Per-thread buffers, kept across tasks.
#[derive(Default)]
struct Scratch {
    /// The group's queries transposed, `[head_dim][LANES]`.
    queries: Vec<Lanes>,
    /// Scores, then probabilities, `[kv_len][LANES]`.
    scores: Vec<Lanes>,
    /// The output's sums, transposed: `[head_dim][LANES]`.
    columns: Vec<Lanes>,
}

/// One task: the group's queries transposed into `scratch`, then scores, softmax
/// and the product with the values, compiled for the widest vectors the CPU has.
///
/// # Safety
/// `out` must address the whole output (shaped like q), and no other thread may
/// write this group's rows of this head at the same time.
unsafe fn attend_group(
    op: &CpuAttention,
    sizes: &Sizes,
    operands: &Operands,
    group: &Group,
    out: SharedOut,
    scratch: &mut Scratch,
) {
    let Sizes {
        q_len,
        kv_len,
        width,
        head_dim,
        ..
    } = *sizes;
    scratch.queries.clear();
    scratch.queries.resize(head_dim, [0.0; LANES]);
    let first = (group.sample * q_len + group.first_row) * width + group.column;
    for (lane, row) in operands.q[first..]
        .chunks(width)
        .take(group.rows)
        .enumerate()
    {
        for (channel, &x) in scratch.queries.iter_mut().zip(&row[..head_dim]) {
            channel[lane] = x;
        }
    }
    scratch.scores.resize(kv_len, [0.0; LANES]);
    let head_len = kv_len * head_dim;
    let head_start = group.sample_head * head_len;
    let scores = &mut scratch.scores;
    let score_tiles = ScoreTiles {
        queries: &scratch.queries,
        keys: &operands.keys[head_start..][..head_len],
        scale: op.scale,
        scores,
    };
    let maxima = dispatch_up_to(score_tiles, op.widest);
    let inv_sums = dispatch_up_to(Softmax { scores, maxima }, op.widest);
    scratch.columns.clear();
    scratch.columns.resize(head_dim, [0.0; LANES]);
    let value_tiles = ValueTiles {
        probabilities: scores,
        values: &operands.values[head_start..][..head_len],
        columns: &mut scratch.columns,
    };
    dispatch_up_to(value_tiles, op.widest);
    for (channel, column) in scratch.columns.iter().enumerate() {
        for (lane, (&x, inv_sum)) in column.iter().zip(inv_sums).enumerate().take(group.rows) {
            // SAFETY: row `lane` of the group and a channel of its head, which no other
            // task writes (the caller's promise).
            unsafe { *out.at(first + lane * width + channel) = x * inv_sum };
        }
    }
}

/// `scale · (key · query)` for every key and query, in tiles of [`KEY_ROWS`]
/// keys; returns each query's largest score.
struct ScoreTiles<'a> {
    /// `[head_dim][LANES]`.
    queries: &'a [Lanes],
    /// `[kv_len][head_dim]`.
    keys: &'a [f32],
    scale: f32,
    /// `[kv_len][LANES]`, written.
    scores: &'a mut [Lanes],
}

impl WithVector for ScoreTiles<'_> {
    type Output = Lanes;

    #[inline(always)]
    fn run<V: Vector>(self) -> Lanes {
        let head_dim = self.queries.len();
        let whole = self.scores.len() / KEY_ROWS * KEY_ROWS;
        let (tiles, tail) = self.scores.split_at_mut(whole);
        let (tile_keys, tail_keys) = self.keys.split_at(whole * head_dim);
        // SAFETY: the vectors were dispatched for this CPU.
        let mut maxima = unsafe { V::splat(f32::NEG_INFINITY) };
        for (keys, tile) in tile_keys
            .chunks_exact(KEY_ROWS * head_dim)
            .zip(tiles.chunks_exact_mut(KEY_ROWS))
        {
            maxima = score_tile::<V, KEY_ROWS>(self.queries, keys, self.scale, tile, maxima);
        }
        for (key, score) in tail_keys.chunks_exact(head_dim).zip(tail) {
            let score = std::slice::from_mut(score);
            maxima = score_tile::<V, 1>(self.queries, key, self.scale, score, maxima);
        }
        let mut lanes = [0.0; LANES];
        // SAFETY: as above; `lanes` holds sixteen elements.
        unsafe { maxima.store(lanes.as_mut_ptr()) };
        lanes
    }
}

/// One tile of [`ScoreTiles`]: `ROWS` keys (`[ROWS][head_dim]`) and as many rows
/// of `tile`; returns `maxima` raised to the tile's scores.
#[inline(always)]
fn score_tile<V: Vector, const ROWS: usize>(
    queries: &[Lanes],
    keys: &[f32],
    scale: f32,
    tile: &mut [Lanes],
    mut maxima: V,
) -> V {
    let head_dim = queries.len();
    let keys: [&[f32]; ROWS] = std::array::from_fn(|row| &keys[row * head_dim..][..head_dim]);
    // SAFETY: the vectors were dispatched for this CPU; every load and store
    // addresses one whole `Lanes` array.
    unsafe {
        let mut sums = [V::zero(); ROWS];
        for (channel, query) in queries.iter().enumerate() {
            let query = V::load(query.as_ptr());
            for (sum, key) in sums.iter_mut().zip(&keys) {
                *sum = V::splat(key[channel]).mul_add(query, *sum);
            }
        }
        for (dst, sum) in tile.iter_mut().zip(sums) {
            let score = sum.mul(V::splat(scale));
            maxima = score.max(maxima);
            score.store(dst.as_mut_ptr());
        }
    }
    maxima
}

/// Probabilities times values, into the transposed output sums, a chunk of keys
/// at a time so the chunk's values and probabilities stay in the first-level
/// cache while every tile of channels (8 with AVX-512 where the head width
/// allows, else 5 for heads of 40, 80 or 160, else 4, then single channels)
/// passes over them.
struct ValueTiles<'a> {
    /// `[kv_len][LANES]`.
    probabilities: &'a [Lanes],
    /// `[kv_len][head_dim]`.
    values: &'a [f32],
    /// `[head_dim][LANES]`, added to.
    columns: &'a mut [Lanes],
}

/// Value elements per chunk of keys (32 KiB).
const CHUNK_VALUES: usize = 1 << 13;

impl WithVector for ValueTiles<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Vector>(self) {
        let columns = self.columns;
        let head_dim = columns.len();
        let chunk_keys = (CHUNK_VALUES / head_dim.max(1)).max(KEY_ROWS);
        for (probabilities, values) in self
            .probabilities
            .chunks(chunk_keys)
            .zip(self.values.chunks(chunk_keys * head_dim))
        {
            let chunk = (probabilities, values, head_dim);
            // Eight accumulators keep two FMA units busy; with AVX2 they would not fit.
            if V::REGISTERS >= 16 && head_dim.is_multiple_of(8) {
                for (tile, first) in columns.chunks_exact_mut(8).zip((0..).step_by(8)) {
                    value_tile::<V, 8>(chunk, first, tile);
                }
            } else if head_dim.is_multiple_of(5) {
                for (tile, first) in columns.chunks_exact_mut(5).zip((0..).step_by(5)) {
                    value_tile::<V, 5>(chunk, first, tile);
                }
            } else {
                let (fours, ones) = columns.split_at_mut(head_dim / 4 * 4);
                for (tile, first) in fours.chunks_exact_mut(4).zip((0..).step_by(4)) {
                    value_tile::<V, 4>(chunk, first, tile);
                }
                for (tile, first) in ones.chunks_exact_mut(1).zip(head_dim / 4 * 4..) {
                    value_tile::<V, 1>(chunk, first, tile);
                }
            }
        }
    }
}

/// One tile of [`ValueTiles`]: channels `first..first + CHANNELS` (the rows of
/// `columns`) over one chunk of keys, `([keys][LANES], [keys][head_dim], head_dim)`.
#[inline(always)]
fn value_tile<V: Vector, const CHANNELS: usize>(
    (probabilities, values, head_dim): (&[Lanes], &[f32], usize),
    first: usize,
    columns: &mut [Lanes],
) {
    // Checked once here, so the loop below is only loads and multiply-adds.
    assert!(
        first + CHANNELS <= head_dim
            && probabilities.len() * head_dim <= values.len()
            && columns.len() >= CHANNELS
    );
    // SAFETY: the vectors were dispatched for this CPU; every load and store
    // addresses one whole `Lanes` array, and the value reads stay inside `values`
    // (`key · head_dim + first + CHANNELS` ≤ its length, asserted above).
    unsafe {
        let mut sums: [V; CHANNELS] = std::array::from_fn(|c| V::load(columns[c].as_ptr()));
        let mut row = values.as_ptr().add(first);
        for p in probabilities {
            let p = V::load(p.as_ptr());
            for (channel, sum) in sums.iter_mut().enumerate() {
                *sum = V::splat(*row.add(channel)).mul_add(p, *sum);
            }
            row = row.wrapping_add(head_dim);
        }
        for (column, sum) in columns.iter_mut().zip(sums) {
            sum.store(column.as_mut_ptr());
        }
    }
}

/// Replaces each query's scores (a lane, down the keys) by `exp(x - max)` and
/// returns `1 / sum` per query, so the normalisation can be applied to the much
/// smaller output.
struct Softmax<'a> {
    /// `[kv_len][LANES]`.
    scores: &'a mut [Lanes],
    /// Each query's largest score.
    maxima: Lanes,
}

impl WithVector for Softmax<'_> {
    type Output = Lanes;

    #[inline(always)]
    fn run<V: Vector>(self) -> Lanes {
        let mut inv_sums = [0.0; LANES];
        // SAFETY: the vectors were dispatched for this CPU; every load and store
        // addresses one whole `Lanes` array.
        unsafe {
            let maxima = V::load(self.maxima.as_ptr());
            let mut sums = V::zero();
            for row in self.scores.iter_mut() {
                let p = V::load(row.as_ptr()).sub(maxima).exp();
                sums = sums.add(p);
                p.store(row.as_mut_ptr());
            }
            sums.store(inv_sums.as_mut_ptr());
        }
        inv_sums.map(|sum| 1.0 / sum)
    }
}
