//! The tfjsc runtime: runs models compiled by `tfjsc compile`.
//!
//! A compiled model is code only (ABI v1, see `docs/abi.md`): a description JSON, a `run` entry
//! point, and a `step` entry point that runs one kernel (for checked runs and profiles). This
//! crate opens the library (or takes statically linked code), maps the web model's weight shards,
//! checks them against the description, hands the code one pointer per weight, and owns one
//! aligned arena per execution context. It exposes a safe Rust API ([`Model`], [`Context`],
//! [`Tensor`], [`Profile`]), `.npy` helpers ([`npy`]), and a C ABI (`capi`,
//! `include/tfjsc_runtime.h`).
//!
//! The runtime is deliberately tiny: it never parses a graph, never generates code, and never
//! panics on bad input (every failure is an [`Error`]).
//!
//! ```no_run
//! use std::path::Path;
//! use tfjsc_runtime::{Model, Tensor};
//!
//! let model = Model::load(Path::new("libmodel.so"), None)?;
//! let mut context = model.new_context()?;
//! let input = Tensor::from_f32(&[1, 4], &[1.0, 2.0, 3.0, 4.0])?;
//! let outputs = context.run_tensors(&[input])?;
//! println!("{:?}", outputs[0].to_f32()?);
//! # Ok::<(), tfjsc_runtime::Error>(())
//! ```

#![warn(missing_docs)]

mod aligned;
pub mod capi;
pub mod checked;
pub mod cpu;
pub mod description;
mod error;
mod model;
pub mod npy;
pub mod panels;
mod pool;
mod profile;
pub mod shard_file;
mod step;
mod tensor;
mod weights;
pub mod winograd;

pub use description::{DType, Description, Encoding, KernelSet, StepInfo, TensorSpec, ABI_VERSION};
pub use error::Error;
pub use model::{Context, DescriptionFn, LoadOptions, Model, RunFn, DEFAULT_SYMBOL_PREFIX};
pub use npy::NpyError;
pub use pool::ThreadSync;
pub use profile::{Figures, OpProfile, Profile, StepProfile};
pub use step::StepFn;
pub use tensor::Tensor;
pub use weights::{WeightLoading, WeightSource};
