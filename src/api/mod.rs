//! The library's entry points: what the CLI, the tests and the Python package call.
//!
//! - [`predict`]: one configuration at one load ([`PredictRequest`] → [`Prediction`]).
//! - [`search`]: the SLA search ([`SearchRequest`] → [`SearchReport`]).
//!
//! Requests hold the CLI's flags under their names; entry points read the files a request names
//! (model configs, profiles, traces) and return typed reports whose JSON is the CLI's `--json`.

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
