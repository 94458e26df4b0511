//! The SLA search: which GPUs, mappings, engine counts and scheduler knobs serve a workload best
//! within a TTFT and ITL limit.
//!
//! Data flows one way:
//! - [`config::SearchConfig`] says what is asked (model, GPU types and limits, workload, SLA, load).
//! - [`space`] builds every engine that fits ([`crate::model::step::StepModel::new`] prunes the
//!   rest before anything is costed) and lays out candidates: aggregated replicas and xPyD units
//!   at each load level.
//! - [`screen`] ranks every candidate in closed form from a few step times.
//! - [`pareto::select_survivors`] keeps the promising ones; [`evaluate`] runs each in the serving
//!   simulator ([`crate::sim::cluster::simulate`]) with a modest seeded workload.
//! - [`run::search`] sorts the points by a total key and returns a [`result::SearchResult`]: the
//!   Pareto front of tokens/s per GPU against tokens/s per user, SLA-feasible recommendations with
//!   SGLang launch commands, and when nothing fits, the binding limit.
//! - [`dynamo`] turns a configuration into the tables Dynamo's SLA planner and mocker read;
//!   [`plot`] draws SVG charts.
//!
//! This is the only module that uses threads (rayon); results do not depend on the thread count.

pub mod config;
pub mod dynamo;
pub mod error;
pub mod evaluate;
pub mod pareto;
pub mod plot;
pub mod result;
pub mod run;
pub mod screen;
pub mod space;

pub use error::{Error, Result};
pub use run::search;

#[cfg(test)]
mod tests;
