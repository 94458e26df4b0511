//! Formats results: one JSON object, or a compact human table.

use serde::Serialize;

use sglsim::sim::cluster::{Role, SimOutput};
use sglsim::sim::metrics::{Distribution, Goodput, Throughput};

/// One engine of a prediction: the same description `search` gives its recommendations.
pub use sglsim::search::result::EngineDesc as EngineReport;

/// The `predict` result; keys are a stable contract.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
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

/// The human table of `predict`.
pub fn predict_table(report: &PredictReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} on {} × {} ({})\n",
        report.model, report.n_gpus, report.gpu, report.mode
    ));
    for engine in &report.engines {
        out.push_str(&format!(
            "  {:<10} {} × {} ({}): weights {:.1} GB/GPU, KV {} tokens, max running {}, mem_fraction_static {:.3}\n",
            format!("{:?}", engine.role).to_lowercase(),
            engine.count,
            engine.mapping,
            engine.mapping_kind,
            engine.weights_gb_per_gpu,
            engine.kv_capacity_tokens,
            engine.max_running_requests,
            engine.mem_fraction_static
        ));
    }
    out.push_str(&format!(
        "  prefill (1 request alone) {:.2} ms, decode step {:.2} ms\n\n",
        report.prefill_ms, report.decode_step_ms
    ));
    out.push_str(&format!(
        "  {:<10} {:>10} {:>10} {:>10} {:>10}\n",
        "metric", "mean", "p50", "p90", "p99"
    ));
    for (name, d) in [
        ("TTFT ms", report.ttft_ms),
        ("ITL ms", report.itl_ms),
        ("TPOT ms", report.tpot_ms),
        ("E2E ms", report.e2e_ms),
    ] {
        out.push_str(&format!(
            "  {:<10} {:>10.2} {:>10.2} {:>10.2} {:>10.2}\n",
            name, d.mean, d.p50, d.p90, d.p99
        ));
    }
    let t = report.throughput;
    out.push_str(&format!(
        "\n  {} requests in {:.2} s: {:.1} output tok/s ({:.1}/GPU), {:.1} input tok/s, {:.2} req/s",
        report.n_requests, report.duration_s, t.output_tok_s, t.output_tok_s_per_gpu, t.input_tok_s, t.request_s
    ));
    if report.n_retractions > 0 {
        out.push_str(&format!(", {} retractions", report.n_retractions));
    }
    out.push('\n');
    if let Some(goodput) = report.goodput {
        out.push_str(&format!(
            "  SLA met by {:.1}% of requests: goodput {:.2} req/s, {:.1} output tok/s\n",
            goodput.fraction_meeting_sla * 100.0,
            goodput.request_s,
            goodput.output_tok_s
        ));
    }
    out
}
