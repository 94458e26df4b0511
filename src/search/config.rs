//! What a search is asked: the model, the GPUs and how many, the workload, the SLA and the load.

use crate::model::arch::ModelSpec;
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;
use crate::model::server_args::ServerArgs;
use crate::sim::metrics::Percentile;
use crate::sim::workload::LengthDistribution;

use super::error::{Error, Result};

/// How many GPUs the search may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuLimits {
    /// GPUs of the whole deployment (`--total-gpus`); replicas fill them.
    pub total_gpus: Option<u32>,
    /// Largest engine (`--max-gpus-per-engine`).
    pub max_gpus_per_engine: Option<u32>,
}

impl GpuLimits {
    /// The limit as the user spelled it, for messages.
    pub fn describe(&self) -> String {
        match (self.total_gpus, self.max_gpus_per_engine) {
            (Some(total), Some(per_engine)) => format!("--total-gpus {total} and --max-gpus-per-engine {per_engine}"),
            (Some(total), None) => format!("--total-gpus {total}"),
            (None, Some(per_engine)) => format!("--max-gpus-per-engine {per_engine}"),
            (None, None) => "no GPU limit".into(),
        }
    }
}

/// Which serving modes to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Aggregated engines only.
    Agg,
    /// Disaggregated prefill/decode only.
    Disagg,
    /// Both.
    Both,
}

impl ModeChoice {
    /// Whether aggregated deployments are searched.
    pub fn includes_agg(self) -> bool {
        matches!(self, ModeChoice::Agg | ModeChoice::Both)
    }

    /// Whether disaggregated deployments are searched.
    pub fn includes_disagg(self) -> bool {
        matches!(self, ModeChoice::Disagg | ModeChoice::Both)
    }
}

/// The load the whole deployment must serve; without one the search sweeps concurrency per engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop: this many clients in total.
    Concurrency {
        /// Clients of the whole deployment.
        n_clients: u64,
    },
    /// Open loop: Poisson arrivals at this total rate.
    RequestRate {
        /// Requests per second of the whole deployment.
        rate_per_s: f64,
    },
}

/// The SLA every recommendation meets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaTarget {
    /// Largest TTFT at the percentile, ms.
    pub ttft_ms: f64,
    /// Largest ITL (the per-request TPOT) at the percentile, ms.
    pub itl_ms: f64,
    /// The statistic both limits apply to.
    pub percentile: Percentile,
}

/// The requests, as in `predict`: mean (or maximum, for uniform) lengths and their spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadShape {
    /// Input length, tokens.
    pub isl: u64,
    /// Output length, tokens.
    pub osl: u64,
    /// Length distribution.
    pub lengths: LengthDistribution,
    /// Seed of the length and arrival draws.
    pub seed: u64,
}

impl WorkloadShape {
    /// Mean input and output lengths, tokens.
    pub fn mean_lengths_tokens(&self) -> (f64, f64) {
        match self.lengths {
            LengthDistribution::Uniform { range_ratio } => (
                self.isl as f64 * (1.0 + range_ratio) / 2.0,
                self.osl as f64 * (1.0 + range_ratio) / 2.0,
            ),
            _ => (self.isl as f64, self.osl as f64),
        }
    }

    /// Lengths no request is expected to exceed (mean + 5σ for normal draws), tokens.
    pub fn max_lengths_tokens(&self) -> (u64, u64) {
        match self.lengths {
            LengthDistribution::Normal { isl_std, osl_std } => (
                (self.isl as f64 + 5.0 * isl_std).ceil() as u64,
                (self.osl as f64 + 5.0 * osl_std).ceil() as u64,
            ),
            _ => (self.isl, self.osl),
        }
    }
}

/// Everything a search needs. Built by the CLI from flags; every field is explicit.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// The model (weight format already overridden by `--dtype`).
    pub model: ModelSpec,
    /// How `sglsim predict` names the same model and coefficients (`--model ID`, with `--dtype` and
    /// `--profile` when given): the start of every point's `predict_command`.
    pub model_flags: String,
    /// GPU types to try, in the order given.
    pub gpus: Vec<GpuSpec>,
    /// Cost-model coefficients.
    pub coefficients: Coefficients,
    /// Server flags every candidate starts from (the search sets chunk size and batch caps).
    pub server_args: ServerArgs,
    /// GPU limits.
    pub limits: GpuLimits,
    /// The requests.
    pub workload: WorkloadShape,
    /// The SLA.
    pub sla: SlaTarget,
    /// Serving modes to search.
    pub modes: ModeChoice,
    /// The load, or `None` to sweep concurrency per engine.
    pub load: Option<Load>,
    /// Recommendations to return.
    pub top_k: usize,
    /// Candidates the serving simulator evaluates after the analytic screen.
    pub max_simulations: usize,
    /// Worker threads (`None`: one per core).
    pub n_threads: Option<usize>,
}

impl SearchConfig {
    /// Checks ranges once, so that the search itself never has to.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: String, expected: &str| Error::BadValue {
            field: field.into(),
            value,
            expected: expected.into(),
        };
        if self.gpus.is_empty() {
            return Err(bad("--gpu", String::new(), "at least one GPU type"));
        }
        if self.limits.total_gpus.is_none() && self.limits.max_gpus_per_engine.is_none() {
            return Err(bad(
                "--total-gpus/--max-gpus-per-engine",
                "none".into(),
                "give --total-gpus N or --max-gpus-per-engine K",
            ));
        }
        if self.limits.total_gpus == Some(0) {
            return Err(bad("--total-gpus", "0".into(), "at least 1"));
        }
        if self.limits.max_gpus_per_engine == Some(0) {
            return Err(bad("--max-gpus-per-engine", "0".into(), "at least 1"));
        }
        if self.workload.isl == 0 {
            return Err(bad("--isl", "0".into(), "at least 1 token"));
        }
        if self.workload.osl < 2 {
            return Err(bad(
                "--osl",
                self.workload.osl.to_string(),
                "at least 2 tokens (ITL needs two output tokens)",
            ));
        }
        self.validate_lengths()?;
        for (field, value) in [("--ttft", self.sla.ttft_ms), ("--itl", self.sla.itl_ms)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(bad(field, value.to_string(), "a positive number of milliseconds"));
            }
        }
        match self.load {
            Some(Load::Concurrency { n_clients: 0 }) => {
                return Err(bad("--concurrency", "0".into(), "at least 1"));
            }
            Some(Load::Concurrency { n_clients }) if n_clients > MAX_SEARCH_CLIENTS => {
                return Err(bad(
                    "--concurrency",
                    n_clients.to_string(),
                    &format!(
                        "at most {MAX_SEARCH_CLIENTS} clients (each simulation holds two requests per client, one simulation per thread)"
                    ),
                ));
            }
            Some(Load::RequestRate { rate_per_s })
                if !(rate_per_s.is_finite() && (MIN_SEARCH_RATE_PER_S..=MAX_SEARCH_RATE_PER_S).contains(&rate_per_s)) =>
            {
                return Err(bad(
                    "--request-rate",
                    rate_per_s.to_string(),
                    &format!("a rate from {MIN_SEARCH_RATE_PER_S} to {MAX_SEARCH_RATE_PER_S} requests/s"),
                ));
            }
            _ => {}
        }
        if self.top_k == 0 {
            return Err(bad("--top", "0".into(), "at least 1"));
        }
        if self.max_simulations == 0 {
            return Err(bad("--max-simulations", "0".into(), "at least 1"));
        }
        if let Some(n_threads) = self.n_threads.filter(|n| !(1..=MAX_SEARCH_THREADS).contains(n)) {
            return Err(bad(
                "--threads",
                n_threads.to_string(),
                &format!("between 1 and {MAX_SEARCH_THREADS} (each thread has its own stack)"),
            ));
        }
        Ok(())
    }
}

impl SearchConfig {
    /// Lengths: the longest request the draws are expected to make (mean + 5σ for normal lengths)
    /// must fit the model's context window under SGLang's rule, which refuses it with HTTP 400.
    fn validate_lengths(&self) -> Result<()> {
        if let LengthDistribution::Normal { isl_std, osl_std } = self.workload.lengths {
            for (field, std) in [("--isl-std", isl_std), ("--osl-std", osl_std)] {
                if !(std.is_finite() && std >= 0.0) {
                    return Err(Error::BadValue {
                        field: field.into(),
                        value: std.to_string(),
                        expected: "a finite standard deviation of at least 0 tokens".into(),
                    });
                }
            }
        }
        let (isl, osl) = self.workload.max_lengths_tokens();
        crate::sim::limits::check_context(isl, osl, self.model.max_context_tokens).map_err(|e| Error::BadValue {
            field: "--isl/--osl".into(),
            value: format!("{} and {}", self.workload.isl, self.workload.osl),
            expected: format!(
                "requests within the context window ({}); raise it with --context-length",
                crate::sim::limits::strip_kind(e)
            ),
        })
    }
}

/// Most clients a search takes: a survivor's simulation holds a warm-up wave of one request per
/// client and at most as many measured requests (about 330 bytes each), one simulation per thread,
/// so 100,000 clients stay near 70 MB per thread.
pub const MAX_SEARCH_CLIENTS: u64 = 100_000;
/// Highest request rate a search takes, requests/s: at the 60 s of queueing the search's sizing
/// allows a request, 1,000 requests/s keeps 60,000 in flight, within the bound on clients.
pub const MAX_SEARCH_RATE_PER_S: f64 = 1_000.0;
/// Most worker threads a search takes: more than any machine's cores (the answer does not depend
/// on them), and few enough that their stacks cannot exhaust memory.
pub const MAX_SEARCH_THREADS: usize = 1024;
/// Lowest request rate a search takes, requests/s: the 32 requests a simulation measures then
/// arrive within a day, well inside the simulator's span (`sim::limits::MAX_ARRIVAL_S`).
pub const MIN_SEARCH_RATE_PER_S: f64 = 1e-3;

/// The name of a percentile as flags and reports spell it.
pub fn percentile_name(percentile: Percentile) -> &'static str {
    match percentile {
        Percentile::Mean => "mean",
        Percentile::P50 => "p50",
        Percentile::P90 => "p90",
        Percentile::P99 => "p99",
    }
}
