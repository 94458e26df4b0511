//! Turns validated flags into typed configurations: reads model configs, profiles and traces.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::args::{Mode, PredictArgs};
use super::common_args::{MappingFlags, ServerFlags};
use sglsim::model::arch::{ModelSpec, WeightFormats};
use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::{GpuCatalog, GpuSpec};
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::model_catalog::{find_bundled_spec, unknown_model};
use sglsim::model::quant::{KvDtype, WeightDtype};
use sglsim::model::server_args::{MoeA2aBackend, OverlapSchedule, ServerArgs, SglangVersion};
use sglsim::model::step::{EngineConfig, StepModel};
use sglsim::sim::cluster::{Role, SimOptions};
use sglsim::sim::limits::{self, MAX_REQUEST_TOKENS};
use sglsim::sim::metrics::Sla;
use sglsim::sim::workload::{generate_requests, Arrivals, RequestSpec, WorkloadSpec};

/// Everything `predict` needs, built and checked.
pub struct PredictPlan {
    /// Engine configurations with their role and count.
    pub engines: Vec<(StepModel, Role, u32)>,
    /// Requests to serve.
    pub workload: Vec<RequestSpec>,
    /// Arrivals, SLA, timeline.
    pub options: SimOptions,
    /// A static batch as `bench_one_batch` runs it: handed to the engine directly, with no server front end.
    pub offline_batch: bool,
    /// Input length for `prefill_ms` (mean of the workload), tokens.
    pub isl: u64,
    /// Output length for the decode context, tokens.
    pub osl: u64,
    /// Batch per engine for `decode_step_ms`.
    pub decode_batch: u64,
}

/// Resolves a model name: a bundled id, or a path to a config.json or a directory holding one.
pub fn load_model(name: &str) -> Result<ModelSpec> {
    if let Some(spec) = find_bundled_spec(name)? {
        return Ok(spec);
    }
    let path = Path::new(name);
    if !path.exists() {
        return Err(unknown_model(name).into());
    }
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(ModelSpec::from_hf_config(name, &text, &file.display().to_string())?)
}

/// Resolves a model name (see [`load_model`]); `--dtype`, when given, replaces the checkpoint's weight format.
pub fn load_model_as(name: &str, dtype: Option<&str>) -> Result<ModelSpec> {
    let mut model = load_model(name)?;
    if let Some(dtype) = dtype {
        model.weights = WeightFormats::uniform(WeightDtype::parse_flag(dtype)?);
    }
    Ok(model)
}

/// `--kv-cache-dtype`: `auto` (None: the checkpoint's) or a KV cache dtype.
pub fn kv_cache_dtype(flag: &str) -> Result<Option<KvDtype>> {
    Ok(match flag {
        "auto" => None,
        other => Some(KvDtype::parse_flag(other)?),
    })
}

/// Reads a coefficient profile (JSON or TOML), or the compiled-in defaults.
pub fn load_coefficients(path: Option<&Path>) -> Result<Coefficients> {
    let Some(path) = path else { return Ok(Coefficients::defaults()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read profile {}", path.display()))?;
    let name = path.display().to_string();
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let (coefficients, filled) = if is_json {
        Coefficients::from_json_filling(&text, &name)?
    } else {
        Coefficients::from_toml_filling(&text, &name)?
    };
    if !filled.is_empty() {
        eprintln!(
            "note: profile {name} has no value for {}; using the default{} (the profile predates {})",
            filled.join(", "),
            if filled.len() == 1 { "" } else { "s" },
            if filled.len() == 1 {
                "that coefficient"
            } else {
                "those coefficients"
            }
        );
    }
    Ok(coefficients)
}

/// SGLang's server flags as typed arguments (shared by `predict`, `serve` and `calibrate`).
pub fn server_args(flags: &ServerFlags) -> Result<ServerArgs> {
    check_cuda_graph_max_bs(flags.cuda_graph_max_bs)?;
    Ok(ServerArgs {
        mem_fraction_static: flags.mem_fraction_static,
        chunked_prefill_size: flags.chunked_prefill_size,
        max_prefill_tokens: flags.max_prefill_tokens,
        max_running_requests: flags.max_running_requests,
        cuda_graph_max_bs: flags.cuda_graph_max_bs,
        overlap_schedule: if flags.disable_overlap_schedule {
            OverlapSchedule::Off
        } else {
            OverlapSchedule::On
        },
        enable_mixed_chunk: flags.enable_mixed_chunk,
        disable_radix_cache: flags.disable_radix_cache,
        page_size: flags.page_size,
        stream_interval: flags.stream_interval,
        moe_a2a_backend: MoeA2aBackend::parse_flag(&flags.moe_a2a_backend)?,
        attention_backend: flags.attention_backend.clone(),
        kv_cache_dtype: kv_cache_dtype(&flags.kv_cache_dtype)?,
        sglang_version: match &flags.sglang_version {
            Some(text) => Some(sglang_version_flag(text)?),
            None => None,
        },
        overlap_flag_given: flags.disable_overlap_schedule,
        moe_dense_tp1: match flags.moe_dense_tp_size {
            None => false,
            Some(1) => true,
            Some(other) => {
                return Err(anyhow::anyhow!(
                    "invalid --moe-dense-tp-size {other}: SGLang accepts only 1 (dense MLP layers data-parallel) or no value"
                ))
            }
        },
        enable_dp_lm_head: flags.enable_dp_lm_head,
        enable_two_batch_overlap: flags.enable_two_batch_overlap,
        ep_num_redundant_experts: flags.ep_num_redundant_experts,
    })
}

/// Largest `--cuda-graph-max-bs`: SGLang captures one CUDA graph per batch size up to it (every
/// 32 above 512), and its own defaults reach 1,024; 16,384 keeps the capture list near 500 sizes.
const MAX_CUDA_GRAPH_BS: u64 = 16_384;

/// `--cuda-graph-max-bs`: at most [`MAX_CUDA_GRAPH_BS`].
pub fn check_cuda_graph_max_bs(flag: Option<u64>) -> Result<()> {
    match flag {
        Some(bs) if bs > MAX_CUDA_GRAPH_BS => bail!(
            "invalid --cuda-graph-max-bs {bs}: at most {MAX_CUDA_GRAPH_BS} (SGLang captures a graph per batch size up to it; its defaults reach 1024)"
        ),
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
        bail!("invalid --sglang-version '{text}': expected a release such as 0.4.5, from {oldest} to {current}");
    };
    if !(OLDEST_SGLANG_VERSION..=SglangVersion::CURRENT).contains(&version) {
        bail!(
            "invalid --sglang-version '{text}': sglsim reproduces the defaults of SGLang {oldest} to {current}; leave the flag out for {current}'s"
        );
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
            bail!(
                "invalid --context-length {tokens}: between 1 and {MAX_REQUEST_TOKENS} tokens (the longest window of any published model)"
            );
        }
        model.max_context_tokens = tokens;
    }
    Ok(())
}

/// Checks a latency SLA flag: a positive, finite number of milliseconds.
pub fn check_sla_ms(field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(ms) if !(ms.is_finite() && ms > 0.0) => {
            bail!("invalid {field} {ms}: a positive, finite number of milliseconds")
        }
        _ => Ok(()),
    }
}

/// Builds one engine's step model; a configuration that does not fit is an error naming GB needed and available.
pub fn step_model(
    model: &ModelSpec,
    gpu: &GpuSpec,
    sizes: MappingFlags,
    server: &ServerArgs,
    coefficients: &Coefficients,
) -> Result<StepModel> {
    for (flag, size) in [("--tp", sizes.tp), ("--dp", sizes.dp), ("--ep", sizes.ep)] {
        if size > MAX_GPUS_PER_ENGINE {
            bail!("invalid {flag} {size}: at most {MAX_GPUS_PER_ENGINE} GPUs per engine");
        }
    }
    let mapping = ParallelMapping::with_redundant_experts(model, sizes.tp, sizes.dp, sizes.ep, server.ep_num_redundant_experts)?;
    let config = EngineConfig {
        model: model.clone(),
        gpu: gpu.clone(),
        mapping,
        server_args: server.clone(),
        coefficients: coefficients.clone(),
    };
    Ok(StepModel::new_unchecked(config)?)
}

/// Builds the plan of `predict`.
pub fn predict_plan(args: &PredictArgs) -> Result<PredictPlan> {
    check_mode_flags(args)?;
    check_sla_ms("--ttft", args.ttft)?;
    check_sla_ms("--itl", args.itl)?;
    let mut model = load_model_as(&args.model.model, args.model.dtype.as_deref())?;
    apply_context_length(&mut model, args.context_length)?;
    let context_tokens = model.max_context_tokens;
    let catalog = GpuCatalog::builtin()?;
    let gpu = catalog.find(&args.gpu)?.clone();
    let coefficients = load_coefficients(args.profile.as_deref())?;
    let server = server_args(&args.server)?;
    let engine = |sizes| step_model(&model, &gpu, sizes, &server, &coefficients);
    let engines = match args.mode {
        Mode::Agg => {
            limits::check_engines("--replicas", u64::from(args.replicas))?;
            vec![(engine(args.mapping)?, Role::Aggregated, args.replicas)]
        }
        Mode::Disagg => {
            if args.prefill_workers == 0 || args.decode_workers == 0 {
                bail!("invalid --prefill-workers/--decode-workers: disaggregated serving needs at least one of each");
            }
            let workers = u64::from(args.prefill_workers) + u64::from(args.decode_workers);
            limits::check_engines("--prefill-workers + --decode-workers", workers)?;
            let prefill = args.mapping.with(args.prefill_tp, args.prefill_dp, args.prefill_ep);
            let decode = args.mapping.with(args.decode_tp, args.decode_dp, args.decode_ep);
            vec![
                (engine(prefill).context("prefill engine")?, Role::Prefill, args.prefill_workers),
                (engine(decode).context("decode engine")?, Role::Decode, args.decode_workers),
            ]
        }
    };

    let lengths = args.lengths.distribution();
    let sla = (args.ttft.is_some() || args.itl.is_some()).then_some(Sla {
        ttft_ms: args.ttft,
        itl_ms: args.itl,
    });
    let options = |arrivals| SimOptions {
        arrivals,
        sla,
        record_timeline: args.timeline.is_some(),
    };

    if let Some(trace) = &args.trace {
        let workload = read_trace(trace)?;
        check_workload(&format!("trace {}", trace.display()), &workload, context_tokens)?;
        let n = workload.len() as f64;
        let isl = (workload.iter().map(|r| r.isl as f64).sum::<f64>() / n).round() as u64;
        let osl = (workload.iter().map(|r| r.osl as f64).sum::<f64>() / n).round() as u64;
        return Ok(PredictPlan {
            engines,
            workload,
            options: options(Arrivals::Trace),
            isl,
            osl,
            decode_batch: 1,
            offline_batch: false,
        });
    }
    let (Some(isl), Some(osl)) = (args.isl, args.osl) else {
        bail!("--isl and --osl are required (or give --trace FILE)");
    };
    check_lengths(isl, osl, context_tokens)?;
    let (arrivals, n_requests, decode_batch) = load(args)?;
    limits::total_requests(n_requests, args.warmup_requests)?;
    if let Arrivals::Poisson { rate_per_s } = arrivals {
        limits::check_poisson_span(rate_per_s, n_requests.saturating_add(args.warmup_requests))?;
    }
    let spec = WorkloadSpec {
        isl,
        osl,
        lengths,
        arrivals,
        n_requests,
        n_warmup: args.warmup_requests,
        seed: args.seed,
    };
    let workload = generate_requests(&spec)?;
    check_workload("the drawn workload", &workload, context_tokens)?;
    Ok(PredictPlan {
        engines,
        workload,
        options: options(arrivals),
        isl,
        osl,
        decode_batch,
        offline_batch: args.concurrency.is_none() && args.request_rate.is_none(),
    })
}

/// `--isl` and `--osl`: at least one token each, and within the context window under SGLang's rule.
pub fn check_lengths(isl: u64, osl: u64, context_tokens: u64) -> Result<()> {
    if isl == 0 || osl == 0 {
        bail!("invalid --isl {isl} --osl {osl}: each at least 1 token");
    }
    limits::check_context(isl, osl, context_tokens)
        .map_err(|e| anyhow::anyhow!("--isl {isl} --osl {osl}: {} {CONTEXT_HINT}", limits::strip_kind(e)))
}

/// A workload's check, with the advice on the context window when that is what failed.
fn check_workload(what: &str, workload: &[RequestSpec], context_tokens: u64) -> Result<()> {
    limits::check_requests(what, workload, context_tokens).map_err(|e| {
        let message = limits::strip_kind(e);
        if message.contains("context length") {
            anyhow::anyhow!("{message} {CONTEXT_HINT}")
        } else {
            anyhow::anyhow!(message)
        }
    })
}

/// What to do about a request longer than the context window, said after SGLang's own message.
const CONTEXT_HINT: &str =
    "SGLang answers such a request with HTTP 400; shorten it, or raise the window with --context-length (SGLang's flag of the same name)";

/// The engine flags of the other mode are refused rather than ignored.
fn check_mode_flags(args: &PredictArgs) -> Result<()> {
    let disagg_flags = [
        ("--prefill-tp", args.prefill_tp.is_some()),
        ("--prefill-dp", args.prefill_dp.is_some()),
        ("--prefill-ep", args.prefill_ep.is_some()),
        ("--decode-tp", args.decode_tp.is_some()),
        ("--decode-dp", args.decode_dp.is_some()),
        ("--decode-ep", args.decode_ep.is_some()),
        ("--prefill-workers", args.prefill_workers != 1),
        ("--decode-workers", args.decode_workers != 1),
    ];
    match args.mode {
        Mode::Agg => {
            let given: Vec<&str> = disagg_flags.iter().filter(|(_, given)| *given).map(|(flag, _)| *flag).collect();
            if !given.is_empty() {
                bail!(
                    "{} set{} disaggregated engines, which --mode agg does not have: add --mode disagg, or use --tp/--dp/--ep and --replicas",
                    given.join(", "),
                    if given.len() == 1 { "s" } else { "" }
                );
            }
        }
        Mode::Disagg if args.replicas != 1 => {
            bail!(
                "--replicas {} sets aggregated engines; with --mode disagg use --prefill-workers and --decode-workers",
                args.replicas
            );
        }
        Mode::Disagg => {}
    }
    Ok(())
}

/// The arrivals, measured requests and decode batch of the load flags (closed loop, Poisson, or a static batch).
fn load(args: &PredictArgs) -> Result<(Arrivals, u64, u64)> {
    Ok(match (args.concurrency, &args.request_rate) {
        (Some(concurrency), _) => {
            limits::check_concurrency("--concurrency", concurrency)?;
            let n_requests = args
                .num_requests
                .unwrap_or_else(|| limits::default_closed_loop_requests(concurrency));
            (Arrivals::Closed { concurrency }, n_requests, concurrency)
        }
        (None, Some(rate)) => {
            let arrivals = match rate.trim().to_ascii_lowercase().as_str() {
                "inf" | "infinity" => Arrivals::AllAtOnce,
                text => match text.parse::<f64>() {
                    Ok(rate_per_s) if rate_per_s > 0.0 && rate_per_s.is_finite() => Arrivals::Poisson { rate_per_s },
                    _ => bail!("invalid --request-rate {rate}: a positive number of requests/s, or inf"),
                },
            };
            (arrivals, args.num_requests.unwrap_or(1000), 1)
        }
        (None, None) => {
            let batch = args.batch.unwrap_or(1);
            if batch == 0 {
                bail!("invalid --batch 0: at least 1");
            }
            if batch > limits::MAX_REQUESTS {
                bail!(
                    "invalid --batch {batch}: sglsim simulates at most {} requests in one run (about 330 bytes each)",
                    limits::MAX_REQUESTS
                );
            }
            if args.num_requests.is_some() {
                bail!("--num-requests applies to --concurrency or --request-rate; a static batch sends --batch requests");
            }
            (Arrivals::AllAtOnce, batch, batch)
        }
    })
}

/// Reads a trace: CSV with a header, or JSON lines. Columns/keys: `arrival_s` (or `arrival_ms`, or
/// `timestamp` in ms as Mooncake traces write it), `isl` (or `input_length`), `osl` (or
/// `output_length`), optional `prefix_group` and `prefix_tokens`. A UTF-8 byte-order mark and
/// quoted fields (as spreadsheets write them) are read as CSV allows; lengths must be whole tokens.
pub fn read_trace(path: &Path) -> Result<Vec<RequestSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read trace {}", path.display()))?;
    parse_trace(
        &text,
        &path.display().to_string(),
        path.extension().is_some_and(|e| e == "jsonl" || e == "json"),
    )
}

/// Parses a trace's text (see [`read_trace`]); `name` names it in messages, `json` forces JSON lines.
pub fn parse_trace(text: &str, name: &str, json: bool) -> Result<Vec<RequestSpec>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = if json || text.trim_start().starts_with('{') {
        json_rows(text, name)?
    } else {
        csv_rows(text, name)?
    };
    if rows.len() as u64 > limits::MAX_REQUESTS {
        bail!(
            "{name}: {} requests; sglsim simulates at most {} in one run",
            rows.len(),
            limits::MAX_REQUESTS
        );
    }
    let mut requests = Vec::with_capacity(rows.len().min(limits::MAX_REQUESTS as usize));
    for (index, row) in rows.iter().enumerate() {
        requests.push(trace_request(row, name, index + 1)?);
    }
    if requests.is_empty() {
        bail!("{name}: the trace has no requests");
    }
    requests.sort_by(|a, b| a.arrival_s.unwrap_or(0.0).total_cmp(&b.arrival_s.unwrap_or(0.0)));
    Ok(requests)
}

type TraceRow = std::collections::BTreeMap<String, String>;

fn json_rows(text: &str, name: &str) -> Result<Vec<TraceRow>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{name} line {}: not JSON", index + 1))?;
            let object = value
                .as_object()
                .with_context(|| format!("{name} line {}: expected an object", index + 1))?;
            Ok(object
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
                .collect())
        })
        .collect()
}

fn csv_rows(text: &str, name: &str) -> Result<Vec<TraceRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{name}: cannot read the CSV header"))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if header.iter().all(|h| h.is_empty()) {
        bail!("{name}: trace is empty");
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{name} row {}: not a CSV row of {} fields", index + 1, header.len()))?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

/// One trace row as a request: numbers finite and non-negative, lengths whole tokens.
fn trace_request(row: &TraceRow, name: &str, line: usize) -> Result<RequestSpec> {
    let number = |keys: &[&str]| -> Result<Option<f64>> {
        for key in keys {
            if let Some(value) = row.get(*key).filter(|v| !v.is_empty() && v.as_str() != "null") {
                let parsed: f64 = value
                    .parse()
                    .with_context(|| format!("{name} row {line}: {key} = '{value}' is not a number"))?;
                if !(parsed.is_finite() && parsed >= 0.0) {
                    bail!("{name} row {line}: {key} = {value} must be a non-negative number");
                }
                return Ok(Some(parsed));
            }
        }
        Ok(None)
    };
    let tokens = |keys: &[&str]| -> Result<Option<u64>> {
        match number(keys)? {
            Some(value) if value.fract() != 0.0 || value > MAX_REQUEST_TOKENS as f64 => bail!(
                "{name} row {line}: {} = {value} must be a whole number of tokens, at most {MAX_REQUEST_TOKENS}",
                keys[0]
            ),
            other => Ok(other.map(|value| value as u64)),
        }
    };
    let columns = || row.keys().cloned().collect::<Vec<_>>().join(", ");
    let arrival_s = match (number(&["arrival_s"])?, number(&["arrival_ms", "timestamp"])?) {
        (Some(seconds), _) => seconds,
        (None, Some(ms)) => ms / 1e3,
        (None, None) => bail!(
            "{name} row {line}: needs arrival_s, arrival_ms or timestamp (ms); its columns are: {}",
            columns()
        ),
    };
    let isl = tokens(&["isl", "input_length", "input_tokens"])?
        .with_context(|| format!("{name} row {line}: needs isl (or input_length); its columns are: {}", columns()))?;
    let osl = tokens(&["osl", "output_length", "output_tokens"])?
        .with_context(|| format!("{name} row {line}: needs osl (or output_length); its columns are: {}", columns()))?;
    if isl == 0 || osl == 0 {
        bail!("{name} row {line}: isl and osl must be at least 1");
    }
    Ok(RequestSpec {
        arrival_s: Some(arrival_s),
        isl,
        osl,
        prefix_group: number(&["prefix_group"])?.map(|g| g as u64),
        shared_prefix_tokens: tokens(&["prefix_tokens"])?.unwrap_or(0),
        warmup: false,
    })
}
