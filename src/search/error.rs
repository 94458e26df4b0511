//! The error type of the SLA search.

/// What can stop a search before it ranks anything.
///
/// A single configuration that does not fit or cannot be simulated never stops a search: it is
/// pruned (or recorded as skipped) and the search goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value of the search's input that is out of range.
    #[error("invalid {field} = {value}: {expected}")]
    BadValue {
        /// The flag or field name.
        field: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// None of the GPUs given can hold the model within the GPU limit.
    #[error("{model} fits on none of the GPUs given within {limit}: {reasons}")]
    NoGpuFits {
        /// The model id.
        model: String,
        /// The GPU limit as the user gave it (`--total-gpus 4`, `--max-gpus-per-engine 2`).
        limit: String,
        /// Per GPU, why it was skipped.
        reasons: String,
    },
    /// The total GPU count is below the smallest engine that fits.
    #[error("--total-gpus {total_gpus} is below one engine: {model} needs at least {needed_gpus} × {gpu} per engine")]
    TotalBelowOneEngine {
        /// The model id.
        model: String,
        /// `--total-gpus`.
        total_gpus: u32,
        /// GPUs of the smallest engine that fits, on the GPU that needs fewest.
        needed_gpus: u32,
        /// That GPU.
        gpu: String,
    },
    /// The thread pool could not be built.
    #[error("cannot start {n_threads} search threads: {message}")]
    ThreadPool {
        /// Threads asked for.
        n_threads: usize,
        /// What rayon said.
        message: String,
    },
    /// Writing a NumPy archive failed.
    #[error("cannot write {archive}: {message}")]
    Npz {
        /// The archive's name, for example `selected_prefill_interpolation/raw_data.npz`.
        archive: String,
        /// What the writer said.
        message: String,
    },
    /// Drawing a chart failed.
    #[error("cannot draw {chart}: {message}")]
    Plot {
        /// The chart's file name, for example `pareto.png`.
        chart: String,
        /// What the renderer said.
        message: String,
    },
    /// An error from the cost model.
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    /// An error from the simulator.
    #[error(transparent)]
    Sim(#[from] crate::sim::Error),
}

/// The result type of the `search` module.
pub type Result<T> = std::result::Result<T, Error>;
