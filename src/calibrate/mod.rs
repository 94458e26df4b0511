//! Calibration against measurements: ingesting benchmark rows and comparing predictions with them.
//!
//! - [`measurements`]: measurement rows (the published dev-set schema, or a simpler one users write)
//!   and the SGLang setup each describes: model, GPU, mapping, flags from the notes, workload.
//! - [`saturated`]: rows that measure a prefill-only or decode-only engine at capacity (per node,
//!   GPU, rank or cluster), priced as one forward of the step model.
//! - [`validate`]: runs each distinct setup through the serving simulator once and reports per-row
//!   and per-group errors (median and p90 absolute % error, median signed error).
//! - [`loadgen`]: the load generator behind `sglsim bench` (the only network IO besides `serve`).
//!
//! Text comes in as strings; reading files is the CLI's job (the load generator appends its records file itself).

pub mod error;
pub mod kernels;
pub mod loadgen;
pub mod measurements;
pub mod saturated;
pub mod validate;

pub use error::{Error, Result};

pub mod fit;
pub mod ingest;
pub mod plan;
pub mod profile;
