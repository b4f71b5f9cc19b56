//! A first test of a device before a run trusts it: a convolution, a matrix multiply
//! and a softmax in the run's number format, read back and compared with the same
//! arithmetic done in plain loops on the host.
//!
//! A device can open and still fail at its first kernel (candle's Metal matrix
//! multiply needs `simdgroup_matrix`, which Intel Macs lack; CUDA's bf16 kernels are
//! missing below compute capability 8.0), so opening it proves little. The reference
//! is computed without candle, so the test can fail on the CPU as well: a wrong CPU
//! kernel is not compared with itself.

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::softmax_last_dim;

/// Largest difference a working device may show, relative to the value (absolute for
/// values below 1): bf16 keeps 8 bits of mantissa, and a sum of 18 rounded products
/// may lose a few more.
const TOLERANCE: f32 = 0.05;
/// Input channels of the test image.
const C_IN: usize = 2;
/// Output channels of the convolution.
const C_OUT: usize = 2;
/// Side of the test image.
const SIDE: usize = 4;
/// Side of the square kernel (padding 1 keeps the image's side).
const KERNEL: usize = 3;
/// Pixels per output channel.
const PLANE: usize = SIDE * SIDE;
/// The matrix product is divided by this, and its softmax input by it again, so that
/// the probabilities stay away from 0 and 1 (a saturated softmax would hide errors).
const SCORE_SCALE: f32 = 16.0;

/// The test image, `[C_IN, SIDE, SIDE]` values `i / 32`.
fn image_value(index: usize) -> f32 {
    index as f32 / (C_IN * PLANE) as f32
}

/// The kernel, `[C_OUT, C_IN, KERNEL, KERNEL]` values `i / 36`.
fn kernel_value(index: usize) -> f32 {
    index as f32 / (C_OUT * C_IN * KERNEL * KERNEL) as f32
}

/// The test's arithmetic on `device` in `dtype`, as f32 values on the host: the
/// convolution's 32 features, the 4 scaled products of their rows and the 4
/// probabilities of the softmax over those.
fn smoke_values(device: &Device, dtype: DType) -> candle_core::Result<Vec<f32>> {
    let image = Tensor::from_vec(
        (0..C_IN * PLANE).map(image_value).collect(),
        (1, C_IN, SIDE, SIDE),
        device,
    )?;
    let kernel = Tensor::from_vec(
        (0..C_OUT * C_IN * KERNEL * KERNEL)
            .map(kernel_value)
            .collect(),
        (C_OUT, C_IN, KERNEL, KERNEL),
        device,
    )?;
    let features = image
        .to_dtype(dtype)?
        .conv2d(&kernel.to_dtype(dtype)?, 1, 1, 1, 1)?
        .reshape((C_OUT, PLANE))?;
    let scores = (features.matmul(&features.t()?)? / f64::from(SCORE_SCALE))?;
    let probabilities = softmax_last_dim(&(&scores / f64::from(SCORE_SCALE))?)?;
    let parts = [
        features.flatten_all()?,
        scores.flatten_all()?,
        probabilities.flatten_all()?,
    ];
    Tensor::cat(&parts, 0)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()
}

/// [`smoke_values`] in plain loops, in f64: what a working device computes.
fn reference_values() -> Vec<f32> {
    let image = |c: usize, y: usize, x: usize| f64::from(image_value((c * SIDE + y) * SIDE + x));
    let mut features = vec![0f64; C_OUT * PLANE];
    for (o, plane) in features.chunks_mut(PLANE).enumerate() {
        for (pixel, feature) in plane.iter_mut().enumerate() {
            let (y, x) = (pixel / SIDE, pixel % SIDE);
            for c in 0..C_IN {
                for tap in 0..KERNEL * KERNEL {
                    // Padding 1: the tap at (ky, kx) reads pixel (y + ky - 1, x + kx - 1).
                    let (source_y, source_x) = (
                        (y + tap / KERNEL).checked_sub(1),
                        (x + tap % KERNEL).checked_sub(1),
                    );
                    if let (Some(sy), Some(sx)) = (source_y, source_x)
                        && sy < SIDE
                        && sx < SIDE
                    {
                        let weight = kernel_value((o * C_IN + c) * KERNEL * KERNEL + tap);
                        *feature += f64::from(weight) * image(c, sy, sx);
                    }
                }
            }
        }
    }
    let row = |o: usize| &features[o * PLANE..(o + 1) * PLANE];
    let scores: Vec<f64> = (0..C_OUT * C_OUT)
        .map(|i| {
            let dot: f64 = row(i / C_OUT)
                .iter()
                .zip(row(i % C_OUT))
                .map(|(a, b)| a * b)
                .sum();
            dot / f64::from(SCORE_SCALE)
        })
        .collect();
    let probabilities = scores.chunks(C_OUT).flat_map(|row| {
        let exps: Vec<f64> = row
            .iter()
            .map(|s| (s / f64::from(SCORE_SCALE)).exp())
            .collect();
        let total: f64 = exps.iter().sum();
        exps.into_iter().map(move |e| e / total)
    });
    let all: Vec<f64> = features
        .iter()
        .chain(&scores)
        .copied()
        .chain(probabilities)
        .collect();
    all.into_iter().map(|v| v as f32).collect()
}

/// The largest difference of `got` from `want`, relative to each value (absolute
/// below 1); infinite for a NaN or a length that differs.
fn worst_difference(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0f32, |worst, d| {
            if d.is_nan() {
                f32::INFINITY
            } else {
                worst.max(d)
            }
        })
}

/// Runs the test on `device` in `dtype`; an error says what failed or differed.
pub fn smoke_test(device: &Device, dtype: DType) -> candle_core::Result<()> {
    let worst = worst_difference(&smoke_values(device, dtype)?, &reference_values());
    if worst > TOLERANCE {
        candle_core::bail!("wrong results (off by {worst} from the expected values)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_on_the_cpu_in_f32_and_f16() -> candle_core::Result<()> {
        smoke_test(&Device::Cpu, DType::F32)?;
        smoke_test(&Device::Cpu, DType::F16)?;
        // candle's CPU f32 agrees with the loops far closer than the tolerance.
        let worst = worst_difference(
            &smoke_values(&Device::Cpu, DType::F32)?,
            &reference_values(),
        );
        assert!(worst < 1e-5, "{worst}");
        Ok(())
    }

    #[test]
    fn the_reference_holds_known_values() {
        // Worked out apart from this code (by hand and with numpy): the first feature
        // is the four taps per channel that the padding leaves, 299/288; the scores
        // and the first probability are numpy's, and no softmax row is saturated.
        let values = reference_values();
        assert_eq!(values.len(), 32 + 4 + 4);
        assert!((values[0] - 299.0 / 288.0).abs() < 1e-6, "{}", values[0]);
        let scores = &values[32..36];
        let expected_scores = [3.835_416_3, 10.061_277, 10.061_277, 26.537_016];
        for (got, want) in scores.iter().zip(expected_scores) {
            assert!((got - want).abs() < 1e-4, "{scores:?}");
        }
        let probabilities = &values[36..];
        assert!(
            (probabilities[0] - 0.403_93).abs() < 1e-5,
            "{probabilities:?}"
        );
        assert!((probabilities[0] + probabilities[1] - 1.0).abs() < 1e-6);
        assert!(probabilities.iter().all(|p| (0.2..0.8).contains(p)));
    }

    #[test]
    fn wrong_values_are_refused() {
        let want = reference_values();
        assert_eq!(worst_difference(&want, &want), 0.0);
        // One feature 10% off, a NaN, a result cut short.
        let mut off = want.clone();
        off[7] *= 1.1;
        let mut nan = want.clone();
        nan[39] = f32::NAN;
        for got in [&off[..], &nan[..], &want[..36]] {
            assert!(worst_difference(got, &want) > TOLERANCE);
        }
    }
}
