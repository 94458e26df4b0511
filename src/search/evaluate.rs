//! Evaluates a screened candidate with the serving simulator: one unit, a modest seeded workload.
//!
//! Replicas are identical and the router spreads requests evenly, so one unit (one aggregated
//! engine, or one xPyD unit in lowest terms) at its share of the load tells per-GPU and per-user
//! throughput and latency for the whole deployment. Closed loops send `3 ×` the unit's clients
//! (at least 32, within a token budget) after one warm-up wave whose output lengths are staggered
//! (`sim::workload::stagger_warmup`), so clients arrive as in steady state rather than in synchronised waves;
//! open loops size the run by Little's law from the screen.

use super::config::SearchConfig;
use super::screen::Estimate;
use super::space::{Candidate, EngineChoice, Layout, UnitLoad};
use crate::sim::cluster::{simulate, Deployment, EngineSpec, Role, SimOptions};
use crate::sim::deploy::{engine_spec, transfer_link};
use crate::sim::metrics::RunMetrics;
use crate::sim::workload::{generate_requests, Arrivals, WorkloadSpec};

/// Output tokens one simulation may generate (bounds the cost of large-concurrency candidates).
const OUTPUT_TOKEN_BUDGET: u64 = 600_000;
/// Fewest measured requests of a simulation.
const MIN_MEASURED_REQUESTS: u64 = 32;
/// Measured requests per client (closed loop) or per request in flight (open loop).
const REQUESTS_PER_CLIENT: u64 = 3;

/// The measured requests and warm-up requests of a candidate's run.
pub fn request_counts(candidate: &Candidate, estimate: &Estimate, osl: u64) -> (u64, u64) {
    let in_flight = match candidate.unit_load {
        UnitLoad::Concurrency(clients) => clients,
        UnitLoad::Rate(rate_per_s) => {
            let life_s = (estimate.ttft_ms.min(60_000.0) + estimate.itl_ms * osl as f64) * 1e-3;
            (rate_per_s * life_s).ceil().max(1.0) as u64
        }
    };
    let budget = (OUTPUT_TOKEN_BUDGET / osl.max(1)).max(in_flight);
    let measured = (REQUESTS_PER_CLIENT * in_flight).max(MIN_MEASURED_REQUESTS).min(budget);
    (measured, in_flight)
}

fn with_cap<'a>(mut spec: EngineSpec<'a>, cap: Option<u64>, dp: u64) -> EngineSpec<'a> {
    if let Some(cap) = cap {
        spec.scheduler.max_running_requests = spec.scheduler.max_running_requests.min((cap / dp).max(1));
    }
    spec
}

/// Simulates one unit of a candidate and returns what its clients would measure.
pub fn simulate_candidate(
    candidate: &Candidate,
    estimate: &Estimate,
    engines: &[EngineChoice],
    config: &SearchConfig,
) -> crate::sim::Result<RunMetrics> {
    let (n_requests, n_warmup) = request_counts(candidate, estimate, config.workload.osl);
    let arrivals = match candidate.unit_load {
        UnitLoad::Concurrency(clients) => Arrivals::Closed { concurrency: clients },
        UnitLoad::Rate(rate_per_s) => Arrivals::Poisson { rate_per_s },
    };
    let workload = generate_requests(&WorkloadSpec {
        isl: config.workload.isl,
        osl: config.workload.osl,
        lengths: config.workload.lengths,
        arrivals,
        n_requests,
        n_warmup,
        seed: config.workload.seed,
    })?;
    let cap = candidate.max_running_cap;
    let deployment = match candidate.layout {
        Layout::Agg { engine } => {
            let engine = &engines[engine];
            Deployment {
                engines: vec![with_cap(engine_spec(&engine.step, Role::Aggregated), cap, engine.dp())],
                transfer: None,
            }
        }
        Layout::Disagg {
            prefill,
            decode,
            n_prefill,
            n_decode,
        } => {
            let prefill = &engines[prefill];
            let decode = &engines[decode];
            let mut specs: Vec<EngineSpec<'_>> = (0..n_prefill).map(|_| engine_spec(&prefill.step, Role::Prefill)).collect();
            specs.extend((0..n_decode).map(|_| with_cap(engine_spec(&decode.step, Role::Decode), cap, decode.dp())));
            Deployment {
                engines: specs,
                transfer: Some(transfer_link(
                    &config.gpus[prefill.gpu_idx],
                    &config.coefficients,
                    n_prefill * prefill.n_gpus(),
                    n_decode * decode.n_gpus(),
                )),
            }
        }
    };
    let options = SimOptions {
        arrivals,
        sla: None,
        record_timeline: false,
    };
    Ok(simulate(&deployment, &workload, options)?.metrics)
}
