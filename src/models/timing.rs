//! Time per kind of layer, for `minus bench --layers`.
//!
//! Off unless a bench turns it on for its thread. While on, each timed layer waits for its device
//! before and after it runs, so GPU figures hold the layer's own kernels (and lose the
//! overlap between layers); the rest of a step (layer norms, residual sums, resampling,
//! the time embedding) is what the step's total leaves over.

use std::cell::RefCell;
use std::time::Instant;

use candle_core::{Device, Result};

/// The kinds of layer that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// 2-D convolutions (with their bias).
    Convolution,
    /// Fully connected layers (with their bias).
    Linear,
    /// Scaled dot-product attention, from projected queries, keys and values.
    Attention,
    /// Group normalisation (with SiLU where it is fused in).
    GroupNorm,
    /// The GEGLU gate of the transformers' feed-forward.
    Geglu,
}

impl LayerKind {
    /// Every kind, in the order figures are printed.
    pub const ALL: [LayerKind; 5] = [
        Self::Convolution,
        Self::Linear,
        Self::Attention,
        Self::GroupNorm,
        Self::Geglu,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Convolution => "convolution",
            Self::Linear => "linear",
            Self::Attention => "attention",
            Self::GroupNorm => "group norm",
            Self::Geglu => "GEGLU",
        }
    }
}

/// Time and calls of one kind of layer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindTotal {
    /// Seconds spent in layers of this kind.
    pub secs: f64,
    /// How many layers of this kind ran.
    pub calls: usize,
}

thread_local! {
    /// The totals of this thread while it times layers; `None` while it does not.
    /// Per thread, so a bench times its own layers only (and tests do not mix).
    static TOTALS: RefCell<Option<[KindTotal; LayerKind::ALL.len()]>> = const { RefCell::new(None) };
}

/// Starts timing the layers this thread runs, from zero.
pub fn start() {
    TOTALS.with_borrow_mut(|totals| *totals = Some(Default::default()));
}

/// Stops timing and returns the totals since [`start`], per kind.
pub fn finish() -> Vec<(LayerKind, KindTotal)> {
    let totals = TOTALS.with_borrow_mut(Option::take).unwrap_or_default();
    LayerKind::ALL.into_iter().zip(totals).collect()
}

/// Runs one layer, adding its time to `kind`'s total while this thread times layers.
pub(crate) fn timed<T>(
    kind: LayerKind,
    device: &Device,
    layer: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if TOTALS.with_borrow(Option::is_none) {
        return layer();
    }
    device.synchronize()?;
    let started = Instant::now();
    let out = layer()?;
    device.synchronize()?;
    let secs = started.elapsed().as_secs_f64();
    TOTALS.with_borrow_mut(|totals| {
        if let Some(totals) = totals {
            let total = &mut totals[kind as usize];
            total.secs += secs;
            total.calls += 1;
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_counted_only_while_timing_is_on() -> Result<()> {
        let device = Device::Cpu;
        timed(LayerKind::Geglu, &device, || Ok(()))?;
        start();
        for _ in 0..3 {
            timed(LayerKind::Geglu, &device, || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                Ok(())
            })?;
        }
        let totals = finish();
        timed(LayerKind::Geglu, &device, || Ok(()))?;
        let (kind, geglu) = totals[LayerKind::Geglu as usize];
        assert_eq!(kind, LayerKind::Geglu);
        assert_eq!(geglu.calls, 3);
        assert!(geglu.secs >= 0.006, "{}", geglu.secs);
        Ok(())
    }
}
