//! CPU kernels for the operations that dominate a denoising step.
//!
//! candle's generic CPU ops spend most of a step outside the matrix multiply: a
//! scattering im2col for every convolution tile, one pass over memory per
//! elementwise op, and a full `[heads, q, kv]` score tensor for attention. These
//! kernels do the same arithmetic in fewer passes, with one large GEMM where
//! candle issues many small ones. They run for contiguous f32 tensors on the
//! CPU; every other device and dtype takes candle's path, so GPU builds need
//! nothing from here.

mod attention;
mod conv;
mod conv_geometry;
mod geglu;
mod gelu;
mod group_norm;
mod linear;
mod math;
#[cfg(test)]
pub(crate) mod test_support;
mod vector;
mod winograd;

pub use attention::CpuAttention;
pub use conv::CpuConv2d;
pub use geglu::CpuGeglu;
pub use gelu::CpuGelu;
pub use group_norm::CpuGroupNorm;
pub use linear::CpuLinear;
pub use vector::Widest;

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};

/// Whether the CPU kernels apply to `xs` (f32 on the CPU).
pub fn applies_to(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// The elements of a contiguous f32 operand, or an error naming the kernel.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    kernel: &str,
) -> candle_core::Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{kernel}: operand is not contiguous")))?;
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// `dims` with the last dimension replaced by `last` (the output shape of ops
/// that map each row of the last axis to a row of another width).
fn with_last_dim(dims: &[usize], last: usize) -> Shape {
    let mut out_dims = dims.to_vec();
    if let Some(out_last) = out_dims.last_mut() {
        *out_last = last;
    }
    Shape::from(out_dims)
}

/// An output buffer shared by parallel tasks that each write a disjoint part of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the kernels hand each task its own rows/columns of the buffer, and the
// buffer outlives the parallel loop.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The address `offset` elements in (a method, so closures capture the Sync wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// How many threads the kernels split work over (candle's own setting).
fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// How a GEMM's product meets its destination.
#[derive(Debug, Clone, Copy)]
struct Product {
    /// Factor applied to `lhs · rhs`.
    scale: f32,
    /// Add to what `dst` holds (else overwrite it).
    accumulate: bool,
    /// Split the GEMM over the kernels' threads (else run it on the calling one).
    parallel: bool,
}

/// `dst[m×n] (+)= scale · lhs[m×k] · rhs[k×n]`; dst and lhs row-major with the given
/// row strides, rhs with `(row, column)` strides (so a transposed matrix needs no copy).
///
/// # Safety
/// The pointers must address matrices of the stated sizes and strides, and
/// `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: *const f32,
    lhs_row_stride: usize,
    rhs: *const f32,
    (rhs_row_stride, rhs_column_stride): (usize, usize),
    product: Product,
) {
    let parallelism = if product.parallel && threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller guarantees the matrices; gemm reads and writes only inside them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            product.accumulate,
            lhs,
            1,
            lhs_row_stride as isize,
            rhs,
            rhs_column_stride as isize,
            rhs_row_stride as isize,
            1.0f32,
            product.scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}
