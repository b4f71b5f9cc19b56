//! Attention for wide heads (the VAE's 512 channels): scores for a block of
//! queries with one GEMM, a softmax in place, and a second GEMM into the output.
//!
//! Deep score products suit a GEMM, and a block of many queries reads each key
//! and value once for all of them; the register tiles of [`super::tiles`] would
//! stream a wide head's keys and values again for every sixteen queries.

use rayon::prelude::*;

use crate::models::cpu::math::{dispatch, exp};
use crate::models::cpu::{Product, SharedOut, gemm};

use super::{CpuAttention, Sizes};

/// Score elements per block (4 MiB of f32). Every block repacks its head's keys
/// and values for the GEMMs, so blocks are as large as the shared cache allows:
/// at 4096 tokens this was 8% faster than blocks that fit in L2.
const BLOCK_SCORES: usize = 1 << 20;

/// `softmax(q·kᵀ·scale)·v` for every head, in blocks of query rows; `q`, `k` and
/// `v` contiguous `[batch, len, heads·head_dim]` (sizes in `sizes`).
pub(super) fn attend(
    op: &CpuAttention,
    sizes: &Sizes,
    (q, k, v): (&[f32], &[f32], &[f32]),
) -> Vec<f32> {
    let block_rows = (BLOCK_SCORES / sizes.kv_len).clamp(1, sizes.q_len.max(1));
    let blocks = Blocks {
        op: *op,
        sizes: *sizes,
        block_rows,
        count: sizes.q_len.div_ceil(block_rows),
    };
    let mut out = vec![0f32; q.len()];
    let out_ptr = SharedOut(out.as_mut_ptr());
    (0..sizes.batch * op.heads * blocks.count)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            // SAFETY: every task writes its own block of rows of one head.
            unsafe { blocks.attend_block((q, k, v), out_ptr, task, scores) }
        });
    out
}

/// How one call's queries are cut into blocks.
#[derive(Clone, Copy)]
struct Blocks {
    op: CpuAttention,
    sizes: Sizes,
    /// Query rows per block (the last block may have fewer).
    block_rows: usize,
    /// Blocks per (sample, head).
    count: usize,
}

impl Blocks {
    /// Task `task`, one (sample, head, block of query rows): scores into `scores`, a
    /// softmax in place, then their product with the values into `out`.
    ///
    /// # Safety
    /// `out` must address the whole output (shaped like q), and no other thread may
    /// write this task's block at the same time.
    unsafe fn attend_block(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        out: SharedOut,
        task: usize,
        scores: &mut Vec<f32>,
    ) {
        let Sizes {
            q_len,
            kv_len,
            width,
            head_dim,
            ..
        } = self.sizes;
        let (block_rows, blocks) = (self.block_rows, self.count);
        let (sample_head, block) = (task / blocks, task % blocks);
        let heads = self.op.heads;
        let (sample, head) = (sample_head / heads, sample_head % heads);
        let first_row = block * block_rows;
        let rows = block_rows.min(q_len - first_row);
        let column = head * head_dim;
        let q_block = &q[(sample * q_len + first_row) * width + column..];
        let k_head = &k[sample * kv_len * width + column..];
        let v_head = &v[sample * kv_len * width + column..];
        scores.clear();
        scores.resize(rows * kv_len, 0.0);
        // SAFETY: q_block holds `rows` rows of `head_dim` at stride `width`; k_head
        // read transposed is [head_dim, kv_len] (column stride `width`).
        unsafe {
            gemm(
                (rows, kv_len, head_dim),
                scores.as_mut_ptr(),
                kv_len,
                q_block.as_ptr(),
                width,
                k_head.as_ptr(),
                (1, width),
                Product {
                    scale: self.op.scale,
                    accumulate: false,
                    parallel: false,
                },
            )
        };
        let mut inv_sums = vec![0f32; rows];
        dispatch!(|| softmax_rows_unnormalized(scores, kv_len, &mut inv_sums));
        let out_block = out.at((sample * q_len + first_row) * width + column);
        // SAFETY: this task alone writes rows `first_row..first_row + rows`, columns
        // `column..column + head_dim` of sample `sample` (the caller's promise); v_head
        // is [kv_len, head_dim] at row stride `width`.
        unsafe {
            gemm(
                (rows, head_dim, kv_len),
                out_block,
                width,
                scores.as_ptr(),
                kv_len,
                v_head.as_ptr(),
                (width, 1),
                Product {
                    scale: 1.0,
                    accumulate: false,
                    parallel: false,
                },
            );
            for (row, inv_sum) in inv_sums.iter().enumerate() {
                let out_row = std::slice::from_raw_parts_mut(out_block.add(row * width), head_dim);
                out_row.iter_mut().for_each(|x| *x *= inv_sum);
            }
        }
    }
}

/// Replaces each row of `scores` by `exp(x - max)` and stores `1 / sum` of the
/// row, so the normalisation can be applied to the much smaller output.
#[inline(always)]
fn softmax_rows_unnormalized(scores: &mut [f32], row_len: usize, inv_sums: &mut [f32]) {
    const LANES: usize = 16;
    // Whole chunks of LANES keep the accumulators in registers; the tail goes apart.
    let full = row_len / LANES * LANES;
    for (row, inv_sum) in scores.chunks_exact_mut(row_len).zip(inv_sums) {
        let (body, tail) = row.split_at_mut(full);
        let mut maxima = [f32::NEG_INFINITY; LANES];
        for chunk in body.chunks_exact(LANES) {
            for (lane, &x) in maxima.iter_mut().zip(chunk) {
                *lane = if x > *lane { x } else { *lane };
            }
        }
        let max = maxima
            .iter()
            .chain(tail.iter())
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sums = [0f32; LANES];
        for chunk in body.chunks_exact_mut(LANES) {
            for (lane, x) in sums.iter_mut().zip(chunk) {
                *x = exp(*x - max);
                *lane += *x;
            }
        }
        let mut sum = sums.iter().sum::<f32>();
        for x in tail {
            *x = exp(*x - max);
            sum += *x;
        }
        *inv_sum = 1.0 / sum;
    }
}
