//! The checks of a request's values at the boundary: ranges, SGLang's context-length rule and the
//! limits that keep a run bounded (`crate::sim::limits`), each error naming the flag, the value and
//! what would be accepted.

use super::error::{invalid, Result};
use crate::model::arch::ModelSpec;
use crate::model::server_args::SglangVersion;
use crate::model::step::StepModel;
use crate::sim::limits::{self, MAX_REQUEST_TOKENS};
use crate::sim::workload::RequestSpec;

/// Largest `--cuda-graph-max-bs`: SGLang captures one CUDA graph per batch size up to it (every
/// 32 above 512), and its own defaults reach 1,024; 16,384 keeps the capture list near 500 sizes.
const MAX_CUDA_GRAPH_BS: u64 = 16_384;

/// `--cuda-graph-max-bs`: at most [`MAX_CUDA_GRAPH_BS`].
pub fn check_cuda_graph_max_bs(flag: Option<u64>) -> Result<()> {
    match flag {
        Some(bs) if bs > MAX_CUDA_GRAPH_BS => Err(invalid!(
            "invalid --cuda-graph-max-bs {bs}: at most {MAX_CUDA_GRAPH_BS} (SGLang captures a graph per batch size up to it; its defaults reach 1024)"
        )),
        _ => Ok(()),
    }
}

/// Most GPUs one engine's `--tp`, `--dp` or `--ep` may name: far above the largest engines
/// SGLang has been run with (DeepSeek's expert parallelism over 96 GPUs), and small enough that
/// listing the sizes that would divide a model stays instant.
const MAX_GPUS_PER_ENGINE: u32 = 1024;

/// The oldest release whose defaults sglsim reproduces (its TP-size table of `mem_fraction_static`).
const OLDEST_SGLANG_VERSION: SglangVersion = SglangVersion(0, 3, 0);

/// `--sglang-version`: a release sglsim models, from [`OLDEST_SGLANG_VERSION`] to [`SglangVersion::CURRENT`].
pub fn sglang_version_flag(text: &str) -> Result<SglangVersion> {
    let expected = |v: SglangVersion| format!("{}.{}.{}", v.0, v.1, v.2);
    let (oldest, current) = (expected(OLDEST_SGLANG_VERSION), expected(SglangVersion::CURRENT));
    let Some(version) = SglangVersion::parse(text) else {
        return Err(invalid!(
            "invalid --sglang-version '{text}': expected a release such as 0.4.5, from {oldest} to {current}"
        ));
    };
    if !(OLDEST_SGLANG_VERSION..=SglangVersion::CURRENT).contains(&version) {
        return Err(invalid!(
            "invalid --sglang-version '{text}': sglsim reproduces the defaults of SGLang {oldest} to {current}; leave the flag out for {current}'s"
        ));
    }
    Ok(version)
}

/// Why an engine has no KV pool: a `--page-size` larger than the whole pool, said as such, else the
/// memory plan's shortfall (weights against the memory left); `None` when it fits.
pub fn shortfall(step: &StepModel) -> Option<String> {
    let memory = step.memory();
    if memory.fits() {
        return None;
    }
    let page_size = step.args().page_size;
    if memory.kv_pool_bytes_per_gpu > 0.0 && page_size > 1 {
        let pool_tokens = (memory.kv_pool_bytes_per_gpu / memory.kv_bytes_per_token_per_rank).floor();
        return Some(format!(
            "--page-size {page_size} is larger than the whole KV pool ({pool_tokens:.0} tokens per rank): SGLang allocates KV in pages, so no page fits; use a page size below {pool_tokens:.0}"
        ));
    }
    memory.shortfall()
}

/// `--context-length`: the model's context window, or the flag's value (1 to [`MAX_REQUEST_TOKENS`]).
/// As SGLang's flag does, it replaces the model config's `max_position_embeddings`.
pub fn apply_context_length(model: &mut ModelSpec, flag: Option<u64>) -> Result<()> {
    if let Some(tokens) = flag {
        if !(1..=MAX_REQUEST_TOKENS).contains(&tokens) {
            return Err(invalid!(
                "invalid --context-length {tokens}: between 1 and {MAX_REQUEST_TOKENS} tokens (the longest window of any published model)"
            ));
        }
        model.max_context_tokens = tokens;
    }
    Ok(())
}

/// Checks a latency SLA flag: a positive, finite number of milliseconds.
pub fn check_sla_ms(field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(ms) if !(ms.is_finite() && ms > 0.0) => Err(invalid!("invalid {field} {ms}: a positive, finite number of milliseconds")),
        _ => Ok(()),
    }
}

/// `--isl` and `--osl`: at least one token each, and within the context window under SGLang's rule.
pub fn check_lengths(isl: u64, osl: u64, context_tokens: u64) -> Result<()> {
    if isl == 0 || osl == 0 {
        return Err(invalid!("invalid --isl {isl} --osl {osl}: each at least 1 token"));
    }
    limits::check_context(isl, osl, context_tokens)
        .map_err(|e| invalid!("--isl {isl} --osl {osl}: {} {CONTEXT_HINT}", limits::strip_kind(e)))
}

/// A workload's check, with the advice on the context window when that is what failed.
pub fn check_workload(what: &str, workload: &[RequestSpec], context_tokens: u64) -> Result<()> {
    limits::check_requests(what, workload, context_tokens).map_err(|e| {
        let message = limits::strip_kind(e);
        if message.contains("context length") {
            invalid!("{message} {CONTEXT_HINT}")
        } else {
            invalid!("{message}")
        }
    })
}

/// What to do about a request longer than the context window, said after SGLang's own message.
const CONTEXT_HINT: &str =
    "SGLang answers such a request with HTTP 400; shorten it, or raise the window with --context-length (SGLang's flag of the same name)";

/// `--tp`, `--dp` and `--ep` of one engine: at most [`MAX_GPUS_PER_ENGINE`] (the mapping checks the rest).
pub fn check_engine_sizes(sizes: (u32, u32, u32)) -> Result<()> {
    for (flag, size) in [("--tp", sizes.0), ("--dp", sizes.1), ("--ep", sizes.2)] {
        if size > MAX_GPUS_PER_ENGINE {
            return Err(invalid!("invalid {flag} {size}: at most {MAX_GPUS_PER_ENGINE} GPUs per engine"));
        }
    }
    Ok(())
}

/// A count of engines (`--replicas`, prefill plus decode workers): 1 to `limits::MAX_ENGINES`.
pub fn check_engines(field: &str, n_engines: u64) -> Result<()> {
    Ok(limits::check_engines(field, n_engines)?)
}
