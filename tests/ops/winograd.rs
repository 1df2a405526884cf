//! 3×3 stride-1 convolutions that run by Winograd's algorithm (`codegen::winograd`), against
//! the direct reference: both variants, tiles cut by the output's edge in either direction,
//! channel counts that are not multiples of a vector or of a 16-column panel, batches, every
//! kind of padding (and none: the input read in place), more than 512 input channels (the
//! products' depth in chunks), and epilogues with channel and full operands (a residual add).
//! Each shape asserts the variant its filter is packed as, so a change of the choice cannot
//! leave a path untested.
//!
//! Tolerances: F(2×2) keeps the ops' `Rel(1e-5)` for sums (main.rs). F(4×4) loses more in its
//! transforms, growing with the input channels: simulated in f32, error / max |y| is 2.6–5.6e-6
//! for 16–64 channels and up to 1e-5 for 128 (the most `choose` gives it); `Rel(2e-5)` covers
//! that and the f32 reference's own ~1e-6.

use crate::harness::{check_cases, Tol, SUMS};
use crate::{ConvConfig, Padding};
use tfjsc::codegen::winograd;
use tfjsc::ir::{DType, TensorType};
use tfjsc::ops::conv::Window;
use tfjsc_runtime::winograd::Winograd;

#[test]
fn winograd_convolutions_match_reference() {
    // (batch, height, width, channels in, channels out, padding, variant reached)
    let shapes = [
        (1, 12, 12, 32, 32, Padding::Same, Winograd::F2),
        (2, 9, 11, 32, 40, Padding::Same, Winograd::F2),
        (1, 25, 9, 38, 30, Padding::Valid, Winograd::F2),
        (
            1,
            10,
            9,
            64,
            18,
            Padding::Explicit([2, 0, 1, 3]),
            Winograd::F2,
        ),
        (2, 9, 7, 128, 160, Padding::Same, Winograd::F2),
        (1, 30, 26, 37, 22, Padding::Same, Winograd::F4),
        (2, 19, 21, 33, 40, Padding::Same, Winograd::F4),
        (1, 34, 31, 41, 19, Padding::Valid, Winograd::F4),
        (
            1,
            22,
            23,
            64,
            18,
            Padding::Explicit([2, 0, 1, 3]),
            Winograd::F4,
        ),
        (1, 24, 24, 32, 16, Padding::Same, Winograd::F4),
        (1, 18, 18, 32, 32, Padding::Valid, Winograd::F4),
        (1, 14, 14, 520, 16, Padding::Same, Winograd::F2),
    ];
    let mut cases = Vec::new();
    for (i, (batch, h, w, c, n, padding, expected)) in shapes.into_iter().enumerate() {
        let window = Window::new(&[batch, h, w, c], [3, 3], [1, 1], [1, 1], &padding).unwrap();
        assert_eq!(
            winograd::choose(&window, n),
            Some(expected),
            "x[{batch}, {h}, {w}, {c}] → {n} {padding:?}"
        );
        // Epilogues that keep the convolution's largest values: none, a bias or a full add (in
        // turn), and a residual add with relu. The tolerance is relative to the output's
        // largest value, so a clamp (relu6), a division or a squashing function after the
        // convolution would measure the transforms' error against a narrower range than the
        // sums had; the direct path's tests run every epilogue.
        for epilogue in [[0, 1, 6][i % 3], 5] {
            let config = ConvConfig {
                batch,
                size: [h, w],
                channels: c,
                kernel: [3, 3],
                outputs: n,
                strides: [1, 1],
                dilations: [1, 1],
                padding: padding.clone(),
                depthwise: false,
                epilogue,
                filter_is_input: false,
            };
            // What the packing pass will ask for: the filter packed as this variant's transform.
            let input = TensorType::new(DType::F32, vec![batch, h, w, c]);
            let filter = TensorType::new(DType::F32, vec![3, 3, c, n]);
            let packed = config.op().panel_operand(&[&input, &filter]);
            assert_eq!(
                packed.and_then(|(_, panels)| panels.winograd),
                Some(expected)
            );
            let sums = match expected {
                Winograd::F2 => SUMS,
                Winograd::F4 => Tol::Rel(2e-5),
            };
            cases.push(config.case_with_sums(700 + (i * 2 + epilogue) as u64, sums));
        }
    }
    check_cases("winograd convolutions", cases, 4);
}

/// Strided, dilated and 1×1 convolutions, tiny images and few channels stay direct.
#[test]
fn winograd_is_chosen_only_where_it_saves_work() {
    let window = |shape: [usize; 4], kernel, strides, dilations| {
        Window::new(&shape, kernel, strides, dilations, &Padding::Same).unwrap()
    };
    let direct = [
        (window([1, 56, 56, 64], [3, 3], [2, 2], [1, 1]), 64),
        (window([1, 56, 56, 64], [3, 3], [1, 1], [2, 2]), 64),
        (window([1, 56, 56, 64], [1, 1], [1, 1], [1, 1]), 64),
        (window([1, 56, 56, 3], [3, 3], [1, 1], [1, 1]), 4),
        (window([1, 1, 1, 512], [3, 3], [1, 1], [1, 1]), 512),
        (window([1, 3, 3, 64], [3, 3], [1, 1], [1, 1]), 64),
        // Few input channels: the products' sums are too short (an RGB first layer).
        (window([1, 128, 128, 3], [3, 3], [1, 1], [1, 1]), 64),
        (window([1, 128, 128, 16], [3, 3], [1, 1], [1, 1]), 64),
    ];
    for (window, outputs) in direct {
        assert_eq!(winograd::choose(&window, outputs), None, "{window:?}");
    }
    // ResNet50's 3×3 layers: the late ones, whose transformed filters are megabytes read once
    // per run, by F(2×2), the last (7×7×512) directly.
    for (size, channels, variant) in [
        (56, 64, Some(Winograd::F4)),
        (28, 128, Some(Winograd::F4)),
        (14, 256, Some(Winograd::F2)),
        (7, 512, None),
    ] {
        let layer = window([1, size, size, channels], [3, 3], [1, 1], [1, 1]);
        assert_eq!(winograd::choose(&layer, channels), variant, "{layer:?}");
    }
    // F(4×4) is kept to 128 input channels (its error grows with them), whatever it would save.
    let wide = window([1, 56, 56, 256], [3, 3], [1, 1], [1, 1]);
    assert_eq!(winograd::choose(&wide, 256), Some(Winograd::F2));
}
