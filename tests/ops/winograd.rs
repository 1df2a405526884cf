//! 3×3 stride-1 convolutions that run by Winograd's algorithm (`codegen::winograd`), against
//! the direct reference: both variants, tiles cut by the output's edge in either direction,
//! channel counts that are not multiples of a vector or of a 16-column panel, batches, every
//! kind of padding, and epilogues with channel and full operands (a residual add). Each shape
//! asserts the variant it reaches, so a change of the choice cannot leave a path untested.
//! Tolerance: the ops' `Rel(1e-5)` for sums (see main.rs); F(4×4)'s transform constants
//! (sixths, twelfths) add a few ulps of the largest partial sums, within it.

use crate::harness::check_cases;
use crate::{ConvConfig, Padding};
use tfjsc::codegen::winograd;
use tfjsc::ops::conv::Window;
use tfjsc_runtime::winograd::Winograd;

#[test]
fn winograd_convolutions_match_reference() {
    // (batch, height, width, channels in, channels out, padding, variant reached)
    let shapes = [
        (1, 12, 12, 32, 32, Padding::Same, Winograd::F2),
        (2, 9, 11, 24, 40, Padding::Same, Winograd::F2),
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
        (2, 19, 21, 24, 40, Padding::Same, Winograd::F4),
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
        (1, 24, 24, 16, 16, Padding::Same, Winograd::F4),
    ];
    let mut cases = Vec::new();
    for (i, (batch, h, w, c, n, padding, expected)) in shapes.into_iter().enumerate() {
        let window = Window::new(&[batch, h, w, c], [3, 3], [1, 1], [1, 1], &padding).unwrap();
        assert_eq!(
            winograd::choose(&window, n),
            Some(expected),
            "x[{batch}, {h}, {w}, {c}] → {n} {padding:?}"
        );
        for epilogue in [i % crate::EPILOGUES.len(), 5] {
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
            cases.push(config.case(700 + (i * 2 + epilogue) as u64));
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
}
