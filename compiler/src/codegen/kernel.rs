//! The kernel builder: one Cranelift function per IR node, with the helpers every op's lowering
//! uses (counted loops, addressing, vector constants, fused multiply-add, vector exp).
//!
//! A kernel receives one pointer per input, one per output, then a scratch pointer, and returns a
//! status: 0, or a [`KernelFailure`] code. Shapes are static, so loop bounds are constants baked
//! into the code; a kernel never reads or writes outside the extents its operand types give it,
//! and an index read from data is checked ([`Kernel::check_index`]) before it addresses memory.

use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Block, BlockArg, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

use std::collections::HashMap;

use cranelift_codegen::ir::{AbiParam, FuncRef, Signature};
use cranelift_module::{FuncId, Linkage, Module};
use cranelift_object::ObjectModule;

use super::gemm::BLayout;
use super::microkernel::{Isa, Microkernel};
use super::CodegenError;
use crate::ir::{DType, Tensor, TensorType};

/// Byte offsets in `struct tfjsc_threads` (docs/abi.md, "Threads").
pub const THREAD_OFFSET: i32 = 0;
pub const THREADS_OFFSET: i32 = 8;
pub const BARRIER_OFFSET: i32 = 16;

/// Calls the run's barrier (`sync->barrier(sync)`, docs/abi.md "Threads") and returns its
/// status: non-zero when the run was abandoned.
pub fn call_barrier(builder: &mut FunctionBuilder, module: &ObjectModule, sync: Value) -> Value {
    let mut signature = Signature::new(module.isa().default_call_conv());
    signature.params.push(AbiParam::new(types::I64));
    signature.returns.push(AbiParam::new(types::I32));
    let signature = builder.import_signature(signature);
    let function = builder
        .ins()
        .load(types::I64, MemFlagsData::trusted(), sync, BARRIER_OFFSET);
    let call = builder.ins().call_indirect(signature, function, &[sync]);
    builder.inst_results(call)[0]
}

/// Lanes of the portable vector type (Cranelift's x86-64 backend emits 128-bit vectors).
pub const LANES: usize = 4;

/// One kernel operand: its pointer, its type, and its value when it is a compile-time constant.
#[derive(Clone)]
pub struct Operand {
    pub pointer: Value,
    pub ty: TensorType,
    pub constant: Option<Arc<Tensor>>,
    /// How the operand's bytes are laid out (packed panels for some constant GEMM operands).
    pub layout: BLayout,
    /// Packed as this Winograd transform of a 3×3 filter (its matrices in panels).
    pub winograd: Option<tfjsc_runtime::winograd::Winograd>,
}

/// CPU features the generated code may use.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub fma: bool,
    /// The micro-kernel set compute-bound loops call: machine code for AVX2 + FMA or AVX-512,
    /// else the portable Cranelift tiles.
    pub isa: Isa,
}

/// The function being built for one node.
pub struct Kernel<'a> {
    pub builder: FunctionBuilder<'a>,
    pub inputs: Vec<Operand>,
    pub outputs: Vec<Operand>,
    /// Node-private scratch memory of the size the op asked for (see `Operator::scratch_bytes`).
    pub scratch: Value,
    pub features: Features,
    /// The node's name, for error messages.
    pub node_name: String,
    /// The object being built (micro-kernels are declared into it on first use).
    pub module: &'a mut ObjectModule,
    /// Micro-kernels already placed in the object, by tile shape.
    pub microkernels: &'a mut HashMap<Microkernel, FuncId>,
    /// The blocks that return each failure code, made when a check first needs one.
    pub failures: Vec<(KernelFailure, Block)>,
    /// This thread's index and the thread count of the run (i64), and the run's
    /// `struct tfjsc_threads *` (docs/abi.md, "Threads").
    pub thread: Value,
    pub threads: Value,
    pub sync: Value,
    /// Whether the kernel splits its work across threads ([`Kernel::for_split`]); a kernel that
    /// does not runs on thread 0 alone.
    pub splits: bool,
    /// Inside [`Kernel::serially`]: `for_split` runs every index and `barrier` is nothing.
    pub serial: bool,
}

/// Why a kernel stopped: its non-zero status. The runtime turns it into an error naming the node
/// (docs/abi.md, "Run status").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KernelFailure {
    /// An index read from the data is outside the dimension it indexes.
    IndexOutOfRange = 1,
    /// An integer division (or remainder) by zero.
    DivisionByZero = 2,
    /// An integer raised to a negative power.
    NegativeIntegerPower = 3,
}

/// Memory flags for kernel loads and stores: in bounds by construction, not necessarily aligned.
pub fn memory_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Cranelift scalar type of a dtype.
pub fn scalar_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

/// Cranelift 128-bit vector type of a dtype.
pub fn vector_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32X4,
        DType::I32 => types::I32X4,
        DType::I64 => types::I64X2,
        DType::Bool => types::I8X16,
    }
}

/// The body of [`Kernel::for_pointers`]: the kernel and the walked pointers' current values.
pub type PointersBody<'b, 'a> =
    dyn FnMut(&mut Kernel<'a>, &[Value]) -> Result<(), CodegenError> + 'b;

impl<'a> Kernel<'a> {
    pub fn error(&self, message: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported {
            node: self.node_name.clone(),
            message: message.into(),
        }
    }

    /// Stops the kernel with [`KernelFailure::IndexOutOfRange`] unless `0 <= index < bound`
    /// (`index` is an i64; one unsigned compare covers both ends).
    pub fn check_index(&mut self, index: Value, bound: usize) {
        let bound = self.builder.ins().iconst(types::I64, bound as i64);
        let in_range = self
            .builder
            .ins()
            .icmp(IntCC::UnsignedLessThan, index, bound);
        self.check(in_range, KernelFailure::IndexOutOfRange);
    }

    /// Stops the kernel with [`KernelFailure::DivisionByZero`] if the integer `divisor` is 0.
    pub fn check_divisor(&mut self, divisor: Value) {
        let nonzero = self.builder.ins().icmp_imm_s(IntCC::NotEqual, divisor, 0);
        self.check(nonzero, KernelFailure::DivisionByZero);
    }

    /// Continues where `ok` is true; otherwise the kernel returns `failure`.
    pub fn check(&mut self, ok: Value, failure: KernelFailure) {
        let exit = match self.failures.iter().find(|(f, _)| *f == failure) {
            Some(&(_, block)) => block,
            None => {
                let block = self.builder.create_block();
                self.builder.set_cold_block(block);
                self.failures.push((failure, block));
                block
            }
        };
        let next = self.builder.create_block();
        self.builder.ins().brif(ok, next, &[], exit, &[]);
        self.builder.switch_to_block(next);
        self.builder.seal_block(next);
    }

    /// Ends the kernel: the normal return of status 0, then the failure exits.
    pub fn finish(&mut self) {
        let zero = self.builder.ins().iconst(types::I32, 0);
        self.builder.ins().return_(&[zero]);
        for &(failure, block) in &self.failures {
            self.builder.switch_to_block(block);
            self.builder.seal_block(block);
            let code = self.builder.ins().iconst(types::I32, failure as i64);
            self.builder.ins().return_(&[code]);
        }
    }

    /// Whether the kernel can fail (the caller must then check its status).
    pub fn can_fail(&self) -> bool {
        !self.failures.is_empty()
    }

    /// A machine-code micro-kernel, placed into the object on first use (see `microkernel` for
    /// the contracts).
    pub fn microkernel(&mut self, shape: Microkernel) -> Result<FuncRef, CodegenError> {
        let id = match self.microkernels.get(&shape) {
            Some(&id) => id,
            None => {
                let mut signature = Signature::new(self.module.isa().default_call_conv());
                signature
                    .params
                    .extend((0..shape.parameter_count()).map(|_| AbiParam::new(types::I64)));
                let backend =
                    |e: cranelift_module::ModuleError| CodegenError::Backend(e.to_string());
                let id = self
                    .module
                    .declare_function(&shape.symbol(), Linkage::Local, &signature)
                    .map_err(backend)?;
                match shape {
                    Microkernel::Gemm(tile) if tile.isa == Isa::Portable => {
                        super::gemm::define_portable_tile(self.module, id, tile, self.features.fma)?
                    }
                    _ => {
                        let bytes = shape.assemble()?;
                        self.module
                            .define_function_bytes(id, 64, &bytes, &[])
                            .map_err(backend)?;
                    }
                }
                self.microkernels.insert(shape, id);
                id
            }
        };
        Ok(self.module.declare_func_in_func(id, self.builder.func))
    }

    pub fn iconst(&mut self, value: i64) -> Value {
        self.builder.ins().iconst(types::I64, value)
    }

    /// A constant of type `ty` (scalar or vector of f32) holding `value` in every lane.
    pub fn float_constant(&mut self, ty: Type, value: f32) -> Value {
        let scalar = self.builder.ins().f32const(value);
        if ty.is_vector() {
            self.builder.ins().splat(ty, scalar)
        } else {
            scalar
        }
    }

    /// An integer constant of scalar or vector type `ty`.
    pub fn int_constant(&mut self, ty: Type, value: i64) -> Value {
        let scalar = self.builder.ins().iconst(ty.lane_type(), value);
        if ty.is_vector() {
            self.builder.ins().splat(ty, scalar)
        } else {
            scalar
        }
    }

    /// `base + index * element_size`.
    pub fn address(&mut self, base: Value, index: Value, element_size: usize) -> Value {
        let offset = self.builder.ins().imul_imm_s(index, element_size as i64);
        self.builder.ins().iadd(base, offset)
    }

    /// Loads a `ty` at element `index` of an array of `element_size`-byte elements at `base`.
    pub fn load(&mut self, ty: Type, base: Value, index: Value, element_size: usize) -> Value {
        let address = self.address(base, index, element_size);
        self.builder.ins().load(ty, memory_flags(), address, 0)
    }

    pub fn store(&mut self, value: Value, base: Value, index: Value, element_size: usize) {
        let address = self.address(base, index, element_size);
        self.builder.ins().store(memory_flags(), value, address, 0);
    }

    /// `a * b + c`, fused where the CPU has FMA.
    pub fn multiply_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.features.fma {
            self.builder.ins().fma(a, b, c)
        } else {
            let product = self.builder.ins().fmul(a, b);
            self.builder.ins().fadd(product, c)
        }
    }

    /// `for index in (start..end).step_by(step)` with run-time bounds (`end - start` need not be a
    /// multiple of `step`: the caller guarantees the body stays in bounds).
    pub fn for_range(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let header = self.builder.create_block();
        let body_block = self.builder.create_block();
        let exit = self.builder.create_block();
        self.builder.append_block_param(header, types::I64);
        self.builder.ins().jump(header, &[BlockArg::Value(start)]);
        self.builder.switch_to_block(header);
        let index = self.builder.block_params(header)[0];
        let more = self.builder.ins().icmp(IntCC::SignedLessThan, index, end);
        self.builder.ins().brif(more, body_block, &[], exit, &[]);
        self.builder.switch_to_block(body_block);
        self.builder.seal_block(body_block);
        body(self, index)?;
        let next = self.builder.ins().iadd_imm_s(index, step);
        self.builder.ins().jump(header, &[BlockArg::Value(next)]);
        self.builder.seal_block(header);
        self.builder.switch_to_block(exit);
        self.builder.seal_block(exit);
        Ok(())
    }

    /// `for index in 0..count`, this thread's share: the indices `count·t/T .. count·(t+1)/T`
    /// of thread `t` of `T`. Every index runs on exactly one thread, the same one every run, so
    /// results do not depend on the thread count.
    pub fn for_split(
        &mut self,
        count: usize,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        if self.serial {
            return self.for_count(count, body);
        }
        self.splits = true;
        if count == 0 {
            return Ok(());
        }
        let share = |k: &mut Kernel<'a>, thread: Value| {
            let scaled = k.builder.ins().imul_imm_s(thread, count as i64);
            k.builder.ins().udiv(scaled, k.threads)
        };
        let start = share(self, self.thread);
        let next = self.builder.ins().iadd_imm_s(self.thread, 1);
        let end = share(self, next);
        self.for_range(start, end, 1, body)
    }

    /// `for index in 0..count` for each run's `count`, `body(k, run, index)`, the runs' items
    /// laid end to end and dealt to the threads in turn: item `g` is thread `g mod T`'s. Unlike
    /// [`Kernel::for_split`] run by run, which gives every run's odd item to the last thread,
    /// the threads' counts differ by one at most over all runs (a product's full column tiles
    /// and its narrower last one). As with `for_split`, every item runs on exactly one thread,
    /// the same one every run.
    pub fn for_split_dealt(
        &mut self,
        runs: &[usize],
        body: &mut dyn FnMut(&mut Kernel<'a>, usize, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        if self.serial {
            for (run, &count) in runs.iter().enumerate() {
                self.for_count(count, &mut |k, index| body(k, run, index))?;
            }
            return Ok(());
        }
        self.splits = true;
        let mut before = 0usize;
        for (run, &count) in runs.iter().enumerate() {
            // This thread's first item of the run: (thread - before) mod T; then every T-th.
            let threads = self.threads;
            let before_mod = self.builder.ins().iconst(types::I64, before as i64);
            let before_mod = self.builder.ins().urem(before_mod, threads);
            let first = self.builder.ins().iadd(self.thread, threads);
            let first = self.builder.ins().isub(first, before_mod);
            let first = self.builder.ins().urem(first, threads);
            // Items first, first + T, ... below count: (count - first + T - 1) / T of them.
            let limit = self.builder.ins().iconst(types::I64, count as i64);
            let left = self.builder.ins().isub(limit, first);
            let zero = self.builder.ins().iconst(types::I64, 0);
            let left = self.builder.ins().smax(left, zero);
            let rounded = self.builder.ins().iadd(left, threads);
            let rounded = self.builder.ins().iadd_imm_s(rounded, -1);
            let steps = self.builder.ins().udiv(rounded, threads);
            self.for_range(zero, steps, 1, &mut |k, step| {
                let index = k.builder.ins().imul(step, k.threads);
                let index = k.builder.ins().iadd(index, first);
                body(k, run, index)
            })?;
            before += count;
        }
        Ok(())
    }

    /// `body(k, span)` for the span holding `value`, of consecutive spans ending at `ends`
    /// (ascending, the last past every value `value` takes): one compare and branch per span,
    /// so each span's code is specialised to it (its filter taps, say).
    pub fn switch_spans(
        &mut self,
        value: Value,
        ends: &[usize],
        body: &mut dyn FnMut(&mut Kernel<'a>, usize) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let done = self.builder.create_block();
        for (span, &end) in ends.iter().enumerate() {
            let next = (span + 1 < ends.len()).then(|| self.builder.create_block());
            if let Some(next) = next {
                let this = self.builder.create_block();
                let inside =
                    self.builder
                        .ins()
                        .icmp_imm_s(IntCC::UnsignedLessThan, value, end as i64);
                self.builder.ins().brif(inside, this, &[], next, &[]);
                self.builder.switch_to_block(this);
                self.builder.seal_block(this);
            }
            body(self, span)?;
            self.builder.ins().jump(done, &[]);
            if let Some(next) = next {
                self.builder.switch_to_block(next);
                self.builder.seal_block(next);
            }
        }
        self.builder.switch_to_block(done);
        self.builder.seal_block(done);
        Ok(())
    }

    /// Runs `body` on thread 0 only (the other threads skip it; inside [`Kernel::serially`], on
    /// this thread); follow it with
    /// [`Kernel::barrier`] before other threads read what it wrote.
    pub fn on_thread_zero(
        &mut self,
        body: &mut dyn FnMut(&mut Kernel<'a>) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        if self.serial {
            return body(self);
        }
        let run = self.builder.create_block();
        let after = self.builder.create_block();
        self.builder.ins().brif(self.thread, after, &[], run, &[]);
        self.builder.switch_to_block(run);
        self.builder.seal_block(run);
        body(self)?;
        self.builder.ins().jump(after, &[]);
        self.builder.switch_to_block(after);
        self.builder.seal_block(after);
        Ok(())
    }

    /// Emits `body` as one thread's work: the lowerings it calls run every index of their
    /// `for_split` loops here and meet no barrier. A kernel that splits its work in its own way
    /// (each thread a private part, see `ops::conv_chain`) runs whole-tensor lowerings so, part
    /// by part.
    pub fn serially(
        &mut self,
        body: &mut dyn FnMut(&mut Kernel<'a>) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let outer = std::mem::replace(&mut self.serial, true);
        let result = body(self);
        self.serial = outer;
        result
    }

    /// All threads of the run meet here (the runtime's barrier; a no-op for one thread, and
    /// nothing inside [`Kernel::serially`]).
    pub fn barrier(&mut self) {
        if self.serial {
            return;
        }
        self.splits = true;
        // Its status only says another thread failed; the run's own barrier after this kernel
        // acts on that.
        call_barrier(&mut self.builder, self.module, self.sync);
    }

    /// `for index in 0..count` with a constant count; a count of 1 emits the body once, straight.
    pub fn for_count(
        &mut self,
        count: usize,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        match count {
            0 => Ok(()),
            1 => {
                let zero = self.iconst(0);
                body(self, zero)
            }
            _ => {
                let start = self.iconst(0);
                let end = self.iconst(count as i64);
                self.for_range(start, end, 1, body)
            }
        }
    }

    /// `for index in (first..first + count * step).step_by(step)`, constant bounds.
    pub fn for_steps(
        &mut self,
        first: usize,
        count: usize,
        step: usize,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        if count == 0 {
            return Ok(());
        }
        let start = self.iconst(first as i64);
        if count == 1 {
            return body(self, start);
        }
        let end = self.iconst((first + count * step) as i64);
        self.for_range(start, end, step as i64, body)
    }

    /// Nested constant-count loops over two walking indices: each level is (count, step of the
    /// first index, step of the second); `body` gets both indices at the innermost point.
    pub fn for_nest(
        &mut self,
        levels: &[(usize, i64, i64)],
        first: Value,
        second: Value,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        self.nest(levels, first, second, false, body)
    }

    /// As [`Kernel::for_nest`], with the outermost level of more than one iteration shared
    /// among the threads ([`Kernel::for_split`]; levels of one iteration before it move no
    /// index). For nests whose iterations write disjoint outputs: data movement.
    pub fn for_nest_split(
        &mut self,
        levels: &[(usize, i64, i64)],
        first: Value,
        second: Value,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let levels: Vec<(usize, i64, i64)> = levels
            .iter()
            .copied()
            .skip_while(|level| level.0 == 1)
            .collect();
        if levels.is_empty() {
            return self.for_split(1, &mut |k, _| body(k, first, second));
        }
        self.nest(&levels, first, second, true, body)
    }

    /// The loop nest of [`Kernel::for_nest`], its outermost level split among the threads when
    /// `split`.
    fn nest(
        &mut self,
        levels: &[(usize, i64, i64)],
        first: Value,
        second: Value,
        split: bool,
        body: &mut dyn FnMut(&mut Kernel<'a>, Value, Value) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let Some((&(count, first_step, second_step), rest)) = levels.split_first() else {
            return body(self, first, second);
        };
        let mut each = |k: &mut Kernel<'a>, i: Value| {
            let a = k.builder.ins().imul_imm_s(i, first_step);
            let a = k.builder.ins().iadd(first, a);
            let b = k.builder.ins().imul_imm_s(i, second_step);
            let b = k.builder.ins().iadd(second, b);
            k.nest(rest, a, b, false, body)
        };
        if split {
            self.for_split(count, &mut each)
        } else {
            self.for_count(count, &mut each)
        }
    }

    /// e^x for f32 scalars or f32x4 vectors: Cody-Waite range reduction and a degree-6
    /// polynomial (Cephes expf coefficients), relative error below 2e-7. The scale 2^k is applied
    /// as two halves so every k from -150 to 128 stays a normal float: results down to the
    /// denormal range are right, and above ln(f32::MAX) the result is +inf, as in TensorFlow.
    pub fn exp(&mut self, input: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(input);
        let low = self.float_constant(ty, -104.0);
        let high = self.float_constant(ty, 88.722_83);
        // Clamp with compare-and-select (NaN compares false and passes through): cheaper than
        // fmax/fmin, whose IEEE lowering on x86 takes several instructions each.
        let x = self.select_float(FloatCC::LessThan, input, low, low, input);
        let x = self.select_float(FloatCC::GreaterThan, x, high, high, x);
        let log2e = self.float_constant(ty, std::f32::consts::LOG2_E);
        let scaled = self.builder.ins().fmul(x, log2e);
        let k = self.builder.ins().nearest(scaled);
        let minus_ln2_high = self.float_constant(ty, -0.693_359_4);
        let minus_ln2_low = self.float_constant(ty, 2.121_944_4e-4);
        let r = self.multiply_add(k, minus_ln2_high, x);
        let r = self.multiply_add(k, minus_ln2_low, r);
        let coefficients = [
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ];
        let mut p = self.float_constant(ty, coefficients[0]);
        for &c in &coefficients[1..] {
            let c = self.float_constant(ty, c);
            p = self.multiply_add(p, r, c);
        }
        let r2 = self.builder.ins().fmul(r, r);
        let one = self.float_constant(ty, 1.0);
        let r_plus_one = self.builder.ins().fadd(r, one);
        let p = self.multiply_add(p, r2, r_plus_one);
        let int_ty = if ty.is_vector() {
            types::I32X4
        } else {
            types::I32
        };
        let k_int = self.builder.ins().fcvt_to_sint_sat(int_ty, k);
        // 2^k = 2^half * 2^(k - half), half = floor(k / 2).
        let half = self.builder.ins().sshr_imm_u(k_int, 1);
        let rest = self.builder.ins().isub(k_int, half);
        let flags = if ty.is_vector() {
            MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
        } else {
            MemFlagsData::new()
        };
        let mut result = p;
        for exponent in [half, rest] {
            let bias = self.int_constant(int_ty, 127);
            let biased = self.builder.ins().iadd(exponent, bias);
            let bits = self.builder.ins().ishl_imm_u(biased, 23);
            let power = self.builder.ins().bitcast(ty, flags, bits);
            result = self.builder.ins().fmul(result, power);
        }
        let infinity = self.float_constant(ty, f32::INFINITY);
        self.select_float(FloatCC::GreaterThan, input, high, infinity, result)
    }

    /// Lane-wise `condition ? a : b` for a float comparison `x cc y`.
    pub fn select_float(&mut self, cc: FloatCC, x: Value, y: Value, a: Value, b: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let mask = self.builder.ins().fcmp(cc, x, y);
        if ty.is_vector() {
            let mask = self.builder.ins().bitcast(
                ty,
                MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little),
                mask,
            );
            self.builder.ins().bitselect(mask, a, b)
        } else {
            self.builder.ins().select(mask, a, b)
        }
    }

    /// Sum of the four lanes of an f32x4.
    pub fn horizontal_sum(&mut self, vector: Value) -> Value {
        let mut total = self.builder.ins().extractlane(vector, 0);
        for lane in 1..LANES as u8 {
            let item = self.builder.ins().extractlane(vector, lane);
            total = self.builder.ins().fadd(total, item);
        }
        total
    }

    /// Maximum of the four lanes of an f32x4.
    pub fn horizontal_max(&mut self, vector: Value) -> Value {
        let mut best = self.builder.ins().extractlane(vector, 0);
        for lane in 1..LANES as u8 {
            let item = self.builder.ins().extractlane(vector, lane);
            best = self.builder.ins().fmax(best, item);
        }
        best
    }

    /// `count` iterations with `pointers` walked together, each advanced by `step` bytes per
    /// iteration; `body` gets their current values. They are the loop's block parameters, so
    /// the arithmetic that sets them up stays before the loop: Cranelift places pure
    /// arithmetic at its uses, and a base address computed outside an index loop but used
    /// inside was recomputed in every iteration.
    pub fn for_pointers(
        &mut self,
        pointers: &[Value],
        count: usize,
        step: usize,
        body: &mut PointersBody<'_, 'a>,
    ) -> Result<(), CodegenError> {
        if count <= 1 {
            return if count == 1 {
                body(self, pointers)
            } else {
                Ok(())
            };
        }
        let end = self
            .builder
            .ins()
            .iadd_imm_s(pointers[0], (count * step) as i64);
        let header = self.builder.create_block();
        let body_block = self.builder.create_block();
        let exit = self.builder.create_block();
        for _ in pointers {
            self.builder.append_block_param(header, types::I64);
        }
        let arguments: Vec<BlockArg> = pointers.iter().map(|&p| BlockArg::Value(p)).collect();
        self.builder.ins().jump(header, &arguments);
        self.builder.switch_to_block(header);
        let current = self.builder.block_params(header).to_vec();
        let more = self
            .builder
            .ins()
            .icmp(IntCC::UnsignedLessThan, current[0], end);
        self.builder.ins().brif(more, body_block, &[], exit, &[]);
        self.builder.switch_to_block(body_block);
        self.builder.seal_block(body_block);
        body(self, &current)?;
        let next: Vec<BlockArg> = current
            .iter()
            .map(|&p| BlockArg::Value(self.builder.ins().iadd_imm_s(p, step as i64)))
            .collect();
        self.builder.ins().jump(header, &next);
        self.builder.seal_block(header);
        self.builder.switch_to_block(exit);
        self.builder.seal_block(exit);
        Ok(())
    }

    /// Copies `count` elements of `element_size` bytes, vectorised: 64-byte blocks, then
    /// 16-byte ones, then bytes.
    pub fn copy_elements(
        &mut self,
        source: Value,
        source_index: Value,
        destination: Value,
        destination_index: Value,
        count: usize,
        element_size: usize,
    ) -> Result<(), CodegenError> {
        let bytes = count * element_size;
        let source = self.address(source, source_index, element_size);
        let destination = self.address(destination, destination_index, element_size);
        let mut done = 0;
        for (width, vectors) in [(64, 4), (16, 1)] {
            let blocks = (bytes - done) / width;
            let from = self.builder.ins().iadd_imm_s(source, done as i64);
            let to = self.builder.ins().iadd_imm_s(destination, done as i64);
            self.for_pointers(&[from, to], blocks, width, &mut |k, at| {
                let flags = memory_flags();
                let values: Vec<Value> = (0..vectors)
                    .map(|v| k.builder.ins().load(types::I8X16, flags, at[0], v * 16))
                    .collect();
                for (v, value) in values.into_iter().enumerate() {
                    k.builder.ins().store(flags, value, at[1], v as i32 * 16);
                }
                Ok(())
            })?;
            done += blocks * width;
        }
        for byte in done..bytes {
            let v = self
                .builder
                .ins()
                .load(types::I8, memory_flags(), source, byte as i32);
            self.builder
                .ins()
                .store(memory_flags(), v, destination, byte as i32);
        }
        Ok(())
    }

    /// Fills `count` f32 or i32 elements (4 bytes each) at `base + index` with a 32-bit
    /// pattern: 64-byte blocks, then 16-byte ones, then words.
    pub fn fill_words(
        &mut self,
        base: Value,
        index: Value,
        count: usize,
        bits: u32,
    ) -> Result<(), CodegenError> {
        let start = self.address(base, index, 4);
        let word = self.builder.ins().iconst(types::I32, bits as i64);
        let vector = self.builder.ins().splat(types::I32X4, word);
        let bytes = count * 4;
        let mut done = 0;
        for (width, vectors) in [(64, 4), (16, 1)] {
            let blocks = (bytes - done) / width;
            let to = self.builder.ins().iadd_imm_s(start, done as i64);
            self.for_pointers(&[to], blocks, width, &mut |k, at| {
                for v in 0..vectors {
                    k.builder.ins().store(memory_flags(), vector, at[0], v * 16);
                }
                Ok(())
            })?;
            done += blocks * width;
        }
        for item in done / 4..count {
            self.builder
                .ins()
                .store(memory_flags(), word, start, (item * 4) as i32);
        }
        Ok(())
    }
}
