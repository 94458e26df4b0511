//! The library's entry points: what the CLI, the tests and the Python package call.
//!
//! - [`predict`]: one configuration at one load ([`PredictRequest`] → [`Prediction`]).
//! - [`search`]: the SLA search ([`SearchRequest`] → [`SearchReport`]).
//!
//! Requests hold the CLI's flags under their names; entry points read the files a request names
//! (model configs, profiles, traces) and return typed reports whose JSON is the CLI's `--json`.
//!
//! ```
//! # fn main() -> Result<(), sglsim::Error> {
//! let request = sglsim::PredictRequest {
//!     model: "meta-llama/Llama-3.1-8B-Instruct".into(),
//!     gpu: "h100".into(),
//!     isl: Some(1024),
//!     osl: Some(128),
//!     concurrency: Some(8),
//!     num_requests: Some(16),
//!     ..Default::default()
//! };
//! let sglsim::Prediction::Served { report, .. } = sglsim::predict(&request)? else { panic!("fits on one H100") };
//! assert!(report.ttft_ms.p50 > 10.0 && report.ttft_ms.p50 < 200.0, "{}", report.ttft_ms.p50);
//! # Ok(())
//! # }
//! ```

pub mod checks;
pub mod error;
pub mod load;
pub mod predict;
pub mod report;
pub mod search;
pub mod server;

pub use error::{Error, Result};
pub use predict::{predict, PredictRequest, Prediction, RequestRate};
pub use report::{DoesNotFitReport, EngineReport, PredictReport};
pub use search::{search, SearchReport, SearchRequest};
pub use server::ServerOptions;
