//! The search space: engine configurations that fit, and the deployments built from them.
//!
//! [`build_engines`] enumerates, per GPU type, every engine size the model fits in (within the
//! GPU's NVLink domain, or across whole nodes when nothing fits in one), every mapping the model
//! allows (TP, and for MoE models TEP and DEP), and three `--chunked-prefill-size` values (SGLang's
//! default, half and double: the chunk buys prefill speed with KV memory). Each is sized by
//! [`StepModel::new`]; one that does not fit is pruned before anything is costed.
//! `--cuda-graph-max-bs` is raised where an engine's largest batch would otherwise run eagerly.
//! [`enumerate_candidates`] then lays out deployments: aggregated replicas of one engine, or
//! xPyD units of prefill and decode engines (ratios in lowest terms, replicated), at each load level.

use rayon::prelude::*;

use super::config::{GpuLimits, Load, SearchConfig};
use crate::model::gpu::GpuSpec;
use crate::model::mapping::ParallelMapping;
use crate::model::ops::{ExtendRequest, RankBatch};
use crate::model::server_args::MoeA2aBackend;
use crate::model::step::{EngineConfig, StepModel};

/// Largest `--cuda-graph-max-bs` the search sets.
const MAX_CUDA_GRAPH_BS: u64 = 1024;
/// Largest prefill or decode engine count of one xPyD unit (in lowest terms).
const MAX_ENGINES_PER_ROLE: u32 = 8;
/// Replicas tried when a load is given but no total GPU count.
const MAX_REPLICAS_WITHOUT_TOTAL: u32 = 64;
/// SGLang reserves this many decode tokens per request before a decode engine admits a transfer.
const DECODE_RESERVED_TOKENS: u64 = 512;

/// One engine configuration, built and sized, with the numbers the analytic screen needs.
#[derive(Debug, Clone)]
pub struct EngineChoice {
    /// Index into the search's GPU list.
    pub gpu_idx: usize,
    /// The cost model of this configuration.
    pub step: StepModel,
    /// `--chunked-prefill-size` set by the search (`None`: SGLang's default).
    pub chunked_prefill_size_flag: Option<i64>,
    /// `--cuda-graph-max-bs` set by the search (`None`: SGLang's default).
    pub cuda_graph_max_bs_flag: Option<u64>,
    /// `--mem-fraction-static` raised by the search where the default leaves no KV (`None`: SGLang's default).
    pub mem_fraction_static_flag: Option<f64>,
    /// Prefill of one request of the mean input length alone, seconds.
    pub prefill_one_s: f64,
    /// Engine time per request when prefills batch (all DP ranks busy), seconds.
    pub prefill_per_request_s: f64,
    /// Largest decode batch per DP rank an aggregated engine holds (KV and request limits).
    pub max_batch_per_rank_agg: u64,
    /// Largest decode batch per DP rank a decode engine holds (with SGLang's 512-token reserve).
    pub max_batch_per_rank_decode: u64,
    /// Decode step at the mean context, by batch per rank: `(batch, seconds)`, ascending.
    pub decode_table: Vec<(u64, f64)>,
    /// Mean context during decode (`isl + osl/2`), tokens.
    pub context_tokens: u64,
}

impl EngineChoice {
    /// GPUs one engine occupies.
    pub fn n_gpus(&self) -> u32 {
        self.step.mapping().n_gpus()
    }

    /// DP-attention ranks.
    pub fn dp(&self) -> u64 {
        u64::from(self.step.mapping().dp())
    }

    /// One decode step at the mean context with `batch_per_rank` requests on every rank, seconds.
    pub fn decode_s(&self, batch_per_rank: u64) -> f64 {
        match self.decode_table.binary_search_by_key(&batch_per_rank, |&(batch, _)| batch) {
            Ok(index) => self.decode_table[index].1,
            Err(_) => self.step.decode_step_s(batch_per_rank.max(1), self.context_tokens).total_s,
        }
    }
}

/// A GPU type the model cannot use, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SkippedGpu {
    /// The GPU's catalog name.
    pub gpu: String,
    /// Why no engine on it fits.
    pub reason: String,
}

/// Batch sizes per rank the screen sweeps: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5×).
pub fn batch_sweep(max_batch: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut power = 1u64;
    while power <= max_batch {
        sizes.push(power);
        if power >= 2 && power + power / 2 <= max_batch {
            sizes.push(power + power / 2);
        }
        power *= 2;
    }
    if sizes.last() != Some(&max_batch) && max_batch > 0 {
        sizes.push(max_batch);
    }
    sizes
}

/// Engine sizes (GPUs) to try on one GPU type: within the NVLink domain, capped by the limits.
fn engine_sizes(gpu: &GpuSpec, limits: GpuLimits, multi_node: bool) -> Vec<u32> {
    let cap = limits
        .max_gpus_per_engine
        .unwrap_or(u32::MAX)
        .min(limits.total_gpus.unwrap_or(u32::MAX));
    if multi_node {
        let node = gpu.gpus_per_node.max(1);
        let cap = cap.min(16 * node.max(gpu.nvlink_domain_size));
        (1..=cap / node)
            .map(|n_nodes| n_nodes * node)
            .filter(|&n| n > gpu.nvlink_domain_size)
            .collect()
    } else {
        (1..=cap.min(gpu.nvlink_domain_size)).collect()
    }
}

/// Valid mappings of an engine of `n_gpus`: TP, and for MoE models TEP and DEP.
fn mappings(config: &SearchConfig, n_gpus: u32) -> Vec<ParallelMapping> {
    let mut shapes = vec![(n_gpus, 1, 1)];
    if config.model.moe.is_some() && n_gpus > 1 {
        shapes.push((n_gpus, 1, n_gpus));
        shapes.push((n_gpus, n_gpus, n_gpus));
    }
    shapes
        .into_iter()
        .filter_map(|(tp, dp, ep)| ParallelMapping::new(&config.model, tp, dp, ep).ok())
        .collect()
}

fn build_step(
    config: &SearchConfig,
    gpu: &GpuSpec,
    mapping: ParallelMapping,
    chunk: Option<i64>,
    graph_bs: Option<u64>,
) -> Option<StepModel> {
    StepModel::new(engine_config(config, gpu, mapping, chunk, graph_bs)).ok()
}

/// Where SGLang's default `--mem-fraction-static` leaves no KV pool for one request of `request_tokens` but a
/// higher fraction would (DeepSeek-R1 FP8 on 4 x B200: 157.5 GiB of weights per GPU, 151.5 GiB allowed at the
/// default 0.855), operators raise the flag; the search does the same with the smallest fraction in hundredths,
/// at most [`crate::model::memory::MAX_PROPOSED_MEM_FRACTION_STATIC`], whose pool holds the request and one
/// prefill chunk. The launch command carries it. `None` when the user set the fraction or none fits.
fn raised_mem_fraction_step(
    config: &SearchConfig,
    gpu: &GpuSpec,
    mapping: ParallelMapping,
    chunk: Option<i64>,
    graph_bs: Option<u64>,
    request_tokens: u64,
) -> Option<StepModel> {
    if config.server_args.mem_fraction_static.is_some() {
        return None;
    }
    let mut engine = engine_config(config, gpu, mapping, chunk, graph_bs);
    let unchecked = StepModel::new_unchecked(engine.clone()).ok()?;
    let memory = unchecked.memory();
    let fit = memory.fraction_for_kv_tokens(request_tokens.max(memory.chunk_tokens))?;
    engine.server_args.mem_fraction_static = Some(fit.mem_fraction_static);
    StepModel::new(engine).ok()
}

/// The engine configuration the search builds for a mapping, chunk and graph size.
fn engine_config(
    config: &SearchConfig,
    gpu: &GpuSpec,
    mapping: ParallelMapping,
    chunk: Option<i64>,
    graph_bs: Option<u64>,
) -> EngineConfig {
    let mut server_args = config.server_args.clone();
    if chunk.is_some() {
        server_args.chunked_prefill_size = chunk;
    }
    if graph_bs.is_some() {
        server_args.cuda_graph_max_bs = graph_bs;
    }
    // DEP behind DeepEP runs SGLang's large-scale EP layout: dense layers and LM head data-parallel,
    // and two-batch overlap once DeepEP crosses RDMA (more ranks than one NVLink domain).
    if mapping.dp_attention() && mapping.ep() > 1 && server_args.moe_a2a_backend == MoeA2aBackend::Deepep {
        let across_nodes = mapping.n_gpus() > gpu.nvlink_domain_size.max(gpu.gpus_per_node);
        server_args.use_large_ep_layout(server_args.enable_two_batch_overlap || across_nodes);
    }
    EngineConfig {
        model: config.model.clone(),
        gpu: gpu.clone(),
        mapping,
        server_args,
        coefficients: config.coefficients.clone(),
    }
}

/// Prefill of `requests_per_rank` requests of `isl` tokens on every DP rank at once, chunked as the engine chunks, seconds.
fn all_ranks_prefill_s(step: &StepModel, isl: u64, requests_per_rank: u64) -> f64 {
    let dp = step.mapping().dp() as usize;
    let chunk = step.args().chunked_prefill_size;
    if requests_per_rank > 1 {
        let requests = vec![
            ExtendRequest {
                new_tokens: isl,
                cached_tokens: 0,
            };
            requests_per_rank as usize
        ];
        return step.forward(&vec![RankBatch::Extend(&requests); dp]).total_s;
    }
    let chunk = chunk.unwrap_or(isl.max(1));
    let mut done = 0;
    let mut total_s = 0.0;
    while done < isl {
        let new_tokens = chunk.min(isl - done);
        let requests = [ExtendRequest {
            new_tokens,
            cached_tokens: done,
        }];
        total_s += step.forward(&vec![RankBatch::Extend(&requests); dp]).total_s;
        done += new_tokens;
    }
    total_s
}

/// `--cuda-graph-max-bs` values tried, largest first, for DP-attention engines that do not fit with SGLang's default.
const DP_ATTENTION_GRAPH_BS: [u64; 3] = [128, 64, 32];

/// Sizes an engine and fills in the screen's numbers; `None` when it does not fit or cannot hold one request.
fn engine_choice(config: &SearchConfig, gpu_idx: usize, mapping: ParallelMapping, chunk: Option<i64>) -> Option<EngineChoice> {
    let gpu = &config.gpus[gpu_idx];
    let (isl_mean, osl_mean) = config.workload.mean_lengths_tokens();
    let (isl_max, osl_max) = config.workload.max_lengths_tokens();
    let isl = isl_mean.round().max(1.0) as u64;
    let context_tokens = (isl_mean + osl_mean / 2.0).round() as u64;
    let per_request_tokens = (isl_mean + osl_mean).ceil() as u64;
    let request_tokens = isl_max + osl_max.min(4096) + 1;
    let fits_request = |step: &StepModel| request_tokens <= step.memory().kv_capacity_tokens_per_rank;
    let mut graph_flag = None;
    let mut fraction_flag = None;
    let mut step = match build_step(config, gpu, mapping, chunk, None).filter(|step| fits_request(step)) {
        Some(step) => step,
        None => {
            // Under DP attention SGLang reserves `cuda_graph_max_bs × dp × 3 MiB` for the graphs' buffers,
            // which at large DP leaves no room for weights and KV; a smaller `--cuda-graph-max-bs` shrinks
            // the reserve (and the default `--mem-fraction-static` with it), as large-EP deployments set it.
            // The graphs' buffers live outside the static pool, so a DP-attention engine that still does not fit
            // raises --mem-fraction-static only together with the smaller graph batch.
            let graph_sizes: &[u64] = if mapping.dp_attention() && config.server_args.cuda_graph_max_bs.is_none() {
                &DP_ATTENTION_GRAPH_BS
            } else {
                &[]
            };
            let lowered = graph_sizes.iter().find_map(|&bs| {
                Some((
                    Some(bs),
                    build_step(config, gpu, mapping, chunk, Some(bs)).filter(|step| fits_request(step))?,
                ))
            });
            let raised = || match graph_sizes.first() {
                Some(&bs) => Some((
                    Some(bs),
                    raised_mem_fraction_step(config, gpu, mapping, chunk, Some(bs), request_tokens)?,
                )),
                None => Some((None, raised_mem_fraction_step(config, gpu, mapping, chunk, None, request_tokens)?)),
            };
            let raises_fraction = lowered.is_none();
            let (lowered_bs, step) = lowered.or_else(raised).filter(|(_, step)| fits_request(step))?;
            graph_flag = lowered_bs;
            if raises_fraction {
                fraction_flag = Some(step.args().mem_fraction_static);
            }
            step
        }
    };
    let dp = u64::from(mapping.dp());
    let max_batch_agg = |step: &StepModel| {
        (step.memory().max_running_requests / dp)
            .min(step.memory().kv_capacity_tokens_per_rank / per_request_tokens.max(1))
            .max(1)
    };
    let wanted_graph_bs = max_batch_agg(&step).div_ceil(32) * 32;
    if graph_flag.is_none() && wanted_graph_bs > step.args().cuda_graph_max_bs && config.server_args.cuda_graph_max_bs.is_none() {
        let raised = wanted_graph_bs.min(MAX_CUDA_GRAPH_BS);
        if raised > step.args().cuda_graph_max_bs {
            if let Some(raised_step) = build_step(config, gpu, mapping, chunk, Some(raised)) {
                if fits_request(&raised_step) {
                    step = raised_step;
                    graph_flag = Some(raised);
                }
            }
        }
    }
    let max_batch_per_rank_agg = max_batch_agg(&step);
    let max_batch_per_rank_decode = (step.memory().max_running_requests / dp)
        .min(step.memory().kv_capacity_tokens_per_rank / (per_request_tokens + DECODE_RESERVED_TOKENS))
        .max(1);
    let prefill_one_s = step.prefill_s(isl);
    let chunk_per_rank = step.args().chunked_prefill_size.unwrap_or(u64::MAX);
    let batch_tokens = chunk_per_rank.min(step.args().max_prefill_tokens);
    let requests_per_rank = if isl <= batch_tokens { (batch_tokens / isl).max(1) } else { 1 };
    let prefill_per_request_s = all_ranks_prefill_s(&step, isl, requests_per_rank) / (requests_per_rank * dp) as f64;
    let decode_table = batch_sweep(max_batch_per_rank_agg.max(max_batch_per_rank_decode))
        .into_iter()
        .map(|batch| (batch, step.decode_step_s(batch, context_tokens).total_s))
        .collect();
    Some(EngineChoice {
        gpu_idx,
        step,
        chunked_prefill_size_flag: chunk,
        cuda_graph_max_bs_flag: graph_flag,
        mem_fraction_static_flag: fraction_flag,
        prefill_one_s,
        prefill_per_request_s,
        max_batch_per_rank_agg,
        max_batch_per_rank_decode,
        decode_table,
        context_tokens,
    })
}

/// Chunk sizes to try for a mapping: SGLang's default, half of it and double it (or the user's).
fn chunk_variants(config: &SearchConfig, gpu: &GpuSpec, mapping: ParallelMapping) -> Vec<Option<i64>> {
    if config.server_args.chunked_prefill_size.is_some() {
        return vec![None];
    }
    let Ok(resolved) = config.server_args.resolve(gpu, &mapping) else {
        return vec![None];
    };
    let Some(per_rank) = resolved.chunked_prefill_size else {
        return vec![None];
    };
    let default_total = (per_rank * u64::from(mapping.dp())) as i64;
    let mut variants = vec![None];
    if default_total / 2 >= 2048 {
        variants.push(Some(default_total / 2));
    }
    variants.push(Some(default_total * 2));
    variants
}

/// Every engine that fits, in a fixed order (GPU, size, mapping, chunk), and the GPUs skipped.
pub fn build_engines(config: &SearchConfig) -> (Vec<EngineChoice>, Vec<SkippedGpu>) {
    let mut engines = Vec::new();
    let mut skipped = Vec::new();
    for (gpu_idx, gpu) in config.gpus.iter().enumerate() {
        let mut found = Vec::new();
        for multi_node in [false, true] {
            let tasks: Vec<(ParallelMapping, Option<i64>)> = engine_sizes(gpu, config.limits, multi_node)
                .into_iter()
                .flat_map(|n_gpus| mappings(config, n_gpus))
                .flat_map(|mapping| chunk_variants(config, gpu, mapping).into_iter().map(move |chunk| (mapping, chunk)))
                .collect();
            found = tasks
                .par_iter()
                .map(|&(mapping, chunk)| engine_choice(config, gpu_idx, mapping, chunk))
                .collect::<Vec<_>>()
                .into_iter()
                .flatten()
                .collect();
            if !found.is_empty() {
                break;
            }
        }
        if found.is_empty() {
            skipped.push(SkippedGpu {
                gpu: gpu.name.clone(),
                reason: why_nothing_fits(config, gpu),
            });
        }
        engines.extend(found);
    }
    (engines, skipped)
}

/// Why no engine fits on a GPU: the shortfall of the largest engine allowed.
fn why_nothing_fits(config: &SearchConfig, gpu: &GpuSpec) -> String {
    let sizes = [engine_sizes(gpu, config.limits, false), engine_sizes(gpu, config.limits, true)].concat();
    let Some(&largest) = sizes.iter().max() else {
        return "no engine size is allowed".into();
    };
    let Some(mapping) = mappings(config, largest).into_iter().next() else {
        return format!("no valid mapping of {largest} GPUs divides the model");
    };
    let mut server_args = config.server_args.clone();
    server_args.cuda_graph_max_bs = server_args.cuda_graph_max_bs.or(Some(1));
    match StepModel::new_unchecked(EngineConfig {
        model: config.model.clone(),
        gpu: gpu.clone(),
        mapping,
        server_args,
        coefficients: config.coefficients.clone(),
    }) {
        Ok(step) => match step.memory().shortfall() {
            Some(reason) => format!("{mapping}: {reason}"),
            None => format!(
                "{mapping}: a KV pool of {} tokens per rank cannot hold one request of {} + {} tokens",
                step.memory().kv_capacity_tokens_per_rank,
                config.workload.max_lengths_tokens().0,
                config.workload.max_lengths_tokens().1
            ),
        },
        Err(error) => format!("{mapping}: {error}"),
    }
}

/// How the requests reach one deployment unit (one aggregated engine, or one xPyD unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnitLoad {
    /// Closed-loop clients of the unit.
    Concurrency(u64),
    /// Poisson arrivals at the unit, requests/s.
    Rate(f64),
}

/// How engines are laid out in one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One aggregated engine.
    Agg {
        /// Index into the engine list.
        engine: usize,
    },
    /// `n_prefill` prefill engines and `n_decode` decode engines (in lowest terms).
    Disagg {
        /// Prefill engine index.
        prefill: usize,
        /// Decode engine index.
        decode: usize,
        /// Prefill engines per unit.
        n_prefill: u32,
        /// Decode engines per unit.
        n_decode: u32,
    },
}

impl Layout {
    /// GPUs of one unit.
    pub fn n_gpus(&self, engines: &[EngineChoice]) -> u32 {
        match *self {
            Layout::Agg { engine } => engines[engine].n_gpus(),
            Layout::Disagg {
                prefill,
                decode,
                n_prefill,
                n_decode,
            } => n_prefill * engines[prefill].n_gpus() + n_decode * engines[decode].n_gpus(),
        }
    }
}

/// One point of the search space: a layout, replicated, at a load, with an optional batch cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The unit.
    pub layout: Layout,
    /// Units deployed.
    pub replicas: u32,
    /// Load on one unit.
    pub unit_load: UnitLoad,
    /// `--max-running-requests` of the aggregated or decode engines (`None`: SGLang's).
    pub max_running_cap: Option<u64>,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Every layout: aggregated engines, and xPyD units of engines on the same GPU type.
fn layouts(config: &SearchConfig, engines: &[EngineChoice]) -> Vec<Layout> {
    let mut layouts = Vec::new();
    if config.modes.includes_agg() {
        layouts.extend((0..engines.len()).map(|engine| Layout::Agg { engine }));
    }
    if config.modes.includes_disagg() {
        let unit_budget = config
            .limits
            .total_gpus
            .unwrap_or_else(|| 8 * config.limits.max_gpus_per_engine.unwrap_or(8));
        for (prefill, prefill_engine) in engines.iter().enumerate() {
            for (decode, decode_engine) in engines.iter().enumerate() {
                // Decode engines do not prefill: only SGLang's default chunk is tried for them.
                if decode_engine.gpu_idx != prefill_engine.gpu_idx || decode_engine.chunked_prefill_size_flag.is_some() {
                    continue;
                }
                for n_prefill in 1..=MAX_ENGINES_PER_ROLE {
                    for n_decode in 1..=MAX_ENGINES_PER_ROLE {
                        let layout = Layout::Disagg {
                            prefill,
                            decode,
                            n_prefill,
                            n_decode,
                        };
                        if gcd(n_prefill, n_decode) == 1 && layout.n_gpus(engines) <= unit_budget {
                            layouts.push(layout);
                        }
                    }
                }
            }
        }
    }
    layouts
}

/// Every candidate the screen costs, in a fixed order.
pub fn enumerate_candidates(config: &SearchConfig, engines: &[EngineChoice]) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    for layout in layouts(config, engines) {
        let unit_gpus = layout.n_gpus(engines);
        let max_replicas = match config.limits.total_gpus {
            Some(total) => total / unit_gpus,
            None => MAX_REPLICAS_WITHOUT_TOTAL,
        };
        if max_replicas == 0 {
            continue;
        }
        let push = |candidates: &mut Vec<Candidate>, replicas: u32, unit_load: UnitLoad, cap: Option<u64>| {
            candidates.push(Candidate {
                layout,
                replicas,
                unit_load,
                max_running_cap: cap,
            })
        };
        match config.load {
            None => {
                let replicas = if config.limits.total_gpus.is_some() { max_replicas } else { 1 };
                let (engine, engines_per_unit, max_batch) = match layout {
                    Layout::Agg { engine } => (&engines[engine], 1, engines[engine].max_batch_per_rank_agg),
                    Layout::Disagg { decode, n_decode, .. } => {
                        (&engines[decode], u64::from(n_decode), engines[decode].max_batch_per_rank_decode)
                    }
                };
                for batch in batch_sweep(max_batch) {
                    push(
                        &mut candidates,
                        replicas,
                        UnitLoad::Concurrency(batch * engine.dp() * engines_per_unit),
                        None,
                    );
                }
            }
            Some(load) => {
                for replicas in 1..=max_replicas {
                    match load {
                        Load::Concurrency { n_clients } => {
                            if u64::from(replicas) > n_clients {
                                break;
                            }
                            let unit_clients = n_clients.div_ceil(u64::from(replicas));
                            push(&mut candidates, replicas, UnitLoad::Concurrency(unit_clients), None);
                            let engines_per_unit = match layout {
                                Layout::Agg { .. } => 1,
                                Layout::Disagg { n_decode, .. } => u64::from(n_decode),
                            };
                            let per_engine = unit_clients.div_ceil(engines_per_unit);
                            for divisor in [2, 4] {
                                if per_engine >= 4 * divisor {
                                    push(
                                        &mut candidates,
                                        replicas,
                                        UnitLoad::Concurrency(unit_clients),
                                        Some(per_engine / divisor),
                                    );
                                }
                            }
                        }
                        Load::RequestRate { rate_per_s } => {
                            push(&mut candidates, replicas, UnitLoad::Rate(rate_per_s / f64::from(replicas)), None);
                        }
                    }
                }
            }
        }
    }
    candidates
}

/// The fewest GPUs of one engine that holds the model and one request, ignoring `--total-gpus`.
pub fn smallest_fitting_engine(config: &SearchConfig, gpu: &GpuSpec) -> Option<u32> {
    let gpu_idx = config.gpus.iter().position(|g| g.name == gpu.name)?;
    let mut unlimited = config.clone();
    unlimited.limits.total_gpus = None;
    for multi_node in [false, true] {
        for n_gpus in engine_sizes(gpu, unlimited.limits, multi_node) {
            let fits = mappings(&unlimited, n_gpus)
                .into_iter()
                .any(|mapping| engine_choice(&unlimited, gpu_idx, mapping, None).is_some());
            if fits {
                return Some(n_gpus);
            }
        }
    }
    None
}
