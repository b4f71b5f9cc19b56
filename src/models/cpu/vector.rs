//! Sixteen f32 lanes in the registers of the widest instruction set the CPU
//! has, for kernels whose register tiles the compiler will not vectorise on its
//! own (it turns a tile of a few dozen accumulators into scalar code with
//! spills).
//!
//! A kernel is written once over [`Vector`] and run through [`dispatch_up_to`], which
//! picks one `zmm` register (AVX-512), two `ymm` (AVX2 + FMA), four NEON
//! registers (aarch64) or plain arrays (anything else) at run time.

use super::math::{LN2_HI, LN2_LO, LOG2_E, ROUNDING_SHIFT};

/// Lanes per vector.
pub const LANES: usize = 16;

/// Sixteen f32 lanes. Every method is `unsafe`: it may only run where the CPU has
/// the type's instruction set, which [`dispatch_up_to`] ensures; the pointers must
/// address sixteen readable (or writable) elements.
pub trait Vector: Copy {
    /// How many such vectors the register file holds.
    const REGISTERS: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self;
    /// Sixteen elements from `from` (any alignment).
    unsafe fn load(from: *const f32) -> Self;
    /// The lanes into sixteen elements at `to` (any alignment).
    unsafe fn store(self, to: *mut f32);
    /// `self · b + c` lane by lane, fused where the instruction set has it.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self · b` lane by lane.
    unsafe fn mul(self, b: Self) -> Self;
    /// `self + b` lane by lane.
    unsafe fn add(self, b: Self) -> Self;
    /// `self - b` lane by lane.
    unsafe fn sub(self, b: Self) -> Self;
    /// The larger of `self` and `b` lane by lane (`b` where either is NaN).
    unsafe fn max(self, b: Self) -> Self;
    /// The smaller of `self` and `b` lane by lane (`b` where either is NaN).
    unsafe fn min(self, b: Self) -> Self;
    /// `2^n` per lane, where `shifted = n + ROUNDING_SHIFT` holds the integer `n`
    /// (in −126..=127) in its low mantissa bits.
    unsafe fn pow2(shifted: Self) -> Self;

    /// `e^x` lane by lane, within 2 ulp for `x` in `[-87.3, 88.3]` (clamped
    /// outside it, so `-inf` gives about 1e-38, not 0).
    #[inline(always)]
    unsafe fn exp(self) -> Self {
        // SAFETY: the caller's promise (the CPU has this type's instruction set).
        unsafe {
            let x = self.max(Self::splat(-87.3)).min(Self::splat(88.3));
            // Adding 1.5·2^23 rounds x·log2(e) to an integer n, kept in the low bits.
            let shifted = x.mul_add(Self::splat(LOG2_E), Self::splat(ROUNDING_SHIFT));
            let n = shifted.sub(Self::splat(ROUNDING_SHIFT));
            let r = n.mul_add(Self::splat(-LN2_HI), x);
            let r = n.mul_add(Self::splat(-LN2_LO), r);
            // e^r = 1 + r + r²·P(r) for |r| ≤ ln(2)/2, P Cephes' minimax fit for expf.
            let p = EXP_POLYNOMIAL[1..]
                .iter()
                .fold(Self::splat(EXP_POLYNOMIAL[0]), |p, &c| {
                    p.mul_add(r, Self::splat(c))
                });
            let e_r = p.mul_add(r.mul(r), r).add(Self::splat(1.0));
            e_r.mul(Self::pow2(shifted))
        }
    }
}

/// The bits `pow2` turns into an exponent: those of `ROUNDING_SHIFT`, less the bias.
const POW2_OFFSET: i32 = ROUNDING_SHIFT.to_bits() as i32 - 127;
/// P(r), highest power first (Cephes' `expf`, relative error below 1e-7; its last
/// coefficient, 0.50000001, is 0.5 in f32).
const EXP_POLYNOMIAL: [f32; 6] = [
    1.987_569_2e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// A kernel generic over the vector type, for [`dispatch_up_to`].
pub trait WithVector {
    type Output;
    /// Runs the kernel with vectors `V`; must be `#[inline(always)]` so it is
    /// compiled for the instruction set [`dispatch_up_to`] enables.
    fn run<V: Vector>(self) -> Self::Output;
}

/// How wide [`dispatch_up_to`] may go, narrowest first; tests pick the narrower
/// paths to check them on a CPU that has wider ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Widest {
    /// Plain arrays (NEON on aarch64, which always has it).
    #[allow(dead_code, reason = "only tests choose the narrowest path")]
    Portable,
    /// AVX2 and FMA.
    #[cfg_attr(
        not(target_arch = "x86_64"),
        allow(dead_code, reason = "only x86 has this path")
    )]
    Avx2,
    /// AVX-512 (with the `avx512` feature), or whatever the CPU has.
    Avx512,
}

/// Runs `kernel` with the widest vectors the CPU supports, up to `widest`.
pub fn dispatch_up_to<K: WithVector>(kernel: K, widest: Widest) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(feature = "avx512")]
        if widest >= Widest::Avx512 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { x86::run_avx512(kernel) };
        }
        if widest >= Widest::Avx2
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { x86::run_avx2(kernel) };
        }
    }
    let _ = widest;
    #[cfg(target_arch = "aarch64")]
    {
        kernel.run::<neon::Neon>()
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        kernel.run::<Portable>()
    }
}

/// Plain arrays, for CPUs without the instruction sets above.
#[cfg(not(target_arch = "aarch64"))]
#[derive(Clone, Copy)]
struct Portable([f32; LANES]);

#[cfg(not(target_arch = "aarch64"))]
impl Vector for Portable {
    // Whatever the target, tiles sized for few registers spill least.
    const REGISTERS: usize = 4;

    #[inline(always)]
    unsafe fn zero() -> Self {
        Self([0.0; LANES])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self([x; LANES])
    }
    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        // SAFETY: the caller's promise: sixteen readable elements.
        Self(unsafe { from.cast::<[f32; LANES]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        // SAFETY: the caller's promise: sixteen writable elements.
        unsafe { to.cast::<[f32; LANES]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // Unfused: a software FMA would cost far more than the rounding it saves.
        Self(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] * b.0[i]))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + b.0[i]))
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] - b.0[i]))
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        Self(std::array::from_fn(|i| {
            if self.0[i] > b.0[i] {
                self.0[i]
            } else {
                b.0[i]
            }
        }))
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        Self(std::array::from_fn(|i| {
            if self.0[i] < b.0[i] {
                self.0[i]
            } else {
                b.0[i]
            }
        }))
    }
    #[inline(always)]
    unsafe fn pow2(shifted: Self) -> Self {
        Self(
            shifted
                .0
                .map(|x| f32::from_bits(((x.to_bits() as i32 - POW2_OFFSET) << 23) as u32)),
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{POW2_OFFSET, Vector, WithVector};

    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(feature = "avx512")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn run_avx512<K: WithVector>(kernel: K) -> K::Output {
        kernel.run::<Avx512>()
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn run_avx2<K: WithVector>(kernel: K) -> K::Output {
        kernel.run::<Avx2>()
    }

    /// One `zmm` register.
    #[cfg(feature = "avx512")]
    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    // SAFETY (every method): only run where the CPU has AVX-512F (the trait's contract).
    #[cfg(feature = "avx512")]
    impl Vector for Avx512 {
        const REGISTERS: usize = 32;

        #[inline(always)]
        unsafe fn zero() -> Self {
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Self(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            Self(unsafe { _mm512_loadu_ps(from) })
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe { _mm512_storeu_ps(to, self.0) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Self(unsafe { _mm512_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Self(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Self(unsafe { _mm512_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            Self(unsafe { _mm512_max_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn min(self, b: Self) -> Self {
            Self(unsafe { _mm512_min_ps(self.0, b.0) })
        }
        #[inline(always)]
        unsafe fn pow2(shifted: Self) -> Self {
            unsafe {
                let bits = _mm512_sub_epi32(
                    _mm512_castps_si512(shifted.0),
                    _mm512_set1_epi32(POW2_OFFSET),
                );
                Self(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)))
            }
        }
    }

    /// Two `ymm` registers.
    #[derive(Clone, Copy)]
    pub struct Avx2([__m256; 2]);

    // SAFETY (every method): only run where the CPU has AVX2 and FMA (the trait's contract).
    impl Vector for Avx2 {
        const REGISTERS: usize = 8;

        #[inline(always)]
        unsafe fn zero() -> Self {
            Self(unsafe { [_mm256_setzero_ps(); 2] })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Self(unsafe { [_mm256_set1_ps(x); 2] })
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            unsafe { Self([_mm256_loadu_ps(from), _mm256_loadu_ps(from.add(8))]) }
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe {
                _mm256_storeu_ps(to, self.0[0]);
                _mm256_storeu_ps(to.add(8), self.0[1]);
            }
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            let (a, b, c) = (self.0, b.0, c.0);
            unsafe {
                Self([
                    _mm256_fmadd_ps(a[0], b[0], c[0]),
                    _mm256_fmadd_ps(a[1], b[1], c[1]),
                ])
            }
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            let (a, b) = (self.0, b.0);
            unsafe { Self([_mm256_mul_ps(a[0], b[0]), _mm256_mul_ps(a[1], b[1])]) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            let (a, b) = (self.0, b.0);
            unsafe { Self([_mm256_add_ps(a[0], b[0]), _mm256_add_ps(a[1], b[1])]) }
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            let (a, b) = (self.0, b.0);
            unsafe { Self([_mm256_sub_ps(a[0], b[0]), _mm256_sub_ps(a[1], b[1])]) }
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            let (a, b) = (self.0, b.0);
            unsafe { Self([_mm256_max_ps(a[0], b[0]), _mm256_max_ps(a[1], b[1])]) }
        }
        #[inline(always)]
        unsafe fn min(self, b: Self) -> Self {
            let (a, b) = (self.0, b.0);
            unsafe { Self([_mm256_min_ps(a[0], b[0]), _mm256_min_ps(a[1], b[1])]) }
        }
        #[inline(always)]
        unsafe fn pow2(shifted: Self) -> Self {
            // Written out, not mapped: a closure would not inherit the target features,
            // so the intrinsics would become calls.
            unsafe {
                let offset = _mm256_set1_epi32(POW2_OFFSET);
                let low = _mm256_sub_epi32(_mm256_castps_si256(shifted.0[0]), offset);
                let high = _mm256_sub_epi32(_mm256_castps_si256(shifted.0[1]), offset);
                Self([
                    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(low)),
                    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(high)),
                ])
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{POW2_OFFSET, Vector};

    /// Four NEON registers.
    #[derive(Clone, Copy)]
    pub struct Neon([float32x4_t; 4]);

    // SAFETY (every method): NEON is part of every aarch64 target.
    impl Vector for Neon {
        const REGISTERS: usize = 8;

        #[inline(always)]
        unsafe fn zero() -> Self {
            Self(unsafe { [vdupq_n_f32(0.0); 4] })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Self(unsafe { [vdupq_n_f32(x); 4] })
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vld1q_f32(from.add(4 * i))
            }))
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            for (i, part) in self.0.into_iter().enumerate() {
                unsafe { vst1q_f32(to.add(4 * i), part) }
            }
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vfmaq_f32(c.0[i], self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vmulq_f32(self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vaddq_f32(self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vsubq_f32(self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vmaxq_f32(self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn min(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| unsafe {
                vminq_f32(self.0[i], b.0[i])
            }))
        }
        #[inline(always)]
        unsafe fn pow2(shifted: Self) -> Self {
            Self(shifted.0.map(|part| unsafe {
                let bits = vsubq_s32(vreinterpretq_s32_f32(part), vdupq_n_s32(POW2_OFFSET));
                vreinterpretq_f32_s32(vshlq_n_s32::<23>(bits))
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one multiply-add and one product with the dispatched vectors.
    struct Check<'a>(&'a [f32; LANES], &'a mut [f32; LANES]);

    impl WithVector for Check<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self) {
            // SAFETY: dispatch chose V for this CPU; both arrays hold sixteen elements.
            unsafe {
                let x = V::load(self.0.as_ptr());
                let y = x.mul_add(V::splat(2.0), V::splat(0.5)).mul(x);
                let y = y.mul_add(V::zero(), y);
                y.store(self.1.as_mut_ptr());
            }
        }
    }

    /// `e^x` of sixteen inputs with the dispatched vectors.
    struct Exp<'a>(&'a [f32; LANES], &'a mut [f32; LANES]);

    impl WithVector for Exp<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self) {
            // SAFETY: dispatch chose V for this CPU; both arrays hold sixteen elements.
            unsafe { V::load(self.0.as_ptr()).exp().store(self.1.as_mut_ptr()) }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        for widest in PATHS {
            let mut worst = 0f64;
            for start in (-87_300..88_300).step_by(LANES) {
                let input: [f32; LANES] = std::array::from_fn(|i| (start + i as i32) as f32 * 1e-3);
                let output = exp_on(widest, &input);
                for (&x, &y) in input.iter().zip(&output) {
                    let exact = (x as f64).exp();
                    worst = worst.max((y as f64 - exact).abs() / exact);
                }
            }
            // 2 ulp of an f32 is at most 2.4e-7 of its value.
            assert!(worst < 2.4e-7, "{widest:?}: worst relative error {worst}");
            let extremes: [f32; LANES] =
                std::array::from_fn(|i| [-1e4, 1e4, f32::NEG_INFINITY, 0.0][i % 4]);
            let output = exp_on(widest, &extremes);
            for (&x, &y) in extremes.iter().zip(&output) {
                assert!(y.is_finite() && y > 0.0, "{widest:?}: e^{x} = {y}");
            }
            assert_eq!(output[3], 1.0);
        }
    }

    /// `e^x` of sixteen inputs with the widest vectors up to `widest`.
    fn exp_on(widest: Widest, input: &[f32; LANES]) -> [f32; LANES] {
        let mut output = [0.0; LANES];
        dispatch_up_to(Exp(input, &mut output), widest);
        output
    }

    /// Every path a test checks, whichever of them this CPU has.
    const PATHS: [Widest; 3] = [Widest::Avx512, Widest::Avx2, Widest::Portable];

    #[test]
    fn every_lane_is_computed() {
        let input: [f32; LANES] = std::array::from_fn(|i| i as f32 - 7.5);
        for widest in PATHS {
            let mut output = [0.0; LANES];
            dispatch_up_to(Check(&input, &mut output), widest);
            for (x, y) in input.iter().zip(output) {
                assert_eq!(y, (x * 2.0 + 0.5) * x, "{widest:?}");
            }
        }
    }
}
