//! The error type of the serving simulator.

/// What can go wrong while setting up a simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A workload that cannot be generated (bad lengths, rates or counts).
    #[error("invalid workload: {0}")]
    BadWorkload(String),
    /// A deployment that cannot serve (no engines, a request larger than any KV pool).
    #[error("invalid deployment: {0}")]
    BadDeployment(String),
    /// An error from the cost model.
    #[error(transparent)]
    Model(#[from] crate::model::Error),
}

/// The result type of the `sim` module.
pub type Result<T> = std::result::Result<T, Error>;
