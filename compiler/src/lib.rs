//! tfjsc: TensorFlow.js web models to native code.

pub mod model;
