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
use sglsim::sim::metrics::Sla;
use sglsim::sim::workload::{generate_requests, steady_state_warmup, Arrivals, RequestSpec, WorkloadSpec};

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
            Some(text) => Some(
                SglangVersion::parse(text)
                    .with_context(|| format!("invalid --sglang-version '{text}': expected a release such as 0.4.5 or 0.5.5"))?,
            ),
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

/// Builds one engine's step model; a configuration that does not fit is an error naming GB needed and available.
pub fn step_model(
    model: &ModelSpec,
    gpu: &GpuSpec,
    sizes: MappingFlags,
    server: &ServerArgs,
    coefficients: &Coefficients,
) -> Result<StepModel> {
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
    let model = load_model_as(&args.model.model, args.model.dtype.as_deref())?;
    let catalog = GpuCatalog::builtin()?;
    let gpu = catalog.find(&args.gpu)?.clone();
    let coefficients = load_coefficients(args.profile.as_deref())?;
    let server = server_args(&args.server)?;
    let engine = |sizes| step_model(&model, &gpu, sizes, &server, &coefficients);
    let engines = match args.mode {
        Mode::Agg => {
            if args.replicas == 0 {
                bail!("invalid --replicas 0: at least 1");
            }
            vec![(engine(args.mapping)?, Role::Aggregated, args.replicas)]
        }
        Mode::Disagg => {
            if args.prefill_workers == 0 || args.decode_workers == 0 {
                bail!("invalid --prefill-workers/--decode-workers: disaggregated serving needs at least one of each");
            }
            let prefill = args.mapping.with(args.prefill_tp, args.prefill_dp, args.prefill_ep);
            let decode = args.mapping.with(args.decode_tp, args.decode_dp, args.decode_ep);
            let mut decode_server = server.clone();
            if let Some(chunk) = args.decode_chunked_prefill_size {
                decode_server.chunked_prefill_size = Some(chunk);
            }
            let decode_step = step_model(&model, &gpu, decode, &decode_server, &coefficients).context("decode engine")?;
            vec![
                (engine(prefill).context("prefill engine")?, Role::Prefill, args.prefill_workers),
                (decode_step, Role::Decode, args.decode_workers),
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
    let (arrivals, n_requests, decode_batch) = match (args.concurrency, &args.request_rate) {
        (Some(concurrency), _) => (
            Arrivals::Closed { concurrency },
            args.num_requests.unwrap_or(10 * concurrency),
            concurrency,
        ),
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
            (Arrivals::AllAtOnce, batch, batch)
        }
    };
    let spec = WorkloadSpec {
        isl,
        osl,
        lengths,
        arrivals,
        n_requests,
        n_warmup: args.warmup_requests.unwrap_or(steady_state_warmup(arrivals)),
        seed: args.seed,
    };
    let workload = generate_requests(&spec)?;
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

/// Reads a trace: CSV with a header, or JSON lines. Columns/keys: `arrival_s` (or `arrival_ms`, or
/// `timestamp` in ms as Mooncake traces write it), `isl` (or `input_length`), `osl` (or
/// `output_length`), optional `prefix_group` and `prefix_tokens`.
pub fn read_trace(path: &Path) -> Result<Vec<RequestSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read trace {}", path.display()))?;
    let rows: Vec<std::collections::BTreeMap<String, String>> =
        if path.extension().is_some_and(|e| e == "jsonl" || e == "json") || text.trim_start().starts_with('{') {
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(index, line)| {
                    let value: serde_json::Value =
                        serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", path.display(), index + 1))?;
                    let object = value
                        .as_object()
                        .with_context(|| format!("{} line {}: expected an object", path.display(), index + 1))?;
                    Ok(object
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string()))
                        .collect())
                })
                .collect::<Result<_>>()?
        } else {
            let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
            let header: Vec<String> = lines
                .next()
                .context("trace is empty")?
                .split(',')
                .map(|h| h.trim().to_string())
                .collect();
            lines
                .map(|line| header.iter().cloned().zip(line.split(',').map(|v| v.trim().to_string())).collect())
                .collect()
        };
    let mut requests = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let line = index + 1;
        let number = |keys: &[&str]| -> Result<Option<f64>> {
            for key in keys {
                if let Some(value) = row.get(*key).filter(|v| !v.is_empty() && v.as_str() != "null") {
                    let parsed: f64 = value
                        .parse()
                        .with_context(|| format!("{} row {line}: {key} = '{value}' is not a number", path.display()))?;
                    if !(parsed.is_finite() && parsed >= 0.0) {
                        bail!("{} row {line}: {key} = {value} must be a non-negative number", path.display());
                    }
                    return Ok(Some(parsed));
                }
            }
            Ok(None)
        };
        let arrival_s = match (number(&["arrival_s"])?, number(&["arrival_ms", "timestamp"])?) {
            (Some(seconds), _) => seconds,
            (None, Some(ms)) => ms / 1e3,
            (None, None) => bail!("{} row {line}: needs arrival_s, arrival_ms or timestamp (ms)", path.display()),
        };
        let isl = number(&["isl", "input_length", "input_tokens"])?
            .with_context(|| format!("{} row {line}: needs isl (or input_length)", path.display()))? as u64;
        let osl = number(&["osl", "output_length", "output_tokens"])?
            .with_context(|| format!("{} row {line}: needs osl (or output_length)", path.display()))? as u64;
        if isl == 0 || osl == 0 {
            bail!("{} row {line}: isl and osl must be at least 1", path.display());
        }
        let prefix_group = number(&["prefix_group"])?.map(|g| g as u64);
        let shared_prefix_tokens = number(&["prefix_tokens"])?.map(|t| t as u64).unwrap_or(0);
        requests.push(RequestSpec {
            arrival_s: Some(arrival_s),
            isl,
            osl,
            prefix_group,
            shared_prefix_tokens,
            warmup: false,
        });
    }
    if requests.is_empty() {
        bail!("{}: the trace has no requests", path.display());
    }
    requests.sort_by(|a, b| a.arrival_s.unwrap_or(0.0).total_cmp(&b.arrival_s.unwrap_or(0.0)));
    Ok(requests)
}
