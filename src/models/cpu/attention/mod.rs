//! Multi-head attention on the CPU, without a score tensor for every head at once.
//!
//! Heads of up to 160 channels (every UNet's) go through register tiles of
//! sixteen queries ([`tiles`]); wider ones (the VAE's 512) through GEMMs over
//! blocks of queries ([`blocks`]), which read a wide head's keys and values once
//! per block instead of once per sixteen queries.

mod blocks;
mod tiles;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};

use super::contiguous_f32;
use super::vector::Widest;

/// The widest head the register tiles take: SD 1.5's 40/80/160 and SDXL's 64.
const WIDEST_TILED_HEAD: usize = 160;

/// `softmax(q·kᵀ·scale)·v` per head; q `[batch, q_len, heads·dim]`, k and v
/// `[batch, kv_len, heads·dim]`, output shaped like q.
#[derive(Debug, Clone, Copy)]
pub struct CpuAttention {
    pub heads: usize,
    pub scale: f32,
    /// The widest vectors to use ([`Widest::Avx512`]: whatever the CPU has).
    pub widest: Widest,
}

impl CustomOp3 for CpuAttention {
    fn name(&self) -> &'static str {
        "minus-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let sizes = self.sizes(q_layout, k_layout, v_layout)?;
        let operands = (
            contiguous_f32(q, q_layout, name)?,
            contiguous_f32(k, k_layout, name)?,
            contiguous_f32(v, v_layout, name)?,
        );
        let out = if sizes.head_dim <= WIDEST_TILED_HEAD {
            tiles::attend(self, &sizes, operands)
        } else {
            blocks::attend(self, &sizes, operands)
        };
        Ok((CpuStorage::F32(out), q_layout.shape().clone()))
    }
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    batch: usize,
    q_len: usize,
    kv_len: usize,
    /// `heads · head_dim`: the row stride of q, k, v and the output.
    width: usize,
    head_dim: usize,
}

impl CpuAttention {
    /// The sizes of attending with `q`, `k` and `v`, or why their shapes do not fit.
    fn sizes(
        &self,
        q_layout: &Layout,
        k_layout: &Layout,
        v_layout: &Layout,
    ) -> candle_core::Result<Sizes> {
        let name = self.name();
        let (batch, q_len, width) = q_layout.shape().dims3()?;
        let (k_batch, kv_len, k_width) = k_layout.shape().dims3()?;
        if k_layout.shape() != v_layout.shape()
            || k_batch != batch
            || k_width != width
            || kv_len == 0
            || width == 0
            || self.heads == 0
            || width % self.heads != 0
        {
            candle_core::bail!(
                "{name}: q {:?}, k {:?}, v {:?} do not fit {} heads",
                q_layout.shape(),
                k_layout.shape(),
                v_layout.shape(),
                self.heads
            );
        }
        Ok(Sizes {
            batch,
            q_len,
            kv_len,
            width,
            head_dim: width / self.heads,
        })
    }
}
