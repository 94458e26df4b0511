//! The analytical cost model of SGLang's forward passes: pure functions, no IO.
//!
//! Data flows one way: a [`arch::ModelSpec`] (from a Hugging Face config) and a
//! [`mapping::ParallelMapping`] are described as [`ops::Op`]s for a batch; [`cost::cost_op`]
//! prices each op on a [`gpu::GpuSpec`] with [`coefficients::Coefficients`]; [`step::StepModel`]
//! sums them into a forward-pass time with SGLang's framework effects (CUDA graphs, launch
//! overhead, overlap scheduler); [`memory::MemoryPlan`] reproduces SGLang's weight and KV sizing.

pub mod arch;
pub mod coefficients;
pub mod cost;
pub mod error;
pub mod gpu;
pub mod mapping;
pub mod memory;
pub mod model_catalog;
pub mod moe_shapes;
pub mod ops;
pub mod quant;
pub mod server_args;
pub mod step;

pub use error::{Error, Result};
