//! Fits cost-model coefficients to measured points: bounded nonlinear least squares in log time with priors.
//!
//! Three parts are kept apart:
//! - the objective ([`Objective`]): for each measured point and metric the residual
//!   ln(predicted / measured), where predictions come from the serving simulator (served points:
//!   [`crate::sim::cluster::simulate`] on one aggregated engine, with at most
//!   `min(n, 6 × concurrency, max_sim_requests)` requests) or straight from the step model (Dynamo
//!   prefill and decode points, `bench_one_batch` batches); plus one prior residual per fitted
//!   coefficient, λ · ln(c / c₀) / ln(max / min) (λ · (c − c₀) / (max − min) for ranges from 0),
//!   pulling it toward its starting value;
//! - the solver: Levenberg–Marquardt ([`lm`], nalgebra for the normal equations) on the sum of
//!   squared residuals over unbounded parameters u with
//!   c = exp(ln min + (ln max − ln min) · σ(u)) (or c = min + (max − min) · σ(u) for ranges that
//!   start at 0, such as `prefill_fixed_ms`), so every candidate lies inside the coefficient's
//!   plausible range from [`COEFFICIENT_INFO`]; it runs to convergence, and argmin's Nelder–Mead
//!   takes over only when no damped step lowers the cost from the start (an objective too rough
//!   for derivatives);
//! - the driver ([`fit`]): picks the coefficients the data can identify (by sensitivity at the
//!   start), refuses to fit with fewer than [`MIN_POINTS`] usable points, runs the solver, then
//!   reports every point before and after, a leave-one-out error, which coefficients moved, were
//!   not identified or ended at their range's end, and each fitted coefficient's standard error
//!   and 95% interval from (JᵀJ)⁻¹σ² at the solution ([`uncertainty`]), with a warning naming
//!   coefficients the measurements cannot tell apart (near-singular JᵀJ).
//!
//! Nothing here prints; progress goes to the caller's callback.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{CostFunction, Executor, IterState, State, KV};
use argmin::solver::neldermead::NelderMead;
use serde::Serialize;

use super::error::{Error, Result};
use super::ingest::{MeasuredMetrics, MeasuredPoint, Workload};
use crate::model::coefficients::{Coefficients, COEFFICIENT_INFO};
use crate::model::step::{EngineConfig, StepModel};

mod lm;
mod targets;
mod uncertainty;

use targets::predicted_value;
pub use targets::{predict_point, targets_of, MetricName, Statistic, Target, MIN_DECODE_OSL_TOKENS};
use uncertainty::{uncertainty, Uncertainty};

/// Fewest usable measured points a fit accepts.
pub const MIN_POINTS: usize = 3;
/// Root-mean-square elasticity of the predictions (d ln prediction / d ln coefficient) below
/// which the data do not identify a coefficient.
pub const MIN_SENSITIVITY: f64 = 0.02;
/// A fitted coefficient that changed by less than this fraction "held"; more, it "moved".
pub const MOVED_FRACTION: f64 = 0.05;
/// Residual given to a prediction that fails (simulation error, non-positive time).
const FAILED_RESIDUAL: f64 = 5.0;

/// Coefficients that batch-1 prefill and TTFT identify (`prefill_fixed_ms` also takes up what a
/// served TTFT carries besides the forward: HTTP, tokenisation, detokenisation).
const PREFILL_CANDIDATES: &[&str] = &[
    "gemm_bf16_eff",
    "gemm_fp8_eff",
    "gemm_fp4_eff",
    "moe_compute_eff",
    "attn_prefill_eff",
    "eager_launch_us",
    "prefill_fixed_ms",
];
/// Coefficients that decode steps (ITL, TPOT) identify (decode attention is bound by its KV stream or by its
/// per-token SM time, whichever is longer).
const DECODE_CANDIDATES: &[&str] = &[
    "gemm_mem_eff",
    "kernel_floor_us",
    "attn_decode_mem_eff",
    "attn_decode_token_ns",
    "moe_mem_eff",
];

/// Which coefficients to fit.
#[derive(Debug, Clone, PartialEq)]
pub enum CoefficientChoice {
    /// Those the measured metrics bear on and that pass the sensitivity screen.
    Auto,
    /// Exactly these (names from [`COEFFICIENT_INFO`]).
    Named(Vec<String>),
}

/// Leave-one-out refits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaveOneOut {
    /// No leave-one-out error.
    Skip,
    /// Refit without each of at most `max_points` points (evenly spaced), `max_iters` solver iterations each.
    Refit {
        /// Solver iterations per refit.
        max_iters: u64,
        /// Points left out at most (the rest are not refitted).
        max_points: usize,
    },
}

/// How to fit.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// The engine measured; its coefficients are the start and the prior.
    pub engine: EngineConfig,
    /// Which coefficients to fit.
    pub choice: CoefficientChoice,
    /// Weight λ of the prior residuals (0: none).
    pub prior_weight: f64,
    /// Solver iterations of the main fit.
    pub max_iters: u64,
    /// Leave-one-out refits.
    pub leave_one_out: LeaveOneOut,
    /// Most requests simulated per served point.
    pub max_sim_requests: u64,
    /// Seed of simulated length and arrival draws.
    pub seed: u64,
}

/// What stage a progress report is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitStage {
    /// The main fit.
    Fit,
    /// The leave-one-out refit without point `index` (the `done`-th of `total`).
    LeaveOneOut {
        /// Index of the point left out.
        index: usize,
        /// Refits done before this one.
        done: usize,
        /// Refits in all.
        total: usize,
    },
}

/// One solver iteration, as reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FitProgress {
    /// The stage.
    pub stage: FitStage,
    /// Solver iteration.
    pub iteration: u64,
    /// Best objective (sum of squared residuals) so far.
    pub best_cost: f64,
}

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(&FitProgress)>;

/// How the solver sees a coefficient: by its logarithm (ranges above 0, such as efficiencies and
/// latencies) or as is (ranges that start at 0, such as `prefill_fixed_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Log,
    Linear,
}

impl Scale {
    fn of(index: usize) -> Scale {
        if COEFFICIENT_INFO[index].min > 0.0 {
            Scale::Log
        } else {
            Scale::Linear
        }
    }

    fn to_solver(self, value: f64) -> f64 {
        match self {
            Scale::Log => value.ln(),
            Scale::Linear => value,
        }
    }

    fn to_value(self, solver: f64) -> f64 {
        match self {
            Scale::Log => solver.exp(),
            Scale::Linear => solver,
        }
    }
}

/// The least-squares objective: data residuals of the targets in use plus prior residuals.
pub struct Objective<'a> {
    engine: &'a EngineConfig,
    points: &'a [MeasuredPoint],
    targets: Vec<Target>,
    /// Indices into [`COEFFICIENT_INFO`] of the fitted coefficients.
    fitted: Vec<usize>,
    start_values: Vec<f64>,
    prior_weight: f64,
    max_sim_requests: u64,
    seed: u64,
    evaluations: Cell<u64>,
}

impl<'a> Objective<'a> {
    fn new(config: &'a FitConfig, points: &'a [MeasuredPoint], targets: Vec<Target>, fitted: Vec<usize>) -> Objective<'a> {
        Objective {
            engine: &config.engine,
            points,
            targets,
            fitted,
            start_values: config.engine.coefficients.to_vec(),
            prior_weight: config.prior_weight,
            max_sim_requests: config.max_sim_requests,
            seed: config.seed,
            evaluations: Cell::new(0),
        }
    }

    fn bounds(&self, slot: usize) -> (f64, f64) {
        let info = &COEFFICIENT_INFO[self.fitted[slot]];
        let scale = Scale::of(self.fitted[slot]);
        (scale.to_solver(info.min), scale.to_solver(info.max))
    }

    /// Coefficient values of a solver parameter vector.
    fn values_of(&self, u: &[f64]) -> Vec<f64> {
        let mut values = self.start_values.clone();
        for (slot, &ui) in u.iter().enumerate() {
            // Rounding in exp(ln) can step past the range's ends, which validation refuses: value_at clamps.
            values[self.fitted[slot]] = self.value_at(slot, ui);
        }
        values
    }

    /// The solver parameter vector of coefficient values.
    fn u_of(&self, values: &[f64]) -> Vec<f64> {
        (0..self.fitted.len())
            .map(|slot| {
                let (low, high) = self.bounds(slot);
                let index = self.fitted[slot];
                let x = ((Scale::of(index).to_solver(values[index]) - low) / (high - low)).clamp(0.005, 0.995);
                (x / (1.0 - x)).ln()
            })
            .collect()
    }

    fn step_model(&self, values: &[f64]) -> Result<StepModel> {
        let mut engine = self.engine.clone();
        engine.coefficients = Coefficients::from_slice(values)?;
        Ok(StepModel::new_unchecked(engine)?)
    }

    /// Predicted values of every target in use (None where the prediction failed).
    fn predictions(&self, values: &[f64]) -> Vec<Option<f64>> {
        self.evaluations.set(self.evaluations.get() + 1);
        let Ok(step) = self.step_model(values) else {
            return vec![None; self.targets.len()];
        };
        let mut cache: Vec<Option<Option<MeasuredMetrics>>> = vec![None; self.points.len()];
        self.targets
            .iter()
            .map(|target| {
                let predicted = cache[target.point]
                    .get_or_insert_with(|| predict_point(&step, &self.points[target.point], self.max_sim_requests, self.seed).ok());
                predicted
                    .as_ref()
                    .and_then(|p| predicted_value(p, target))
                    .filter(|v| v.is_finite() && *v > 0.0)
            })
            .collect()
    }

    fn data_residuals(&self, values: &[f64]) -> Vec<f64> {
        self.predictions(values)
            .iter()
            .zip(&self.targets)
            .map(|(predicted, target)| predicted.map_or(FAILED_RESIDUAL, |p| (p / target.measured).ln()))
            .collect()
    }

    fn prior_residuals(&self, values: &[f64]) -> Vec<f64> {
        (0..self.fitted.len())
            .map(|slot| {
                let (low, high) = self.bounds(slot);
                let index = self.fitted[slot];
                let scale = Scale::of(index);
                self.prior_weight * (scale.to_solver(values[index]) - scale.to_solver(self.start_values[index])) / (high - low)
            })
            .collect()
    }

    fn total_cost(&self, values: &[f64]) -> f64 {
        let data: f64 = self.data_residuals(values).iter().map(|r| r * r).sum();
        let prior: f64 = self.prior_residuals(values).iter().map(|r| r * r).sum();
        data + prior
    }

    /// Data residuals, then prior residuals, at solver parameters `u`.
    fn residuals(&self, u: &[f64]) -> Vec<f64> {
        let values = self.values_of(u);
        let mut residuals = self.data_residuals(&values);
        residuals.extend(self.prior_residuals(&values));
        residuals
    }

    /// Data residuals in use.
    fn n_data(&self) -> usize {
        self.targets.len()
    }

    /// The fitted coefficient of `slot` at solver parameter `u_slot` (any real: the logistic bounds it).
    fn value_at(&self, slot: usize, u_slot: f64) -> f64 {
        let (low, high) = self.bounds(slot);
        let sigma = 1.0 / (1.0 + (-u_slot).exp());
        let index = self.fitted[slot];
        let info = &COEFFICIENT_INFO[index];
        Scale::of(index).to_value(low + (high - low) * sigma).clamp(info.min, info.max)
    }

    /// dc/du of the fitted coefficient of `slot` at `u_slot`, in the coefficient's unit per logit unit.
    fn slope_at(&self, slot: usize, u_slot: f64) -> f64 {
        let (low, high) = self.bounds(slot);
        let sigma = 1.0 / (1.0 + (-u_slot).exp());
        let d_solver = (high - low) * sigma * (1.0 - sigma);
        match Scale::of(self.fitted[slot]) {
            Scale::Log => self.value_at(slot, u_slot) * d_solver,
            Scale::Linear => d_solver,
        }
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, u: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.total_cost(&self.values_of(u)))
    }
}

/// Forwards solver iterations to the caller's callback.
struct ProgressObserver {
    stage: FitStage,
    callback: Rc<RefCell<Option<ProgressFn>>>,
}

impl Observe<IterState<Vec<f64>, (), (), (), (), f64>> for ProgressObserver {
    fn observe_iter(&mut self, state: &IterState<Vec<f64>, (), (), (), (), f64>, _kv: &KV) -> std::result::Result<(), argmin::core::Error> {
        if let Some(callback) = self.callback.borrow_mut().as_mut() {
            callback(&FitProgress {
                stage: self.stage,
                iteration: state.get_iter(),
                best_cost: state.get_best_cost(),
            });
        }
        Ok(())
    }
}

/// What one solver run ended with.
struct SolverRun {
    values: Vec<f64>,
    /// Solver parameters of `values`.
    u: Vec<f64>,
    iterations: u64,
    evaluations: u64,
    termination: String,
    solver: &'static str,
}

/// Lets the executor own a borrow of the objective, so that the driver keeps it across restarts.
struct Borrowed<'o, 'a>(&'o Objective<'a>);

impl CostFunction for Borrowed<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, u: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        self.0.cost(u)
    }
}

/// Simplex sizes (in logit units) of the first run and of the restarts: Nelder–Mead can stall on a
/// flattened simplex, and a fresh, smaller simplex around the best point lets it go on.
const SIMPLEX_STEPS: [f64; 3] = [0.8, 0.25, 0.08];

/// Runs Levenberg–Marquardt from `u0`; when it cannot lower the cost at all (an objective too rough
/// for finite differences), Nelder–Mead from the same start.
fn run_solver(
    objective: &Objective<'_>,
    u0: &[f64],
    max_iters: u64,
    stage: FitStage,
    callback: &Rc<RefCell<Option<ProgressFn>>>,
) -> Result<SolverRun> {
    let mut residuals = |u: &[f64]| objective.residuals(u);
    let mut report = |iteration: u64, best_cost: f64| {
        if let Some(callback) = callback.borrow_mut().as_mut() {
            callback(&FitProgress {
                stage,
                iteration,
                best_cost,
            });
        }
    };
    let run = lm::levenberg_marquardt(&mut residuals, u0, max_iters, &mut report);
    if run.accepted_steps == 0 && run.cost > 1e-12 {
        let fallback = run_nelder_mead(objective, u0, max_iters, stage, callback)?;
        if fallback.values != objective.values_of(u0) {
            return Ok(fallback);
        }
    }
    Ok(SolverRun {
        values: objective.values_of(&run.u),
        u: run.u,
        iterations: run.iterations,
        evaluations: objective.evaluations.get(),
        termination: run.termination,
        solver: "levenberg-marquardt",
    })
}

/// Runs Nelder–Mead from `u0`, restarting around the best point while that helps.
fn run_nelder_mead(
    objective: &Objective<'_>,
    u0: &[f64],
    max_iters: u64,
    stage: FitStage,
    callback: &Rc<RefCell<Option<ProgressFn>>>,
) -> Result<SolverRun> {
    let mut best_u = u0.to_vec();
    let mut best_cost = objective.cost(&best_u).map_err(|e| Error::Fit { message: e.to_string() })?;
    let mut iterations = 0;
    let mut termination = String::from("no iterations allowed");
    for step in SIMPLEX_STEPS {
        if iterations >= max_iters {
            break;
        }
        let mut simplex = vec![best_u.clone()];
        for slot in 0..best_u.len() {
            let mut vertex = best_u.clone();
            vertex[slot] += if best_u[slot] > 2.0 { -step } else { step };
            simplex.push(vertex);
        }
        let solver = NelderMead::new(simplex)
            .with_sd_tolerance(1e-9)
            .map_err(|e| Error::Fit { message: e.to_string() })?;
        let result = Executor::new(Borrowed(objective), solver)
            .configure(|state| state.max_iters(max_iters - iterations))
            .add_observer(
                ProgressObserver {
                    stage,
                    callback: Rc::clone(callback),
                },
                ObserverMode::Always,
            )
            .run()
            .map_err(|e| Error::Fit { message: e.to_string() })?;
        let state = result.state();
        iterations += state.get_iter();
        termination = state
            .get_termination_reason()
            .map_or_else(|| "not terminated".to_string(), |r| r.text().to_string());
        let cost = state.get_best_cost();
        let improved = best_cost - cost;
        if cost < best_cost {
            if let Some(u) = state.get_best_param() {
                best_u = u.clone();
            }
            best_cost = cost;
        }
        if improved < 1e-9 + 1e-4 * best_cost {
            break;
        }
    }
    Ok(SolverRun {
        values: objective.values_of(&best_u),
        u: best_u,
        iterations,
        evaluations: objective.evaluations.get(),
        termination,
        solver: "nelder-mead",
    })
}

/// How one coefficient fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoefficientStatus {
    /// Fitted and changed by more than [`MOVED_FRACTION`].
    Moved,
    /// Fitted and changed by less.
    Held,
    /// A candidate the data bear on too weakly (sensitivity below [`MIN_SENSITIVITY`]); kept at its start.
    NotIdentified,
}

/// One coefficient's start, fitted value and sensitivity.
#[derive(Debug, Clone, Serialize)]
pub struct CoefficientFit {
    /// Name.
    pub name: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// Starting (prior) value.
    pub start: f64,
    /// Fitted value.
    pub fitted: f64,
    /// (fitted / start − 1) × 100.
    pub change_pct: f64,
    /// Root-mean-square elasticity of the predictions to it (at the fitted value; at the start when not fitted).
    pub sensitivity: f64,
    /// What happened to it.
    pub status: CoefficientStatus,
    /// Whether the fitted value sits at an end of its plausible range (the data pull it further).
    pub at_bound: bool,
    /// Standard error of the fitted value, in its unit (delta method through the logistic bound);
    /// absent when not fitted or when the points leave no degree of freedom for the noise.
    pub std_err: Option<f64>,
    /// 95% interval of the fitted value, in its unit: u ± t₀.₉₇₅·se(u) mapped through the logistic
    /// bound (so it stays inside the plausible range and may be asymmetric); absent as `std_err`.
    pub ci95: Option<[f64; 2]>,
}

/// One target's measured and predicted values.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// The target.
    #[serde(flatten)]
    pub target: Target,
    /// Its point's provenance label.
    pub label: String,
    /// Its point's file.
    pub path: String,
    /// Predicted with the starting coefficients.
    pub before: Option<f64>,
    /// Predicted with the fitted coefficients.
    pub after: Option<f64>,
    /// |after / measured − 1| × 100 (before the fit).
    pub ape_before_pct: Option<f64>,
    /// |after / measured − 1| × 100.
    pub ape_after_pct: Option<f64>,
    /// Predicted by a fit that left this point out.
    pub leave_one_out: Option<f64>,
    /// Its absolute % error.
    pub ape_leave_one_out_pct: Option<f64>,
}

/// The result of a fit.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// The fitted coefficients (the start where not fitted).
    pub coefficients: Coefficients,
    /// The starting coefficients.
    pub start: Coefficients,
    /// Every candidate coefficient: fitted (moved or held) or not identified.
    pub fitted: Vec<CoefficientFit>,
    /// Every target.
    pub targets: Vec<TargetResult>,
    /// Points used.
    pub n_points: usize,
    /// Median absolute % error before the fit.
    pub median_ape_before_pct: f64,
    /// Median absolute % error after the fit.
    pub median_ape_after_pct: f64,
    /// Median absolute % error of left-out points, when computed.
    pub loo_median_ape_pct: Option<f64>,
    /// Points refitted for leave-one-out.
    pub n_loo_points: usize,
    /// Solver iterations of the main fit.
    pub iterations: u64,
    /// Objective evaluations of the main fit.
    pub evaluations: u64,
    /// Why the main fit stopped.
    pub termination: String,
    /// The solver of the main fit: `levenberg-marquardt`, or `nelder-mead` where it had to take over.
    pub solver: String,
    /// Residual variance σ² = Σ data residual² / (targets − fitted coefficients), in ln units²
    /// (absent without a degree of freedom).
    pub residual_variance: Option<f64>,
    /// Objective (squared residuals plus priors) at the start.
    pub cost_before: f64,
    /// Objective at the fitted coefficients.
    pub cost_after: f64,
    /// Points left out and why, coefficients the measurements cannot tell apart, coefficients
    /// pinned at their range's ends.
    pub warnings: Vec<String>,
}

fn ape(predicted: Option<f64>, measured: f64) -> Option<f64> {
    predicted.map(|p| (p / measured - 1.0).abs() * 100.0)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// RMS elasticity of the data residuals to each coefficient in `indices`, at `values`.
fn sensitivities(objective: &Objective<'_>, values: &[f64], indices: &[usize]) -> Vec<f64> {
    const STEP: f64 = 0.1;
    let n_targets = objective.targets.len().max(1) as f64;
    indices
        .iter()
        .map(|&index| {
            let info = &COEFFICIENT_INFO[index];
            let up_value = (values[index] * STEP.exp()).min(info.max);
            let down_value = (values[index] * (-STEP).exp()).max(info.min);
            let span = (up_value / down_value).ln();
            if !(span.is_finite() && span > 0.0) {
                return 0.0;
            }
            let mut up = values.to_vec();
            up[index] = up_value;
            let mut down = values.to_vec();
            down[index] = down_value;
            let r_up = objective.data_residuals(&up);
            let r_down = objective.data_residuals(&down);
            let sum: f64 = r_up.iter().zip(&r_down).map(|(a, b)| ((a - b) / span).powi(2)).sum();
            (sum / n_targets).sqrt()
        })
        .collect()
}

fn candidate_names(config: &FitConfig, targets: &[Target], points: &[MeasuredPoint]) -> Result<Vec<usize>> {
    let index_of = |name: &str| COEFFICIENT_INFO.iter().position(|info| info.name == name);
    let names: Vec<String> = match &config.choice {
        CoefficientChoice::Named(names) => names.clone(),
        CoefficientChoice::Auto => {
            let prefill = targets.iter().any(|t| t.metric == MetricName::TtftMs)
                || points.iter().any(|p| matches!(p.workload, Workload::Served { .. }));
            let decode = targets
                .iter()
                .any(|t| matches!(t.metric, MetricName::ItlMs | MetricName::TpotMs | MetricName::E2eMs));
            let mut names: Vec<String> = Vec::new();
            if prefill {
                names.extend(PREFILL_CANDIDATES.iter().map(|s| s.to_string()));
            }
            if decode {
                names.extend(DECODE_CANDIDATES.iter().map(|s| s.to_string()));
            }
            if config.engine.mapping.tp() > 1 {
                names.push("allreduce_latency_us".into());
            }
            if config.engine.mapping.ep() > 1 {
                names.push("alltoall_latency_us".into());
            }
            names
        }
    };
    names
        .iter()
        .map(|name| {
            let index = index_of(name).ok_or_else(|| Error::Fit {
                message: format!(
                    "unknown coefficient '{name}' (known: {})",
                    COEFFICIENT_INFO.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
                ),
            })?;
            Ok(index)
        })
        .collect()
}

/// The targets of the points the starting coefficients can predict, the points they come from
/// (in order), and why the others were left out.
fn usable_targets(points: &[MeasuredPoint], config: &FitConfig) -> Result<(Vec<Target>, Vec<usize>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut all_targets = Vec::new();
    let start_step = StepModel::new_unchecked(config.engine.clone())?;
    for (index, point) in points.iter().enumerate() {
        let targets = targets_of(index, point);
        let where_from = format!("{} ({})", point.provenance.path, point.provenance.label);
        if targets.is_empty() {
            warnings.push(format!("{where_from}: no TTFT, ITL, TPOT, E2E or throughput to fit to"));
            continue;
        }
        match predict_point(&start_step, point, config.max_sim_requests, config.seed) {
            Ok(predicted) if targets.iter().all(|t| predicted_value(&predicted, t).is_some_and(|v| v > 0.0)) => all_targets.extend(targets),
            Ok(_) => warnings.push(format!("{where_from}: the model predicts no positive value for it")),
            Err(error) => warnings.push(format!("{where_from}: cannot be simulated: {error}")),
        }
    }
    let mut used_points: Vec<usize> = all_targets.iter().map(|t| t.point).collect();
    used_points.dedup();
    if used_points.len() < MIN_POINTS {
        let reason = if warnings.is_empty() {
            "measure more points: batch-1 prefill at several lengths and decode at several concurrencies".to_string()
        } else {
            warnings.join("; ")
        };
        return Err(Error::TooFewPoints {
            n_points: used_points.len(),
            needed: MIN_POINTS,
            reason,
        });
    }
    Ok((all_targets, used_points, warnings))
}

/// Candidate coefficients (indices into [`COEFFICIENT_INFO`]) with their sensitivity, most sensitive first.
type Ranked = Vec<(usize, f64)>;

/// The candidates ranked by sensitivity at the start, and those to fit (indices into
/// [`COEFFICIENT_INFO`], ascending): sensitive enough, at most one fewer than the points.
fn choose_fitted(config: &FitConfig, points: &[MeasuredPoint], targets: &[Target], n_points: usize) -> Result<(Ranked, Vec<usize>)> {
    let candidates = candidate_names(config, targets, points)?;
    let screen = Objective::new(config, points, targets.to_vec(), Vec::new());
    let start_sensitivity = sensitivities(&screen, &config.engine.coefficients.to_vec(), &candidates);
    let mut ranked: Vec<(usize, f64)> = candidates.iter().copied().zip(start_sensitivity.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let max_fitted = n_points.saturating_sub(1).max(1);
    let mut fitted: Vec<usize> = ranked
        .iter()
        .filter(|(_, s)| *s >= MIN_SENSITIVITY)
        .take(max_fitted)
        .map(|(i, _)| *i)
        .collect();
    fitted.sort_unstable();
    if fitted.is_empty() {
        return Err(Error::Fit {
            message: format!(
                "the measurements identify none of {} (largest sensitivity {:.4}, needed {MIN_SENSITIVITY})",
                candidates.iter().map(|&i| COEFFICIENT_INFO[i].name).collect::<Vec<_>>().join(", "),
                ranked.first().map_or(0.0, |r| r.1)
            ),
        });
    }
    Ok((ranked, fitted))
}

/// Leave-one-out predictions per target (None where not refitted) and the number of refits; each
/// refit starts from the main fit's solution `u_main`.
fn leave_one_out(
    config: &FitConfig,
    points: &[MeasuredPoint],
    all_targets: &[Target],
    used_points: &[usize],
    fitted: &[usize],
    u_main: &[f64],
    callback: &Rc<RefCell<Option<ProgressFn>>>,
) -> Result<(Vec<Option<f64>>, usize)> {
    let mut loo: Vec<Option<f64>> = vec![None; all_targets.len()];
    let LeaveOneOut::Refit { max_iters, max_points } = config.leave_one_out else {
        return Ok((loo, 0));
    };
    let n_used = used_points.len();
    let n_refits = n_used.min(max_points);
    let chosen: Vec<usize> = (0..n_refits).map(|k| used_points[k * n_used / n_refits.max(1)]).collect();
    for (done, &left_out) in chosen.iter().enumerate() {
        let kept: Vec<Target> = all_targets.iter().copied().filter(|t| t.point != left_out).collect();
        let objective = Objective::new(config, points, kept, fitted.to_vec());
        let stage = FitStage::LeaveOneOut {
            index: left_out,
            done,
            total: chosen.len(),
        };
        let refit = run_solver(&objective, u_main, max_iters, stage, callback)?;
        let left: Vec<Target> = all_targets.iter().copied().filter(|t| t.point == left_out).collect();
        let check = Objective::new(config, points, left, Vec::new());
        let mut predicted = check.predictions(&refit.values).into_iter();
        for (target_index, target) in all_targets.iter().enumerate() {
            if target.point == left_out {
                loo[target_index] = predicted.next().flatten();
            }
        }
    }
    Ok((loo, chosen.len()))
}

/// Whether a coefficient's value lies within 0.5% (of its solver range) of an end of its plausible range.
fn at_range_end(index: usize, value: f64) -> bool {
    let info = &COEFFICIENT_INFO[index];
    let scale = Scale::of(index);
    let (low, high) = (scale.to_solver(info.min), scale.to_solver(info.max));
    let position = (scale.to_solver(value) - low) / (high - low);
    !(0.005..=0.995).contains(&position)
}

/// Every candidate's report line: fitted ones with their change, sensitivity, bound and interval.
fn coefficient_fits(
    ranked: &[(usize, f64)],
    fitted: &[usize],
    start_values: &[f64],
    run: &SolverRun,
    fitted_sensitivity: &[f64],
    spread: &Uncertainty,
) -> Vec<CoefficientFit> {
    ranked
        .iter()
        .map(|&(index, sensitivity)| {
            let info = &COEFFICIENT_INFO[index];
            let fitted_slot = fitted.iter().position(|&i| i == index);
            let value = run.values[index];
            let change = value / start_values[index] - 1.0;
            CoefficientFit {
                name: info.name,
                unit: info.unit,
                start: start_values[index],
                fitted: value,
                change_pct: change * 100.0,
                sensitivity: fitted_slot.map_or(sensitivity, |slot| fitted_sensitivity[slot]),
                at_bound: fitted_slot.is_some() && at_range_end(index, value),
                status: match fitted_slot {
                    None => CoefficientStatus::NotIdentified,
                    Some(_) if change.abs() >= MOVED_FRACTION => CoefficientStatus::Moved,
                    Some(_) => CoefficientStatus::Held,
                },
                std_err: fitted_slot.and_then(|slot| spread.std_err[slot]),
                ci95: fitted_slot.and_then(|slot| spread.ci95[slot]),
            }
        })
        .collect()
}

/// A plain warning when fitted coefficients end at their range's ends: the data pull them past
/// what the physics allows, so the model does not describe these measurements.
fn bound_warning(coefficients: &[CoefficientFit]) -> Option<String> {
    let n_fitted = coefficients.iter().filter(|c| c.status != CoefficientStatus::NotIdentified).count();
    let pinned: Vec<String> = coefficients
        .iter()
        .filter(|c| c.at_bound)
        .map(|c| format!("{} {:.4} {}", c.name, c.fitted, c.unit))
        .collect();
    if pinned.is_empty() {
        return None;
    }
    let verdict = if 2 * pinned.len() >= n_fitted {
        "the model does not describe this server: do not trust its predictions for it"
    } else {
        "the data pull them past their plausible range; predictions that depend on them are doubtful"
    };
    Some(format!(
        "{} of {n_fitted} fitted coefficients ended at the end of their plausible range ({}): {verdict}",
        pinned.len(),
        pinned.join(", ")
    ))
}

/// Fits coefficients to measured points (see the module doc); `progress` hears every solver iteration.
pub fn fit(points: &[MeasuredPoint], config: &FitConfig, progress: Option<ProgressFn>) -> Result<FitReport> {
    let callback = Rc::new(RefCell::new(progress));
    config.engine.coefficients.validate()?;
    // Fails early, with the model's reason, when the configuration does not fit in memory.
    StepModel::new(config.engine.clone())?;
    let start_values = config.engine.coefficients.to_vec();
    let (all_targets, used_points, mut warnings) = usable_targets(points, config)?;
    let (ranked, fitted) = choose_fitted(config, points, &all_targets, used_points.len())?;

    // The main fit.
    let objective = Objective::new(config, points, all_targets.clone(), fitted.clone());
    let before = objective.predictions(&start_values);
    let cost_before = objective.total_cost(&start_values);
    let u_start = objective.u_of(&start_values);
    let run = run_solver(&objective, &u_start, config.max_iters, FitStage::Fit, &callback)?;
    let report_objective = Objective::new(config, points, all_targets.clone(), fitted.clone());
    let after = report_objective.predictions(&run.values);
    let cost_after = report_objective.total_cost(&run.values);
    let fitted_sensitivity = sensitivities(&report_objective, &run.values, &fitted);
    let spread = uncertainty(&report_objective, &run.u);
    warnings.extend(spread.warnings.iter().cloned());

    let (loo, n_loo_points) = leave_one_out(config, points, &all_targets, &used_points, &fitted, &run.u, &callback)?;
    let targets: Vec<TargetResult> = all_targets
        .iter()
        .enumerate()
        .map(|(i, target)| TargetResult {
            target: *target,
            label: points[target.point].provenance.label.clone(),
            path: points[target.point].provenance.path.clone(),
            before: before[i],
            after: after[i],
            ape_before_pct: ape(before[i], target.measured),
            ape_after_pct: ape(after[i], target.measured),
            leave_one_out: loo[i],
            ape_leave_one_out_pct: ape(loo[i], target.measured),
        })
        .collect();
    let coefficient_fits = coefficient_fits(&ranked, &fitted, &start_values, &run, &fitted_sensitivity, &spread);
    warnings.extend(bound_warning(&coefficient_fits));
    Ok(FitReport {
        coefficients: Coefficients::from_slice(&run.values)?,
        start: config.engine.coefficients.clone(),
        fitted: coefficient_fits,
        n_points: used_points.len(),
        median_ape_before_pct: median(targets.iter().filter_map(|t| t.ape_before_pct).collect()).unwrap_or(f64::NAN),
        median_ape_after_pct: median(targets.iter().filter_map(|t| t.ape_after_pct).collect()).unwrap_or(f64::NAN),
        loo_median_ape_pct: median(targets.iter().filter_map(|t| t.ape_leave_one_out_pct).collect()),
        n_loo_points,
        targets,
        iterations: run.iterations,
        evaluations: run.evaluations,
        termination: run.termination,
        solver: run.solver.to_string(),
        residual_variance: spread.residual_variance,
        cost_before,
        cost_after,
        warnings,
    })
}

#[cfg(test)]
mod tests;
