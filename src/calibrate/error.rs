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
    /// A measurement source (file or folder) that cannot be read as any known format.
    #[error("{path}: {message}")]
    BadSource {
        /// The file or folder.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Too few usable measured points to fit coefficients.
    #[error("refusing to fit: {n_points} usable measured points, at least {needed} needed ({reason})")]
    TooFewPoints {
        /// Usable points.
        n_points: usize,
        /// Points needed.
        needed: usize,
        /// Why the others were not usable, or what to measure.
        reason: String,
    },
    /// The solver failed.
    #[error("fit failed: {message}")]
    Fit {
        /// The solver's message.
        message: String,
    },
    /// A calibrated profile that cannot be read or written.
    #[error("profile {path}: {message}")]
    BadProfile {
        /// The profile file (or `<memory>`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A live-calibration plan that cannot be built within its limits.
    #[error("calibration plan: {message}")]
    BadPlan {
        /// What is wrong.
        message: String,
    },
}

/// The result type of the `calibrate` module.
pub type Result<T> = std::result::Result<T, Error>;
