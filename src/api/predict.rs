//! `predict`: one configuration at one load, simulated in-process.
//!
//! [`PredictRequest`] holds `sglsim predict`'s flags under their names (underscores for dashes), so
//! the CLI, the tests and the Python package describe a prediction the same way; [`predict`] loads
//! what it names, builds the engines, runs the scheduler twin and returns the report whose JSON is
//! `predict --json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::{apply_context_length, check_engine_sizes, check_engines, check_lengths, check_sla_ms, check_workload, shortfall};
use super::error::{invalid, Error, Result};
use super::load::{filled_note, load_coefficients, load_model_as, read_trace};
use super::report::{predict_report, DoesNotFitReport, EngineReport, PredictReport};
use super::server::ServerOptions;
use crate::model::gpu::{GpuCatalog, GIB};
use crate::model::mapping::ParallelMapping;
use crate::model::step::{EngineConfig, StepModel};
use crate::sim::cluster::{simulate, Deployment, IterationRecord, Role, SimOptions};
use crate::sim::deploy::{engine_spec, transfer_link};
use crate::sim::limits;
use crate::sim::metrics::Sla;
use crate::sim::workload::{generate_requests, steady_state_warmup, Arrivals, LengthDistribution, RequestSpec, WorkloadSpec};

/// A request rate: requests/s, or `"inf"` (every request at t = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestRate {
    /// Requests per second.
    PerSecond(f64),
    /// `inf`, or a number written as text.
    Text(String),
}

/// Everything `sglsim predict` takes, under its flag names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictRequest {
    /// Bundled model id, or a path to a Hugging Face config.json (or its folder).
    pub model: String,
    /// Weight format replacing the checkpoint's: bf16, fp8, fp8-block, fp4 (nvfp4), mxfp4.
    pub dtype: Option<String>,
    /// GPU type (see `sglsim gpus`).
    pub gpu: String,
    /// `--tp` of every engine (GPUs per engine).
    pub tp: u32,
    /// `--dp` (DP attention) of every engine.
    pub dp: u32,
    /// `--ep` of every engine.
    pub ep: u32,
    /// Input length, tokens (the maximum with `range_ratio`, the mean with `isl_std`).
    pub isl: Option<u64>,
    /// Output length, tokens.
    pub osl: Option<u64>,
    /// Static batch size, when no load is given.
    pub batch: Option<u64>,
    /// Coefficient profile instead of the defaults.
    pub profile: Option<PathBuf>,
    /// Closed loop of this many clients.
    pub concurrency: Option<u64>,
    /// Poisson arrivals at this rate, or `inf`.
    pub request_rate: Option<RequestRate>,
    /// Measured requests (default 10 × concurrency, or 1000 with a request rate).
    pub num_requests: Option<u64>,
    /// Warm-up requests (default: one staggered wave of `concurrency` in a closed loop, else 0).
    pub warmup_requests: Option<u64>,
    /// `bench_serving --random-range-ratio`.
    pub range_ratio: Option<f64>,
    /// AIPerf-style input-length standard deviation, tokens.
    pub isl_std: Option<f64>,
    /// AIPerf-style output-length standard deviation, tokens.
    pub osl_std: Option<f64>,
    /// A trace (CSV or JSONL) instead of a load and lengths.
    pub trace: Option<PathBuf>,
    /// Seed of lengths and arrivals.
    pub seed: u64,
    /// TTFT SLA, ms (adds goodput).
    pub ttft: Option<f64>,
    /// ITL SLA, ms (adds goodput).
    pub itl: Option<f64>,
    /// `agg` or `disagg`.
    pub mode: String,
    /// Aggregated engines behind the router.
    pub replicas: u32,
    /// Prefill engines' `--tp` (default `tp`).
    pub prefill_tp: Option<u32>,
    /// Prefill engines' `--dp`.
    pub prefill_dp: Option<u32>,
    /// Prefill engines' `--ep`.
    pub prefill_ep: Option<u32>,
    /// Prefill engines.
    pub prefill_workers: u32,
    /// Decode engines' `--tp` (default `tp`).
    pub decode_tp: Option<u32>,
    /// Decode engines' `--dp`.
    pub decode_dp: Option<u32>,
    /// Decode engines' `--ep`.
    pub decode_ep: Option<u32>,
    /// Decode engines.
    pub decode_workers: u32,
    /// Decode engines' `--chunked-prefill-size` when it differs from the prefill engines'.
    pub decode_chunked_prefill_size: Option<i64>,
    /// Decode engines' `--cuda-graph-max-bs` when it differs from the prefill engines'.
    pub decode_cuda_graph_max_bs: Option<u64>,
    /// Decode engines' `--mem-fraction-static` when it differs from the prefill engines'.
    pub decode_mem_fraction_static: Option<f64>,
    /// SGLang's `--context-length`: the longest request (input + output), tokens; default the
    /// model's `max_position_embeddings`.
    pub context_length: Option<u64>,
    /// Keep one record per engine iteration in [`Prediction::timeline`].
    pub timeline: bool,
    /// SGLang server flags.
    #[serde(flatten)]
    pub server: ServerOptions,
}

impl Default for PredictRequest {
    fn default() -> PredictRequest {
        PredictRequest {
            model: String::new(),
            dtype: None,
            gpu: String::new(),
            tp: 1,
            dp: 1,
            ep: 1,
            isl: None,
            osl: None,
            batch: None,
            profile: None,
            concurrency: None,
            request_rate: None,
            num_requests: None,
            warmup_requests: None,
            range_ratio: None,
            isl_std: None,
            osl_std: None,
            trace: None,
            seed: 0,
            ttft: None,
            itl: None,
            mode: "agg".into(),
            replicas: 1,
            prefill_tp: None,
            prefill_dp: None,
            prefill_ep: None,
            prefill_workers: 1,
            decode_tp: None,
            decode_dp: None,
            decode_ep: None,
            decode_workers: 1,
            decode_chunked_prefill_size: None,
            decode_cuda_graph_max_bs: None,
            decode_mem_fraction_static: None,
            context_length: None,
            timeline: false,
            server: ServerOptions::default(),
        }
    }
}

impl PredictRequest {
    /// Reads a request from a JSON object of flag names (underscores for dashes), refusing names
    /// `predict` does not take (the Python package's keyword arguments arrive this way).
    pub fn from_json(text: &str) -> Result<PredictRequest> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        refuse_unknown_keys(&value, &serde_json::to_value(PredictRequest::default())?, "predict")?;
        Ok(serde_json::from_value(value)?)
    }

    /// The length distribution asked for (see [`length_distribution`]).
    pub fn lengths(&self) -> LengthDistribution {
        length_distribution(self.range_ratio, self.isl_std, self.osl_std)
    }
}

/// The length distribution of the length flags: uniform with `--range-ratio`, normal with either
/// standard deviation (the other 0), else fixed.
pub fn length_distribution(range_ratio: Option<f64>, isl_std: Option<f64>, osl_std: Option<f64>) -> LengthDistribution {
    match (range_ratio, isl_std, osl_std) {
        (Some(range_ratio), _, _) => LengthDistribution::Uniform { range_ratio },
        (None, None, None) => LengthDistribution::Fixed,
        (None, isl_std, osl_std) => LengthDistribution::Normal {
            isl_std: isl_std.unwrap_or(0.0),
            osl_std: osl_std.unwrap_or(0.0),
        },
    }
}

/// An error naming the first key of `given` that `known` (a default request as JSON) lacks.
pub(crate) fn refuse_unknown_keys(given: &serde_json::Value, known: &serde_json::Value, command: &str) -> Result<()> {
    if let (Some(given), Some(known)) = (given.as_object(), known.as_object()) {
        if let Some(unknown) = given.keys().find(|k| !known.contains_key(*k)) {
            let names: Vec<&str> = known.keys().map(|k| k.as_str()).collect();
            return Err(invalid!("unknown argument '{unknown}': {command} takes {}", names.join(", ")));
        }
    }
    Ok(())
}

/// What [`predict`] returns.
#[derive(Debug)]
pub enum Prediction {
    /// The deployment fits and was simulated.
    Served {
        /// The report (`predict --json`).
        report: Box<PredictReport>,
        /// One record per engine iteration, when the request asked for them.
        timeline: Vec<IterationRecord>,
        /// Notes for the user (a profile that predates some coefficients).
        notes: Vec<String>,
    },
    /// An engine does not fit in GPU memory: the report says why (`predict --json`, exit 2).
    DoesNotFit(DoesNotFitReport),
}

/// Engines (step model, role, count), workload and options of a request.
struct Plan {
    engines: Vec<(StepModel, Role, u32)>,
    workload: Vec<RequestSpec>,
    options: SimOptions,
    offline_batch: bool,
    isl: u64,
    osl: u64,
    decode_batch: u64,
    notes: Vec<String>,
}

/// Builds one engine's step model from its `--tp/--dp/--ep` sizes (memory is checked later, so that
/// a configuration that does not fit can say by how much).
pub fn step_model(
    model: &crate::model::arch::ModelSpec,
    gpu: &crate::model::gpu::GpuSpec,
    sizes: (u32, u32, u32),
    server: &crate::model::server_args::ServerArgs,
    coefficients: &crate::model::coefficients::Coefficients,
) -> Result<StepModel> {
    check_engine_sizes(sizes)?;
    let mapping = ParallelMapping::with_redundant_experts(model, sizes.0, sizes.1, sizes.2, server.ep_num_redundant_experts)?;
    Ok(StepModel::new_unchecked(EngineConfig {
        model: model.clone(),
        gpu: gpu.clone(),
        mapping,
        server_args: server.clone(),
        coefficients: coefficients.clone(),
    })?)
}

fn plan(request: &PredictRequest) -> Result<Plan> {
    check_mode_flags(request)?;
    check_sla_ms("--ttft", request.ttft)?;
    check_sla_ms("--itl", request.itl)?;
    let mut model = load_model_as(&request.model, request.dtype.as_deref())?;
    apply_context_length(&mut model, request.context_length)?;
    let context_tokens = model.max_context_tokens;
    let catalog = GpuCatalog::builtin()?;
    let gpu = catalog.find(&request.gpu)?.clone();
    let (coefficients, filled) = load_coefficients(request.profile.as_deref())?;
    let notes: Vec<String> = request
        .profile
        .as_deref()
        .and_then(|path| filled_note(path, &filled))
        .into_iter()
        .collect();
    let server = request.server.server_args()?;
    let sizes = (request.tp, request.dp, request.ep);
    let engines = match request.mode.as_str() {
        "agg" => {
            check_engines("--replicas", u64::from(request.replicas))?;
            vec![(
                step_model(&model, &gpu, sizes, &server, &coefficients)?,
                Role::Aggregated,
                request.replicas,
            )]
        }
        "disagg" => {
            if request.prefill_workers == 0 || request.decode_workers == 0 {
                return Err(invalid!(
                    "invalid --prefill-workers/--decode-workers: disaggregated serving needs at least one of each"
                ));
            }
            let workers = u64::from(request.prefill_workers) + u64::from(request.decode_workers);
            check_engines("--prefill-workers + --decode-workers", workers)?;
            let prefill = (
                request.prefill_tp.unwrap_or(request.tp),
                request.prefill_dp.unwrap_or(request.dp),
                request.prefill_ep.unwrap_or(request.ep),
            );
            let decode = (
                request.decode_tp.unwrap_or(request.tp),
                request.decode_dp.unwrap_or(request.dp),
                request.decode_ep.unwrap_or(request.ep),
            );
            let mut decode_server = server.clone();
            if let Some(chunk) = request.decode_chunked_prefill_size {
                decode_server.chunked_prefill_size = Some(chunk);
            }
            if let Some(bs) = request.decode_cuda_graph_max_bs {
                decode_server.cuda_graph_max_bs = Some(bs);
            }
            if let Some(fraction) = request.decode_mem_fraction_static {
                decode_server.mem_fraction_static = Some(fraction);
            }
            let prefill_step = step_model(&model, &gpu, prefill, &server, &coefficients).map_err(|e| in_engine("prefill", e))?;
            let decode_step = step_model(&model, &gpu, decode, &decode_server, &coefficients).map_err(|e| in_engine("decode", e))?;
            vec![
                (prefill_step, Role::Prefill, request.prefill_workers),
                (decode_step, Role::Decode, request.decode_workers),
            ]
        }
        other => return Err(invalid!("invalid --mode '{other}': agg or disagg")),
    };
    let sla = (request.ttft.is_some() || request.itl.is_some()).then_some(Sla {
        ttft_ms: request.ttft,
        itl_ms: request.itl,
    });
    let options = |arrivals| SimOptions {
        arrivals,
        sla,
        record_timeline: request.timeline,
    };
    if let Some(trace) = &request.trace {
        let workload = read_trace(trace)?;
        check_workload(&format!("trace {}", trace.display()), &workload, context_tokens)?;
        let n = workload.len() as f64;
        let isl = (workload.iter().map(|r| r.isl as f64).sum::<f64>() / n).round() as u64;
        let osl = (workload.iter().map(|r| r.osl as f64).sum::<f64>() / n).round() as u64;
        return Ok(Plan {
            engines,
            workload,
            options: options(Arrivals::Trace),
            isl,
            osl,
            decode_batch: 1,
            offline_batch: false,
            notes,
        });
    }
    let (Some(isl), Some(osl)) = (request.isl, request.osl) else {
        return Err(invalid!("--isl and --osl are required (or give --trace FILE)"));
    };
    check_lengths(isl, osl, context_tokens)?;
    let (arrivals, n_requests, decode_batch) = load(request)?;
    // The default warm-up wave leaves room for the measured requests within the run's bound.
    let n_warmup = request
        .warmup_requests
        .unwrap_or_else(|| steady_state_warmup(arrivals).min(limits::MAX_REQUESTS.saturating_sub(n_requests)));
    limits::total_requests(n_requests, n_warmup)?;
    if let Arrivals::Poisson { rate_per_s } = arrivals {
        limits::check_poisson_span(rate_per_s, n_requests.saturating_add(n_warmup))?;
    }
    let spec = WorkloadSpec {
        isl,
        osl,
        lengths: request.lengths(),
        arrivals,
        n_requests,
        n_warmup,
        seed: request.seed,
    };
    let workload = generate_requests(&spec)?;
    check_workload("the drawn workload", &workload, context_tokens)?;
    Ok(Plan {
        engines,
        workload,
        options: options(arrivals),
        isl,
        osl,
        decode_batch,
        offline_batch: request.concurrency.is_none() && request.request_rate.is_none(),
        notes,
    })
}

/// Arrivals, measured requests and decode batch per engine of the load asked for.
fn load(request: &PredictRequest) -> Result<(Arrivals, u64, u64)> {
    Ok(match (request.concurrency, &request.request_rate) {
        (Some(_), Some(_)) => return Err(invalid!("give --concurrency or --request-rate, not both")),
        (Some(concurrency), None) => {
            limits::check_concurrency("--concurrency", concurrency)?;
            let n_requests = request
                .num_requests
                .unwrap_or_else(|| limits::default_closed_loop_requests(concurrency));
            (Arrivals::Closed { concurrency }, n_requests, concurrency)
        }
        (None, Some(rate)) => {
            let text = match rate {
                RequestRate::PerSecond(value) => value.to_string(),
                RequestRate::Text(text) => text.clone(),
            };
            let arrivals = match text.trim().to_ascii_lowercase().as_str() {
                "inf" | "infinity" => Arrivals::AllAtOnce,
                lower => match lower.parse::<f64>() {
                    Ok(rate_per_s) if rate_per_s > 0.0 && rate_per_s.is_finite() => Arrivals::Poisson { rate_per_s },
                    _ => return Err(invalid!("invalid --request-rate {text}: a positive number of requests/s, or inf")),
                },
            };
            (arrivals, request.num_requests.unwrap_or(1000), 1)
        }
        (None, None) => {
            let batch = request.batch.unwrap_or(1);
            if batch == 0 {
                return Err(invalid!("invalid --batch 0: at least 1"));
            }
            if batch > limits::MAX_REQUESTS {
                return Err(invalid!(
                    "invalid --batch {batch}: sglsim simulates at most {} requests in one run (about 330 bytes each)",
                    limits::MAX_REQUESTS
                ));
            }
            if request.num_requests.is_some() {
                return Err(invalid!(
                    "--num-requests applies to --concurrency or --request-rate; a static batch sends --batch requests"
                ));
            }
            (Arrivals::AllAtOnce, batch, batch)
        }
    })
}

/// Predicts one configuration at one load: what `sglsim predict` prints.
pub fn predict(request: &PredictRequest) -> Result<Prediction> {
    let plan = plan(request)?;
    let engines: Vec<EngineReport> = plan
        .engines
        .iter()
        .map(|(step, role, count)| EngineReport::new(step, *role, *count, None))
        .collect();
    for (step, role, _) in &plan.engines {
        if let Some(reason) = shortfall(step) {
            return Ok(Prediction::DoesNotFit(DoesNotFitReport {
                fits: false,
                reason: format!("{} engine {}: {reason}", role_name(*role), step.mapping()),
                weights_gb_per_gpu: step.memory().weights_bytes_per_gpu / GIB,
                engines,
            }));
        }
    }
    let output = simulate(&deployment(&plan), &plan.workload, plan.options)?;
    let prefill_step = &plan.engines[0].0;
    let decode_step = &plan.engines.last().expect("at least one engine").0;
    let prefill_ms = prefill_step.prefill_s(plan.isl) * 1e3;
    let decode_batch = plan.decode_batch.min(decode_step.memory().max_running_requests).max(1);
    let per_rank_batch = decode_batch.div_ceil(u64::from(decode_step.mapping().dp()));
    let decode_step_ms = decode_step.decode_step_s(per_rank_batch, plan.isl + plan.osl / 2).total_s * 1e3;
    let report = predict_report(
        &request.model,
        &prefill_step.gpu().name,
        engines,
        prefill_ms,
        decode_step_ms,
        &output,
    );
    Ok(Prediction::Served {
        report: Box::new(report),
        timeline: output.timeline,
        notes: plan.notes,
    })
}

/// An engine's error, said as the engine's (`prefill engine: ...`), keeping a model error as the source.
fn in_engine(role: &'static str, error: Error) -> Error {
    match error {
        Error::Model(source) => Error::Engine { role, source },
        other => invalid!("{role} engine: {}", other.chain()),
    }
}

/// The engine flags of the other mode are refused rather than ignored.
fn check_mode_flags(request: &PredictRequest) -> Result<()> {
    let disagg_flags = [
        ("--prefill-tp", request.prefill_tp.is_some()),
        ("--prefill-dp", request.prefill_dp.is_some()),
        ("--prefill-ep", request.prefill_ep.is_some()),
        ("--decode-tp", request.decode_tp.is_some()),
        ("--decode-dp", request.decode_dp.is_some()),
        ("--decode-ep", request.decode_ep.is_some()),
        ("--prefill-workers", request.prefill_workers != 1),
        ("--decode-workers", request.decode_workers != 1),
        ("--decode-chunked-prefill-size", request.decode_chunked_prefill_size.is_some()),
        ("--decode-cuda-graph-max-bs", request.decode_cuda_graph_max_bs.is_some()),
        ("--decode-mem-fraction-static", request.decode_mem_fraction_static.is_some()),
    ];
    match request.mode.as_str() {
        "agg" => {
            let given: Vec<&str> = disagg_flags.iter().filter(|(_, given)| *given).map(|(flag, _)| *flag).collect();
            if !given.is_empty() {
                return Err(invalid!(
                    "{} set{} disaggregated engines, which --mode agg does not have: add --mode disagg, or use --tp/--dp/--ep and --replicas",
                    given.join(", "),
                    if given.len() == 1 { "s" } else { "" }
                ));
            }
        }
        "disagg" if request.replicas != 1 => {
            return Err(invalid!(
                "--replicas {} sets aggregated engines; with --mode disagg use --prefill-workers and --decode-workers",
                request.replicas
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The requests a prediction would simulate (warm-up first), checked, without simulating them.
pub fn workload(request: &PredictRequest) -> Result<Vec<RequestSpec>> {
    Ok(plan(request)?.workload)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Aggregated => "aggregated",
        Role::Prefill => "prefill",
        Role::Decode => "decode",
    }
}

/// The simulator's deployment of a plan: every engine, and the KV link when disaggregated.
fn deployment(plan: &Plan) -> Deployment<'_> {
    let mut specs = Vec::new();
    for (step, role, count) in &plan.engines {
        for _ in 0..*count {
            let mut spec = engine_spec(step, *role);
            if plan.offline_batch {
                spec.frontend_request_s = 0.0;
            }
            specs.push(spec);
        }
    }
    let transfer = match (
        plan.engines.iter().find(|e| e.1 == Role::Prefill),
        plan.engines.iter().find(|e| e.1 == Role::Decode),
    ) {
        (Some((prefill, _, n_prefill)), Some((decode, _, n_decode))) => Some(transfer_link(
            prefill.gpu(),
            prefill.coefficients(),
            prefill.mapping().n_gpus() * n_prefill,
            decode.mapping().n_gpus() * n_decode,
        )),
        _ => None,
    };
    Deployment { engines: specs, transfer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_uniform_normal_or_fixed() {
        let request = |range_ratio, isl_std, osl_std| PredictRequest {
            range_ratio,
            isl_std,
            osl_std,
            ..PredictRequest::default()
        };
        assert!(matches!(request(None, None, None).lengths(), LengthDistribution::Fixed));
        assert!(matches!(
            request(Some(0.5), None, None).lengths(),
            LengthDistribution::Uniform { range_ratio } if range_ratio == 0.5
        ));
        assert!(matches!(
            request(None, None, Some(3.0)).lengths(),
            LengthDistribution::Normal { isl_std, osl_std } if isl_std == 0.0 && osl_std == 3.0
        ));
    }

    #[test]
    fn json_requests_refuse_unknown_names_and_take_rates_as_numbers_or_text() {
        let error = PredictRequest::from_json(r#"{"model": "m", "concurency": 4}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("unknown argument 'concurency': predict takes "), "{error}");
        let request = PredictRequest::from_json(r#"{"model": "m", "request_rate": 4, "kv_cache_dtype": "fp8"}"#).unwrap();
        assert_eq!(request.request_rate, Some(RequestRate::PerSecond(4.0)));
        assert_eq!(request.server.kv_cache_dtype, "fp8");
        let request = PredictRequest::from_json(r#"{"request_rate": "inf"}"#).unwrap();
        assert_eq!(request.request_rate, Some(RequestRate::Text("inf".into())));
    }
}
