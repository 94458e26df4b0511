//! The report of `predict`: its JSON keys are a contract other tools parse.

use serde::Serialize;

use crate::sim::cluster::{Role, SimOutput};
use crate::sim::metrics::{Distribution, Goodput, Throughput};

/// One engine of a prediction: the same description `search` gives its recommendations.
pub use crate::search::result::EngineDesc as EngineReport;

/// The `predict` result; keys are a stable contract.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    /// Whether every engine fits in GPU memory.
    pub fits: bool,
    /// Model id or path.
    pub model: String,
    /// GPU name.
    pub gpu: String,
    /// `agg` or `disagg`.
    pub mode: &'static str,
    /// GPUs of the whole deployment.
    pub n_gpus: u32,
    /// Weights per GPU (decode engine when disaggregated), GB.
    pub weights_gb_per_gpu: f64,
    /// KV tokens of one engine (decode engine when disaggregated).
    pub kv_capacity_tokens: u64,
    /// Requests one engine runs at once.
    pub max_running_requests: u64,
    /// Prefill of one request of `isl` tokens, alone, ms.
    pub prefill_ms: f64,
    /// One decode step at the batch and mean context `isl + osl/2`, ms.
    pub decode_step_ms: f64,
    /// Time to first token, ms.
    pub ttft_ms: Distribution,
    /// Inter-token latency, ms.
    pub itl_ms: Distribution,
    /// Time per output token, ms.
    pub tpot_ms: Distribution,
    /// End-to-end latency, ms.
    pub e2e_ms: Distribution,
    /// Throughput.
    pub throughput: Throughput,
    /// Goodput under the SLA given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
    /// Measured requests.
    pub n_requests: u64,
    /// Run duration, seconds.
    pub duration_s: f64,
    /// Retractions for lack of KV.
    pub n_retractions: u64,
    /// The engines.
    pub engines: Vec<EngineReport>,
}

/// Why a configuration does not fit, as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DoesNotFitReport {
    /// Always false.
    pub fits: bool,
    /// GB needed and available.
    pub reason: String,
    /// Weights per GPU, GB.
    pub weights_gb_per_gpu: f64,
    /// The engines.
    pub engines: Vec<EngineReport>,
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Rounds every float of a distribution to microseconds.
pub fn tidy(distribution: Distribution) -> Distribution {
    Distribution {
        mean: round3(distribution.mean),
        p50: round3(distribution.p50),
        p90: round3(distribution.p90),
        p99: round3(distribution.p99),
    }
}

/// Builds the report of a run.
pub fn predict_report(
    model: &str,
    gpu: &str,
    engines: Vec<EngineReport>,
    prefill_ms: f64,
    decode_step_ms: f64,
    output: &SimOutput,
) -> PredictReport {
    let main = engines.iter().find(|e| e.role != Role::Prefill).unwrap_or(&engines[0]);
    let metrics = &output.metrics;
    let throughput = metrics.throughput;
    PredictReport {
        fits: true,
        model: model.to_string(),
        gpu: gpu.to_string(),
        mode: if engines.iter().any(|e| e.role == Role::Prefill) {
            "disagg"
        } else {
            "agg"
        },
        n_gpus: engines.iter().map(|e| e.count * e.gpus_per_engine).sum(),
        weights_gb_per_gpu: main.weights_gb_per_gpu,
        kv_capacity_tokens: main.kv_capacity_tokens,
        max_running_requests: main.max_running_requests,
        prefill_ms: round3(prefill_ms),
        decode_step_ms: round3(decode_step_ms),
        ttft_ms: tidy(metrics.ttft_ms),
        itl_ms: tidy(metrics.itl_ms),
        tpot_ms: tidy(metrics.tpot_ms),
        e2e_ms: tidy(metrics.e2e_ms),
        throughput: Throughput {
            output_tok_s: round3(throughput.output_tok_s),
            input_tok_s: round3(throughput.input_tok_s),
            output_tok_s_per_gpu: round3(throughput.output_tok_s_per_gpu),
            total_tok_s_per_gpu: round3(throughput.total_tok_s_per_gpu),
            request_s: round3(throughput.request_s),
        },
        goodput: metrics.goodput,
        n_requests: metrics.n_requests,
        duration_s: round3(metrics.duration_s),
        n_retractions: output.n_retractions,
        engines,
    }
}
