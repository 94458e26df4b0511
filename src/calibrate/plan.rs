//! The short measurement sweep of live calibration, sized to a time budget with the simulator.
//!
//! [`plan`] proposes points that identify the coefficients [`super::fit`] fits: batch-1 prefill at
//! several input lengths (GEMM and attention efficiencies, launch overhead), decode at several
//! concurrencies and context lengths (weight streaming, KV reads, kernel floors), and one mixed
//! point (prefill and decode sharing steps). Each point's duration is estimated by simulating it
//! on the engine with the starting coefficients, plus a fixed per-point overhead; points are kept in
//! priority order while the total fits the budget. [`workload_of`] gives the workload `sglsim bench`
//! sends for a point; [`parse_duration_s`] reads budgets such as `90s` or `10m`.

use serde::Serialize;

use super::error::{Error, Result};
use super::fit::MIN_POINTS;
use super::ingest::{Lengths, Load, MeasuredMetrics, MeasuredPoint, Provenance, SourceKind, Workload};
use crate::model::coefficients::{Coefficients, COEFFICIENT_INFO};
use crate::model::step::{EngineConfig, StepModel};
use crate::sim::workload::{Arrivals, LengthDistribution, WorkloadSpec};

/// What a plan point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPhase {
    /// One request at a time, a few output tokens: TTFT is the prefill.
    Prefill,
    /// A closed loop with long outputs: TPOT and ITL are decode steps at that batch.
    Decode,
    /// Prefills arriving while others decode.
    Mixed,
}

/// One benchmark run of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanPoint {
    /// What it measures.
    pub phase: PlanPhase,
    /// Input length, tokens.
    pub isl_tokens: u64,
    /// Output length, tokens.
    pub osl_tokens: u64,
    /// Closed-loop clients.
    pub concurrency: u64,
    /// Measured requests.
    pub n_requests: u64,
    /// Warm-up requests sent first.
    pub n_warmup: u64,
    /// Estimated wall time, overhead included, seconds.
    pub estimated_s: f64,
}

/// A plan and what was left out of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationPlan {
    /// Points to run, in order.
    pub points: Vec<PlanPoint>,
    /// Their total estimated wall time, seconds.
    pub estimated_s: f64,
    /// The budget, seconds.
    pub budget_s: f64,
    /// Candidate points left out for the budget.
    pub left_out: Vec<PlanPoint>,
}

/// How to size a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanConfig {
    /// Wall-time budget, seconds.
    pub budget_s: f64,
    /// Fixed cost of one benchmark run (connection, warm-up, drain), seconds.
    pub per_point_overhead_s: f64,
    /// Seed of the workloads.
    pub seed: u64,
}

/// Input lengths of the prefill points, tokens (capped by the context and the KV pool): short ones
/// are bound by kernel launches, 1024 is near where GEMMs take over for 8B-class models, long ones
/// bring in attention.
const PREFILL_ISLS: [u64; 5] = [128, 1024, 2048, 8192, 32768];
/// Output tokens of a prefill point: enough for a first token and a clean finish.
const PREFILL_OSL: u64 = 4;
/// Output tokens of decode and mixed points.
const DECODE_OSL: u64 = 256;
/// Input lengths of decode points, tokens.
const DECODE_ISLS: [u64; 2] = [512, 4096];
/// Concurrencies of decode points.
const DECODE_CONCURRENCIES: [u64; 4] = [1, 8, 32, 128];

/// Candidate points with their priority (lower first): a core set that spans each axis comes first.
fn candidates(step: &StepModel) -> Vec<(u32, PlanPoint)> {
    let memory = step.memory();
    let context_limit = step.model().max_context_tokens.min(memory.kv_capacity_tokens_per_rank);
    let point = |phase, isl_tokens, osl_tokens, concurrency: u64, n_requests| PlanPoint {
        phase,
        isl_tokens,
        osl_tokens,
        concurrency,
        n_requests,
        n_warmup: 1,
        estimated_s: 0.0,
    };
    let mut out = Vec::new();
    let prefill_isls: Vec<u64> = PREFILL_ISLS
        .iter()
        .copied()
        .filter(|&isl| isl + PREFILL_OSL + 16 <= context_limit)
        .collect();
    for (rank, &isl) in prefill_isls.iter().enumerate() {
        // Shortest, longest and middle first; the rest later.
        let priority = if rank == 0 || rank + 1 == prefill_isls.len() || rank == prefill_isls.len() / 2 {
            0
        } else {
            2
        };
        out.push((priority, point(PlanPhase::Prefill, isl, PREFILL_OSL, 1, 4)));
    }
    for (context_rank, &isl) in DECODE_ISLS.iter().enumerate() {
        if isl + DECODE_OSL + 16 > context_limit {
            continue;
        }
        let kv_limit = memory.kv_capacity_tokens / (isl + DECODE_OSL);
        let limit = kv_limit.min(memory.max_running_requests).max(1);
        let concurrencies: Vec<u64> = DECODE_CONCURRENCIES.iter().copied().filter(|&c| c <= limit).collect();
        for (rank, &concurrency) in concurrencies.iter().enumerate() {
            let spans = rank == 0 || rank + 1 == concurrencies.len();
            let priority = match (context_rank, spans) {
                (0, true) => 0,
                (_, true) => 1,
                _ => 3,
            };
            out.push((
                priority,
                point(PlanPhase::Decode, isl, DECODE_OSL, concurrency, (2 * concurrency).max(4)),
            ));
        }
    }
    let mixed_isl = 2048u64.min(context_limit.saturating_sub(DECODE_OSL + 16)).max(16);
    let mixed_concurrency = 16u64.min(memory.max_running_requests.max(1));
    out.push((
        1,
        point(PlanPhase::Mixed, mixed_isl, DECODE_OSL, mixed_concurrency, 3 * mixed_concurrency),
    ));
    out
}

/// The workload `sglsim bench` sends for a plan point: fixed lengths, a closed loop.
pub fn workload_of(point: &PlanPoint, seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        isl: point.isl_tokens,
        osl: point.osl_tokens,
        lengths: LengthDistribution::Fixed,
        arrivals: Arrivals::Closed {
            concurrency: point.concurrency,
        },
        n_requests: point.n_requests,
        n_warmup: point.n_warmup,
        seed,
    }
}

/// A plan point as the measured point `sglsim bench` records give (no measurements yet).
fn served(point: &PlanPoint) -> MeasuredPoint {
    MeasuredPoint {
        workload: Workload::Served {
            isl_tokens: point.isl_tokens,
            osl_tokens: point.osl_tokens,
            lengths: Lengths::Fixed,
            load: Load::Concurrency(point.concurrency),
            n_requests: point.n_requests,
            n_warmup: point.n_warmup,
        },
        measured: MeasuredMetrics::default(),
        provenance: Provenance {
            path: "<plan>".into(),
            kind: SourceKind::SglsimBench,
            label: String::new(),
        },
    }
}

/// Estimated wall time of one point: simulated duration of all its requests plus the overhead.
fn estimate_s(step: &StepModel, point: &PlanPoint, config: &PlanConfig) -> Result<f64> {
    let predicted = super::fit::predict_point(step, &served(point), point.n_requests, config.seed)?;
    let request_per_s = predicted.request_per_s.filter(|r| *r > 0.0).ok_or_else(|| Error::BadPlan {
        message: format!("the simulator completed no request of {point:?}"),
    })?;
    Ok((point.n_requests + point.n_warmup) as f64 / request_per_s + config.per_point_overhead_s)
}

/// Builds the plan for an engine within the budget.
pub fn plan(step: &StepModel, config: &PlanConfig) -> Result<CalibrationPlan> {
    if !(config.budget_s.is_finite() && config.budget_s > 0.0) {
        return Err(Error::BadPlan {
            message: format!("budget {} s must be a positive duration", config.budget_s),
        });
    }
    let mut ranked = candidates(step);
    for (_, point) in ranked.iter_mut() {
        point.estimated_s = estimate_s(step, point, config)?;
    }
    // Stable: within a priority, the order of `candidates` (prefill, decode, mixed).
    ranked.sort_by_key(|(priority, _)| *priority);
    let mut points = Vec::new();
    let mut left_out = Vec::new();
    let mut total_s = 0.0;
    for (_, point) in ranked {
        if total_s + point.estimated_s <= config.budget_s {
            total_s += point.estimated_s;
            points.push(point);
        } else {
            left_out.push(point);
        }
    }
    if points.len() < MIN_POINTS {
        let mut shortest: Vec<f64> = points.iter().chain(&left_out).map(|p| p.estimated_s).collect();
        shortest.sort_by(f64::total_cmp);
        let needed_s: f64 = shortest.iter().take(MIN_POINTS).sum();
        return Err(Error::BadPlan {
            message: format!(
                "a budget of {:.0} s fits {} points; a fit needs at least {MIN_POINTS} (about {needed_s:.0} s)",
                config.budget_s,
                points.len()
            ),
        });
    }
    // Run in a readable order: prefill by length, then decode by context and concurrency, then mixed.
    let order = |p: &PlanPoint| (p.phase as u8, p.isl_tokens, p.concurrency);
    points.sort_by_key(order);
    Ok(CalibrationPlan {
        points,
        estimated_s: total_s,
        budget_s: config.budget_s,
        left_out,
    })
}

/// The plan's main metric of a point as the live fit takes it: TTFT of batch-1 prefill points,
/// TPOT of the others (closed-loop TTFT above concurrency 1 is not fitted).
fn main_metric_ms(point: &PlanPoint, predicted: &MeasuredMetrics) -> Option<f64> {
    let summary = match point.phase {
        PlanPhase::Prefill => predicted.ttft_ms,
        PlanPhase::Decode | PlanPhase::Mixed => predicted.tpot_ms,
    }?;
    summary.p50.filter(|v| v.is_finite() && *v > 0.0)
}

/// Ranks `candidates` by how strongly their main metric responds to `coefficient` (elasticity
/// |d ln metric / d ln coefficient|, from ±10% steps clamped to its plausible range), strongest
/// first: the points that best pin that coefficient down. Returns (index, elasticity) pairs.
pub fn rank_by_sensitivity(engine: &EngineConfig, candidates: &[PlanPoint], coefficient: &str, seed: u64) -> Result<Vec<(usize, f64)>> {
    let Some(index) = COEFFICIENT_INFO.iter().position(|info| info.name == coefficient) else {
        return Err(Error::BadPlan {
            message: format!("unknown coefficient '{coefficient}'"),
        });
    };
    let info = &COEFFICIENT_INFO[index];
    let start = engine.coefficients.to_vec();
    let stepped = |factor: f64| -> Result<StepModel> {
        let mut values = start.clone();
        values[index] = (start[index] * factor).clamp(info.min, info.max);
        let mut trial = engine.clone();
        trial.coefficients = Coefficients::from_slice(&values)?;
        Ok(StepModel::new_unchecked(trial)?)
    };
    let (up, down) = (stepped(1.1)?, stepped(1.0 / 1.1)?);
    let span = ((start[index] * 1.1).min(info.max) / (start[index] / 1.1).max(info.min)).ln();
    let mut ranked = Vec::new();
    for (slot, point) in candidates.iter().enumerate() {
        let measured = served(point);
        let metric = |step: &StepModel| -> Result<Option<f64>> {
            let predicted = super::fit::predict_point(step, &measured, point.n_requests, seed)?;
            Ok(main_metric_ms(point, &predicted))
        };
        let elasticity = match (metric(&up)?, metric(&down)?) {
            (Some(a), Some(b)) if span > 0.0 => (a / b).ln().abs() / span,
            _ => 0.0,
        };
        ranked.push((slot, elasticity));
    }
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(ranked)
}

/// Parses a duration: `90s`, `10m`, `1h`, `1h30m`, `2.5m`, or plain seconds (`600`).
pub fn parse_duration_s(text: &str) -> Result<f64> {
    let bad = || Error::BadPlan {
        message: format!("invalid duration '{text}': expected seconds or a number with s, m or h (90s, 10m, 1h30m)"),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return (seconds.is_finite() && seconds > 0.0).then_some(seconds).ok_or_else(bad);
    }
    let mut total_s = 0.0;
    let mut number = String::new();
    for ch in trimmed.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        let unit_s = match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        total_s += value * unit_s;
        number.clear();
    }
    let valid = number.is_empty() && total_s.is_finite() && total_s > 0.0;
    valid.then_some(total_s).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gpu::GpuCatalog;
    use crate::model::mapping::ParallelMapping;
    use crate::model::model_catalog::find_bundled_spec;
    use crate::model::server_args::ServerArgs;

    fn engine() -> EngineConfig {
        let model = find_bundled_spec("Qwen/Qwen3-8B").unwrap().unwrap();
        let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
        EngineConfig {
            model,
            gpu: GpuCatalog::builtin().unwrap().find("h100").unwrap().clone(),
            mapping,
            server_args: ServerArgs::sglang_defaults(),
            coefficients: Coefficients::defaults(),
        }
    }

    fn step() -> StepModel {
        StepModel::new(engine()).unwrap()
    }

    fn config(budget_s: f64) -> PlanConfig {
        PlanConfig {
            budget_s,
            per_point_overhead_s: 2.0,
            seed: 0,
        }
    }

    #[test]
    fn prefill_points_rank_first_for_prefill_coefficients_and_decode_points_for_decode_ones() {
        let step = step();
        let engine = engine();
        let full = plan(&step, &config(3600.0)).unwrap();
        let phase_of_best = |name: &str| {
            let ranked = rank_by_sensitivity(&engine, &full.points, name, 0).unwrap();
            assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{ranked:?}");
            full.points[ranked[0].0].phase
        };
        // Attention's prefill efficiency acts on long prompts' TTFT; it is absent from TPOT.
        assert_eq!(phase_of_best("attn_prefill_eff"), PlanPhase::Prefill);
        // Weight streaming sets small-batch decode steps.
        assert_eq!(phase_of_best("gemm_mem_eff"), PlanPhase::Decode);
        assert!(rank_by_sensitivity(&engine, &full.points, "no_such", 0)
            .unwrap_err()
            .to_string()
            .contains("unknown coefficient 'no_such'"));
    }

    #[test]
    fn durations_parse_in_seconds() {
        assert_eq!(parse_duration_s("90s").unwrap(), 90.0);
        assert_eq!(parse_duration_s("10m").unwrap(), 600.0);
        assert_eq!(parse_duration_s("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration_s("2.5m").unwrap(), 150.0);
        assert_eq!(parse_duration_s("45").unwrap(), 45.0);
        for bad in ["", "10x", "m", "-5", "10m5"] {
            assert!(parse_duration_s(bad).unwrap_err().to_string().contains("invalid duration"), "{bad}");
        }
    }

    #[test]
    fn plans_span_prefill_decode_and_mixed_within_the_budget() {
        let step = step();
        let full = plan(&step, &config(3600.0)).unwrap();
        assert!(full.left_out.is_empty(), "{:?}", full.left_out);
        for phase in [PlanPhase::Prefill, PlanPhase::Decode, PlanPhase::Mixed] {
            assert!(full.points.iter().any(|p| p.phase == phase), "{phase:?}");
        }
        let total: f64 = full.points.iter().map(|p| p.estimated_s).sum();
        assert!((total - full.estimated_s).abs() < 1e-9);
        // A tighter budget keeps the core points and stays within it.
        let tight_budget_s = full.estimated_s * 0.6;
        let tight = plan(&step, &config(tight_budget_s)).unwrap();
        assert!(tight.estimated_s <= tight_budget_s && !tight.left_out.is_empty());
        assert!(tight.points.iter().any(|p| p.phase == PlanPhase::Prefill));
        assert!(tight.points.iter().any(|p| p.phase == PlanPhase::Decode));
        let error = plan(&step, &config(3.0)).unwrap_err().to_string();
        assert!(error.contains("at least 3"), "{error}");
    }
}
