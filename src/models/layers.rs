//! Small building blocks shared by the networks.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::ops::softmax_last_dim;

use super::cpu;
use super::timing::{LayerKind, timed};

/// At most this many attention scores (batch × heads × query rows × keys) exist at
/// once on the generic path: queries are processed in slices that fit. It is 4096
/// query rows at 512² with CFG (2 × 8 heads × 4096 keys); larger images take more,
/// smaller slices instead of more memory (at 768² one slice would otherwise be 2.3×
/// as large).
const MAX_SCORES: usize = 1 << 28;
/// The same on the CPU, where half-precision scores also get an f32 copy and its
/// softmax (10 bytes a score in f16): slices of 16 Mi scores keep an f16 run's
/// attention at 160 MiB instead of 2.5 GiB at 512², at a few more, smaller GEMMs.
const MAX_CPU_SCORES: usize = 1 << 24;

/// The score budget of the generic path on the CPU or a GPU.
fn max_scores(on_cpu: bool) -> usize {
    if on_cpu { MAX_CPU_SCORES } else { MAX_SCORES }
}

/// Peak bytes of [`attention`]'s scores over `scores` scores (batch × heads × query
/// rows × keys) in `dtype`, for memory estimates: the largest slice and its softmax
/// (on the CPU, half-precision scores' f32 copy too); the CPU's f32 kernel works in
/// small blocks and keeps none.
pub fn attention_scores_bytes(scores: u64, dtype: DType, on_cpu: bool) -> u64 {
    let slice = scores.min(max_scores(on_cpu) as u64);
    let size = dtype.size_in_bytes() as u64;
    let per_score = match (on_cpu, dtype) {
        (true, DType::F32) => 0,
        (true, _) => size + 2 * 4,
        (false, _) => 2 * size,
    };
    slice * per_score
}

/// Multi-head scaled dot-product attention.
///
/// `q`: `[batch, q_len, heads*head_dim]`, `k`/`v`: `[batch, kv_len, heads*head_dim]`;
/// `mask` (optional) is added to the scores and broadcasts to `[batch, heads, q_len, kv_len]`.
/// Returns `[batch, q_len, heads*head_dim]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let channels = q.dim(2)?;
    // Head counts come from config files and tensor shapes: refuse, don't divide by zero.
    if heads == 0 || channels % heads != 0 {
        candle_core::bail!("{channels} channels cannot be split into {heads} attention heads");
    }
    timed(LayerKind::Attention, q.device(), || {
        if mask.is_none() && cpu::applies_to(q) {
            let op = cpu::CpuAttention {
                heads,
                scale: scale_for(channels / heads) as f32,
                widest: cpu::Widest::Avx512,
            };
            return q
                .contiguous()?
                .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op);
        }
        sliced_attention(q, k, v, heads, mask, max_scores(q.device().is_cpu()))
    })
}

/// `1/√head_dim`, the scale of the scores.
fn scale_for(head_dim: usize) -> f64 {
    1.0 / (head_dim as f64).sqrt()
}

/// [`attention`] from candle's operations (any device and dtype), with the queries
/// in slices of at most `max_scores` scores. `heads` must divide the channels.
fn sliced_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
    max_scores: usize,
) -> candle_core::Result<Tensor> {
    let (batch, q_len, channels) = q.dims3()?;
    let kv_len = k.dim(1)?;
    let head_dim = channels / heads;
    let split = |t: &Tensor, len: usize| {
        t.reshape((batch, len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let q = (split(q, q_len)? * scale_for(head_dim))?;
    // The GEMM takes the transposed key as it is (a stride, not a copy).
    let k_t = split(k, kv_len)?.transpose(2, 3)?;
    let v = split(v, kv_len)?;
    let slice_rows = (max_scores / (batch * heads * kv_len).max(1)).clamp(1, q_len.max(1));
    let mut slices = Vec::with_capacity(q_len.div_ceil(slice_rows));
    for start in (0..q_len).step_by(slice_rows) {
        let rows = slice_rows.min(q_len - start);
        let q_slice = q.narrow(2, start, rows)?;
        let mut scores = q_slice.matmul(&k_t)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = softmax_with_f32_sums(&scores)?;
        slices.push(probs.matmul(&v)?);
    }
    let out = if slices.len() == 1 {
        slices.remove(0)
    } else {
        Tensor::cat(&slices, 2)?
    };
    out.transpose(1, 2)?.reshape((batch, q_len, channels))
}

/// Softmax over the last dimension with its sums in f32 whatever the input dtype.
///
/// candle's CUDA and Metal kernels already sum f16 and bf16 rows in f32, so
/// half-precision scores go to them as they are: an f32 copy there would cost two
/// more passes over the largest tensor of the step and three times its memory. The
/// CPU gets the f32 copy (its kernel would sum in f16).
fn softmax_with_f32_sums(scores: &Tensor) -> candle_core::Result<Tensor> {
    let dtype = scores.dtype();
    if dtype == DType::F32 || !scores.device().is_cpu() {
        softmax_last_dim(scores)
    } else {
        softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)
    }
}

/// The activations the networks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, CLIP's text encoder.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
}

impl Activation {
    /// Parses the `hidden_act` value of a transformers config.
    pub fn from_config_name(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            _ => None,
        }
    }
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu if cpu::applies_to(xs) => xs.contiguous()?.apply_op1_no_bwd(&cpu::CpuGelu),
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
        }
    }
}

/// Splits the last dimension in two halves.
pub fn chunk2_last(xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let half = xs.dim(D::Minus1)? / 2;
    Ok((
        xs.narrow(D::Minus1, 0, half)?,
        xs.narrow(D::Minus1, half, half)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::cpu::test_support::{max_relative_difference, seeded_randn};
    use candle_core::Device;

    #[test]
    fn bad_head_counts_are_errors_not_panics() -> candle_core::Result<()> {
        let x = Tensor::zeros((1, 3, 8), DType::F32, &Device::Cpu)?;
        for heads in [0, 3] {
            let message = attention(&x, &x, &x, heads, None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains(&format!(
                    "8 channels cannot be split into {heads} attention heads"
                )),
                "{heads} heads: {message}"
            );
        }
        assert_eq!(attention(&x, &x, &x, 2, None)?.dims(), &[1, 3, 8]);
        Ok(())
    }

    #[test]
    fn cpu_kernel_matches_the_generic_path() -> candle_core::Result<()> {
        let device = Device::Cpu;
        // Heads of 8, 40, 10 and 6 channels take the register tiles of 8 (AVX-512), 5
        // (else), 4 then 1 channels; the query and key counts leave partial groups and
        // key tiles. A head of 200 takes the GEMM blocks, several per head at 1100
        // keys.
        for (q_len, kv_len, heads, width) in [
            (2500, 1000, 3, 24),
            (7, 3, 3, 24),
            (37, 77, 2, 80),
            (16, 4096, 1, 40),
            (50, 20, 2, 20),
            (33, 13, 2, 12),
            (1000, 1100, 1, 200),
        ] {
            let q = seeded_randn(9, 1.0, &[2, q_len, width])?;
            let k = seeded_randn(10, 1.0, &[2, kv_len, width])?;
            let v = seeded_randn(11, 1.0, &[2, kv_len, width])?;
            // A mask (here all zeros) takes candle's generic path.
            let zeros = Tensor::zeros((1, 1, 1, kv_len), DType::F32, &device)?;
            let generic = attention(&q, &k, &v, heads, Some(&zeros))?;
            // Every vector width this CPU has, not only the widest.
            for widest in [
                cpu::Widest::Portable,
                cpu::Widest::Avx2,
                cpu::Widest::Avx512,
            ] {
                let op = cpu::CpuAttention {
                    heads,
                    scale: scale_for(width / heads) as f32,
                    widest,
                };
                let kernel = q.apply_op3_no_bwd(&k, &v, &op)?;
                let difference = max_relative_difference(&kernel, &generic)?;
                assert!(
                    difference < 1e-5,
                    "{q_len}x{kv_len}, {widest:?}: {difference}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn query_slices_join_into_the_whole_result() -> candle_core::Result<()> {
        let q = seeded_randn(12, 1.0, &[2, 50, 8])?;
        let k = seeded_randn(13, 1.0, &[2, 30, 8])?;
        let v = seeded_randn(14, 1.0, &[2, 30, 8])?;
        let whole = sliced_attention(&q, &k, &v, 2, None, usize::MAX)?;
        // 2 × 2 heads × 30 keys per query row: slices of 7 rows, the last of 1.
        let sliced = sliced_attention(&q, &k, &v, 2, None, 7 * 120 + 5)?;
        assert_eq!(sliced.dims(), &[2, 50, 8]);
        assert!(max_relative_difference(&sliced, &whole)? < 1e-6);
        Ok(())
    }
}
