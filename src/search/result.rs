//! What a search returns: evaluated points, the Pareto front, recommendations with launch commands.
//!
//! Every float is rounded to 0.001 so that reports are stable; [`SearchResult`] serialises to the
//! JSON contract of `sglsim search --json` (`pareto`, `top`, `evaluated`; the CLI adds `elapsed_ms`).

use serde::Serialize;

use super::config::SearchConfig;
use super::space::{Candidate, EngineChoice, Layout, SkippedGpu, UnitLoad};
use crate::model::gpu::GIB;
use crate::model::server_args::{MoeA2aBackend, ResolvedServerArgs};
use crate::model::step::StepModel;
use crate::sim::cluster::Role;
use crate::sim::workload::LengthDistribution;

/// One engine kind of a deployment, with its SGLang launch command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineDesc {
    /// aggregated, prefill or decode.
    pub role: Role,
    /// Engines of this kind in the whole deployment.
    pub count: u32,
    /// Mapping, for example `tp8-dp8-ep8`.
    pub mapping: String,
    /// TP, TEP, DEP, ...
    pub mapping_kind: &'static str,
    /// GPUs per engine.
    pub gpus_per_engine: u32,
    /// Weights per GPU, GB (GiB, as SGLang logs them).
    pub weights_gb_per_gpu: f64,
    /// KV tokens of one engine.
    pub kv_capacity_tokens: u64,
    /// `--max-running-requests` in effect for one engine.
    pub max_running_requests: u64,
    /// `--mem-fraction-static`.
    pub mem_fraction_static: f64,
    /// `--chunked-prefill-size` (whole engine; null: off).
    pub chunked_prefill_size: Option<u64>,
    /// `--cuda-graph-max-bs`.
    pub cuda_graph_max_bs: u64,
    /// The SGLang launch command of one engine.
    pub launch: String,
}

/// One evaluated configuration: a deployment at a load, as the simulator measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Unique, human-readable name of the configuration and load.
    pub label: String,
    /// `agg` or `disagg`.
    pub mode: &'static str,
    /// GPU type.
    pub gpu: String,
    /// Mapping(s): `tp4`, or `2P tp2 + 3D tp4` for one xPyD unit.
    pub mapping: String,
    /// Prefill and decode engines of the whole deployment, for example `4P6D` (disaggregated only).
    pub xpyd: Option<String>,
    /// Units deployed (aggregated engines, or xPyD units).
    pub replicas: u32,
    /// GPUs of the whole deployment.
    pub n_gpus: u32,
    /// Clients of the whole deployment (closed loop).
    pub concurrency: Option<u64>,
    /// Requests/s offered to the whole deployment (open loop).
    pub request_rate: Option<f64>,
    /// TTFT at the SLA percentile, ms.
    pub ttft_ms: f64,
    /// ITL (per-request TPOT) at the SLA percentile, ms.
    pub itl_ms: f64,
    /// Output tokens/s per GPU.
    pub output_tok_s_per_gpu: f64,
    /// Output tokens/s per user: 1000 / ITL at the percentile.
    pub tok_s_per_user: f64,
    /// Completed requests/s of the whole deployment.
    pub request_s: f64,
    /// Whether TTFT and ITL at the percentile meet the SLA.
    pub feasible: bool,
    /// Whether no evaluated point beats it on both tokens/s per GPU and tokens/s per user.
    pub pareto: bool,
    /// The analytic screen's estimate (mean TTFT, mean ITL, tokens/s per GPU).
    pub screen: ScreenEstimate,
    /// The engines and how to launch them.
    pub engines: Vec<EngineDesc>,
    /// What the whole `--total-gpus` budget serves with copies of this point's unit (null without
    /// `--total-gpus`).
    pub budget: Option<BudgetReport>,
    /// The `sglsim predict` command that simulates this point's whole deployment with the same
    /// engines, workload, warm-up and seed; its TTFT and ITL at the SLA percentile reproduce the row's.
    pub predict_command: String,
    /// GPU, mode and mapping, without knobs or load: recommendations are distinct in it.
    #[serde(skip)]
    pub configuration: String,
    #[serde(skip)]
    pub(crate) layout: Option<Layout>,
}

/// What `--total-gpus` serves when filled with copies of a point's unit (one aggregated engine or
/// one xPyD unit), each at the load the point simulated per unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetReport {
    /// `--total-gpus`.
    pub total_gpus: u32,
    /// GPUs of one unit.
    pub gpus_per_unit: u32,
    /// Units that fit: `total_gpus / gpus_per_unit`, rounded down.
    pub units: u32,
    /// GPUs no unit uses.
    pub idle_gpus: u32,
    /// Output tokens/s of all the units.
    pub output_tok_s: f64,
    /// Completed requests/s of all the units.
    pub request_s: f64,
}

impl BudgetReport {
    /// Fills `total_gpus` with units of `gpus_per_unit`, each serving `unit_output_tok_s` and `unit_request_s`.
    pub fn new(total_gpus: u32, gpus_per_unit: u32, unit_output_tok_s: f64, unit_request_s: f64) -> BudgetReport {
        let units = total_gpus / gpus_per_unit.max(1);
        BudgetReport {
            total_gpus,
            gpus_per_unit,
            units,
            idle_gpus: total_gpus - units * gpus_per_unit,
            output_tok_s: round3(unit_output_tok_s * f64::from(units)),
            request_s: round3(unit_request_s * f64::from(units)),
        }
    }
}

/// The screen's estimate of a point, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScreenEstimate {
    /// Mean TTFT, ms.
    pub ttft_ms: f64,
    /// Mean ITL, ms.
    pub itl_ms: f64,
    /// Output tokens/s per GPU.
    pub output_tok_s_per_gpu: f64,
}

/// When nothing meets the SLA: which limit binds and by how much.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// `TTFT` or `ITL`.
    pub constraint: &'static str,
    /// The nearest configuration's value at the percentile, ms.
    pub value_ms: f64,
    /// The limit, ms.
    pub limit_ms: f64,
    /// How far above the limit, percent.
    pub excess_percent: f64,
    /// The lowest TTFT any evaluated configuration reached, ms.
    pub lowest_ttft_ms: f64,
    /// The lowest ITL any evaluated configuration reached, ms.
    pub lowest_itl_ms: f64,
}

/// The SLA as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    /// TTFT limit, ms.
    pub ttft_ms: f64,
    /// ITL limit, ms.
    pub itl_ms: f64,
    /// `mean`, `p50`, `p90` or `p99`.
    pub percentile: &'static str,
}

/// Everything a search found.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    /// The model.
    pub model: String,
    /// GPU types searched (after skipping those that cannot hold the model).
    pub gpus: Vec<String>,
    /// The SLA.
    pub sla: SlaReport,
    /// The Pareto front of evaluated points, by ascending tokens/s per user.
    pub pareto: Vec<Point>,
    /// The best configurations inside the SLA, by tokens/s per GPU (one load per configuration).
    pub top: Vec<Point>,
    /// The best configuration inside the SLA of each GPU type that has one, in `--gpu` order.
    pub best_per_gpu: Vec<Point>,
    /// When nothing meets the SLA, the configurations nearest to it.
    pub nearest: Vec<Point>,
    /// When nothing meets the SLA, the limit that binds.
    pub binding: Option<Binding>,
    /// Configurations the serving simulator evaluated.
    pub evaluated: usize,
    /// Configurations the analytic screen costed.
    pub screened: usize,
    /// Evaluated configurations inside the SLA.
    pub feasible: usize,
    /// GPU types skipped, and why.
    pub skipped_gpus: Vec<SkippedGpu>,
    /// Every evaluated point, best tokens/s per GPU first.
    #[serde(skip)]
    pub points: Vec<Point>,
    #[serde(skip)]
    pub(crate) engines: Vec<EngineChoice>,
}

impl SearchResult {
    /// Whether some evaluated configuration meets the SLA.
    pub fn has_feasible(&self) -> bool {
        self.feasible > 0
    }

    /// The configuration to profile: the best recommendation, else the nearest one.
    pub fn best(&self) -> Option<&Point> {
        self.top.first().or(self.nearest.first())
    }

    /// The cost models of a point's prefill and decode engines (the same engine when aggregated).
    pub fn step_models(&self, point: &Point) -> Option<(&StepModel, &StepModel)> {
        match point.layout? {
            Layout::Agg { engine } => Some((&self.engines[engine].step, &self.engines[engine].step)),
            Layout::Disagg { prefill, decode, .. } => Some((&self.engines[prefill].step, &self.engines[decode].step)),
        }
    }
}

pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The SGLang launch command of one engine.
pub fn launch_command(step: &StepModel, role: Role, max_running_cap: Option<u64>) -> String {
    let memory = step.memory();
    let args = step.args();
    let dp = u64::from(step.mapping().dp());
    let mut launch = format!(
        "python -m sglang.launch_server --model-path {} {} --mem-fraction-static {:.3}",
        step.model().name,
        step.mapping().sglang_flags(),
        memory.mem_fraction_static
    );
    if let Some(chunk) = args.chunked_prefill_size {
        launch.push_str(&format!(" --chunked-prefill-size {}", chunk * dp));
    }
    launch.push_str(&format!(" --cuda-graph-max-bs {}", args.cuda_graph_max_bs));
    if let Some(cap) = max_running_cap {
        launch.push_str(&format!(" --max-running-requests {cap}"));
    }
    launch.push_str(&large_ep_flags(args));
    match role {
        Role::Prefill => launch.push_str(" --disaggregation-mode prefill"),
        Role::Decode => launch.push_str(" --disaggregation-mode decode"),
        Role::Aggregated => {}
    }
    launch
}

/// `predict`'s flags for the SGLang knobs the search set on an engine (chunk size, CUDA-graph batch
/// cap, a raised memory fraction); what it left at SGLang's default is left out, so that `predict`
/// derives the same default.
fn predict_knob_flags(engine: &EngineChoice) -> String {
    let mut flags = String::new();
    if let Some(chunk) = engine.chunked_prefill_size_flag {
        flags.push_str(&format!(" --chunked-prefill-size {chunk}"));
    }
    if let Some(bs) = engine.cuda_graph_max_bs_flag {
        flags.push_str(&format!(" --cuda-graph-max-bs {bs}"));
    }
    if let Some(fraction) = engine.mem_fraction_static_flag {
        flags.push_str(&format!(" --mem-fraction-static {fraction}"));
    }
    flags
}

/// `predict`'s `--decode-*` flags for the decode engine's knobs where they differ from the prefill
/// engine's (`predict` applies the shared flags to both roles); a knob the prefill engine set and the
/// decode engine left at its default is given as that default, resolved.
fn predict_decode_knob_flags(prefill: &EngineChoice, decode: &EngineChoice) -> String {
    let args = decode.step.args();
    let dp = u64::from(decode.step.mapping().dp());
    let mut flags = String::new();
    if decode.chunked_prefill_size_flag != prefill.chunked_prefill_size_flag {
        let chunk = decode
            .chunked_prefill_size_flag
            .unwrap_or(args.chunked_prefill_size.map_or(-1, |c| (c * dp) as i64));
        flags.push_str(&format!(" --decode-chunked-prefill-size {chunk}"));
    }
    if decode.cuda_graph_max_bs_flag != prefill.cuda_graph_max_bs_flag {
        let bs = decode.cuda_graph_max_bs_flag.unwrap_or(args.cuda_graph_max_bs);
        flags.push_str(&format!(" --decode-cuda-graph-max-bs {bs}"));
    }
    if decode.mem_fraction_static_flag != prefill.mem_fraction_static_flag {
        let fraction = decode.mem_fraction_static_flag.unwrap_or(args.mem_fraction_static);
        flags.push_str(&format!(" --decode-mem-fraction-static {fraction}"));
    }
    flags
}

/// The flags of SGLang's large-scale EP layout an engine runs with (the same spelling for SGLang's
/// launch command and for `predict`).
fn large_ep_flags(args: &ResolvedServerArgs) -> String {
    let mut flags = String::new();
    if args.moe_a2a_backend == MoeA2aBackend::Deepep {
        flags.push_str(" --moe-a2a-backend deepep");
    }
    if args.moe_dense_tp1 {
        flags.push_str(" --moe-dense-tp-size 1");
    }
    if args.enable_dp_lm_head {
        flags.push_str(" --enable-dp-lm-head");
    }
    if args.two_batch_overlap {
        flags.push_str(" --enable-two-batch-overlap");
    }
    flags
}

/// `predict`'s `--tp/--dp/--ep` flags of a mapping, with `prefix` (`""`, `"prefill-"`, `"decode-"`).
fn predict_mapping_flags(step: &StepModel, prefix: &str) -> String {
    let mapping = step.mapping();
    let mut flags = format!(" --{prefix}tp {}", mapping.tp());
    if mapping.dp() > 1 {
        flags.push_str(&format!(" --{prefix}dp {}", mapping.dp()));
    }
    if mapping.ep() > 1 {
        flags.push_str(&format!(" --{prefix}ep {}", mapping.ep()));
    }
    flags
}

/// The `sglsim predict` command that reproduces a candidate's simulation for its whole deployment:
/// every replica, `replicas ×` the unit's clients or rate, requests and warm-up requests.
pub(crate) fn predict_command(
    candidate: &Candidate,
    engines: &[EngineChoice],
    config: &SearchConfig,
    n_requests: u64,
    n_warmup: u64,
) -> String {
    let replicas = u64::from(candidate.replicas);
    let workload = &config.workload;
    let gpu_idx = match candidate.layout {
        Layout::Agg { engine } | Layout::Disagg { prefill: engine, .. } => engines[engine].gpu_idx,
    };
    let mut command = format!(
        "sglsim predict {} --gpu {} --isl {} --osl {}",
        config.model_flags, config.gpus[gpu_idx].name, workload.isl, workload.osl
    );
    match workload.lengths {
        LengthDistribution::Fixed => {}
        LengthDistribution::Uniform { range_ratio } => command.push_str(&format!(" --range-ratio {range_ratio}")),
        LengthDistribution::Normal { isl_std, osl_std } => command.push_str(&format!(" --isl-std {isl_std} --osl-std {osl_std}")),
    }
    match candidate.unit_load {
        UnitLoad::Concurrency(clients) => command.push_str(&format!(" --concurrency {}", clients * replicas)),
        UnitLoad::Rate(rate_per_s) => command.push_str(&format!(" --request-rate {}", rate_per_s * replicas as f64)),
    }
    command.push_str(&format!(
        " --num-requests {} --warmup-requests {} --seed {}",
        n_requests * replicas,
        n_warmup * replicas,
        workload.seed
    ));
    if let Some(kv) = config.server_args.kv_cache_dtype {
        command.push_str(&format!(" --kv-cache-dtype {kv}"));
    }
    if let Some(cap) = candidate.max_running_cap {
        command.push_str(&format!(" --max-running-requests {cap}"));
    }
    match candidate.layout {
        Layout::Agg { engine } => {
            let engine = &engines[engine];
            command.push_str(&predict_mapping_flags(&engine.step, ""));
            if replicas > 1 {
                command.push_str(&format!(" --replicas {replicas}"));
            }
            command.push_str(&predict_knob_flags(engine));
            command.push_str(&large_ep_flags(engine.step.args()));
        }
        Layout::Disagg {
            prefill,
            decode,
            n_prefill,
            n_decode,
        } => {
            let (prefill, decode) = (&engines[prefill], &engines[decode]);
            command.push_str(" --mode disagg");
            command.push_str(&predict_mapping_flags(&prefill.step, "prefill-"));
            command.push_str(&format!(" --prefill-workers {}", u64::from(n_prefill) * replicas));
            command.push_str(&predict_mapping_flags(&decode.step, "decode-"));
            command.push_str(&format!(" --decode-workers {}", u64::from(n_decode) * replicas));
            command.push_str(&predict_knob_flags(prefill));
            command.push_str(&predict_decode_knob_flags(prefill, decode));
            command.push_str(&large_ep_flags(decode.step.args()));
        }
    }
    command
}

fn engine_desc(engine: &EngineChoice, role: Role, count: u32, cap: Option<u64>) -> EngineDesc {
    EngineDesc::new(&engine.step, role, count, cap)
}

impl EngineDesc {
    /// Describes `count` engines of one configuration in `role`, with `--max-running-requests cap` if given.
    pub fn new(step: &StepModel, role: Role, count: u32, cap: Option<u64>) -> EngineDesc {
        let memory = step.memory();
        let dp = u64::from(step.mapping().dp());
        let max_running = match cap {
            Some(cap) => memory.max_running_requests.min((cap / dp).max(1) * dp),
            None => memory.max_running_requests,
        };
        EngineDesc {
            role,
            count,
            mapping: step.mapping().to_string(),
            mapping_kind: step.mapping().kind(),
            gpus_per_engine: step.mapping().n_gpus(),
            weights_gb_per_gpu: round3(memory.weights_bytes_per_gpu / GIB),
            kv_capacity_tokens: memory.kv_capacity_tokens,
            max_running_requests: max_running,
            mem_fraction_static: round3(memory.mem_fraction_static),
            chunked_prefill_size: step.args().chunked_prefill_size.map(|chunk| chunk * dp),
            cuda_graph_max_bs: step.args().cuda_graph_max_bs,
            launch: launch_command(step, role, cap),
        }
    }
}

fn knobs(engine: &EngineChoice) -> String {
    match engine.chunked_prefill_size_flag {
        Some(chunk) => format!(" chunk {chunk}"),
        None => String::new(),
    }
}

/// The engines of a candidate's whole deployment.
pub(crate) fn engine_descs(candidate: &Candidate, engines: &[EngineChoice]) -> Vec<EngineDesc> {
    let cap = candidate.max_running_cap;
    match candidate.layout {
        Layout::Agg { engine } => vec![engine_desc(&engines[engine], Role::Aggregated, candidate.replicas, cap)],
        Layout::Disagg {
            prefill,
            decode,
            n_prefill,
            n_decode,
        } => vec![
            engine_desc(&engines[prefill], Role::Prefill, n_prefill * candidate.replicas, None),
            engine_desc(&engines[decode], Role::Decode, n_decode * candidate.replicas, cap),
        ],
    }
}

/// Names a candidate: (GPU, mode and mapping; full label with knobs and load; mapping column).
pub(crate) fn names(candidate: &Candidate, engines: &[EngineChoice], config: &SearchConfig) -> (String, String, String) {
    let cap = match candidate.max_running_cap {
        Some(cap) => format!(" max-running {cap}"),
        None => String::new(),
    };
    let (knobbed, mapping) = match candidate.layout {
        Layout::Agg { engine } => {
            let engine = &engines[engine];
            let gpu = &config.gpus[engine.gpu_idx].name;
            let mapping = engine.step.mapping().to_string();
            (format!("{gpu} agg {mapping}{}{cap}", knobs(engine)), mapping)
        }
        Layout::Disagg {
            prefill,
            decode,
            n_prefill,
            n_decode,
        } => {
            let (prefill, decode) = (&engines[prefill], &engines[decode]);
            let gpu = &config.gpus[prefill.gpu_idx].name;
            let mapping = format!("{n_prefill}P {} + {n_decode}D {}", prefill.step.mapping(), decode.step.mapping());
            (
                format!(
                    "{gpu} disagg {n_prefill}P {}{} + {n_decode}D {}{cap}",
                    prefill.step.mapping(),
                    knobs(prefill),
                    decode.step.mapping()
                ),
                mapping,
            )
        }
    };
    let load = match candidate.unit_load {
        UnitLoad::Concurrency(clients) => format!("c{}", clients * u64::from(candidate.replicas)),
        UnitLoad::Rate(rate) => format!("{} req/s", round3(rate * f64::from(candidate.replicas))),
    };
    let label = format!("{knobbed} x{} {load}", candidate.replicas);
    // Recommendations are distinct by GPU, mode and mapping; knobs and load pick the best of each.
    let gpu_idx = match candidate.layout {
        Layout::Agg { engine } | Layout::Disagg { prefill: engine, .. } => engines[engine].gpu_idx,
    };
    let mode = if matches!(candidate.layout, Layout::Agg { .. }) {
        "agg"
    } else {
        "disagg"
    };
    (format!("{} {mode} {mapping}", config.gpus[gpu_idx].name), label, mapping)
}
