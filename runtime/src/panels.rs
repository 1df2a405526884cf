//! Packed weight panels: the layout the GEMM micro-kernels stream a constant B in.
//!
//! A `[rows, columns]` matrix (row-major, or stored transposed as `[columns, rows]`) becomes
//! `⌈columns / 16⌉` panels, one after the other; panel `p` holds columns `16p .. 16p + 16` as
//! `[rows, 16]` row-major, the last one zero-padded. A kernel then reads each row of its tile
//! as contiguous 64-byte lines, one stream per panel, instead of one line per row at the matrix's
//! row stride. The compiler decides which weights are packed (the description's `panels`); the
//! runtime packs them once at load, and the compiler packs embedded constants with this same
//! function.
//!
//! A 3×3 convolution filter run by Winograd's algorithm is packed as the t² matrices of its
//! transform (`crate::winograd`), each in panels, one after the other.

use serde::{Deserialize, Serialize};

use crate::winograd::Winograd;

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
    /// The stored tensor is a `[3, 3, rows, columns]` filter, packed as its Winograd
    /// transform: t² matrices of `rows × columns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winograd: Option<Winograd>,
}

impl Panels {
    /// Elements of the packed form (with the zero padding of the last panel).
    pub fn packed_len(&self) -> Option<usize> {
        self.columns
            .div_ceil(PANEL_COLUMNS)
            .checked_mul(PANEL_COLUMNS)?
            .checked_mul(self.rows)?
            .checked_mul(self.matrices())
    }

    /// Elements of the stored tensor.
    pub fn stored_len(&self) -> Option<usize> {
        let taps = if self.winograd.is_some() { 9 } else { 1 };
        self.rows.checked_mul(self.columns)?.checked_mul(taps)
    }

    /// Matrices packed one after the other: 1, or a Winograd transform's t².
    fn matrices(&self) -> usize {
        self.winograd.map_or(1, Winograd::products)
    }

    /// One of the matrices a Winograd filter is packed as.
    fn plain(&self) -> Panels {
        Panels {
            winograd: None,
            ..*self
        }
    }

    /// Packs `source` (`stored_len()` elements as stored: `rows × columns`, or 9× that for a
    /// Winograd filter) into `target` (`packed_len()` elements). Missing elements of a short
    /// `source` are packed as zeros.
    pub fn pack(&self, source: &[f32], target: &mut [f32]) {
        if let Some(winograd) = self.winograd {
            let read = |first: usize, run: &mut [f32]| {
                for (i, slot) in run.iter_mut().enumerate() {
                    *slot = source.get(first + i).copied().unwrap_or(0.0);
                }
            };
            return self.pack_winograd(winograd, read, target);
        }
        let inner = self.stored_row();
        self.pack_rows(target, |row, line| {
            let start = (row * inner).min(source.len());
            let end = (start + inner).min(source.len());
            line[..end - start].copy_from_slice(&source[start..end]);
            line[end - start..].fill(0.0);
        });
    }

    /// Packs a float32 matrix from its stored little-endian bytes, given as the pieces of the
    /// shard files it lies in (a weight may be split across files, even inside a float), with
    /// no copy of the whole. Missing bytes read as zeros.
    pub fn pack_le_bytes(&self, pieces: &[&[u8]], target: &mut [f32]) {
        let floats = LeFloats::new(pieces);
        let read = |first: usize, run: &mut [f32]| floats.read(first, run);
        match self.winograd {
            // The transform reads runs of each tap's channel pairs, far apart.
            Some(winograd) => self.pack_winograd(winograd, read, target),
            None => {
                let inner = self.stored_row();
                self.pack_rows(target, |row, line| read(row * inner, line));
            }
        }
    }

    /// Packs the Winograd transform of the filter `read` reads (`read(i, run)` fills `run`
    /// from element `i` on): matrix `ξν`'s element (c, n) goes straight to its panel slot.
    fn pack_winograd(
        &self,
        winograd: Winograd,
        read: impl FnMut(usize, &mut [f32]),
        target: &mut [f32],
    ) {
        let (rows, columns) = (self.rows, self.columns);
        let (Some(matrix), Some(total)) = (self.plain().packed_len(), self.packed_len()) else {
            return;
        };
        if rows == 0 || columns == 0 || target.len() < total {
            return;
        }
        // The last panel's padding columns.
        if !columns.is_multiple_of(PANEL_COLUMNS) {
            let panel_size = rows * PANEL_COLUMNS;
            for packed in target[..total].chunks_exact_mut(matrix) {
                packed[matrix - panel_size..].fill(0.0);
            }
        }
        winograd.transform_filter(read, rows, columns, |product, first, values| {
            // Pair c·columns + n goes to matrix `product`, panel n / 16, row c, lane n % 16.
            let (mut c, mut n) = (first / columns, first % columns);
            for &value in values {
                let panel = n / PANEL_COLUMNS;
                let at = product * matrix + (panel * rows + c) * PANEL_COLUMNS + n % PANEL_COLUMNS;
                target[at] = value;
                n += 1;
                if n == columns {
                    (c, n) = (c + 1, 0);
                }
            }
        });
    }

    /// Elements of one stored row: B's row, or B's column when stored transposed.
    fn stored_row(&self) -> usize {
        if self.transposed {
            self.rows
        } else {
            self.columns
        }
    }

    /// The packing itself: `read_row(i, line)` fills stored row `i` into `line`, for each row in
    /// order. Rows are read a block at a time and written panel by panel, so the writes run
    /// along the packed buffer instead of jumping between panels (pages) every 16 values: for B
    /// stored as is, blocks of rows; stored transposed, the 16 columns of one panel. The last
    /// panel's padding is zeroed.
    fn pack_rows(&self, target: &mut [f32], mut read_row: impl FnMut(usize, &mut [f32])) {
        /// Rows of B read per block when it is stored as is.
        const BLOCK_ROWS: usize = 32;
        let (rows, columns) = (self.rows, self.columns);
        if rows == 0 || columns == 0 {
            return; // nothing to read, nothing to write
        }
        let panel_size = rows * PANEL_COLUMNS;
        let panels = columns.div_ceil(PANEL_COLUMNS);
        let Some(target) = target.get_mut(..panels * panel_size) else {
            return;
        };
        if !columns.is_multiple_of(PANEL_COLUMNS) {
            target[(panels - 1) * panel_size..].fill(0.0);
        }
        if self.transposed {
            // Stored rows 16p .. 16p + 16 are the columns of panel p.
            let mut block = vec![0f32; PANEL_COLUMNS * rows];
            for (panel, out) in target.chunks_exact_mut(panel_size).enumerate() {
                let first = panel * PANEL_COLUMNS;
                let lanes = (columns - first).min(PANEL_COLUMNS);
                for (lane, line) in block.chunks_exact_mut(rows).take(lanes).enumerate() {
                    read_row(first + lane, line);
                }
                for (row, slots) in out.chunks_exact_mut(PANEL_COLUMNS).enumerate() {
                    for (lane, slot) in slots.iter_mut().take(lanes).enumerate() {
                        *slot = block[lane * rows + row];
                    }
                }
            }
        } else {
            let mut block = vec![0f32; BLOCK_ROWS * columns];
            for first in (0..rows).step_by(BLOCK_ROWS) {
                let count = (rows - first).min(BLOCK_ROWS);
                for (offset, line) in block.chunks_exact_mut(columns).take(count).enumerate() {
                    read_row(first + offset, line);
                }
                for (panel, out) in target.chunks_exact_mut(panel_size).enumerate() {
                    let column = panel * PANEL_COLUMNS;
                    let width = (columns - column).min(PANEL_COLUMNS);
                    let out = &mut out[first * PANEL_COLUMNS..(first + count) * PANEL_COLUMNS];
                    for (slots, line) in out
                        .chunks_exact_mut(PANEL_COLUMNS)
                        .zip(block.chunks_exact(columns))
                    {
                        slots[..width].copy_from_slice(&line[column..column + width]);
                    }
                }
            }
        }
    }
}

/// Float32 values stored little-endian across pieces of shard files, read by element index
/// (a value may straddle two pieces); bytes past the end read as zeros.
struct LeFloats<'p> {
    pieces: &'p [&'p [u8]],
    /// Byte offset just past each piece.
    ends: Vec<usize>,
}

impl<'p> LeFloats<'p> {
    fn new(pieces: &'p [&'p [u8]]) -> LeFloats<'p> {
        let ends = pieces
            .iter()
            .scan(0, |end, piece| {
                *end += piece.len();
                Some(*end)
            })
            .collect();
        LeFloats { pieces, ends }
    }

    /// The piece holding byte `offset`, and the offset inside it.
    fn locate(&self, offset: usize) -> (usize, usize) {
        let piece = self.ends.partition_point(|&end| end <= offset);
        let start = if piece == 0 { 0 } else { self.ends[piece - 1] };
        (piece, offset - start)
    }

    /// Fills `out` with the values from element `first` on.
    fn read(&self, first: usize, out: &mut [f32]) {
        let offset = first * 4;
        let (piece, inside) = self.locate(offset);
        let bytes = self.pieces.get(piece);
        // The common case: the whole run inside one piece.
        if let Some(run) = bytes.and_then(|bytes| bytes.get(inside..inside + out.len() * 4)) {
            for (slot, value) in out.iter_mut().zip(run.chunks_exact(4)) {
                *slot = f32::from_le_bytes([value[0], value[1], value[2], value[3]]);
            }
            return;
        }
        // Across a file boundary (or past the end): byte by byte.
        let byte = |offset: usize| -> u8 {
            let (piece, inside) = self.locate(offset);
            let bytes = self.pieces.get(piece);
            bytes
                .and_then(|bytes| bytes.get(inside))
                .copied()
                .unwrap_or(0)
        };
        for (i, slot) in out.iter_mut().enumerate() {
            let at = offset + i * 4;
            *slot = f32::from_le_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)]);
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
                winograd: None,
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

    #[test]
    fn winograd_filters_pack_their_transform_wherever_files_split_them() {
        use crate::winograd::Winograd;
        // 3 input channels, 100 outputs: seven panels, the last padded, and 300 channel pairs,
        // more than the transform reads at a time.
        let (rows, columns) = (3, 100);
        let filter: Vec<f32> = (0..9 * rows * columns)
            .map(|i| (i % 17) as f32 - 8.0)
            .collect();
        let bytes: Vec<u8> = filter.iter().flat_map(|v| v.to_le_bytes()).collect();
        for winograd in [Winograd::F2, Winograd::F4] {
            let panels = Panels {
                rows,
                columns,
                transposed: false,
                winograd: Some(winograd),
            };
            let mut packed = vec![f32::NAN; panels.packed_len().unwrap()];
            panels.pack(&filter, &mut packed);
            // Matrix ξν is the plain packing of the transform's matrix ξν.
            let transformed = winograd.transformed_filter(&filter, rows, columns);
            let plain = panels.plain();
            let size = plain.packed_len().unwrap();
            for (product, matrix) in transformed.chunks_exact(rows * columns).enumerate() {
                let mut expected = vec![0f32; size];
                plain.pack(matrix, &mut expected);
                assert_eq!(
                    &packed[product * size..][..size],
                    &expected[..],
                    "{winograd:?}"
                );
            }
            // From bytes split anywhere, even inside a float: the same.
            for split in [0, 1, 6, 100, bytes.len() - 3, bytes.len()] {
                let (head, tail) = bytes.split_at(split);
                let mut from_bytes = vec![f32::NAN; packed.len()];
                panels.pack_le_bytes(&[head, tail], &mut from_bytes);
                assert_eq!(from_bytes, packed, "{winograd:?} split at {split}");
            }
        }
    }
}
