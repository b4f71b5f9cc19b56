//! Winograd against candle's direct convolution, and its choices.

use candle_core::Tensor;

use super::{BUDGET, Budget, Geometry, applies, convolve_within};
use crate::models::cpu::test_support::seeded_randn;

/// The largest and the mean `|ours − expected| / (1 + |expected|)`.
fn differences(ours: &[f32], expected: &Tensor) -> candle_core::Result<(f32, f32)> {
    let expected = expected.flatten_all()?.to_vec1::<f32>()?;
    let relative: Vec<f32> = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .collect();
    let max = relative.iter().fold(0f32, |m, &d| m.max(d));
    Ok((max, relative.iter().sum::<f32>() / relative.len() as f32))
}

#[test]
fn matches_direct_convolution_at_every_edge_band_and_group() -> candle_core::Result<()> {
    // (batch, c_in, h, w, c_out, padding, budget): outputs of 32 to 37 pixels
    // leave 0 to 3 pixels in the last tiles; padding 0 and 2 move the patches; a
    // small budget cuts bands across images and output channels in groups.
    let small = Budget {
        band_elements: 40_000,
        kernel_elements: 20_000,
        min_group_channels: 16,
    };
    let cases = [
        (2, 16, 32, 32, 16, 1, BUDGET),
        (1, 24, 35, 33, 20, 1, BUDGET),
        (1, 16, 34, 37, 32, 0, BUDGET),
        (1, 20, 31, 30, 16, 2, BUDGET),
        (2, 64, 16, 16, 48, 1, BUDGET),
        (3, 32, 21, 19, 40, 1, small),
    ];
    for (seed, (batch, c_in, h, w, c_out, padding, budget)) in (20..).zip(cases) {
        // Kernels scaled as trained networks' are, so outputs are about 1.
        let std = 1.0 / (9.0 * c_in as f64).sqrt();
        let xs = seeded_randn(3 * seed, 1.0, &[batch, c_in, h, w])?;
        let weight = seeded_randn(3 * seed + 1, std, &[c_out, c_in, 3, 3])?;
        let bias = seeded_randn(3 * seed + 2, 1.0, &[c_out])?;
        let g = Geometry {
            c_in,
            in_h: h,
            in_w: w,
            c_out,
            k_h: 3,
            k_w: 3,
            out_h: h + 2 * padding - 2,
            out_w: w + 2 * padding - 2,
            stride: 1,
            padding,
        };
        assert!(applies(&g));
        let operands =
            [&xs, &weight, &bias].map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()));
        let [xs_values, weight_values, bias_values] = operands;
        let ours = convolve_within(
            &g,
            batch,
            (&xs_values?, &weight_values?, &bias_values?),
            budget,
        );
        let expected = xs
            .conv2d(&weight, padding, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
        let (max, mean) = differences(&ours, &expected)?;
        // Measured: max 1.1e-5 to 1.8e-5, mean 3.2e-7 to 5.7e-7 (candle's direct sum
        // is within 1e-7 of the exact one, so this is Winograd's own rounding).
        assert!(
            max < 4e-5 && mean < 1e-6,
            "{batch}x{c_in}x{h}x{w} -> {c_out} p{padding}: max {max}, mean {mean}"
        );
    }
    Ok(())
}

/// A 3×3, stride-1, padding-1 convolution of `size`² images.
fn square(c_in: usize, size: usize, c_out: usize) -> Geometry {
    Geometry {
        c_in,
        in_h: size,
        in_w: size,
        c_out,
        k_h: 3,
        k_w: 3,
        out_h: size,
        out_w: size,
        stride: 1,
        padding: 1,
    }
}

#[test]
fn an_image_gives_the_same_bits_alone_in_a_batch_and_again() -> candle_core::Result<()> {
    // A generation's pictures must not depend on what else shares its batch (the
    // negative image's half of a CFG batch, say), although bands span images.
    let (c_in, size, c_out) = (32, 16, 24);
    let g = square(c_in, size, c_out);
    assert!(applies(&g));
    let values = |seed, shape: &[usize]| {
        seeded_randn(seed, 0.2, shape)?
            .flatten_all()?
            .to_vec1::<f32>()
    };
    let pair = values(1, &[2, c_in, size, size])?;
    let weight = values(2, &[c_out, c_in, 3, 3])?;
    let bias = values(3, &[c_out])?;
    let first_alone = &pair[..c_in * size * size];
    let [in_pair, alone, again] = [(2, &pair[..]), (1, first_alone), (1, first_alone)]
        .map(|(n, xs)| convolve_within(&g, n, (xs, &weight, &bias), BUDGET));
    assert!(
        in_pair[..c_out * size * size] == alone[..],
        "the first image changed with the second beside it"
    );
    assert!(alone == again, "two runs differ");
    Ok(())
}

#[test]
fn small_or_strided_convolutions_are_left_to_im2col() {
    assert!(!applies(&square(320, 8, 320)), "an 8x8 image has 4 tiles");
    let g = square(320, 16, 320);
    assert!(applies(&g));
    assert!(!applies(&Geometry { stride: 2, ..g }));
    assert!(!applies(&Geometry { c_out: 3, ..g }));
    assert!(!applies(&Geometry {
        k_h: 1,
        k_w: 1,
        ..g
    }));
}
