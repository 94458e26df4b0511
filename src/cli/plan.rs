//! Turns flags into the library's requests and typed configurations (the library reads the files).

use std::path::Path;

use anyhow::Result;

use super::args::{Mode, PredictArgs};
use super::common_args::{MappingFlags, ServerFlags};
use sglsim::api::{checks, PredictRequest, RequestRate, ServerOptions};
use sglsim::model::arch::ModelSpec;
use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuSpec;
use sglsim::model::quant::KvDtype;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::StepModel;

/// Resolves a model name (a bundled id, or a path to a config.json or its folder); `--dtype`, when
/// given, replaces the checkpoint's weight format.
pub fn load_model_as(name: &str, dtype: Option<&str>) -> Result<ModelSpec> {
    Ok(sglsim::api::load::load_model_as(name, dtype)?)
}

/// `--kv-cache-dtype`: `auto` (None: the checkpoint's) or a KV cache dtype.
pub fn kv_cache_dtype(flag: &str) -> Result<Option<KvDtype>> {
    Ok(sglsim::api::load::kv_cache_dtype(flag)?)
}

/// Reads a coefficient profile (JSON or TOML), or the compiled-in defaults; notes on stderr the
/// coefficients the profile predates.
pub fn load_coefficients(path: Option<&Path>) -> Result<Coefficients> {
    let (coefficients, filled) = sglsim::api::load::load_coefficients(path)?;
    if let Some(note) = path.and_then(|path| sglsim::api::load::filled_note(path, &filled)) {
        eprintln!("{note}");
    }
    Ok(coefficients)
}

/// The library's server options of these flags.
pub fn server_options(flags: &ServerFlags) -> ServerOptions {
    ServerOptions {
        kv_cache_dtype: flags.kv_cache_dtype.clone(),
        mem_fraction_static: flags.mem_fraction_static,
        chunked_prefill_size: flags.chunked_prefill_size,
        max_prefill_tokens: flags.max_prefill_tokens,
        max_running_requests: flags.max_running_requests,
        cuda_graph_max_bs: flags.cuda_graph_max_bs,
        disable_overlap_schedule: flags.disable_overlap_schedule,
        enable_mixed_chunk: flags.enable_mixed_chunk,
        disable_radix_cache: flags.disable_radix_cache,
        page_size: flags.page_size,
        stream_interval: flags.stream_interval,
        moe_a2a_backend: flags.moe_a2a_backend.clone(),
        attention_backend: flags.attention_backend.clone(),
        sglang_version: flags.sglang_version.clone(),
        moe_dense_tp_size: flags.moe_dense_tp_size,
        enable_dp_lm_head: flags.enable_dp_lm_head,
        enable_two_batch_overlap: flags.enable_two_batch_overlap,
        ep_num_redundant_experts: flags.ep_num_redundant_experts,
    }
}

/// SGLang's server flags as typed arguments (shared by `predict`, `serve` and `calibrate`).
pub fn server_args(flags: &ServerFlags) -> Result<ServerArgs> {
    Ok(server_options(flags).server_args()?)
}

/// `predict`'s flags as the library's request.
pub fn predict_request(args: &PredictArgs) -> PredictRequest {
    PredictRequest {
        model: args.model.model.clone(),
        dtype: args.model.dtype.clone(),
        gpu: args.gpu.clone(),
        tp: args.mapping.tp,
        dp: args.mapping.dp,
        ep: args.mapping.ep,
        isl: args.isl,
        osl: args.osl,
        batch: args.batch,
        profile: args.profile.clone(),
        concurrency: args.concurrency,
        request_rate: args.request_rate.clone().map(RequestRate::Text),
        num_requests: args.num_requests,
        warmup_requests: args.warmup_requests,
        range_ratio: args.lengths.range_ratio,
        isl_std: args.lengths.isl_std,
        osl_std: args.lengths.osl_std,
        trace: args.trace.clone(),
        seed: args.seed,
        ttft: args.ttft,
        itl: args.itl,
        mode: match args.mode {
            Mode::Agg => "agg".into(),
            Mode::Disagg => "disagg".into(),
        },
        replicas: args.replicas,
        prefill_tp: args.prefill_tp,
        prefill_dp: args.prefill_dp,
        prefill_ep: args.prefill_ep,
        prefill_workers: args.prefill_workers,
        decode_tp: args.decode_tp,
        decode_dp: args.decode_dp,
        decode_ep: args.decode_ep,
        decode_workers: args.decode_workers,
        decode_chunked_prefill_size: args.decode_chunked_prefill_size,
        decode_cuda_graph_max_bs: args.decode_cuda_graph_max_bs,
        decode_mem_fraction_static: args.decode_mem_fraction_static,
        context_length: args.context_length,
        timeline: args.timeline.is_some(),
        server: server_options(&args.server),
    }
}

/// `--context-length`: replaces the model's context window (1 to the longest published window).
pub fn apply_context_length(model: &mut ModelSpec, flag: Option<u64>) -> Result<()> {
    Ok(checks::apply_context_length(model, flag)?)
}

/// `--cuda-graph-max-bs`: at most SGLang-plausible capture sizes.
pub fn check_cuda_graph_max_bs(flag: Option<u64>) -> Result<()> {
    Ok(checks::check_cuda_graph_max_bs(flag)?)
}

/// `--isl` and `--osl`: at least one token each, and within the context window under SGLang's rule.
pub fn check_lengths(isl: u64, osl: u64, context_tokens: u64) -> Result<()> {
    Ok(checks::check_lengths(isl, osl, context_tokens)?)
}

/// Why an engine has no KV pool, or `None` when it fits.
pub fn shortfall(step: &StepModel) -> Option<String> {
    checks::shortfall(step)
}

/// Parses a trace's text (see `sglsim::api::load::read_trace`).
#[cfg(test)]
pub fn parse_trace(text: &str, name: &str, json: bool) -> Result<Vec<sglsim::sim::workload::RequestSpec>> {
    Ok(sglsim::api::load::parse_trace(text, name, json)?)
}

/// Builds one engine's step model; a configuration that does not fit is an error naming GB needed and available.
pub fn step_model(
    model: &ModelSpec,
    gpu: &GpuSpec,
    sizes: MappingFlags,
    server: &ServerArgs,
    coefficients: &Coefficients,
) -> Result<StepModel> {
    Ok(sglsim::api::predict::step_model(
        model,
        gpu,
        (sizes.tp, sizes.dp, sizes.ep),
        server,
        coefficients,
    )?)
}
