//! Errors of the serving twin.

/// What can go wrong starting the twin or answering a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A setting is out of range.
    #[error("invalid {field} {value}: expected {expected}")]
    BadValue {
        /// The flag.
        field: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The cost model refused the configuration or the perturbed coefficients.
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    /// The listening socket cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Host and port asked for.
        address: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The async runtime or a thread cannot start, or the server stopped with an IO error.
    #[error("serving failed: {0}")]
    Runtime(String),
    /// A client's request is invalid (answered with HTTP 400).
    #[error("{0}")]
    BadRequest(String),
}
