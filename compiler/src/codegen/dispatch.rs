//! Libraries with several kernel sets (`--cpu x86-64-v3,x86-64-v4`, the default): the exported
//! `PREFIX_run` and `PREFIX_step` ask the CPU which level it supports, once per process, and call
//! the best set it can run (docs/abi.md, "Kernel sets").
//!
//! The question is asked in machine code (`cpuid`, `xgetbv`), from the same feature table
//! (`target::CpuLevel::cpu_features`) the runtime's load-time check and the Cranelift flags come
//! from, so a set is chosen exactly when the features its code uses are present and enabled by
//! the operating system.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::{DataDescription, FuncId, Linkage, Module};
use cranelift_object::ObjectModule;
use iced_x86::code_asm::{
    eax, ebx, ecx, edx, esi, r10d, r11d, r8d, r9d, rbx, CodeAssembler, IcedError,
};

use super::target::{CpuLevel, CpuidWord};
use super::{backend, begin_entry, declare_entry, define_entry, CodegenError};

/// One kernel set's entries.
#[derive(Clone, Copy)]
pub struct Entries {
    pub run: FuncId,
    pub step: FuncId,
}

/// The status `PREFIX_run` and `PREFIX_step` return when the CPU can run none of the kernel
/// sets (the runtime refuses such a CPU at load, so only direct callers see it).
pub const UNSUPPORTED_CPU: i64 = 4;

/// Defines `PREFIX_run`, `PREFIX_step` (dispatching to one of `sets`, lowest level first) and
/// `PREFIX_kernel_set` (the index in `sets` of the set chosen, -1 if none).
pub fn define_dispatch(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    function_context: &mut FunctionBuilderContext,
    prefix: &str,
    sets: &[(CpuLevel, Entries)],
) -> Result<(), CodegenError> {
    let pointer = module.isa().pointer_type();
    let cpu_level = define_cpu_level(module, context, function_context, sets)?;

    // PREFIX_kernel_set(): the best set the CPU can run, the one rule the forwarders below
    // follow.
    let kernel_set = declare_entry(
        module,
        context,
        &format!("{prefix}_kernel_set"),
        &[],
        &[types::I32],
    )?;
    {
        let (mut builder, []) = begin_entry(&mut context.func, function_context)?;
        let level_ref = module.declare_func_in_func(cpu_level, builder.func);
        let call = builder.ins().call(level_ref, &[]);
        let level = builder.inst_results(call)[0];
        let mut chosen = builder.ins().iconst(types::I32, -1);
        for (index, &(set_level, _)) in sets.iter().enumerate() {
            let fits = builder.ins().icmp_imm_s(
                IntCC::SignedGreaterThanOrEqual,
                level,
                i64::from(set_level.number()),
            );
            let this = builder.ins().iconst(types::I32, index as i64);
            chosen = builder.ins().select(fits, this, chosen);
        }
        builder.ins().return_(&[chosen]);
        builder.finalize(module.isa().frontend_config());
    }
    define_entry(module, context, kernel_set, "kernel_set")?;

    // PREFIX_run(weights, inputs, outputs, arena, threads) and
    // PREFIX_step(index, weights, inputs, outputs, arena, threads): forward every parameter to
    // the best set's own entry.
    let forward = Forward {
        prefix,
        kernel_set,
        sets,
    };
    forward.define(
        module,
        context,
        function_context,
        "run",
        [pointer; 5],
        |e| e.run,
    )?;
    forward.define(
        module,
        context,
        function_context,
        "step",
        [types::I32, pointer, pointer, pointer, pointer, pointer],
        |e| e.step,
    )?;
    Ok(())
}

/// An exported entry that calls the same entry of the kernel set `PREFIX_kernel_set` chooses.
struct Forward<'a> {
    prefix: &'a str,
    kernel_set: FuncId,
    sets: &'a [(CpuLevel, Entries)],
}

impl Forward<'_> {
    fn define<const N: usize>(
        &self,
        module: &mut ObjectModule,
        context: &mut cranelift_codegen::Context,
        function_context: &mut FunctionBuilderContext,
        name: &str,
        parameters: [types::Type; N],
        entry_of: fn(&Entries) -> FuncId,
    ) -> Result<(), CodegenError> {
        let id = declare_entry(
            module,
            context,
            &format!("{}_{name}", self.prefix),
            &parameters,
            &[types::I32],
        )?;
        let (mut builder, arguments) = begin_entry::<N>(&mut context.func, function_context)?;
        let chosen_ref = module.declare_func_in_func(self.kernel_set, builder.func);
        let call = builder.ins().call(chosen_ref, &[]);
        let chosen_set = builder.inst_results(call)[0];
        for (index, entries) in self.sets.iter().map(|(_, entries)| entries).enumerate() {
            let chosen = builder.create_block();
            let next = builder.create_block();
            let this = builder
                .ins()
                .icmp_imm_s(IntCC::Equal, chosen_set, index as i64);
            builder.ins().brif(this, chosen, &[], next, &[]);
            builder.switch_to_block(chosen);
            builder.seal_block(chosen);
            let callee = module.declare_func_in_func(entry_of(entries), builder.func);
            let call = builder.ins().call(callee, &arguments);
            let status = builder.inst_results(call)[0];
            builder.ins().return_(&[status]);
            builder.switch_to_block(next);
            builder.seal_block(next);
        }
        let unsupported = builder.ins().iconst(types::I32, UNSUPPORTED_CPU);
        builder.ins().return_(&[unsupported]);
        builder.finalize(module.isa().frontend_config());
        define_entry(module, context, id, name)
    }
}

/// `tfjsc_cpu_level() -> i32`: the CPU's level (1 = x86-64 .. 4 = x86-64-v4), asked once and
/// kept in a process-wide word. Threads that race to fill it store the same value.
fn define_cpu_level(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    function_context: &mut FunctionBuilderContext,
    sets: &[(CpuLevel, Entries)],
) -> Result<FuncId, CodegenError> {
    let mut signature = Signature::new(module.isa().default_call_conv());
    signature.returns.push(AbiParam::new(types::I32));
    let detect = module
        .declare_function("tfjsc_detect_cpu_level", Linkage::Local, &signature)
        .map_err(backend)?;
    let levels: Vec<CpuLevel> = sets.iter().map(|&(level, _)| level).collect();
    let code =
        assemble_detect(&levels).map_err(|e| backend(format!("assembling the CPU check: {e}")))?;
    module
        .define_function_bytes(detect, 16, &code, &[])
        .map_err(backend)?;

    let cache = module
        .declare_data("tfjsc_cpu_level_cache", Linkage::Local, true, false)
        .map_err(backend)?;
    let mut data = DataDescription::new();
    data.define_zeroinit(4);
    data.set_align(4);
    module.define_data(cache, &data).map_err(backend)?;

    let id = module
        .declare_function("tfjsc_cpu_level", Linkage::Local, &signature)
        .map_err(backend)?;
    context.func.signature = signature;
    context.func.name = UserFuncName::user(0, id.as_u32());
    {
        let (mut builder, []) = begin_entry(&mut context.func, function_context)?;
        let pointer = module.isa().pointer_type();
        let flags = MemFlagsData::new().with_aligned().with_notrap();
        let global = module.declare_data_in_func(cache, builder.func);
        let address = builder.ins().symbol_value(pointer, global);
        let known = builder.ins().load(types::I32, flags, address, 0);
        let ask = builder.create_block();
        builder.set_cold_block(ask);
        let done = builder.create_block();
        builder.append_block_param(done, types::I32);
        builder.ins().brif(known, done, &[known.into()], ask, &[]);
        builder.switch_to_block(ask);
        builder.seal_block(ask);
        let detect_ref = module.declare_func_in_func(detect, builder.func);
        let call = builder.ins().call(detect_ref, &[]);
        let level = builder.inst_results(call)[0];
        builder.ins().store(flags, level, address, 0);
        builder.ins().jump(done, &[level.into()]);
        builder.switch_to_block(done);
        builder.seal_block(done);
        let level = builder.block_params(done)[0];
        builder.ins().return_(&[level]);
        builder.finalize(module.isa().frontend_config());
    }
    define_entry(module, context, id, "cpu level")?;
    Ok(id)
}

/// Machine code for `int32_t detect(void)`: the highest of `levels` whose features `cpuid`
/// reports and whose register state XCR0 says the operating system saves, else 1.
fn assemble_detect(levels: &[CpuLevel]) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut basic_done = a.create_label();
    let mut extended_done = a.create_label();
    let mut os_done = a.create_label();
    let mut done = a.create_label();
    // cpuid writes ebx, which the caller keeps.
    a.push(rbx)?;
    // r8d = leaf 1 ECX, r9d = leaf 7 EBX, r10d = leaf 0x8000_0001 ECX, r11d = XCR0; 0 where
    // the CPU does not have the leaf.
    a.xor(r8d, r8d)?;
    a.xor(r9d, r9d)?;
    a.xor(r10d, r10d)?;
    a.xor(r11d, r11d)?;
    a.xor(eax, eax)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(esi, eax)?;
    a.cmp(esi, 1)?;
    a.jb(basic_done)?;
    a.mov(eax, 1)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r8d, ecx)?;
    a.cmp(esi, 7)?;
    a.jb(basic_done)?;
    a.mov(eax, 7)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r9d, ebx)?;
    a.set_label(&mut basic_done)?;
    a.mov(eax, 0x8000_0000u32)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.cmp(eax, 0x8000_0001u32)?;
    a.jb(extended_done)?;
    a.mov(eax, 0x8000_0001u32)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r10d, ecx)?;
    a.set_label(&mut extended_done)?;
    // xgetbv exists only when the OS enabled XSAVE (leaf 1 ECX bit 27, OSXSAVE).
    a.bt(r8d, 27)?;
    a.jae(os_done)?;
    a.xor(ecx, ecx)?;
    a.xgetbv()?;
    a.mov(r11d, eax)?;
    a.set_label(&mut os_done)?;

    a.mov(eax, 1)?;
    let mut fixed: Vec<CpuLevel> = levels.to_vec();
    fixed.sort();
    for level in CpuLevel::FIXED
        .into_iter()
        .filter(|level| *level <= *fixed.last().unwrap_or(&CpuLevel::X86_64V2))
    {
        let features = level.cpu_features();
        let mask = |word: CpuidWord| {
            features
                .iter()
                .filter(|f| f.word == word)
                .fold(0u32, |mask, f| mask | (1 << f.bit))
        };
        let checks = [
            (r8d, mask(CpuidWord::Leaf1Ecx)),
            (r9d, mask(CpuidWord::Leaf7Ebx)),
            (r10d, mask(CpuidWord::Extended1Ecx)),
            (r11d, level.xcr0()),
        ];
        for (register, mask) in checks {
            if mask == 0 {
                continue;
            }
            a.mov(edx, register)?;
            a.and(edx, mask as i32)?;
            a.cmp(edx, mask as i32)?;
            a.jne(done)?;
        }
        a.mov(eax, level.number())?;
    }
    a.set_label(&mut done)?;
    a.pop(rbx)?;
    a.ret()?;
    a.assemble(0)
}
