//! sglsim predicts how SGLang will serve a model on a GPU configuration before anyone rents the GPUs.
//!
//! Brief overview: [`model`] is a roofline cost model of SGLang's forward passes and its memory
//! rules; [`sim`] is an event-level twin of SGLang's scheduler built on it; [`search`] finds the
//! deployments that serve a workload best within a TTFT/ITL SLA. The `sglsim` binary
//! (`src/main.rs`, `src/cli/`) parses flags, calls the library and prints reports.
//!
//! ```
//! use sglsim::model::{gpu::GpuCatalog, model_catalog::find_bundled_spec, mapping::ParallelMapping};
//! use sglsim::model::step::{EngineConfig, StepModel};
//! use sglsim::model::{coefficients::Coefficients, server_args::ServerArgs};
//!
//! # fn main() -> Result<(), sglsim::model::Error> {
//! let model = find_bundled_spec("Llama-3.1-8B-Instruct")?.expect("bundled");
//! let gpu = GpuCatalog::builtin()?.find("h100")?.clone();
//! let mapping = ParallelMapping::new(&model, 1, 1, 1)?;
//! let step = StepModel::new(EngineConfig {
//!     model, gpu, mapping,
//!     server_args: ServerArgs::sglang_defaults(),
//!     coefficients: Coefficients::defaults(),
//! })?;
//! let decode_ms = step.decode_step_s(1, 1024).total_s * 1e3;
//! assert!(decode_ms > 4.0 && decode_ms < 10.0);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod calibrate;
pub mod model;
pub mod search;
pub mod serve;
pub mod sim;

pub use api::search::search;
pub use api::{predict, Error, PredictReport, PredictRequest, Prediction, SearchReport, SearchRequest};
