//! The error type of the library's entry points.

/// What can go wrong in [`crate::predict`] or [`crate::search`]: bad input (named by its flag), a
/// file that cannot be read, or an error of the module that refused the configuration (kept as the
/// source, so callers can match on it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field out of range or in conflict with another; the message names the flag, the
    /// value and what would be accepted.
    #[error("{0}")]
    Invalid(String),
    /// A file named by the request could not be read or parsed.
    #[error("{what}")]
    Io {
        /// What was being read, with its path.
        what: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// One engine of the deployment cannot be built.
    #[error("{role} engine")]
    Engine {
        /// `prefill` or `decode`.
        role: &'static str,
        /// Why.
        source: crate::model::Error,
    },
    /// The cost model refused the configuration (unknown model or GPU, invalid mapping, ...).
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    /// The simulator refused the workload or deployment.
    #[error(transparent)]
    Sim(#[from] crate::sim::Error),
    /// The search refused its configuration.
    #[error(transparent)]
    Search(#[from] crate::search::Error),
    /// A request given as JSON that does not have the request's shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The message with its causes, `cause: its cause: ...`, as the CLI prints errors.
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }
}

/// The result type of the library's entry points.
pub type Result<T> = std::result::Result<T, Error>;

/// An [`Error::Invalid`] from a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        $crate::api::error::Error::Invalid(format!($($arg)*))
    };
}
pub(crate) use invalid;
