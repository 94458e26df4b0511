//! The serving twin: an OpenAI-compatible streaming server whose tokens arrive when the scheduler twin says they would.
//!
//! Like Dynamo's mocker, `sglsim serve` answers real HTTP requests without a GPU: a dedicated thread
//! runs SGLang's scheduling ([`engine::LiveEngine`], built on `sim::scheduler`) and sleeps through
//! each forward for as long as the cost model (`model::step::StepModel`) says it takes.
//! - [`engine`]: the live scheduler, stepped by its caller; no clock, no sockets.
//! - [`runner`]: the thread that drives the engine in real time (scaled by a time factor).
//! - [`protocol`]: request parsing and the SSE/JSON answers of `/v1/completions`, `/v1/chat/completions`, `/generate`.
//! - [`http`]: the axum router, `/get_server_info`, `/metrics`, and [`spawn`].
//! - [`perturb`]: seeded perturbation of the coefficients, to test calibration against a hidden truth.
//!
//! This module and `calibrate::loadgen` are the only ones with network IO and tokio.

pub mod engine;
pub mod error;
pub mod http;
pub mod perturb;
pub mod protocol;
pub mod runner;

pub use error::ServeError;
pub use http::{spawn, ServeConfig, ServeHandle};
