//! The GEMM frame: every matrix product and convolution that reduces to one runs here.
//!
//! An op describes its product — how many independent row groups, rows per group, columns,
//! how its A rows are addressed (a row stride, plus K segments with their A offsets), where B
//! lives and in which layout, and its epilogue — and the frame owns the rest: the micro-kernel
//! set for the CPU features, the register tile (chosen per layer by a cost model), blocking of
//! M and K, edge tiles, and the epilogue applied to each finished tile while it is in cache.
//! tract's `linalg` is the model: the kernel knows only its tile and its B layout; the frame
//! picks.
//!
//! ```text
//! for g in groups:                      (output rows of a convolution, batches of a product)
//!   for each block of rows:             (sized so the block's A rows stay in L2)
//!     for each column tile j:           (vectors × lanes columns; the last one masked)
//!       for each K chunk:               (filter rows of a convolution; the whole K of a product)
//!         for each row tile:  C[rows, j] (+)= A[rows, chunk] · B[chunk, j]
//!       epilogue on C[block, j]
//! ```
//!
//! Each kernel call also prefetches, a cache line per K step, what a later call reads from
//! beyond L2 ([`Prefetch`]): the next row tile's A in this order, the next chunk of B in the
//! columns-outermost order that late layers take (their filters stream from memory).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{FuncId, Module};
use cranelift_object::ObjectModule;

use super::kernel::{memory_flags, Kernel};
use super::microkernel::{
    Isa, MachineEpilogue, Microkernel, StepOperand, TileShape, GEMM_PARAMETERS, PANEL,
};
use super::CodegenError;
use crate::ir::TensorType;
use crate::ops::epilogue::{self, Epilogue};

/// Most B rows one kernel call sums over: a 64-column chunk of B is then 128 KiB and stays in
/// L2 while every row tile of the block streams it.
const DEPTH_CHUNK: usize = 512;

/// An operand larger than this does not stay in L2 from one use to the next: the loop order
/// that reads it again fewer times wins (see `Gemm::emit`).
const L2_RESIDENT_BYTES: usize = 512 * 1024;

/// Bytes of A rows one row block keeps in L2 while the column tiles reuse them.
const ROW_BLOCK_BYTES: usize = 256 * 1024;

/// Row blocks a large product is cut into at least, so that threads can share it.
const MIN_BLOCKS: usize = 8;

/// How B is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// Row-major `[depth, columns]`, as the tensor is.
    RowMajor,
    /// Panels of 16 columns, each `[depth, 16]` row-major, the last one zero-padded: the layout
    /// the kernels stream (`passes::pack` decides it; the runtime or codegen writes it).
    Panels,
}

/// A run of B rows and the A columns that meet them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Bytes from a row's A pointer to the segment's first element.
    pub a_offset: usize,
    /// The segment's first B row.
    pub b_row: usize,
    /// Rows of B (elements of an A row) in the segment.
    pub depth: usize,
}

/// What one kernel call sums over: `segments` runs of `depth` A columns, `segment_stride` bytes
/// apart in A, meeting consecutive B rows from `b_row` (see the micro-kernel contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    a_offset: usize,
    b_row: usize,
    depth: usize,
    segments: usize,
    segment_stride: usize,
}

impl Chunk {
    /// K steps of the call: the B rows it reads.
    fn steps(&self) -> usize {
        self.segments * self.depth
    }

    /// Bytes of an A row from the chunk's first element to the end of its last.
    fn a_span(&self) -> usize {
        (self.segments - 1) * self.segment_stride + self.depth * 4
    }

    /// Takes `next` in as one more segment if it continues this chunk: the same depth, the
    /// next B rows, the same step in A (a convolution's next filter row), within
    /// [`DEPTH_CHUNK`]. Says whether it did.
    fn join(&mut self, next: &Chunk) -> bool {
        let stride = match self.segments {
            1 => next.a_offset.checked_sub(self.a_offset),
            _ => Some(self.segment_stride),
        };
        let Some(stride) = stride.filter(|&stride| {
            stride > 0
                && next.segments == 1
                && next.depth == self.depth
                && next.b_row == self.b_row + self.steps()
                && self.steps() + next.depth <= DEPTH_CHUNK
                && next.a_offset == self.a_offset + self.segments * stride
        }) else {
            return false;
        };
        self.segment_stride = stride;
        self.segments += 1;
        true
    }
}

/// Where one row group's operands start.
pub struct GroupBases {
    /// A's row 0 of the group.
    pub a: Value,
    /// B (row 0, column 0).
    pub b: Value,
    /// Element index of C[row 0, column 0] in the output.
    pub c: Value,
}

/// One product, as an op describes it.
pub struct Gemm<'e> {
    /// Independent row groups (each with its own A, B and C start).
    pub groups: usize,
    /// Rows (M) of each group.
    pub rows: usize,
    /// Columns (N); also the row stride of C, in elements.
    pub columns: usize,
    /// Rows of B (K).
    pub depth: usize,
    /// Bytes between consecutive A rows of a group.
    pub lda: usize,
    /// The K segments; together they cover B's rows.
    pub segments: Vec<Segment>,
    pub b_layout: BLayout,
    /// Each row group has its own B (Winograd's products); otherwise all groups share one. Only
    /// the loop-order estimate reads it (the B each group reads comes from `bases` either way).
    pub b_per_group: bool,
    pub epilogue: &'e Epilogue,
}

/// One column tile of one row block: the group's operand starts, the block's first row and row
/// tiles, the tile's first column and its width.
#[derive(Clone, Copy)]
struct ColumnTile<'t> {
    bases: &'t GroupBases,
    first_row: Value,
    runs: &'t [(usize, usize, usize)],
    j: Value,
    width: usize,
}

impl<'t> ColumnTile<'t> {
    fn new(
        bases: &'t GroupBases,
        first_row: Value,
        runs: &'t [(usize, usize, usize)],
        j: Value,
        width: usize,
    ) -> ColumnTile<'t> {
        ColumnTile {
            bases,
            first_row,
            runs,
            j,
            width,
        }
    }
}

/// A `(start, count, size)` run of tiles, as [`balanced_runs`] and [`tile_runs`] give them.
type Run = (usize, usize, usize);

/// What each kernel call prefetches while it computes (see the micro-kernel contract): what the
/// next call of the loop order reads and is not in cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefetch {
    /// Rows outermost: the A rows of the next row tile (a block's rows are fetched once, by the
    /// first column tile; B stays in L2).
    NextRows,
    /// Columns outermost: the next chunk of B, shared out among the row tiles that use this
    /// chunk (B is streamed once, a chunk at a time, while the few rows stay in cache):
    /// `block_tile` is the place of the block's first row tile among them, and there are
    /// `tiles` of them at least. After the column tile's last chunk comes the first chunk of
    /// the tile at column `next_tile` (this thread's next).
    NextChunk {
        block_tile: Value,
        tiles: usize,
        next_tile: Value,
    },
}

/// What is done to one row block of a group: `(kernel, first row, row tiles)`.
type RowBlockVisit<'v> = dyn FnMut(&mut Kernel, Value, &[Run]) -> Result<(), CodegenError> + 'v;

/// What is done to one row block: `(kernel, group bases, first row, row tiles, the block's
/// place among those visited)`.
type BlockVisit<'v> =
    dyn FnMut(&mut Kernel, &GroupBases, Value, &[Run], Value) -> Result<(), CodegenError> + 'v;

/// How tiles are finished: in the machine-code kernels' registers (`machine`), or by the
/// Cranelift epilogue after the last chunk; `operands` are the epilogue's operand pointers.
pub struct Finish {
    pub machine: Option<MachineEpilogue>,
    pub operands: Vec<Value>,
}

impl Finish {
    /// How `kernel`'s tiles are finished: machine-code kernels of `isa` take `epilogue` into
    /// their registers when they know every step (its operands are the kernel's inputs 2, 3, ...).
    pub fn new(kernel: &Kernel, epilogue: &Epilogue, isa: Isa) -> Finish {
        let operands = &kernel.inputs[2..];
        let machine = match isa {
            Isa::Portable => None,
            _ => {
                let types: Vec<&TensorType> = operands.iter().map(|input| &input.ty).collect();
                epilogue.machine_form(isa, &kernel.outputs[0].ty, &types)
            }
        };
        Finish {
            machine,
            operands: operands.iter().map(|input| input.pointer).collect(),
        }
    }

    /// The pointer arguments of `epilogue`'s binary steps for the tile at column `column` whose
    /// first element is C's element `first`: a channel operand at the column, a full operand at
    /// the element.
    pub fn operand_arguments(
        &self,
        k: &mut Kernel,
        epilogue: MachineEpilogue,
        column: Value,
        first: Value,
    ) -> Vec<Value> {
        epilogue
            .operands()
            .zip(&self.operands)
            .map(|(source, &pointer)| match source {
                StepOperand::Channel => k.address(pointer, column, 4),
                StepOperand::Full => k.address(pointer, first, 4),
            })
            .collect()
    }
}

/// The tiles the frame chose for one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePlan {
    pub isa: Isa,
    /// Vectors across a full column tile.
    pub vectors: usize,
    /// Height of the tallest row tile.
    pub height: usize,
    /// Rows of each group (M).
    pub rows: usize,
    /// Row blocks of each group. The rows are shared among them as evenly as possible (the
    /// first `rows % blocks` one row taller), so that threads sharing the blocks get equal work.
    pub blocks: usize,
}

/// `(start, count, height)` runs covering `total` rows with tiles of at most `height`, as
/// evenly as possible (7 rows in tiles of ≤ 6 become 4 + 3, not 6 + 1).
pub fn balanced_runs(total: usize, height: usize) -> Vec<(usize, usize, usize)> {
    if total == 0 {
        return Vec::new();
    }
    let tiles = total.div_ceil(height);
    let (small, taller) = (total / tiles, total % tiles);
    let mut runs = Vec::new();
    if taller > 0 {
        runs.push((0, taller, small + 1));
    }
    if tiles > taller {
        runs.push((taller * (small + 1), tiles - taller, small));
    }
    runs
}

/// Splits `total` into `(start, count, width)` runs: as many tiles of `width` as fit, then one
/// narrower tile for the rest (GEMM column tiles, depthwise channel tiles).
pub fn tile_runs(total: usize, width: usize) -> Vec<(usize, usize, usize)> {
    let mut runs = Vec::new();
    if total / width > 0 {
        runs.push((0, total / width, width));
    }
    if !total.is_multiple_of(width) {
        runs.push((total / width * width, 1, total % width));
    }
    runs
}

/// Relative cost of one K step of a `rows` × `columns` tile: FMA issue or loads, whichever
/// binds, plus the loop's own instructions; between tiles that tie, fewer loads win. An AVX-512
/// tail of at most 8 lanes runs on ymm, counted as half a vector's FMAs (CPUs that split 512-bit
/// operations in two issue it in one slot).
fn step_cost(isa: Isa, rows: usize, columns: usize) -> f64 {
    let lanes = isa.lanes();
    let vectors = columns.div_ceil(lanes);
    let tail = columns % lanes;
    let fma_vectors = if isa == Isa::Avx512 && tail != 0 && tail <= 8 {
        vectors as f64 - 0.5
    } else {
        vectors as f64
    };
    let fmas_per_cycle = match isa {
        Isa::Avx512 => 1.0,
        Isa::Avx2 | Isa::Portable => 2.0,
    };
    let fmas = rows as f64 * fma_vectors / fmas_per_cycle;
    let loads = (rows + vectors) as f64 / 2.0;
    fmas.max(loads) + 1.0 + loads / 64.0
}

impl TilePlan {
    /// The cheapest tiling of `rows` × `columns` by the cost model, for A rows of `depth`, in
    /// at least `min_blocks` row blocks (for threads to share; 1 for one thread's product).
    pub fn choose(
        isa: Isa,
        rows: usize,
        columns: usize,
        depth: usize,
        min_blocks: usize,
    ) -> TilePlan {
        let lanes = isa.lanes();
        let mut best: Option<(f64, TilePlan)> = None;
        for vectors in 1..=isa.max_vectors() {
            if vectors > 1 && (vectors - 1) * lanes >= columns {
                break; // a narrower tile already covers every column
            }
            let width = vectors * lanes;
            if !width.is_multiple_of(PANEL) && !PANEL.is_multiple_of(width) {
                // A tile must not straddle a panel boundary part-way (12 columns at 12 would).
                continue;
            }
            for height in 1..=isa.max_rows(vectors).min(rows.max(1)) {
                let plan = TilePlan {
                    isa,
                    vectors,
                    height,
                    rows,
                    blocks: Self::blocks(rows, height, depth, min_blocks),
                };
                // Per kind of block: how many, and the cost of one (every column tile).
                let column_tiles = tile_runs(columns, plan.width());
                let kinds: Vec<(usize, f64)> = plan
                    .block_kinds()
                    .into_iter()
                    .map(|(blocks, runs)| {
                        let one: f64 = column_tiles
                            .iter()
                            .flat_map(|&(_, count, width)| {
                                runs.iter().map(move |&(_, n, h)| {
                                    (count * n) as f64 * step_cost(isa, h, width)
                                })
                            })
                            .sum();
                        (blocks, one)
                    })
                    .collect();
                let one_thread: f64 = kinds.iter().map(|&(n, c)| n as f64 * c).sum();
                // A product threads share by row blocks (see `Gemm::emit`) is also costed as
                // two threads run it (the first half of the blocks and the rest), so that the
                // shares come out even.
                let cost = if min_blocks > 1 && plan.blocks >= min_blocks / 2 {
                    let first_half = plan.blocks / 2;
                    let (mut seen, mut first) = (0, 0.0);
                    for &(n, c) in &kinds {
                        first += n.min(first_half.saturating_sub(seen)) as f64 * c;
                        seen += n;
                    }
                    one_thread + 2.0 * first.max(one_thread - first)
                } else {
                    one_thread
                };
                // Ties go to the larger tile (fewer calls).
                if best.as_ref().is_none_or(|(c, _)| cost < *c * 0.999) {
                    best = Some((cost, plan));
                }
            }
        }
        best.map(|(_, plan)| plan).unwrap_or(TilePlan {
            isa,
            vectors: 1,
            height: 1,
            rows,
            blocks: 1,
        })
    }

    /// Row blocks for `rows` rows of A rows of `depth`, in tiles of at most `height` rows: few
    /// enough that each block's A rows stay in L2 while the column tiles reuse them, and at
    /// least `min_blocks` (a multiple of it, so that 2, 4 or 8 threads get equal shares), but
    /// not more than there are row tiles.
    fn blocks(rows: usize, height: usize, depth: usize, min_blocks: usize) -> usize {
        let fit = (ROW_BLOCK_BYTES / (depth.max(1) * 4)).max(height);
        let min_blocks = min_blocks.max(1);
        let blocks = rows
            .div_ceil(fit)
            .max(min_blocks)
            .next_multiple_of(min_blocks);
        blocks.min(rows.div_ceil(height)).max(1)
    }

    /// Columns of a full column tile.
    pub fn width(&self) -> usize {
        self.vectors * self.isa.lanes()
    }

    /// Rows of the shorter blocks, and how many blocks (the first) have one row more.
    fn block_rows(&self) -> (usize, usize) {
        (self.rows / self.blocks, self.rows % self.blocks)
    }

    /// The kinds of row block, taller first: `(blocks of the kind, the row tiles of one)`.
    fn block_kinds(&self) -> Vec<(usize, Vec<Run>)> {
        let (rows, taller) = self.block_rows();
        [(taller, rows + 1), (self.blocks - taller, rows)]
            .into_iter()
            .filter(|&(blocks, rows)| blocks > 0 && rows > 0)
            .map(|(blocks, rows)| (blocks, balanced_runs(rows, self.height)))
            .collect()
    }

    /// `visit(k, first row, row tiles)` for row block `index` (a run-time value below
    /// `blocks`): one compare and branch tells the taller blocks from the others.
    fn visit_block(
        &self,
        k: &mut Kernel,
        index: Value,
        visit: &mut RowBlockVisit,
    ) -> Result<(), CodegenError> {
        let kinds = self.block_kinds();
        if kinds.is_empty() {
            return Ok(()); // no rows
        }
        let (rows, taller) = self.block_rows();
        // first row = index · rows + min(index, taller)
        let first_row = k.builder.ins().imul_imm_s(index, rows as i64);
        let taller_before = k.iconst(taller as i64);
        let taller_before = k.builder.ins().umin(index, taller_before);
        let first_row = k.builder.ins().iadd(first_row, taller_before);
        let ends: Vec<usize> = kinds
            .iter()
            .scan(0, |end, (blocks, _)| {
                *end += blocks;
                Some(*end)
            })
            .collect();
        k.switch_spans(index, &ends, &mut |k, kind| {
            visit(k, first_row, &kinds[kind].1)
        })
    }
}

impl Gemm<'_> {
    /// Emits the product into `kernel`: `bases` gives each row group's operand starts, `output`
    /// is C's buffer.
    pub fn emit(
        &self,
        kernel: &mut Kernel,
        output: Value,
        bases: &mut dyn FnMut(&mut Kernel, Value) -> Result<GroupBases, CodegenError>,
    ) -> Result<(), CodegenError> {
        // Work items the threads share at least (one thread's product, inside
        // `Kernel::serially`, needs no cutting).
        let min_blocks = if kernel.serial { 1 } else { MIN_BLOCKS };
        let plan = TilePlan::choose(
            kernel.features.isa,
            self.rows,
            self.columns,
            self.depth,
            min_blocks,
        );
        let chunks = chunks_of(&self.segments);
        let mut finish = Finish::new(kernel, self.epilogue, plan.isa);
        if chunks.is_empty() {
            // Without a kernel call (an empty sum) nothing would apply it in registers.
            finish.machine = None;
        }
        if chunks.is_empty() {
            // An empty sum: no kernel call writes C, so it starts as zeros.
            kernel.for_split(self.groups, &mut |k, group| {
                let group_bases = bases(k, group)?;
                k.fill_words(output, group_bases.c, self.rows * self.columns, 0)
            })?;
            kernel.barrier();
        }
        // The loop order. Rows outermost read B once per row block, columns outermost read A
        // once per column tile, each from memory only when it outgrows L2: the order moving
        // fewer bytes wins (columns for late, wide layers: few output pixels, megabytes of
        // filter). Columns also when there are too few row blocks for the threads to share (a
        // product of one row: a dense layer, a squeeze-and-excite convolution).
        let row_blocks = self.groups * plan.blocks;
        let column_tiles = self.columns.div_ceil(plan.width());
        let (a_bytes, b_bytes) = (
            self.groups * self.rows * self.depth * 4,
            self.depth * self.columns * 4,
        );
        let traffic = |bytes: usize, reads: usize| {
            if bytes > L2_RESIDENT_BYTES {
                bytes * reads
            } else {
                bytes
            }
        };
        let (rows_outer, all_b_bytes) = if self.b_per_group {
            (
                self.groups * traffic(b_bytes, plan.blocks),
                self.groups * b_bytes,
            )
        } else {
            (traffic(b_bytes, row_blocks), b_bytes)
        };
        let rows_outer = a_bytes + rows_outer;
        let columns_outer = all_b_bytes + traffic(a_bytes, column_tiles);
        if columns_outer < rows_outer || row_blocks < min_blocks / 2 {
            return self.emit_columns_outer(
                kernel,
                &plan,
                &finish,
                output,
                bases,
                (&chunks, min_blocks),
            );
        }
        // The threads share the row blocks of every group. A block is one thread's from its
        // first K step to its epilogue, so results do not depend on the thread count.
        let block = |k: &mut Kernel,
                     group_bases: &GroupBases,
                     first_row: Value,
                     runs: &[(usize, usize, usize)]| {
            for (start, count, width) in tile_runs(self.columns, plan.width()) {
                k.for_steps(start, count, width, &mut |k, j| {
                    let tile = ColumnTile::new(group_bases, first_row, runs, j, width);
                    for index in 0..chunks.len() {
                        let chunk = (&chunks[..], index);
                        self.emit_calls(
                            k,
                            &plan,
                            &finish,
                            output,
                            &tile,
                            chunk,
                            Prefetch::NextRows,
                        )?;
                    }
                    self.emit_epilogue(k, &finish, output, &tile)
                })?;
            }
            Ok(())
        };
        kernel.for_split(row_blocks, &mut |k, item| {
            let group = k.builder.ins().udiv_imm_s(item, plan.blocks as i64);
            let index = k.builder.ins().urem_imm_s(item, plan.blocks as i64);
            let group_bases = bases(k, group)?;
            plan.visit_block(k, index, &mut |k, first_row, runs| {
                block(k, &group_bases, first_row, runs)
            })
        })
    }

    /// The order for a B too large to stay in L2 while one row group uses it (a late, wide
    /// convolution layer: few output pixels per row, megabytes of filter), and for products
    /// with too few rows to share: each column tile's B chunk is read once for every group,
    /// then the tile's epilogue runs over all groups. Threads share the column tiles.
    fn emit_columns_outer(
        &self,
        kernel: &mut Kernel,
        plan: &TilePlan,
        finish: &Finish,
        output: Value,
        bases: &mut dyn FnMut(&mut Kernel, Value) -> Result<GroupBases, CodegenError>,
        (chunks, min_items): (&[Chunk], usize),
    ) -> Result<(), CodegenError> {
        let blocks = self.groups * plan.blocks;
        // The row blocks `first..end`, counted group by group: `visit(k, bases, first row, row
        // tiles)`.
        let mut each_block = |k: &mut Kernel, first: Value, end: Value, visit: &mut BlockVisit| {
            k.for_range(first, end, 1, &mut |k, block| {
                let group = k.builder.ins().udiv_imm_s(block, plan.blocks as i64);
                let index = k.builder.ins().urem_imm_s(block, plan.blocks as i64);
                let group_bases = bases(k, group)?;
                let place = k.builder.ins().isub(block, first);
                plan.visit_block(k, index, &mut |k, first_row, runs| {
                    visit(k, &group_bases, first_row, runs, place)
                })
            })
        };
        // Few column tiles (a narrow layer) would leave threads idle: each tile's row blocks are
        // then cut into segments, one work item each, so that there are `min_items` items at
        // least. A segment still walks its blocks chunk by chunk, B's chunk shared by them all.
        let runs = tile_runs(self.columns, plan.width());
        let tiles: usize = runs.iter().map(|&(_, count, _)| count).sum();
        let segments = min_items.div_ceil(tiles.max(1)).clamp(1, blocks.max(1));
        // The items are dealt to the threads in turn, over all runs: split run by run, every
        // run's odd item went to the last thread (MobileNetV2's dense layer, 15 tiles of 64 and
        // one of 40: one thread of two had 7 full tiles, the other 8 and the narrow one).
        let counts: Vec<usize> = runs.iter().map(|&(_, count, _)| count * segments).collect();
        // Row tiles per block (the fewest, of the two kinds) and blocks per segment (the
        // fewest): how many calls at least share each chunk of B, to share out its prefetch.
        let tiles_per_block = plan
            .block_kinds()
            .iter()
            .map(|(_, runs)| runs.iter().map(|&(_, count, _)| count).sum::<usize>())
            .min()
            .unwrap_or(1);
        let blocks_per_segment = blocks / segments;
        kernel.for_split_dealt(&counts, &mut |k, run, item| {
            let (start, _, width) = runs[run];
            let tile = k.builder.ins().udiv_imm_s(item, segments as i64);
            let segment = k.builder.ins().urem_imm_s(item, segments as i64);
            let bound = |k: &mut Kernel, segment: Value| {
                let scaled = k.builder.ins().imul_imm_s(segment, blocks as i64);
                k.builder.ins().udiv_imm_s(scaled, segments as i64)
            };
            let first = bound(k, segment);
            let next = k.builder.ins().iadd_imm_s(segment, 1);
            let end = bound(k, next);
            let j = k.builder.ins().imul_imm_s(tile, width as i64);
            let j = k.builder.ins().iadd_imm_s(j, start as i64);
            // This thread's next item is T items on (all of them on one thread): the column of
            // its tile, past B's columns when there is none (or it is in a narrower run).
            let threads = if k.serial { k.iconst(1) } else { k.threads };
            let next_item = k.builder.ins().iadd(item, threads);
            let next_tile = k.builder.ins().udiv_imm_u(next_item, segments as i64);
            let next_tile = k.builder.ins().imul_imm_s(next_tile, width as i64);
            let next_tile = k.builder.ins().iadd_imm_s(next_tile, start as i64);
            for index in 0..chunks.len() {
                each_block(k, first, end, &mut |k, bases, first_row, runs, place| {
                    let tile = ColumnTile::new(bases, first_row, runs, j, width);
                    let chunk = (chunks, index);
                    let block_tile = k.builder.ins().imul_imm_s(place, tiles_per_block as i64);
                    let prefetch = Prefetch::NextChunk {
                        block_tile,
                        tiles: tiles_per_block * blocks_per_segment,
                        next_tile,
                    };
                    self.emit_calls(k, plan, finish, output, &tile, chunk, prefetch)
                })?;
            }
            each_block(k, first, end, &mut |k, bases, first_row, runs, _| {
                let tile = ColumnTile::new(bases, first_row, runs, j, width);
                self.emit_epilogue(k, finish, output, &tile)
            })
        })
    }

    /// `(bytes between B rows, bytes between 16-column panels)` in B's layout.
    fn b_strides(&self) -> (usize, usize) {
        match self.b_layout {
            BLayout::RowMajor => (self.columns * 4, PANEL * 4),
            BLayout::Panels => (PANEL * 4, self.depth * PANEL * 4),
        }
    }

    /// The address of B[row, column]: panel column / 16, lane column % 16 (row-major: the
    /// panels are 64 bytes apart, so this is 4·column).
    fn b_address(&self, k: &mut Kernel, b: Value, column: Value, row: usize) -> Value {
        let (b_row_bytes, panel_stride) = self.b_strides();
        let panel = k.builder.ins().ushr_imm_u(column, 4);
        let panel = k.builder.ins().imul_imm_s(panel, panel_stride as i64);
        let lane = k.builder.ins().band_imm_u(column, (PANEL - 1) as i64);
        let lane = k.builder.ins().imul_imm_s(lane, 4);
        let address = k.builder.ins().iadd(b, panel);
        let address = k.builder.ins().iadd(address, lane);
        k.builder
            .ins()
            .iadd_imm_s(address, (row * b_row_bytes) as i64)
    }

    /// Kernel calls for chunk `index` of the column tile at `j` (`width` columns) over the row
    /// tiles `runs` of the block starting at `first_row`: the first chunk overwrites C, the
    /// others accumulate. Each call prefetches what `prefetch` says.
    #[allow(clippy::too_many_arguments)]
    fn emit_calls(
        &self,
        k: &mut Kernel,
        plan: &TilePlan,
        finish: &Finish,
        output: Value,
        tile: &ColumnTile,
        (chunks, index): (&[Chunk], usize),
        prefetch: Prefetch,
    ) -> Result<(), CodegenError> {
        let (bases, first_row, runs) = (tile.bases, tile.first_row, tile.runs);
        let (j, width) = (tile.j, tile.width);
        let (chunk, last) = (&chunks[index], index + 1 == chunks.len());
        let (b_row_bytes, panel_stride) = self.b_strides();
        let b = self.b_address(k, bases.b, j, chunk.b_row);
        let accumulate = k.iconst(i64::from(index > 0));
        // The last chunk's call finishes the tile with the machine epilogue, if there is one.
        let epilogue = match finish.machine {
            Some(epilogue) if last => epilogue,
            _ => MachineEpilogue::default(),
        };
        let mut tiles_before = 0;
        for &(start, count, height) in runs {
            let function = k.microkernel(Microkernel::Gemm(TileShape {
                isa: plan.isa,
                rows: height,
                columns: width,
                epilogue,
            }))?;
            let tiles_before_run = tiles_before;
            tiles_before += count;
            k.for_steps(start, count, height, &mut |k, r| {
                let row = k.builder.ins().iadd(first_row, r);
                let a_row = |k: &mut Kernel, row: Value| {
                    let a = k.builder.ins().imul_imm_s(row, self.lda as i64);
                    let a = k.builder.ins().iadd(bases.a, a);
                    k.builder.ins().iadd_imm_s(a, chunk.a_offset as i64)
                };
                let a = a_row(k, row);
                let (pf, pf_step) = match prefetch {
                    Prefetch::NextRows => {
                        // The next tile's rows (the group's last `height` rows at most), walked
                        // evenly over this call's K steps.
                        let next = k.builder.ins().iadd_imm_s(row, height as i64);
                        let last = k.iconst((self.rows - height) as i64);
                        let next = k.builder.ins().umin(next, last);
                        let span = (height - 1) * self.lda + chunk.a_span();
                        let step = k.iconst(walk_step(span, chunk.steps()) as i64);
                        (a_row(k, next), step)
                    }
                    Prefetch::NextChunk {
                        block_tile,
                        tiles,
                        next_tile,
                    } => {
                        // The next chunk of B in the loop order: this tile's next one, else
                        // the first of the next column tile this thread computes.
                        let (next_j, next) = match chunks.get(index + 1) {
                            Some(next) => (j, next),
                            None => (next_tile, &chunks[0]),
                        };
                        let panels = width.div_ceil(PANEL);
                        // The next chunk's panels are cut into `parts` runs of rows each, one
                        // run per row tile (tile t: panel t % panels, part t / panels), so that
                        // the fetch spreads over the block's calls rather than asking memory for
                        // a whole panel in one call's time. Tiles past them, and runs past B's
                        // last column (after the last column tile, or beyond a narrower one),
                        // prefetch nothing new: their own B row, with no step.
                        let tile = k.builder.ins().iadd_imm_s(r, -(start as i64));
                        let tile = k.builder.ins().udiv_imm_u(tile, height as i64);
                        let tile = k.builder.ins().iadd_imm_s(tile, tiles_before_run as i64);
                        let tile = k.builder.ins().iadd(tile, block_tile);
                        let parts = (tiles / panels).clamp(1, next.steps());
                        let panel = k.builder.ins().urem_imm_u(tile, panels as i64);
                        let part = k.builder.ins().udiv_imm_u(tile, panels as i64);
                        let column = k.builder.ins().imul_imm_s(panel, PANEL as i64);
                        let column = k.builder.ins().iadd(next_j, column);
                        let in_b = k.builder.ins().icmp_imm_u(
                            IntCC::UnsignedLessThan,
                            column,
                            self.columns as i64,
                        );
                        let in_parts =
                            k.builder
                                .ins()
                                .icmp_imm_u(IntCC::UnsignedLessThan, part, parts as i64);
                        let in_b = k.builder.ins().band(in_b, in_parts);
                        // Part p's rows: ⌊p·steps / parts⌋ on, ⌊steps / parts⌋ of them.
                        let first = k.builder.ins().imul_imm_s(part, next.steps() as i64);
                        let first = k.builder.ins().udiv_imm_u(first, parts as i64);
                        let address = self.b_address(k, bases.b, column, next.b_row);
                        let offset = k.builder.ins().imul_imm_s(first, b_row_bytes as i64);
                        let address = k.builder.ins().iadd(address, offset);
                        let address = k.builder.ins().select(in_b, address, b);
                        let span = (next.steps() / parts - 1) * b_row_bytes + 4;
                        let step = k.iconst(walk_step(span, chunk.steps()) as i64);
                        let zero = k.iconst(0);
                        let step = k.builder.ins().select(in_b, step, zero);
                        (address, step)
                    }
                };
                let c_first = self.c_index(k, bases, row, j);
                let c = k.address(output, c_first, 4);
                let mut arguments = vec![
                    a,
                    k.iconst(self.lda as i64),
                    b,
                    k.iconst(b_row_bytes as i64),
                    c,
                    k.iconst((self.columns * 4) as i64),
                    k.iconst(chunk.depth as i64),
                    accumulate,
                    k.iconst(panel_stride as i64),
                    pf,
                    pf_step,
                    k.iconst(chunk.segments as i64),
                    k.iconst(chunk.segment_stride as i64),
                ];
                arguments.extend(finish.operand_arguments(k, epilogue, j, c_first));
                k.builder.ins().call(function, &arguments);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The epilogue over the finished column tile at `j` of the block's row tiles.
    fn emit_epilogue(
        &self,
        k: &mut Kernel,
        finish: &Finish,
        output: Value,
        tile: &ColumnTile,
    ) -> Result<(), CodegenError> {
        let (bases, first_row, runs) = (tile.bases, tile.first_row, tile.runs);
        let (j, width) = (tile.j, tile.width);
        if finish.machine.is_some() {
            return Ok(()); // done in the kernels' registers
        }
        for &(start, count, height) in runs {
            k.for_steps(start, count, height, &mut |k, r| {
                let row = k.builder.ins().iadd(first_row, r);
                let first = self.c_index(k, bases, row, j);
                epilogue::emit_in_place(
                    k,
                    self.epilogue,
                    output,
                    first,
                    j,
                    height,
                    width,
                    self.columns,
                    2,
                )
            })?;
        }
        Ok(())
    }

    /// Element index of C[row, column] of the group.
    fn c_index(&self, k: &mut Kernel, bases: &GroupBases, row: Value, column: Value) -> Value {
        let index = k.builder.ins().imul_imm_s(row, self.columns as i64);
        let index = k.builder.ins().iadd(bases.c, index);
        k.builder.ins().iadd(index, column)
    }
}

/// The kernel calls' chunks of K: `segments` cut to at most [`DEPTH_CHUNK`] B rows, and short
/// ones that follow each other in B and step evenly through A (the filter rows of a convolution
/// with few channels: a 7×7 stem's are 21 deep) joined into one call each.
fn chunks_of(segments: &[Segment]) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for segment in segments {
        for start in (0..segment.depth).step_by(DEPTH_CHUNK) {
            let piece = Chunk {
                a_offset: segment.a_offset + start * 4,
                b_row: segment.b_row + start,
                depth: (segment.depth - start).min(DEPTH_CHUNK),
                segments: 1,
                segment_stride: 0,
            };
            if !chunks.last_mut().is_some_and(|last| last.join(&piece)) {
                chunks.push(piece);
            }
        }
    }
    chunks
}

/// Bytes between the addresses a kernel call of `steps` K steps prefetches so that they spread
/// evenly over `span` bytes and the last stays inside them (at most a line apart for every line
/// to be fetched; wider spans are sampled).
fn walk_step(span: usize, steps: usize) -> usize {
    if steps <= 1 {
        0
    } else {
        span.saturating_sub(4) / (steps - 1)
    }
}

/// Defines the portable tile `shape` (Cranelift f32x4, the machine-code kernels' contract) as
/// function `id` of `module`: `fma` says whether the target has fused multiply-add.
pub fn define_portable_tile(
    module: &mut ObjectModule,
    id: FuncId,
    shape: TileShape,
    fma: bool,
) -> Result<(), CodegenError> {
    let backend = |e: cranelift_module::ModuleError| CodegenError::Backend(e.to_string());
    let mut context = module.make_context();
    let mut signature = Signature::new(module.isa().default_call_conv());
    signature
        .params
        .extend((0..GEMM_PARAMETERS).map(|_| AbiParam::new(types::I64)));
    context.func.signature = signature;
    context.func.name = UserFuncName::user(1, id.as_u32());
    let mut function_context = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut context.func, &mut function_context);
        build_portable_tile(&mut b, shape, fma);
        b.finalize(module.isa().frontend_config());
    }
    module.define_function(id, &mut context).map_err(backend)
}

fn build_portable_tile(b: &mut FunctionBuilder, shape: TileShape, fma: bool) {
    let flags = memory_flags();
    let lanes = 4;
    let vectors = shape.columns / lanes;
    let tail = shape.columns % lanes;
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    // Cranelift has no prefetch instruction: those two parameters are not read.
    let [a, lda, b_start, ldb, c, ldc, depth, accumulate, panel_stride, _, _, segments, segment_stride] =
        <[Value; GEMM_PARAMETERS]>::try_from(params)
            .unwrap_or_else(|_| unreachable!("GEMM_PARAMETERS parameters"));
    // Column j's offset from a B row: panel j / 16, lane j % 16.
    let column_offset = |b: &mut FunctionBuilder, column: usize| {
        let panel = b.ins().imul_imm_s(panel_stride, (column / PANEL) as i64);
        b.ins().iadd_imm_s(panel, ((column % PANEL) * 4) as i64)
    };
    let vector_offsets: Vec<Value> = (0..vectors).map(|v| column_offset(b, v * lanes)).collect();
    let scalar_offsets: Vec<Value> = (0..tail)
        .map(|t| column_offset(b, vectors * lanes + t))
        .collect();
    let row_offsets = |b: &mut FunctionBuilder, stride: Value| -> Vec<Value> {
        (0..shape.rows)
            .map(|p| b.ins().imul_imm_s(stride, p as i64))
            .collect()
    };
    let a_rows = row_offsets(b, lda);
    let c_rows = row_offsets(b, ldc);
    // Accumulators: per row, the vectors then the tail's scalars.
    let slots: Vec<(usize, types::Type, usize)> = (0..shape.rows)
        .flat_map(|p| {
            (0..vectors)
                .map(move |v| (p, types::F32X4, v * lanes * 4))
                .chain((0..tail).map(move |t| (p, types::F32, (vectors * lanes + t) * 4)))
        })
        .collect();
    let accumulators: Vec<Variable> = slots.iter().map(|&(_, ty, _)| b.declare_var(ty)).collect();
    let load_c = b.create_block();
    let zero_c = b.create_block();
    let start = b.create_block();
    b.ins().brif(accumulate, load_c, &[], zero_c, &[]);
    for (block, load) in [(load_c, true), (zero_c, false)] {
        b.switch_to_block(block);
        b.seal_block(block);
        for (&(p, ty, offset), &var) in slots.iter().zip(&accumulators) {
            let value = if load {
                let row = b.ins().iadd(c, c_rows[p]);
                b.ins().load(ty, flags, row, offset as i32)
            } else {
                let zero = b.ins().f32const(0.0);
                if ty.is_vector() {
                    b.ins().splat(ty, zero)
                } else {
                    zero
                }
            };
            b.def_var(var, value);
        }
        b.ins().jump(start, &[]);
    }
    b.switch_to_block(start);
    b.seal_block(start);
    let (a_at, b_at, left) = (
        b.declare_var(types::I64),
        b.declare_var(types::I64),
        b.declare_var(types::I64),
    );
    let (segment_a, segments_left) = (b.declare_var(types::I64), b.declare_var(types::I64));
    b.def_var(a_at, a);
    b.def_var(b_at, b_start);
    b.def_var(left, depth);
    b.def_var(segment_a, a);
    b.def_var(segments_left, segments);
    let body = b.create_block();
    let segment_end = b.create_block();
    let next_segment = b.create_block();
    let done = b.create_block();
    b.ins().jump(body, &[]);
    b.switch_to_block(body);
    let (a_row, b_row) = (b.use_var(a_at), b.use_var(b_at));
    let b_vectors: Vec<Value> = vector_offsets
        .iter()
        .map(|&offset| {
            let address = b.ins().iadd(b_row, offset);
            b.ins().load(types::F32X4, flags, address, 0)
        })
        .collect();
    let b_scalars: Vec<Value> = scalar_offsets
        .iter()
        .map(|&offset| {
            let address = b.ins().iadd(b_row, offset);
            b.ins().load(types::F32, flags, address, 0)
        })
        .collect();
    for (p, &a_offset) in a_rows.iter().enumerate() {
        let address = b.ins().iadd(a_row, a_offset);
        let scalar = b.ins().load(types::F32, flags, address, 0);
        let splat = b.ins().splat(types::F32X4, scalar);
        for (&(row, ty, offset), &var) in slots.iter().zip(&accumulators) {
            if row != p {
                continue;
            }
            let (x, y) = if ty.is_vector() {
                (splat, b_vectors[offset / (lanes * 4)])
            } else {
                (scalar, b_scalars[offset / 4 - vectors * lanes])
            };
            let acc = b.use_var(var);
            let acc = if fma {
                b.ins().fma(x, y, acc)
            } else {
                let product = b.ins().fmul(x, y);
                b.ins().fadd(product, acc)
            };
            b.def_var(var, acc);
        }
    }
    let next_a = b.ins().iadd_imm_s(a_row, 4);
    b.def_var(a_at, next_a);
    let next_b = b.ins().iadd(b_row, ldb);
    b.def_var(b_at, next_b);
    let remaining = count_down(b, left);
    b.ins().brif(remaining, body, &[], segment_end, &[]);
    // The next segment: A from its next start, B on from where it is.
    b.switch_to_block(segment_end);
    b.seal_block(segment_end);
    let remaining = count_down(b, segments_left);
    b.ins().brif(remaining, next_segment, &[], done, &[]);
    b.switch_to_block(next_segment);
    b.seal_block(next_segment);
    let start = b.use_var(segment_a);
    let start = b.ins().iadd(start, segment_stride);
    b.def_var(segment_a, start);
    b.def_var(a_at, start);
    b.def_var(left, depth);
    b.ins().jump(body, &[]);
    b.seal_block(body);
    b.switch_to_block(done);
    b.seal_block(done);
    for (&(p, _, offset), &var) in slots.iter().zip(&accumulators) {
        let row = b.ins().iadd(c, c_rows[p]);
        let value = b.use_var(var);
        b.ins().store(flags, value, row, offset as i32);
    }
    b.ins().return_(&[]);
}

/// Decrements loop counter `counter`; returns what is left.
fn count_down(b: &mut FunctionBuilder, counter: Variable) -> Value {
    let left = b.use_var(counter);
    let left = b.ins().iadd_imm_s(left, -1);
    b.def_var(counter, left);
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_filter_rows_share_a_call() {
        let rows = |count: usize, depth: usize, row_bytes: usize| -> Vec<Segment> {
            (0..count)
                .map(|ky| Segment {
                    a_offset: ky * row_bytes,
                    b_row: ky * depth,
                    depth,
                })
                .collect()
        };
        // ResNet50's 7×7 stem on 230-pixel padded rows of 3 channels: one call of 7 segments.
        let stem = chunks_of(&rows(7, 21, 230 * 3 * 4));
        assert_eq!(stem.len(), 1);
        assert_eq!((stem[0].segments, stem[0].segment_stride), (7, 230 * 12));
        assert_eq!(
            (stem[0].steps(), stem[0].a_span()),
            (147, 6 * 230 * 12 + 84)
        );
        // A 3×3 filter on 512 channels: rows of 1536 are cut, never joined.
        let wide = chunks_of(&rows(3, 1536, 9 * 512 * 4));
        assert_eq!(wide.len(), 9);
        assert!(wide.iter().all(|c| c.segments == 1 && c.depth == 512));
        // Joined up to the chunk's depth: 5 rows of 200 make calls of 2, 2 and 1.
        let joined = chunks_of(&rows(5, 200, 4096));
        let shape: Vec<(usize, usize)> = joined.iter().map(|c| (c.b_row, c.segments)).collect();
        assert_eq!(shape, vec![(0, 2), (400, 2), (800, 1)]);
        // Uneven steps through A (a dilated filter's taps, row by row) split where they change.
        let mut taps = rows(3, 8, 40);
        taps.extend(rows(3, 8, 40).into_iter().map(|s| Segment {
            a_offset: s.a_offset + 1000,
            b_row: s.b_row + 24,
            ..s
        }));
        let split: Vec<usize> = chunks_of(&taps).iter().map(|c| c.segments).collect();
        assert_eq!(split, vec![3, 3]);
        // Every B row is summed exactly once, in order.
        for chunks in [&stem, &wide, &joined] {
            let mut next = 0;
            for chunk in chunks.iter() {
                assert_eq!(chunk.b_row, next);
                next += chunk.steps();
            }
        }
    }

    #[test]
    fn prefetch_walks_stay_inside_their_span() {
        for span in [4, 60, 64, 256, 4096, 32772, 1 << 20] {
            for steps in [1, 2, 3, 21, 64, 147, 512] {
                let step = walk_step(span, steps);
                // The last prefetched element starts inside the span.
                assert!((steps - 1) * step + 4 <= span.max(4), "{span} {steps}");
                // A span of whole rows of packed B, walked a row per step, is fetched line by
                // line.
                if steps > 1 && span == (steps - 1) * 64 + 4 {
                    assert_eq!(step, 64);
                }
            }
        }
        assert_eq!(walk_step(511 * 64 + 4, 512), 64);
    }

    #[test]
    fn balanced_runs_cover_the_rows_evenly() {
        assert_eq!(balanced_runs(7, 6), vec![(0, 1, 4), (4, 1, 3)]);
        assert_eq!(balanced_runs(12, 6), vec![(0, 2, 6)]);
        assert_eq!(balanced_runs(56, 6), vec![(0, 6, 6), (36, 4, 5)]);
        assert_eq!(balanced_runs(0, 6), vec![]);
        for total in 1..100 {
            for height in 1..13 {
                let runs = balanced_runs(total, height);
                let covered: usize = runs.iter().map(|&(_, n, h)| n * h).sum();
                assert_eq!(covered, total);
                assert!(runs.iter().all(|&(_, _, h)| h <= height && h > 0));
            }
        }
    }

    #[test]
    fn plans_use_wide_tiles_on_wide_products_and_cover_every_row() {
        let plan = TilePlan::choose(Isa::Avx512, 3136, 256, 64, MIN_BLOCKS);
        assert_eq!((plan.vectors, plan.height), (4, 6));
        let narrow = TilePlan::choose(Isa::Avx512, 3136, 16, 64, MIN_BLOCKS);
        assert_eq!(narrow.vectors, 1);
        for rows in [1, 7, 49, 56, 3136] {
            let plan = TilePlan::choose(Isa::Avx2, rows, 24, 4096, MIN_BLOCKS);
            let covered: usize = plan
                .block_kinds()
                .iter()
                .map(|(blocks, runs)| blocks * runs.iter().map(|&(_, n, h)| n * h).sum::<usize>())
                .sum();
            assert_eq!(covered, rows, "{plan:?}");
        }
    }

    #[test]
    fn row_blocks_are_shared_evenly() {
        // MobileNetV2's 14×14 layers: 196 rows, 8 blocks of 24 or 25 rows for the threads.
        let plan = TilePlan::choose(Isa::Avx512, 196, 576, 96, MIN_BLOCKS);
        assert_eq!(plan.blocks, 8, "{plan:?}");
        let kinds = plan.block_kinds();
        let rows: Vec<usize> = kinds
            .iter()
            .map(|(_, runs)| runs.iter().map(|&(_, n, h)| n * h).sum())
            .collect();
        assert_eq!(rows, vec![25, 24], "{plan:?}");
        assert_eq!(kinds.iter().map(|(n, _)| n).sum::<usize>(), 8);
        for rows in [1, 5, 49, 196, 3136, 12544] {
            for depth in [16, 147, 4608] {
                let plan = TilePlan::choose(Isa::Avx512, rows, 64, depth, MIN_BLOCKS);
                let tiles = rows.div_ceil(plan.height);
                // A multiple of the minimum, or one block per row tile when there are fewer.
                assert!(
                    plan.blocks.is_multiple_of(MIN_BLOCKS) || plan.blocks == tiles,
                    "{plan:?}"
                );
                // Each block's A rows fit the L2 budget (or it is a single tile).
                let block_rows = rows.div_ceil(plan.blocks);
                assert!(
                    block_rows * depth * 4 <= ROW_BLOCK_BYTES || block_rows <= plan.height,
                    "{plan:?}"
                );
                let one_thread = TilePlan::choose(Isa::Avx512, rows, 64, depth, 1);
                assert!(one_thread.blocks <= plan.blocks, "{one_thread:?}");
            }
        }
    }
}
