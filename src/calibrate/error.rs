//! The error type of calibration and validation.

/// What can go wrong while reading measurements or fitting to them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A measurement file that cannot be read as CSV of a known schema.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An error from the cost model.
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    /// An error from the simulator.
    #[error(transparent)]
    Sim(#[from] crate::sim::Error),
}

/// The result type of the `calibrate` module.
pub type Result<T> = std::result::Result<T, Error>;
