//! The SSA IR: values with a dtype and a static shape, ops with typed attributes, a text form
//! that prints and parses back (golden pass tests), and a verifier that passes run behind.

mod graph;
mod tensor;
pub mod text;
pub mod verify;

pub use graph::{Constant, Definition, Graph, Node, NodeId, Port, Value, ValueId};
pub use tensor::{DType, Tensor, TensorData, TensorType};
