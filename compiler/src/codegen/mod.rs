//! Code generation: every node becomes one Cranelift function (its kernel); a `run` function
//! calls them in order with pointers resolved from the memory plan; a `step` function calls any
//! one of them, with the same argument resolution as `run` (checked runs and profiles go step by
//! step); the description and computed constants go into read-only data; the result is a
//! relocatable object.
//!
//! Codegen never runs what it generates and never reads weight data: it only needs their
//! places (the runtime hands the code one pointer per weight).

mod dispatch;
pub mod elementwise;
pub mod gemm;
pub mod kernel;
mod math;
pub mod microkernel;
pub mod target;
pub mod winograd;

use std::collections::HashMap;
use std::sync::Arc;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{
    types, AbiParam, Block, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Switch};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module, ModuleReloc};
use cranelift_object::{ObjectBuilder, ObjectModule};

use crate::ir::{Graph, Node, NodeId};
use crate::passes::memory::{Location, MemoryPlan};
use kernel::{Kernel, Operand};
use target::CpuLevel;
pub use target::Target;

/// Why code could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("node {node:?}: {message}")]
    Unsupported { node: String, message: String },
    #[error("code generation: {0}")]
    Backend(String),
    /// Nodes that no kernel lowers (an op, or a dtype of it, this target cannot compile yet),
    /// every one of them.
    #[error("{}", describe_unlowerable(.0))]
    Unlowerable(Vec<Unlowerable>),
}

/// A node codegen cannot lower, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unlowerable {
    /// The node's name.
    pub node: String,
    /// Its IR op name.
    pub op: String,
    /// What is missing, e.g. "no f32 kernel for `log`".
    pub message: String,
}

/// One line per distinct reason, with its count and the first nodes: a model with fifty `Log`
/// nodes gives one line, not fifty.
pub fn describe_unlowerable(nodes: &[Unlowerable]) -> String {
    let mut reasons: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for node in nodes {
        match reasons
            .iter_mut()
            .find(|(op, message, _)| *op == node.op && *message == node.message)
        {
            Some((_, _, names)) => names.push(&node.node),
            None => reasons.push((&node.op, &node.message, vec![&node.node])),
        }
    }
    let lines: Vec<String> = reasons
        .iter()
        .map(|(op, message, names)| {
            let shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
            let more = names.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "  {op} ×{}: {message} (nodes {}{more})",
                names.len(),
                shown.join(", ")
            )
        })
        .collect();
    format!(
        "cannot lower {} node(s) on this target:\n{}",
        nodes.len(),
        lines.join("\n")
    )
}

fn backend<E: std::fmt::Display>(error: E) -> CodegenError {
    CodegenError::Backend(error.to_string())
}

/// What codegen needs besides the graph.
pub struct CodegenOptions<'a> {
    pub target: &'a Target,
    /// Exported symbols are `{prefix}_run`, `{prefix}_step` and `{prefix}_description`.
    pub symbol_prefix: &'a str,
    /// The JSON description embedded in the object (`{prefix}_description`).
    pub description: &'a str,
    /// With several kernel sets, each set's own description (`{prefix}_{set}_description`), in
    /// the target's level order; else empty.
    pub level_descriptions: &'a [String],
}

/// The nodes that get a kernel call, in the order `run` calls them (views get none: they only
/// rename their source's buffer). Step `i` (`{prefix}_step(i, ...)`) is the `i`-th of these.
pub fn kernel_nodes(graph: &Graph) -> impl Iterator<Item = (NodeId, &Node)> {
    graph
        .nodes()
        .filter(|(_, node)| node.op.view_of_input().is_none())
}

/// One node's kernel function, and whether its status must be checked.
#[derive(Clone, Copy)]
struct KernelFunction {
    node: NodeId,
    function: FuncId,
    can_fail: bool,
}

/// Resolves a kernel's arguments from the memory plan and emits its call: the one place that
/// knows how `run` and `step` pass pointers to kernels. Addresses are cached per location, so
/// one instance must only be used within one block (or blocks that block dominates).
struct KernelCall<'a> {
    graph: &'a Graph,
    plan: &'a MemoryPlan,
    /// The embedded constants' data, by `Location::Embedded` index.
    embedded: &'a [DataId],
    /// The entry's `weights`, `inputs`, `outputs` and `arena` parameters.
    weights: Value,
    inputs: Value,
    outputs: Value,
    arena: Value,
    /// The thread index and count (loaded once from `sync`) and the `struct tfjsc_threads *`.
    threads: [Value; 3],
    pointer: types::Type,
    resolved: HashMap<Location, Value>,
    null: Option<Value>,
}

impl<'a> KernelCall<'a> {
    fn new(
        graph: &'a Graph,
        plan: &'a MemoryPlan,
        embedded: &'a [DataId],
        [weights, inputs, outputs, arena]: [Value; 4],
        threads: [Value; 3],
        pointer: types::Type,
    ) -> KernelCall<'a> {
        KernelCall {
            graph,
            plan,
            embedded,
            weights,
            inputs,
            outputs,
            arena,
            threads,
            pointer,
            resolved: HashMap::new(),
            null: None,
        }
    }

    fn emit(
        &mut self,
        builder: &mut FunctionBuilder,
        module: &mut ObjectModule,
        node_id: NodeId,
        function: FuncId,
    ) -> Result<Value, CodegenError> {
        let (graph, plan, embedded) = (self.graph, self.plan, self.embedded);
        let pointer = self.pointer;
        let flags = MemFlagsData::trusted();
        let node = graph
            .node(node_id)
            .ok_or_else(|| backend("kernel for a removed node"))?;
        let mut arguments = Vec::new();
        for &value in node.inputs.iter().chain(&node.outputs) {
            let location = *plan.locations.get(&value).ok_or_else(|| {
                backend(format!(
                    "node {:?}: value {value} has no place in the memory plan",
                    node.name
                ))
            })?;
            let address = match self.resolved.get(&location) {
                Some(&address) => address,
                None => {
                    let address = match location {
                        Location::Input(i) => {
                            builder
                                .ins()
                                .load(pointer, flags, self.inputs, (i * 8) as i32)
                        }
                        Location::Output(i) => {
                            builder
                                .ins()
                                .load(pointer, flags, self.outputs, (i * 8) as i32)
                        }
                        Location::Weight(i) => {
                            builder
                                .ins()
                                .load(pointer, flags, self.weights, (i * 8) as i32)
                        }
                        Location::Arena(offset) => {
                            builder.ins().iadd_imm_s(self.arena, offset as i64)
                        }
                        Location::Embedded(i) => {
                            let data = *embedded
                                .get(i)
                                .ok_or_else(|| backend("embedded constant out of range"))?;
                            let global = module.declare_data_in_func(data, builder.func);
                            builder.ins().symbol_value(pointer, global)
                        }
                    };
                    self.resolved.insert(location, address);
                    address
                }
            };
            arguments.push(address);
        }
        let scratch = match plan.scratch.get(&node_id) {
            Some(&(offset, _)) => builder.ins().iadd_imm_s(self.arena, offset as i64),
            None => *self
                .null
                .get_or_insert_with(|| builder.ins().iconst(pointer, 0)),
        };
        arguments.push(scratch);
        arguments.extend(self.threads);
        let callee = module.declare_func_in_func(function, builder.func);
        let call = builder.ins().call(callee, &arguments);
        Ok(builder.inst_results(call)[0])
    }
}

/// Loads the thread index and count from the run's `struct tfjsc_threads *`.
fn load_threads(builder: &mut FunctionBuilder, sync: Value) -> [Value; 3] {
    let flags = MemFlagsData::trusted();
    let thread = builder
        .ins()
        .load(types::I64, flags, sync, kernel::THREAD_OFFSET);
    let threads = builder
        .ins()
        .load(types::I64, flags, sync, kernel::THREADS_OFFSET);
    [thread, threads, sync]
}

/// After a kernel: with more than one thread, all meet at the runtime's barrier; a thread told
/// that the run was abandoned (another one failed) returns at once.
fn emit_barrier(
    builder: &mut FunctionBuilder,
    module: &ObjectModule,
    [_, threads, sync]: [Value; 3],
) -> Result<(), CodegenError> {
    let meet = builder.create_block();
    let next = builder.create_block();
    let abandon = builder.create_block();
    let several = builder.ins().icmp_imm_s(
        cranelift_codegen::ir::condcodes::IntCC::SignedGreaterThan,
        threads,
        1,
    );
    builder.ins().brif(several, meet, &[], next, &[]);
    builder.switch_to_block(meet);
    builder.seal_block(meet);
    let abandoned = kernel::call_barrier(builder, module, sync);
    builder.ins().brif(abandoned, abandon, &[], next, &[]);
    builder.switch_to_block(abandon);
    builder.seal_block(abandon);
    builder.set_cold_block(abandon);
    builder.ins().return_(&[abandoned]);
    builder.switch_to_block(next);
    builder.seal_block(next);
    Ok(())
}

/// Declares an exported entry point and readies `context` to build its body.
fn declare_entry(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    name: &str,
    parameters: &[types::Type],
    returns: &[types::Type],
) -> Result<FuncId, CodegenError> {
    let mut signature = Signature::new(module.isa().default_call_conv());
    signature
        .params
        .extend(parameters.iter().map(|&ty| AbiParam::new(ty)));
    signature
        .returns
        .extend(returns.iter().map(|&ty| AbiParam::new(ty)));
    let id = module
        .declare_function(name, Linkage::Export, &signature)
        .map_err(backend)?;
    context.func.signature = signature;
    context.func.name = UserFuncName::user(0, id.as_u32());
    Ok(id)
}

/// A builder for the body of an entry declared with [`declare_entry`], placed in its entry block
/// (sealed: nothing jumps to an entry block), and the entry's `N` parameters.
fn begin_entry<'a, const N: usize>(
    function: &'a mut Function,
    function_context: &'a mut FunctionBuilderContext,
) -> Result<(FunctionBuilder<'a>, [Value; N]), CodegenError> {
    let mut builder = FunctionBuilder::new(function, function_context);
    let entry = builder.create_block();
    builder.append_block_params_for_function_params(entry);
    builder.switch_to_block(entry);
    builder.seal_block(entry);
    let parameters = <[Value; N]>::try_from(builder.block_params(entry).to_vec())
        .map_err(|_| backend(format!("an entry point without its {N} parameters")))?;
    Ok((builder, parameters))
}

/// Compiles the body built in `context` as the entry `id` (`what` names it in errors) and clears
/// `context` for the next function.
fn define_entry(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    id: FuncId,
    what: &str,
) -> Result<(), CodegenError> {
    module
        .define_function(id, context)
        .map_err(|e| backend(format!("{what}: {e:?}")))?;
    module.clear_context(context);
    Ok(())
}

/// Generates the object file bytes: the embedded constants, then for each kernel set of the
/// target its kernels, `run`, `step` and description entries, then (with several sets) the
/// entries that dispatch to the best set the CPU can run (`dispatch`).
pub fn generate(
    graph: &Graph,
    plan: &MemoryPlan,
    options: &CodegenOptions,
) -> Result<Vec<u8>, CodegenError> {
    let levels = options.target.levels();
    let isas = levels
        .iter()
        .map(|level| level.isa())
        .collect::<Result<Vec<OwnedTargetIsa>, _>>()?;
    if options.target.dispatches() && options.level_descriptions.len() != levels.len() {
        return Err(backend("one description per kernel set is needed"));
    }
    // The lowest set's ISA compiles everything that is not a kernel (entries, dispatch).
    let builder = ObjectBuilder::new(
        isas[0].clone(),
        "tfjsc_model",
        cranelift_module::default_libcall_names(),
    )
    .map_err(backend)?;
    let mut module = ObjectModule::new(builder);
    let mut function_context = FunctionBuilderContext::new();
    let mut context = module.make_context();
    let embedded = define_embedded(&mut module, graph, plan)?;

    let mut microkernels = HashMap::new();
    let mut sets = Vec::new();
    for (index, (&level, isa)) in levels.iter().zip(&isas).enumerate() {
        let (prefix, description) = if options.target.dispatches() {
            let infix = level.symbol_infix();
            (
                format!("{}_{infix}", options.symbol_prefix),
                options.level_descriptions[index].as_str(),
            )
        } else {
            (options.symbol_prefix.to_string(), options.description)
        };
        let kernels = define_kernels(
            graph,
            level,
            &**isa,
            &format!("tfjsc_kernel_{}_", level.symbol_infix()),
            &mut module,
            &mut context,
            &mut function_context,
            &mut microkernels,
        )?;
        let entries = define_run_and_step(
            graph,
            plan,
            &embedded,
            &kernels,
            &prefix,
            &mut module,
            &mut context,
            &mut function_context,
        )?;
        define_description(
            &mut module,
            &mut context,
            &mut function_context,
            &prefix,
            description,
        )?;
        sets.push((level, entries));
    }
    if options.target.dispatches() {
        define_description(
            &mut module,
            &mut context,
            &mut function_context,
            options.symbol_prefix,
            options.description,
        )?;
        dispatch::define_dispatch(
            &mut module,
            &mut context,
            &mut function_context,
            options.symbol_prefix,
            &sets,
        )?;
    }
    let product = module.finish();
    product.emit().map_err(backend)
}

/// Compiles the function built in `context` with `isa` (a kernel set's own ISA, which may differ
/// from the module's) as `id`, and clears `context`.
fn define_compiled(
    module: &mut ObjectModule,
    isa: &dyn TargetIsa,
    id: FuncId,
    context: &mut cranelift_codegen::Context,
) -> Result<(), String> {
    let compiled = context
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| format!("{:?}", e.inner))?;
    let alignment = u64::from(compiled.buffer.alignment);
    let bytes = compiled.buffer.data().to_vec();
    let relocations = compiled.buffer.relocs().to_vec();
    let relocations: Vec<ModuleReloc> = relocations
        .iter()
        .map(|relocation| ModuleReloc::from_mach_reloc(relocation, &context.func, id))
        .collect();
    module
        .define_function_bytes(id, alignment, &bytes, &relocations)
        .map_err(|e| e.to_string())?;
    module.clear_context(context);
    Ok(())
}

/// The embedded constants, as read-only data (packed into panels where the GEMM kernels read
/// them so).
fn define_embedded(
    module: &mut ObjectModule,
    graph: &Graph,
    plan: &MemoryPlan,
) -> Result<Vec<DataId>, CodegenError> {
    let mut embedded: Vec<DataId> = Vec::new();
    for (index, &value) in plan.embedded.iter().enumerate() {
        let constant = graph
            .constant(value)
            .ok_or_else(|| backend("embedded value is not a constant"))?;
        let tensor = &constant.tensor;
        let id = module
            .declare_data(
                &format!("tfjsc_constant_{index}"),
                Linkage::Local,
                false,
                false,
            )
            .map_err(backend)?;
        let mut data = DataDescription::new();
        // Packed panels for the GEMM kernels that read it (passes::pack_weights).
        let mut bytes = match (&constant.panels, &tensor.data) {
            (Some(panels), crate::ir::TensorData::F32(values)) => {
                let mut packed = vec![0f32; panels.packed_len().unwrap_or(0)];
                panels.pack(values, &mut packed);
                packed.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            _ => tensor.to_le_bytes(),
        };
        if bytes.is_empty() {
            bytes.push(0);
        }
        data.define(bytes.into_boxed_slice());
        data.set_align(64);
        module.define_data(id, &data).map_err(backend)?;
        embedded.push(id);
    }
    Ok(embedded)
}

/// Lowers every kernel node for one kernel set (`level`, compiled with `isa`), naming the
/// functions `{kernel_prefix}{node}`. Fails listing every node it cannot lower.
#[allow(clippy::too_many_arguments)]
fn define_kernels(
    graph: &Graph,
    level: CpuLevel,
    isa: &dyn TargetIsa,
    kernel_prefix: &str,
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    function_context: &mut FunctionBuilderContext,
    microkernels: &mut HashMap<microkernel::Microkernel, FuncId>,
) -> Result<Vec<KernelFunction>, CodegenError> {
    let pointer = module.isa().pointer_type();
    let mut kernels: Vec<KernelFunction> = Vec::new();
    let mut cache: HashMap<String, KernelFunction> = HashMap::new();
    let mut unlowerable = Vec::new();
    for (node_id, node) in kernel_nodes(graph) {
        let mut signature = Signature::new(module.isa().default_call_conv());
        // Operands, scratch, then the thread index, the thread count and the sync pointer.
        for _ in 0..node.inputs.len() + node.outputs.len() + 1 {
            signature.params.push(AbiParam::new(pointer));
        }
        signature.params.push(AbiParam::new(types::I64));
        signature.params.push(AbiParam::new(types::I64));
        signature.params.push(AbiParam::new(pointer));
        signature.returns.push(AbiParam::new(types::I32));
        // Identical ops on identical operand types share one kernel (constants are baked in only
        // through their types, except where a kernel reads constant values).
        let reads_constants = node.inputs.iter().any(|&v| {
            graph
                .constant(v)
                .is_some_and(|c| c.tensor.element_count() <= 64)
        });
        let key = format!(
            "{}{:?}|{:?}|{:?}|{:?}",
            node.op.name(),
            node.op.attributes(),
            node.inputs
                .iter()
                .map(|&v| graph.constant(v).and_then(|c| c.panels))
                .collect::<Vec<_>>(),
            node.inputs
                .iter()
                .map(|&v| graph.value(v).ty.clone())
                .collect::<Vec<_>>(),
            node.outputs
                .iter()
                .map(|&v| graph.value(v).ty.clone())
                .collect::<Vec<_>>()
        );
        if !reads_constants {
            if let Some(&cached) = cache.get(&key) {
                kernels.push(KernelFunction {
                    node: node_id,
                    ..cached
                });
                continue;
            }
        }
        let id = module
            .declare_function(
                &format!("{kernel_prefix}{}", node_id.0),
                Linkage::Local,
                &signature,
            )
            .map_err(backend)?;
        context.func.signature = signature;
        context.func.name = UserFuncName::user(0, id.as_u32());
        let lowered = {
            let mut builder = FunctionBuilder::new(&mut context.func, function_context);
            // Threads other than 0 go to `others`, which lowering fills last: on to the body
            // when the kernel splits its work, else straight back (thread 0 runs it alone).
            let entry = builder.create_block();
            builder.append_block_params_for_function_params(entry);
            builder.switch_to_block(entry);
            builder.seal_block(entry);
            let body = builder.create_block();
            let others = builder.create_block();
            let params = builder.block_params(entry).to_vec();
            let [thread, threads, sync] = <[Value; 3]>::try_from(&params[params.len() - 3..])
                .map_err(|_| backend("kernel signature"))?;
            let params = &params[..params.len() - 3];
            builder.ins().brif(thread, others, &[], body, &[]);
            builder.switch_to_block(body);
            let inputs = node
                .inputs
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let panels = graph.constant(v).and_then(|c| c.panels);
                    Operand {
                        pointer: params[i],
                        ty: graph.ty(v).clone(),
                        constant: graph.constant(v).map(|c| Arc::clone(&c.tensor)),
                        layout: match panels {
                            Some(_) => gemm::BLayout::Panels,
                            None => gemm::BLayout::RowMajor,
                        },
                        winograd: panels.and_then(|panels| panels.winograd),
                    }
                })
                .collect();
            let outputs = node
                .outputs
                .iter()
                .enumerate()
                .map(|(i, &v)| Operand {
                    pointer: params[node.inputs.len() + i],
                    ty: graph.ty(v).clone(),
                    constant: None,
                    layout: gemm::BLayout::RowMajor,
                    winograd: None,
                })
                .collect();
            let scratch = params[params.len() - 1];
            let mut kernel = Kernel {
                builder,
                inputs,
                outputs,
                scratch,
                features: level.features(),
                node_name: node.name.clone(),
                module: &mut *module,
                microkernels: &mut *microkernels,
                failures: Vec::new(),
                thread,
                threads,
                sync,
                splits: false,
                serial: false,
            };
            let mut lowered = node.op.lower(&mut kernel);
            let can_fail = kernel.can_fail();
            if lowered.is_ok() && can_fail && kernel.splits {
                // Only thread 0 may fail: a worker that returned early would leave the others
                // waiting at the next barrier.
                lowered = Err(backend(
                    "a kernel that can fail splits its work across threads",
                ));
            }
            if lowered.is_ok() {
                kernel.finish();
                let b = &mut kernel.builder;
                b.switch_to_block(others);
                b.seal_block(others);
                if kernel.splits {
                    b.ins().jump(body, &[]);
                } else {
                    let zero = b.ins().iconst(types::I32, 0);
                    b.ins().return_(&[zero]);
                }
                b.seal_block(body);
                kernel.builder.finalize(isa.frontend_config());
            }
            lowered.map(|()| can_fail)
        };
        let can_fail = match lowered {
            Ok(can_fail) => can_fail,
            Err(error) => {
                // Every node is tried, so that one compilation lists everything it cannot lower.
                unlowerable.push(Unlowerable {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    message: match error {
                        CodegenError::Unsupported { message, .. } => message,
                        other => other.to_string(),
                    },
                });
                module.clear_context(context);
                // The abandoned builder left its state behind: start the next one clean.
                *function_context = FunctionBuilderContext::new();
                continue;
            }
        };
        define_compiled(module, isa, id, context)
            .map_err(|e| CodegenError::Backend(format!("node {:?}: {e}", node.name)))?;
        let kernel = KernelFunction {
            node: node_id,
            function: id,
            can_fail,
        };
        cache.insert(key, kernel);
        kernels.push(kernel);
    }

    if !unlowerable.is_empty() {
        return Err(CodegenError::Unlowerable(unlowerable));
    }
    // A failure status carries the step in bits 8..31 of a positive i32.
    if kernels.len() >= 1 << 23 {
        return Err(backend(format!(
            "{} kernels are more than a run status can name",
            kernels.len()
        )));
    }
    Ok(kernels)
}

/// One kernel set's `{prefix}_run` and `{prefix}_step` entries.
#[allow(clippy::too_many_arguments)]
fn define_run_and_step(
    graph: &Graph,
    plan: &MemoryPlan,
    embedded: &[DataId],
    kernels: &[KernelFunction],
    prefix: &str,
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    function_context: &mut FunctionBuilderContext,
) -> Result<dispatch::Entries, CodegenError> {
    let pointer = module.isa().pointer_type();
    // Kernel calls from an entry whose parameters are `weights, inputs, outputs, arena`.
    let kernel_call = |parameters: [Value; 4], threads: [Value; 3]| {
        KernelCall::new(graph, plan, embedded, parameters, threads, pointer)
    };

    // The run entry: every kernel in order.
    let run_id = declare_entry(
        module,
        context,
        &format!("{prefix}_run"),
        &[pointer; 5],
        &[types::I32],
    )?;
    {
        let (mut builder, [weights, inputs, outputs, arena, sync]) =
            begin_entry(&mut context.func, function_context)?;
        let threads = load_threads(&mut builder, sync);
        let mut call = kernel_call([weights, inputs, outputs, arena], threads);
        for (step, kernel) in kernels.iter().enumerate() {
            let status = call.emit(&mut builder, module, kernel.node, kernel.function)?;
            if kernel.can_fail {
                // Status (step << 8) | failure: the runtime names the node (docs/abi.md).
                let failed = builder.create_block();
                let next = builder.create_block();
                builder.set_cold_block(failed);
                builder.ins().brif(status, failed, &[], next, &[]);
                builder.switch_to_block(failed);
                builder.seal_block(failed);
                let code = builder.ins().bor_imm_s(status, (step as i64) << 8);
                builder.ins().return_(&[code]);
                builder.switch_to_block(next);
                builder.seal_block(next);
            }
            emit_barrier(&mut builder, module, threads)?;
        }
        let zero = builder.ins().iconst(types::I32, 0);
        builder.ins().return_(&[zero]);
        builder.finalize(module.isa().frontend_config());
    }
    define_entry(module, context, run_id, "run")?;

    // The step entry, one kernel call per call (docs/abi.md, "PREFIX_step"), so the runtime can
    // verify red zones between kernels (checked builds) and time each kernel (profiles). It costs
    // a switch and one block per kernel.
    let step_id = declare_entry(
        module,
        context,
        &format!("{prefix}_step"),
        &[types::I32, pointer, pointer, pointer, pointer, pointer],
        &[types::I32],
    )?;
    {
        let (mut builder, [index, weights, inputs, outputs, arena, sync]) =
            begin_entry(&mut context.func, function_context)?;
        let threads = load_threads(&mut builder, sync);
        let out_of_range = builder.create_block();
        let mut switch = Switch::new();
        let blocks: Vec<Block> = kernels.iter().map(|_| builder.create_block()).collect();
        for (step, &block) in blocks.iter().enumerate() {
            switch.set_entry(step as u128, block);
        }
        switch.emit(&mut builder, index, out_of_range);
        for (&block, kernel) in blocks.iter().zip(kernels) {
            builder.switch_to_block(block);
            builder.seal_block(block);
            // A fresh resolution per block: values of one step's block do not dominate another's.
            let mut call = kernel_call([weights, inputs, outputs, arena], threads);
            // The kernel's own status: 0 or its failure code.
            let status = call.emit(&mut builder, module, kernel.node, kernel.function)?;
            builder.ins().return_(&[status]);
        }
        builder.switch_to_block(out_of_range);
        builder.seal_block(out_of_range);
        let past_the_end = builder.ins().iconst(types::I32, -1);
        builder.ins().return_(&[past_the_end]);
        builder.finalize(module.isa().frontend_config());
    }
    define_entry(module, context, step_id, "step")?;

    Ok(dispatch::Entries {
        run: run_id,
        step: step_id,
    })
}

/// `{prefix}_description`: the static JSON `text` and a function returning it.
fn define_description(
    module: &mut ObjectModule,
    context: &mut cranelift_codegen::Context,
    function_context: &mut FunctionBuilderContext,
    prefix: &str,
    text: &str,
) -> Result<(), CodegenError> {
    let pointer = module.isa().pointer_type();
    let data_id = module
        .declare_data(
            &format!("{prefix}_description_text"),
            Linkage::Local,
            false,
            false,
        )
        .map_err(backend)?;
    let mut data = DataDescription::new();
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    data.define(bytes.into_boxed_slice());
    module.define_data(data_id, &data).map_err(backend)?;
    let describe_id = declare_entry(
        module,
        context,
        &format!("{prefix}_description"),
        &[],
        &[pointer],
    )?;
    {
        let (mut builder, []) = begin_entry(&mut context.func, function_context)?;
        let global = module.declare_data_in_func(data_id, builder.func);
        let address = builder.ins().symbol_value(pointer, global);
        builder.ins().return_(&[address]);
        builder.finalize(module.isa().frontend_config());
    }
    define_entry(module, context, describe_id, "description")
}
