//! Elementwise math written so the compiler vectorises it, with the widest
//! instruction set the CPU offers chosen at run time.

/// log2(e).
pub(super) const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln(2) split in a part exact in f32 and the remainder, for the range reduction.
pub(super) const LN2_HI: f32 = 0.693_145_75;
pub(super) const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting 1.5·2^23 rounds an f32 below 2^22 to the nearest integer.
pub(super) const ROUNDING_SHIFT: f32 = 12_582_912.0;

/// `e^x`, within about 2 ulp of the exact value for `x` in `[-87.3, 88.3]`
/// (clamped outside it). Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // The shifted value's low mantissa bits hold round(x·log2 e) as an integer, which
    // avoids a float-to-int conversion (Rust's saturating `as` does not vectorise).
    let shifted = x * LOG2_E + ROUNDING_SHIFT;
    let n = shifted - ROUNDING_SHIFT;
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDING_SHIFT.to_bits());
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r for |r| ≤ ln(2)/2; the degree-7 term bounds the error at 5e-9.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// `x · sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `1 / (n!·(2n+1))` for n = 0..12: the Taylor coefficients of erf.
const ERF_SERIES: [f32; 12] = [
    1.0,
    1.0 / 3.0,
    1.0 / 10.0,
    1.0 / 42.0,
    1.0 / 216.0,
    1.0 / 1320.0,
    1.0 / 9360.0,
    1.0 / 75600.0,
    1.0 / 685_440.0,
    1.0 / 6_894_720.0,
    1.0 / 76_204_800.0,
    1.0 / 918_086_400.0,
];

/// The error function, within 3e-7 of the exact value: a Taylor series for |x| < 1,
/// accurate to the last bit there, and Abramowitz and Stegun 7.1.26 (the
/// approximation torch's vectorised CPU `erf` uses) elsewhere. Both are computed
/// and one selected, so loops over it vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let far = (1.0 - poly * exp(-a * a)).copysign(x);
    // erf(x) = 2/√π · Σ (-x²)ⁿ x / (n!(2n+1)); twelve terms reach 1e-9 for |x| < 1.
    let minus_z = -(x * x);
    let series = ERF_SERIES
        .iter()
        .rev()
        .fold(0.0, |acc, &c| acc * minus_z + c);
    let near = std::f32::consts::FRAC_2_SQRT_PI * x * series;
    if a < 1.0 { near } else { far }
}

/// The exact (erf) GELU, `x · (1 + erf(x/√2)) / 2`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Runs `body` compiled for AVX-512 (with the `avx512` feature) or AVX2+FMA when the
/// CPU has them, else for the baseline target. `body` must be `#[inline(always)]` for
/// the wider code to apply.
macro_rules! dispatch {
    ($body:expr) => {{
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { wide($body) }
            } else {
                $crate::models::cpu::math::dispatch_below_avx512!($body)
            }
        }
        #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
        {
            $crate::models::cpu::math::dispatch_below_avx512!($body)
        }
    }};
}

/// Runs `body` compiled for AVX2+FMA when the CPU has them, else for the baseline target.
macro_rules! dispatch_below_avx512 {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { avx2($body) }
            } else {
                ($body)()
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            ($body)()
        }
    }};
}
pub(crate) use dispatch;
pub(crate) use dispatch_below_avx512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0f32;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 0.000_37;
            let (ours, exact) = (exp(x), (x as f64).exp() as f32);
            worst = worst.max(((ours - exact) / exact).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite());
    }

    /// erf by its Taylor series in f64 (converges everywhere; 80 terms suffice for |z| ≤ 4).
    fn libm_erf(z: f64) -> f64 {
        let (mut term, mut sum) = (z, z);
        for n in 1..80 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_matches_the_exact_erf_form() {
        // Values from a table of erf; gelu(x) = x·Φ(x) with Φ the normal CDF.
        let erf_table = [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ];
        for (z, value) in erf_table {
            assert!((erf(z) - value).abs() < 3e-7, "erf({z})");
            assert!((erf(-z) + value).abs() < 3e-7, "erf(-{z})");
        }
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 3e-7);
        assert!((gelu_erf(-3.0) + 0.004_049_6).abs() < 3e-7);
        for i in -400..400 {
            let z = i as f32 * 0.01;
            let exact = libm_erf(z as f64);
            assert!((erf(z) as f64 - exact).abs() < 3e-7, "erf({z})");
        }
    }

    #[test]
    fn silu_matches_its_definition() {
        for x in [-30.0f32, -2.5, -0.1, 0.0, 0.7, 3.0, 40.0] {
            let exact = x as f64 / (1.0 + (-x as f64).exp());
            assert!(
                (silu(x) as f64 - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "{x}"
            );
        }
    }
}
