//! Operators. One op family per module; an op is defined in one place: its import from
//! TensorFlow NodeDefs, its type rule, its reference evaluation (plain loops, used by constant
//! folding and as the test oracle) and its lowering to machine code.
//!
//! This module holds the trait every op implements and the typed-attribute vocabulary of the IR
//! text form; [`registry`] lists the op families, [`importer`] is what their importers work with.

pub mod arg;
pub mod conv;
pub mod conv_chain;
pub mod conv_transpose;
pub mod cumsum;
pub mod einsum;
pub mod elementwise;
pub mod epilogue;
pub mod gather;
pub mod importer;
pub mod lrn;
pub mod matmul;
pub mod one_hot;
pub mod pool;
pub mod reduce;
pub mod registry;
pub mod resize;
pub mod shape;
pub mod softmax;
pub mod sparse_to_dense;
pub mod top_k;
pub mod window;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tfjsc_runtime::panels::Panels;

use crate::codegen::kernel::Kernel;
use crate::codegen::microkernel::Isa;
use crate::codegen::CodegenError;
use crate::ir::{DType, Tensor, TensorType};

pub use registry::parse_operator;

/// Why an op cannot be typed, evaluated or built as asked.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("not supported: {0}")]
    Unsupported(String),
}

pub type OpResult<T> = Result<T, OpError>;

/// Builds an [`OpError::Invalid`] with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::ops::OpError::Invalid(format!($($arg)*)) };
}

/// What is known about an op's inputs when typing it: their types, and their values where they
/// are compile-time constants (shape operands, axes, paddings).
pub struct InputFacts<'a> {
    pub types: Vec<&'a TensorType>,
    pub constants: Vec<Option<&'a Tensor>>,
}

impl<'a> InputFacts<'a> {
    pub fn ty(&self, index: usize) -> OpResult<&'a TensorType> {
        self.types
            .get(index)
            .copied()
            .ok_or_else(|| invalid!("missing input {index}"))
    }

    /// The value of input `index`, which must be a compile-time constant.
    pub fn constant(&self, index: usize, what: &str) -> OpResult<&'a Tensor> {
        self.constants.get(index).copied().flatten().ok_or_else(|| {
            OpError::Unsupported(format!(
                "{what} (input {index}) must be a compile-time constant"
            ))
        })
    }

    pub fn expect_count(&self, count: usize) -> OpResult<()> {
        if self.types.len() != count {
            return Err(invalid!(
                "expected {count} inputs, got {}",
                self.types.len()
            ));
        }
        Ok(())
    }
}

/// An op rewritten with some constant operands folded into it (see [`Operator::specialize`]).
pub struct Specialized {
    pub op: Arc<dyn Operator>,
    /// The indices of the inputs the new op reads, in order.
    pub inputs: Vec<usize>,
}

/// An IR operator.
pub trait Operator: fmt::Debug + Send + Sync + Any {
    /// The IR name (text form, `inspect`).
    fn name(&self) -> &'static str;

    /// Typed attributes, for the text form.
    fn attributes(&self) -> Attributes {
        Attributes::default()
    }

    /// Output types from input facts.
    fn infer(&self, inputs: &InputFacts) -> OpResult<Vec<TensorType>>;

    /// Reference evaluation: plain loops, obviously correct, used for folding and as test oracle.
    fn evaluate(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>>;

    /// Constant operands that become attributes (reduction axes, say): the op specialised to the
    /// inputs' constant values and the inputs it still reads, or `None` when nothing changes.
    /// Constant folding asks every node, once its inputs are typed.
    fn specialize(&self, _inputs: &InputFacts) -> OpResult<Option<Specialized>> {
        Ok(None)
    }

    /// The epilogue step this op is, when a producing convolution or matrix product can apply it
    /// to its result in registers instead of running it as a kernel of its own.
    fn as_epilogue_step(&self) -> Option<epilogue::EpilogueStep> {
        None
    }

    /// This op with `step` appended to its epilogue, for ops that finish their results with one.
    fn with_epilogue_step(&self, _step: &epilogue::EpilogueStep) -> Option<Arc<dyn Operator>> {
        None
    }

    /// The inputs GEMM kernels read as B, each with the panels they would stream it in when
    /// that input is a constant (`passes::pack_weights` decides).
    fn panel_operands(&self, _inputs: &[&TensorType]) -> Vec<(usize, Panels)> {
        Vec::new()
    }

    /// `Some((k, axis))` when this op is linear in each channel (last axis) of input 0 the way
    /// that scaling those channels by a vector `s` gives the same result as scaling input `k`
    /// along `axis` by `s` (a convolution's filter along its input channels, a matrix product's
    /// B along its rows). `passes::fold_channel_scales` then moves a squeeze-and-excite multiply
    /// onto that operand when it is the smaller.
    fn channel_scale_operand(&self, _inputs: &[&TensorType]) -> Option<(usize, usize)> {
        None
    }

    /// The `(before, after)` padding per axis this op adds to input 0 and the f32 value it
    /// fills it with, when that is all it does (a constant Pad), for a consumer to take over.
    fn as_constant_padding(&self, _inputs: &InputFacts) -> Option<(Vec<(usize, usize)>, f32)> {
        None
    }

    /// This op reading input 0 without the padding `pads` (per axis) of `fill` that its
    /// producer added, when it can pad itself that way (a convolution's explicit zero padding,
    /// a max pool's padding that no window's maximum can pick).
    fn with_input_padding(
        &self,
        _pads: &[(usize, usize)],
        _fill: f32,
    ) -> Option<Arc<dyn Operator>> {
        None
    }

    /// Outputs that are known from input types alone (Shape, Size, Rank).
    fn fold_from_types(&self, _inputs: &InputFacts) -> Option<Vec<Tensor>> {
        None
    }

    /// Emits the kernel computing this op.
    fn lower(&self, kernel: &mut Kernel) -> Result<(), CodegenError>;

    /// Bytes of node-private scratch memory the kernel needs (padded copies and the like), the
    /// most that its lowering for any of `isas` (the library's kernel sets) uses.
    fn scratch_bytes(
        &self,
        _inputs: &[&TensorType],
        _outputs: &[TensorType],
        _isas: &[Isa],
    ) -> usize {
        0
    }

    /// `Some(k)` when output 0 is input `k` reinterpreted with another shape (no data movement).
    fn view_of_input(&self) -> Option<usize> {
        None
    }

    /// Floating-point operations for one evaluation (multiply-add counts 2).
    fn flops(&self, _inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        outputs.iter().map(|ty| ty.element_count() as u64).sum()
    }

    /// What profiles group kernels by: the IR name, refined by the attributes that make it
    /// another kernel altogether, a `kind` (`unary.relu`, `pool.max`) and `depthwise`
    /// (`conv2d.depthwise`), so that depthwise and regular convolutions are told apart.
    fn detailed_name(&self) -> String {
        let attributes = self.attributes();
        let mut name = self.name().to_string();
        if let Some(Attribute::Str(kind)) = attributes.0.get("kind") {
            name = format!("{name}.{kind}");
        }
        if let Some(Attribute::Bool(true)) = attributes.0.get("depthwise") {
            name += ".depthwise";
        }
        name
    }

    fn as_any(&self) -> &dyn Any;
}

/// One attribute value in the IR text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Int(i64),
    Float(f32),
    Bool(bool),
    Str(String),
    Type(DType),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
}

/// Attributes by name, printed in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(pub BTreeMap<String, Attribute>);

impl Attributes {
    pub fn with(mut self, name: &str, value: Attribute) -> Attributes {
        self.0.insert(name.to_string(), value);
        self
    }

    fn get(&self, name: &str) -> OpResult<&Attribute> {
        self.0
            .get(name)
            .ok_or_else(|| invalid!("missing attribute `{name}`"))
    }

    pub fn int(&self, name: &str) -> OpResult<i64> {
        match self.get(name)? {
            Attribute::Int(value) => Ok(*value),
            other => Err(invalid!(
                "attribute `{name}`: expected an integer, got {other:?}"
            )),
        }
    }

    pub fn float(&self, name: &str) -> OpResult<f32> {
        match self.get(name)? {
            Attribute::Float(value) => Ok(*value),
            Attribute::Int(value) => Ok(*value as f32),
            other => Err(invalid!(
                "attribute `{name}`: expected a number, got {other:?}"
            )),
        }
    }

    pub fn boolean(&self, name: &str) -> OpResult<bool> {
        match self.get(name)? {
            Attribute::Bool(value) => Ok(*value),
            other => Err(invalid!(
                "attribute `{name}`: expected true or false, got {other:?}"
            )),
        }
    }

    pub fn string(&self, name: &str) -> OpResult<&str> {
        match self.get(name)? {
            Attribute::Str(value) => Ok(value),
            other => Err(invalid!(
                "attribute `{name}`: expected a word, got {other:?}"
            )),
        }
    }

    pub fn dtype(&self, name: &str) -> OpResult<DType> {
        match self.get(name)? {
            Attribute::Type(value) => Ok(*value),
            other => Err(invalid!(
                "attribute `{name}`: expected a dtype, got {other:?}"
            )),
        }
    }

    pub fn ints(&self, name: &str) -> OpResult<Vec<i64>> {
        match self.get(name)? {
            Attribute::Ints(values) => Ok(values.clone()),
            Attribute::Floats(values) if values.is_empty() => Ok(Vec::new()),
            other => Err(invalid!(
                "attribute `{name}`: expected a list of integers, got {other:?}"
            )),
        }
    }

    /// Two positive integers (window sizes, strides, dilations).
    pub fn positive_pair(&self, name: &str) -> OpResult<[usize; 2]> {
        let values = self.ints(name)?;
        if values.len() != 2 || values.iter().any(|&x| x <= 0) {
            return Err(invalid!("{name} must be two positive integers"));
        }
        Ok([values[0] as usize, values[1] as usize])
    }

    pub fn floats(&self, name: &str) -> OpResult<Vec<f32>> {
        match self.get(name)? {
            Attribute::Floats(values) => Ok(values.clone()),
            Attribute::Ints(values) => Ok(values.iter().map(|&v| v as f32).collect()),
            other => Err(invalid!(
                "attribute `{name}`: expected a list of numbers, got {other:?}"
            )),
        }
    }
}

/// Row-major strides of `shape`.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    strides
}

/// Normalises a possibly negative axis of a tensor of rank `rank` ≥ 1 (a scalar has no axis).
pub fn axis_of(axis: i64, rank: usize) -> OpResult<usize> {
    let normalized = if axis < 0 { axis + rank as i64 } else { axis };
    if normalized < 0 || normalized >= rank as i64 {
        return Err(invalid!(
            "axis {axis} is out of range for an input of rank {rank}"
        ));
    }
    Ok(normalized as usize)
}

/// Normalises a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let rank = rank as i64;
    let normalized = if axis < 0 { axis + rank } else { axis };
    if normalized < 0 || normalized >= rank.max(1) {
        return Err(invalid!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(normalized as usize)
}
