//! tfjsc: TensorFlow.js web models to native code.
//!
//! Data flows one way: [`model`] (web-format readers) → [`import`] (GraphDef to IR) → [`passes`]
//! (shape inference, folding, fusion, memory planning) → [`codegen`] (Cranelift to an object) →
//! [`compile`] (linking, header). The compiler never executes the code it generates.

pub mod codegen;
pub mod compile;
pub mod convert;
pub mod fuzzing;
pub mod import;
pub mod ir;
pub mod model;
pub mod ops;
pub mod passes;
