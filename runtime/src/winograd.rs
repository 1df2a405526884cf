//! Winograd's minimal filtering for 3×3 convolutions of stride 1, F(m×m, 3×3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! An output tile of m×m pixels is computed from an input tile of t×t pixels (t = m + 2) as
//!
//! ```text
//! Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//! ```
//!
//! per channel pair, where `g` is the 3×3 filter and `d` the input tile. Summed over the input
//! channels, the element-wise products become t² independent matrix products
//! `M[ξν] = V[ξν] · U[ξν]` (tiles × C by C × N), which the GEMM kernels run: 36 products for
//! 16 output pixels (F(4×4)) instead of 144 multiply-adds per channel pair, 2.25× fewer for
//! F(2×2). The filter transform `U = G g Gᵀ` is done once, when the weights are packed (here,
//! shared by the runtime and the compiler); the input and output transforms are generated
//! code around the products (`tfjsc::codegen::winograd`).
//!
//! Accuracy: F(2×2)'s constants are exact in binary and its results stay within a few ulps of
//! a direct convolution's. F(4×4)'s input and output transforms (coefficients 4, 5 and 8, whose
//! terms cancel) lose more, growing with the channels summed: simulated in f32, error / max |y|
//! is ~5e-6 for 64 channels, ~1e-5 for 128, up to 1.7e-5 for 512; the compiler uses F(4×4) up
//! to 128 channels only (`codegen::winograd::choose`). The filter transform is computed in f64
//! and rounded once.

use serde::{Deserialize, Serialize};

/// Which F(m×m, 3×3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Winograd {
    /// F(2×2, 3×3): 4×4 input tiles, 16 products.
    #[serde(rename = "F2x2_3x3")]
    F2,
    /// F(4×4, 3×3): 6×6 input tiles, 36 products.
    #[serde(rename = "F4x4_3x3")]
    F4,
}

const F2_BT: [[f64; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
const F2_G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];
const F2_AT: [[f64; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

const F4_BT: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const F4_G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
const F4_AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

impl Winograd {
    /// Output pixels per tile side (m).
    pub fn output_tile(self) -> usize {
        match self {
            Winograd::F2 => 2,
            Winograd::F4 => 4,
        }
    }

    /// Input pixels per tile side (t = m + 2).
    pub fn input_tile(self) -> usize {
        self.output_tile() + 2
    }

    /// Independent products (t²).
    pub fn products(self) -> usize {
        self.input_tile() * self.input_tile()
    }

    /// Bᵀ, t × t: `V = Bᵀ d B`.
    pub fn input_transform(self) -> Vec<&'static [f64]> {
        match self {
            Winograd::F2 => F2_BT.iter().map(|row| &row[..]).collect(),
            Winograd::F4 => F4_BT.iter().map(|row| &row[..]).collect(),
        }
    }

    /// Aᵀ, m × t: `Y = Aᵀ M A`.
    pub fn output_transform(self) -> Vec<&'static [f64]> {
        match self {
            Winograd::F2 => F2_AT.iter().map(|row| &row[..]).collect(),
            Winograd::F4 => F4_AT.iter().map(|row| &row[..]).collect(),
        }
    }

    /// G, t × 3: `U = G g Gᵀ`.
    fn filter_transform_matrix(self) -> Vec<&'static [f64; 3]> {
        match self {
            Winograd::F2 => F2_G.iter().collect(),
            Winograd::F4 => F4_G.iter().collect(),
        }
    }

    /// The transformed filter: a `[3, 3, channels, outputs]` filter (HWIO, as TensorFlow stores
    /// it; `read(i, run)` fills `run` with its elements from `i` on) becomes t² matrices
    /// `U[ξν]` of `[channels, outputs]`, handed over as they are computed (in f64, rounded
    /// once): `store(ξ·t + ν, p, values)` gets the values of the consecutive channel pairs
    /// `p, p + 1, ...` (pair `c·outputs + n`), for the caller to write wherever its layout
    /// wants, with no copy of the whole.
    pub fn transform_filter(
        self,
        mut read: impl FnMut(usize, &mut [f32]),
        channels: usize,
        outputs: usize,
        mut store: impl FnMut(usize, usize, &[f32]),
    ) {
        /// Channel pairs transformed together: loops along contiguous pairs, in cache.
        const BLOCK: usize = 256;
        let g = self.filter_transform_matrix();
        let t = self.input_tile();
        let pairs = channels * outputs;
        let mut run = vec![0f32; BLOCK];
        let mut taps = vec![0f64; 9 * BLOCK];
        let mut left = vec![0f64; t * 3 * BLOCK];
        let mut sum = vec![0f64; BLOCK];
        let mut rounded = vec![0f32; BLOCK];
        for start in (0..pairs).step_by(BLOCK) {
            let count = (pairs - start).min(BLOCK);
            for (index, line) in taps.chunks_exact_mut(BLOCK).enumerate() {
                read(index * pairs + start, &mut run[..count]);
                for (slot, &value) in line.iter_mut().zip(&run[..count]) {
                    *slot = f64::from(value);
                }
            }
            // G g: left[ξ][x] = Σ_y G[ξ][y] g[y][x].
            left.fill(0.0);
            for (xi, coefficients) in g.iter().enumerate() {
                for x in 0..3 {
                    let line = &mut left[(xi * 3 + x) * BLOCK..][..count];
                    for (y, &coefficient) in coefficients.iter().enumerate() {
                        let taps = &taps[(y * 3 + x) * BLOCK..][..count];
                        for (slot, &value) in line.iter_mut().zip(taps) {
                            *slot += coefficient * value;
                        }
                    }
                }
            }
            // (G g) Gᵀ: U[ξ][ν] = Σ_x left[ξ][x] G[ν][x].
            for xi in 0..t {
                for (nu, coefficients) in g.iter().enumerate() {
                    sum[..count].fill(0.0);
                    for (x, &coefficient) in coefficients.iter().enumerate() {
                        let line = &left[(xi * 3 + x) * BLOCK..][..count];
                        for (slot, &value) in sum.iter_mut().zip(line) {
                            *slot += coefficient * value;
                        }
                    }
                    for (slot, &value) in rounded.iter_mut().zip(&sum[..count]) {
                        *slot = value as f32;
                    }
                    store(xi * t + nu, start, &rounded[..count]);
                }
            }
        }
    }

    /// [`Winograd::transform_filter`] into a new `[t², channels, outputs]` array (tests).
    pub fn transformed_filter(self, filter: &[f32], channels: usize, outputs: usize) -> Vec<f32> {
        let pairs = channels * outputs;
        let mut transformed = vec![0f32; self.products() * pairs];
        let read = |first: usize, run: &mut [f32]| {
            for (i, slot) in run.iter_mut().enumerate() {
                *slot = filter.get(first + i).copied().unwrap_or(0.0);
            }
        };
        self.transform_filter(read, channels, outputs, |product, first, values| {
            let start = product * pairs + first;
            transformed[start..start + values.len()].copy_from_slice(values);
        });
        transformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole algorithm on one tile, in f64 from the matrices, against a direct 3×3
    /// correlation: checks the transforms' constants (and that they compute TensorFlow's
    /// correlation, not a flipped convolution).
    #[test]
    fn transforms_compute_a_three_by_three_correlation() {
        for variant in [Winograd::F2, Winograd::F4] {
            let (m, t) = (variant.output_tile(), variant.input_tile());
            let input: Vec<f64> = (0..t * t)
                .map(|i| ((i * 7 + 3) % 11) as f64 - 5.0)
                .collect();
            let filter: Vec<f32> = (0..9).map(|i| ((i * 5 + 1) % 7) as f32 - 3.0).collect();
            let u = variant.transformed_filter(&filter, 1, 1);
            let bt = variant.input_transform();
            let at = variant.output_transform();
            // V = Bᵀ d B
            let v = |xi: usize, nu: usize| -> f64 {
                let mut sum = 0.0;
                for a in 0..t {
                    for b in 0..t {
                        sum += bt[xi][a] * input[a * t + b] * bt[nu][b];
                    }
                }
                sum
            };
            for i in 0..m {
                for j in 0..m {
                    let mut y = 0.0;
                    for xi in 0..t {
                        for nu in 0..t {
                            let product = f64::from(u[xi * t + nu]) * v(xi, nu);
                            y += at[i][xi] * product * at[j][nu];
                        }
                    }
                    let mut direct = 0.0;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            direct += input[(i + ky) * t + j + kx] * f64::from(filter[ky * 3 + kx]);
                        }
                    }
                    assert!(
                        (y - direct).abs() < 1e-4,
                        "{variant:?} output ({i}, {j}): {y} vs {direct}"
                    );
                }
            }
        }
    }

    #[test]
    fn filter_transform_keeps_channel_pairs_apart() {
        // Two input channels, three outputs: each pair's transform depends on its own taps only.
        let (channels, outputs) = (2, 3);
        let filter: Vec<f32> = (0..9 * channels * outputs)
            .map(|i| (i % 13) as f32)
            .collect();
        let whole = Winograd::F2.transformed_filter(&filter, channels, outputs);
        for index in 0..channels * outputs {
            let taps: Vec<f32> = (0..9)
                .map(|tap| filter[tap * channels * outputs + index])
                .collect();
            let alone = Winograd::F2.transformed_filter(&taps, 1, 1);
            for (product, &value) in alone.iter().enumerate() {
                assert_eq!(whole[product * channels * outputs + index], value);
            }
        }
    }
}
