//! Calibration against measurements: ingesting benchmark rows and comparing predictions with them.
//!
//! - [`measurements`]: measurement rows (the published dev-set schema, or a simpler one users write)
//!   and the SGLang setup each describes: model, GPU, mapping, flags from the notes, workload.
//! - [`validate`]: runs each distinct setup through the serving simulator once and reports per-row
//!   and per-group errors (median and p90 absolute % error, median signed error).
//!
//! Text comes in as strings; reading files is the CLI's job.

pub mod error;
pub mod measurements;
pub mod validate;

pub use error::{Error, Result};
