//! The search itself: build engines, screen every candidate, simulate the survivors, rank.
//!
//! Parallel stages collect with order-preserving `par_iter().map().collect()` and the points are
//! then sorted by a total key, so a 1-thread and an N-thread search give identical results.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::config::{percentile_name, SearchConfig};
use super::error::{Error, Result};
use super::evaluate::{request_counts, simulate_candidate};
use super::pareto::{pareto_front, select_stratified};
use super::result::{engine_descs, names, predict_command, round3, Binding, BudgetReport, Point, ScreenEstimate, SearchResult, SlaReport};
use super::screen::{estimate, Estimate};
use super::space::{build_engines, enumerate_candidates, smallest_fitting_engine, Candidate, EngineChoice, Layout, UnitLoad};

/// Runs a search; `config.n_threads` fixes the number of worker threads.
pub fn search(config: &SearchConfig) -> Result<SearchResult> {
    config.validate()?;
    match config.n_threads {
        Some(n_threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .build()
            .map_err(|error| Error::ThreadPool {
                n_threads,
                message: error.to_string(),
            })?
            .install(|| search_in_pool(config)),
        None => search_in_pool(config),
    }
}

fn search_in_pool(config: &SearchConfig) -> Result<SearchResult> {
    let (engines, skipped_gpus) = build_engines(config);
    if engines.is_empty() {
        return Err(nothing_fits(config, &skipped_gpus));
    }
    let candidates = enumerate_candidates(config, &engines);
    let estimates: Vec<Estimate> = candidates.par_iter().map(|c| estimate(c, &engines, config)).collect();
    let configuration_of = configuration_ids(&candidates);
    let stratum_of: Vec<usize> = candidates.iter().map(|c| stratum(c, &engines)).collect();
    let survivors = select_stratified(
        &estimates,
        &configuration_of,
        &stratum_of,
        config.sla.ttft_ms,
        config.sla.itl_ms,
        // Each GPU type and mode gets the whole budget: the inside-SLA survivors of a mode are
        // then a superset of those it won when the modes shared one budget.
        |_| config.max_simulations,
    );
    let mut points: Vec<Point> = survivors
        .par_iter()
        .map(|&index| evaluate(&candidates[index], &estimates[index], &engines, config))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    points.sort_by(|a, b| {
        b.output_tok_s_per_gpu
            .total_cmp(&a.output_tok_s_per_gpu)
            .then(b.tok_s_per_user.total_cmp(&a.tok_s_per_user))
            .then(a.label.cmp(&b.label))
    });
    let axes: Vec<(f64, f64)> = points.iter().map(|p| (p.output_tok_s_per_gpu, p.tok_s_per_user)).collect();
    for (point, on_front) in points.iter_mut().zip(pareto_front(&axes)) {
        point.pareto = on_front;
    }
    let mut pareto: Vec<Point> = points.iter().filter(|p| p.pareto).cloned().collect();
    pareto.sort_by(|a, b| a.tok_s_per_user.total_cmp(&b.tok_s_per_user).then(a.label.cmp(&b.label)));
    let top = distinct_configurations(points.iter().filter(|p| p.feasible), config.top_k);
    let best_per_gpu = config
        .gpus
        .iter()
        .filter_map(|gpu| points.iter().find(|p| p.feasible && p.gpu == gpu.name).cloned())
        .collect();
    let feasible = points.iter().filter(|p| p.feasible).count();
    let (nearest, binding) = if feasible == 0 {
        nearest_and_binding(&points, config)
    } else {
        (Vec::new(), None)
    };
    let gpus = config
        .gpus
        .iter()
        .filter(|gpu| !skipped_gpus.iter().any(|s| s.gpu == gpu.name))
        .map(|gpu| gpu.name.clone())
        .collect();
    Ok(SearchResult {
        model: config.model.name.clone(),
        gpus,
        sla: SlaReport {
            ttft_ms: config.sla.ttft_ms,
            itl_ms: config.sla.itl_ms,
            percentile: percentile_name(config.sla.percentile),
        },
        pareto,
        top,
        best_per_gpu,
        nearest,
        binding,
        evaluated: points.len(),
        screened: candidates.len(),
        feasible,
        skipped_gpus,
        points,
        engines,
    })
}

/// The error when no engine fits: the total is below one engine, or no GPU can hold the model.
fn nothing_fits(config: &SearchConfig, skipped: &[super::space::SkippedGpu]) -> Error {
    if let Some(total_gpus) = config.limits.total_gpus {
        let smallest = config
            .gpus
            .iter()
            .filter_map(|gpu| smallest_fitting_engine(config, gpu).map(|n| (n, gpu.name.clone())))
            .min();
        if let Some((needed_gpus, gpu)) = smallest {
            if needed_gpus > total_gpus {
                return Error::TotalBelowOneEngine {
                    model: config.model.name.clone(),
                    total_gpus,
                    needed_gpus,
                    gpu,
                };
            }
        }
    }
    Error::NoGpuFits {
        model: config.model.name.clone(),
        limit: config.limits.describe(),
        reasons: skipped
            .iter()
            .map(|s| format!("{}: {}", s.gpu, s.reason))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The stratum of a candidate for the choice of survivors: its GPU type and mode (`2 × gpu + mode`).
fn stratum(candidate: &Candidate, engines: &[EngineChoice]) -> usize {
    match candidate.layout {
        Layout::Agg { engine } => 2 * engines[engine].gpu_idx,
        Layout::Disagg { prefill, .. } => 2 * engines[prefill].gpu_idx + 1,
    }
}

/// Groups candidates that differ only in load and replicas: one id per (layout, cap).
fn configuration_ids(candidates: &[Candidate]) -> Vec<usize> {
    let mut ids: BTreeMap<(u8, usize, usize, u32, u32, u64), usize> = BTreeMap::new();
    candidates
        .iter()
        .map(|candidate| {
            let cap = candidate.max_running_cap.unwrap_or(0);
            let key = match candidate.layout {
                Layout::Agg { engine } => (0, engine, 0, 0, 0, cap),
                Layout::Disagg {
                    prefill,
                    decode,
                    n_prefill,
                    n_decode,
                } => (1, prefill, decode, n_prefill, n_decode, cap),
            };
            let next = ids.len();
            *ids.entry(key).or_insert(next)
        })
        .collect()
}

/// Simulates a candidate and turns the run into a point; `None` when the run fails.
fn evaluate(candidate: &Candidate, estimate: &Estimate, engines: &[EngineChoice], config: &SearchConfig) -> Option<Point> {
    let metrics = simulate_candidate(candidate, estimate, engines, config).ok()?;
    let (n_requests, n_warmup) = request_counts(candidate, estimate, config.workload.osl);
    let percentile = config.sla.percentile;
    let ttft_ms = metrics.ttft_ms.at(percentile);
    let itl_ms = metrics.tpot_ms.at(percentile);
    if metrics.n_requests == 0 || itl_ms <= 0.0 {
        return None;
    }
    // Closed loops: Little's law (clients / mean E2E) gives the steady-state rate, which the drain
    // at the end of a short run would otherwise understate. Open loops: what the run completed.
    let throughput = metrics.throughput;
    let unit_gpus = f64::from(candidate.layout.n_gpus(engines));
    let (unit_request_s, tok_s_per_gpu) = match candidate.unit_load {
        UnitLoad::Concurrency(clients) if metrics.e2e_ms.mean > 0.0 && throughput.request_s > 0.0 => {
            let request_s = clients as f64 / (metrics.e2e_ms.mean * 1e-3);
            let osl_mean = throughput.output_tok_s / throughput.request_s;
            (request_s, request_s * osl_mean / unit_gpus)
        }
        _ => (throughput.request_s, throughput.output_tok_s_per_gpu),
    };
    let (configuration, label, mapping) = names(candidate, engines, config);
    let replicas = candidate.replicas;
    let (mode, gpu_idx, xpyd) = match candidate.layout {
        Layout::Agg { engine } => ("agg", engines[engine].gpu_idx, None),
        Layout::Disagg {
            prefill,
            n_prefill,
            n_decode,
            ..
        } => (
            "disagg",
            engines[prefill].gpu_idx,
            Some(format!("{}P{}D", n_prefill * replicas, n_decode * replicas)),
        ),
    };
    let (concurrency, request_rate) = match candidate.unit_load {
        UnitLoad::Concurrency(clients) => (Some(clients * u64::from(replicas)), None),
        UnitLoad::Rate(rate) => (None, Some(round3(rate * f64::from(replicas)))),
    };
    Some(Point {
        label,
        mode,
        gpu: config.gpus[gpu_idx].name.clone(),
        mapping,
        xpyd,
        replicas,
        n_gpus: candidate.layout.n_gpus(engines) * replicas,
        concurrency,
        request_rate,
        ttft_ms: round3(ttft_ms),
        itl_ms: round3(itl_ms),
        output_tok_s_per_gpu: round3(tok_s_per_gpu),
        tok_s_per_user: round3(1e3 / itl_ms),
        request_s: round3(unit_request_s * f64::from(replicas)),
        feasible: ttft_ms <= config.sla.ttft_ms && itl_ms <= config.sla.itl_ms,
        pareto: false,
        screen: ScreenEstimate {
            ttft_ms: round3(estimate.ttft_ms),
            itl_ms: round3(estimate.itl_ms),
            output_tok_s_per_gpu: round3(estimate.tok_s_per_gpu),
        },
        engines: engine_descs(candidate, engines),
        budget: config
            .limits
            .total_gpus
            .map(|total| BudgetReport::new(total, candidate.layout.n_gpus(engines), tok_s_per_gpu * unit_gpus, unit_request_s)),
        predict_command: predict_command(candidate, engines, config, n_requests, n_warmup),
        configuration,
        layout: Some(candidate.layout),
    })
}

/// The first point of each configuration, up to `limit`, in the order given.
fn distinct_configurations<'a>(points: impl Iterator<Item = &'a Point>, limit: usize) -> Vec<Point> {
    let mut seen = std::collections::BTreeSet::new();
    points
        .filter(|p| seen.insert(p.configuration.clone()))
        .take(limit)
        .cloned()
        .collect()
}

/// The points nearest to the SLA, and which limit binds for the nearest.
fn nearest_and_binding(points: &[Point], config: &SearchConfig) -> (Vec<Point>, Option<Binding>) {
    let violation = |p: &Point| (p.ttft_ms / config.sla.ttft_ms).max(p.itl_ms / config.sla.itl_ms);
    let mut order: Vec<&Point> = points.iter().collect();
    order.sort_by(|a, b| violation(a).total_cmp(&violation(b)).then(a.label.cmp(&b.label)));
    let nearest = distinct_configurations(order.into_iter(), config.top_k);
    let binding = nearest.first().map(|p| {
        let ttft_ratio = p.ttft_ms / config.sla.ttft_ms;
        let itl_ratio = p.itl_ms / config.sla.itl_ms;
        let (constraint, value_ms, limit_ms, ratio) = if ttft_ratio >= itl_ratio {
            ("TTFT", p.ttft_ms, config.sla.ttft_ms, ttft_ratio)
        } else {
            ("ITL", p.itl_ms, config.sla.itl_ms, itl_ratio)
        };
        Binding {
            constraint,
            value_ms,
            limit_ms,
            excess_percent: round3((ratio - 1.0) * 100.0),
            lowest_ttft_ms: points.iter().map(|p| p.ttft_ms).min_by(f64::total_cmp).unwrap_or(0.0),
            lowest_itl_ms: points.iter().map(|p| p.itl_ms).min_by(f64::total_cmp).unwrap_or(0.0),
        }
    });
    (nearest, binding)
}
