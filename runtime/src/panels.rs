//! Packed weight panels: the layout the GEMM micro-kernels stream a constant B in.
//!
//! A `[rows, columns]` matrix (row-major, or stored transposed as `[columns, rows]`) becomes
//! `⌈columns / 16⌉` panels, one after the other; panel `p` holds columns `16p .. 16p + 16` as
//! `[rows, 16]` row-major, the last one zero-padded. A kernel then reads each row of its tile
//! as contiguous 64-byte lines, one stream per panel, instead of one line per row at the matrix's
//! row stride. The compiler decides which weights are packed (the description's `panels`); the
//! runtime packs them once at load, and the compiler packs embedded constants with this same
//! function.

use serde::{Deserialize, Serialize};

/// Columns per panel.
pub const PANEL_COLUMNS: usize = 16;

/// How one weight is packed (docs/abi.md, "Packed weights").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Panels {
    /// Rows of the matrix (the product's depth K).
    pub rows: usize,
    /// Columns of the matrix (N).
    pub columns: usize,
    /// The stored tensor is the matrix transposed (`[columns, rows]`).
    #[serde(default)]
    pub transposed: bool,
}

impl Panels {
    /// Elements of the packed form (with the zero padding of the last panel).
    pub fn packed_len(&self) -> Option<usize> {
        self.columns
            .div_ceil(PANEL_COLUMNS)
            .checked_mul(PANEL_COLUMNS)?
            .checked_mul(self.rows)
    }

    /// Packs `source` (`rows × columns` elements) into `target` (`packed_len()` elements).
    pub fn pack(&self, source: &[f32], target: &mut [f32]) {
        self.pack_stored(source.iter().copied(), target);
    }

    /// Packs the matrix given as its elements in stored order (row-major, or column-major when
    /// `transposed`) into `target` (`packed_len()` elements): each element is read once, in
    /// order, so a weight split across shard files packs from its pieces with no copy of the
    /// whole. Elements past `rows × columns` are ignored; missing ones leave zeros.
    pub fn pack_stored(&self, stored: impl IntoIterator<Item = f32>, target: &mut [f32]) {
        let (rows, columns) = (self.rows, self.columns);
        target.fill(0.0);
        if rows == 0 || columns == 0 {
            return; // nothing to read
        }
        // Stored order walks `inner` fastest: columns of a row-major matrix, rows of a
        // transposed one.
        let (outer_count, inner_count) = if self.transposed {
            (columns, rows)
        } else {
            (rows, columns)
        };
        let mut stored = stored.into_iter();
        for outer in 0..outer_count {
            for inner in 0..inner_count {
                let Some(value) = stored.next() else {
                    return;
                };
                let (row, column) = if self.transposed {
                    (inner, outer)
                } else {
                    (outer, inner)
                };
                let panel = column / PANEL_COLUMNS;
                target[(panel * rows + row) * PANEL_COLUMNS + column % PANEL_COLUMNS] = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_sixteen_columns_each_and_pad_the_last() {
        let (rows, columns) = (3, 20);
        let matrix: Vec<f32> = (0..rows * columns).map(|i| i as f32).collect();
        let transposed: Vec<f32> = (0..rows * columns)
            .map(|i| matrix[(i % rows) * columns + i / rows])
            .collect();
        for (source, flag) in [(&matrix, false), (&transposed, true)] {
            let panels = Panels {
                rows,
                columns,
                transposed: flag,
            };
            let mut packed = vec![f32::NAN; panels.packed_len().unwrap()];
            panels.pack(source, &mut packed);
            assert_eq!(packed.len(), 2 * 16 * rows);
            for row in 0..rows {
                for column in 0..32 {
                    let at = (column / 16) * 16 * rows + row * 16 + column % 16;
                    let expected = if column < columns {
                        matrix[row * columns + column]
                    } else {
                        0.0
                    };
                    assert_eq!(packed[at], expected, "row {row} column {column} {flag}");
                }
            }
        }
    }
}
