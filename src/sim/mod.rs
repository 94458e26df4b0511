//! The serving simulator: an event-level twin of SGLang's scheduler, built on the cost model.
//!
//! File map:
//! - [`workload`]: requests as benchmark clients send them (closed loop, Poisson, traces; length draws).
//! - [`scheduler`]: one SGLang scheduler (DP rank): prefill priority, chunking, KV admission, retraction.
//! - [`request`]: a request's progress.
//! - [`cluster`]: the event loop over engines (aggregated, or prefill/decode with KV transfer).
//! - [`metrics`]: what clients measure (TTFT, ITL, TPOT, E2E, throughput, goodput).
//! - [`time`]: integer simulated time.
//! - [`deploy`]: builds engines from the cost model's step models.
//! - [`limits`]: the bounds of a run (requests, lengths, arrival times) and SGLang's context-length rule.
//!
//! The simulator does no IO and reads no clock: a run is a pure function of deployment, workload
//! and seed. It reaches the cost model only through [`cluster::StepTimer`].

pub mod cluster;
pub mod deploy;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod request;
pub mod scheduler;
pub mod time;
pub mod workload;

pub use error::{Error, Result};

#[cfg(test)]
mod tests;
