//! The sizes of one 2-D convolution, shared by its two algorithms.

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub(super) c_in: usize,
    pub(super) in_h: usize,
    pub(super) in_w: usize,
    pub(super) c_out: usize,
    pub(super) k_h: usize,
    pub(super) k_w: usize,
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    pub(super) stride: usize,
    pub(super) padding: usize,
}
