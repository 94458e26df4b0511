//! The live engine against the simulator: same batches, same step times, same token times (to the microsecond).

use std::collections::BTreeMap;

use super::*;
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuCatalog;
use crate::model::mapping::ParallelMapping;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::server_args::ServerArgs;
use crate::model::step::{EngineConfig, StepModel};
use crate::sim::cluster::{simulate, Deployment, Role, SimOptions};
use crate::sim::deploy::engine_spec;
use crate::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};

fn step_model(model: &str, tp: u32, dp: u32, ep: u32, stream_interval: u64) -> StepModel {
    let model = find_bundled_spec(model).unwrap().unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
    let mapping = ParallelMapping::new(&model, tp, dp, ep).unwrap();
    let mut server_args = ServerArgs::sglang_defaults();
    server_args.stream_interval = stream_interval;
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args,
        coefficients: Coefficients::defaults(),
    })
    .unwrap()
}

fn live_engine(step: &StepModel) -> LiveEngine<StepModel> {
    let config = LiveEngineConfig::from_engine_spec(&engine_spec(step, Role::Aggregated));
    LiveEngine::new(step.clone(), config)
}

/// (sent, first token, finished) of each request, sorted.
type Timings = Vec<(SimTime, SimTime, SimTime)>;

/// The simulator's timings for the same engine without a front end: the live engine is what sits
/// behind the twin's HTTP layer, which is its front end.
fn simulated(step: &StepModel, workload: &WorkloadSpec) -> Timings {
    let mut spec = engine_spec(step, Role::Aggregated);
    spec.frontend_request_s = 0.0;
    let deployment = Deployment {
        engines: vec![spec],
        transfer: None,
    };
    let options = SimOptions {
        arrivals: workload.arrivals,
        sla: None,
        record_timeline: false,
    };
    let output = simulate(&deployment, &generate_requests(workload).unwrap(), options).unwrap();
    let mut timings: Timings = output.records.iter().map(|r| (r.sent, r.first_token, r.finished)).collect();
    timings.sort();
    timings
}

/// Drives the live engine as closed-loop clients would: a finished request's client sends its next
/// request while the following step runs (or at once when the engine idles).
fn live(step: &StepModel, workload: &WorkloadSpec) -> Timings {
    let requests = generate_requests(workload).unwrap();
    let concurrency = match workload.arrivals {
        Arrivals::Closed { concurrency } => concurrency as usize,
        _ => requests.len(),
    };
    let mut engine = live_engine(step);
    let mut sent = BTreeMap::new();
    let mut first = BTreeMap::new();
    let mut timings = Vec::new();
    let mut next = 0;
    let submit = |engine: &mut LiveEngine<StepModel>, next: &mut usize, sent: &mut BTreeMap<u64, SimTime>| {
        if let Some(spec) = requests.get(*next) {
            engine.submit(*next as u64, spec.isl, spec.osl).unwrap();
            sent.insert(*next as u64, engine.now());
            *next += 1;
            true
        } else {
            false
        }
    };
    for _ in 0..concurrency {
        submit(&mut engine, &mut next, &mut sent);
    }
    let mut follow_ups = 0;
    loop {
        let started = engine.start_step().is_some();
        let mut submitted = false;
        for _ in 0..std::mem::take(&mut follow_ups) {
            submitted |= submit(&mut engine, &mut next, &mut sent);
        }
        if !started {
            if submitted {
                continue;
            }
            break;
        }
        for chunk in engine.finish_step() {
            first.entry(chunk.request_id).or_insert(chunk.at);
            if chunk.finished {
                timings.push((sent[&chunk.request_id], first[&chunk.request_id], chunk.at));
                follow_ups += 1;
            }
        }
    }
    assert_eq!(timings.len(), requests.len(), "every request finished");
    timings.sort();
    timings
}

/// Equal to the microsecond (the simulator may sum step times in another order).
fn assert_same(live: &Timings, simulated: &Timings) {
    assert_eq!(live.len(), simulated.len());
    let close = |a: SimTime, b: SimTime| a.0.abs_diff(b.0) <= 1_000;
    for (l, s) in live.iter().zip(simulated) {
        assert!(
            close(l.0, s.0) && close(l.1, s.1) && close(l.2, s.2),
            "live {l:?} vs simulated {s:?}"
        );
    }
}

fn workload(arrivals: Arrivals, lengths: LengthDistribution, n_requests: u64) -> WorkloadSpec {
    WorkloadSpec {
        isl: 3000,
        osl: 40,
        lengths,
        arrivals,
        n_requests,
        n_warmup: 0,
        seed: 3,
    }
}

#[test]
fn static_batch_matches_the_simulator() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 1);
    let spec = workload(Arrivals::AllAtOnce, LengthDistribution::Fixed, 8);
    assert_same(&live(&step, &spec), &simulated(&step, &spec));
}

#[test]
fn closed_loop_with_chunked_prefill_matches_the_simulator() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 1);
    let spec = WorkloadSpec {
        isl: 12_000,
        ..workload(
            Arrivals::Closed { concurrency: 3 },
            LengthDistribution::Uniform { range_ratio: 0.3 },
            12,
        )
    };
    assert_same(&live(&step, &spec), &simulated(&step, &spec));
}

#[test]
fn dp_attention_ranks_match_the_simulator() {
    let step = step_model("Qwen/Qwen3-30B-A3B", 2, 2, 2, 1);
    let spec = workload(
        Arrivals::Closed { concurrency: 5 },
        LengthDistribution::Uniform { range_ratio: 0.5 },
        10,
    );
    assert_same(&live(&step, &spec), &simulated(&step, &spec));
}

#[test]
fn stream_interval_groups_tokens_after_the_first() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 4);
    let mut engine = live_engine(&step);
    engine.submit(42, 100, 10).unwrap();
    let mut sizes = Vec::new();
    while engine.start_step().is_some() {
        for chunk in engine.finish_step() {
            assert_eq!(chunk.request_id, 42);
            sizes.push((chunk.n_tokens, chunk.generated_tokens, chunk.finished));
        }
    }
    assert_eq!(sizes, [(1, 1, false), (4, 5, false), (4, 9, false), (1, 10, true)]);
}

#[test]
fn aborted_requests_free_their_kv_and_stream_nothing_more() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 1);
    let mut engine = live_engine(&step);
    engine.submit(1, 1000, 50).unwrap();
    engine.submit(2, 1000, 50).unwrap();
    engine.start_step().unwrap();
    engine.finish_step();
    let before = engine.kv_used_tokens();
    assert!(engine.abort(1));
    assert!(!engine.abort(1), "already gone");
    assert_eq!(engine.kv_used_tokens(), before - 1000, "the prompt's KV is freed");
    let mut last = None;
    while engine.start_step().is_some() {
        for chunk in engine.finish_step() {
            assert_eq!(chunk.request_id, 2);
            last = Some(chunk);
        }
    }
    assert!(last.is_some_and(|c| c.finished && c.generated_tokens == 50));
    assert_eq!(engine.kv_used_tokens(), 0);
    assert_eq!(engine.queue_counts(), QueueCounts::default());
}

#[test]
fn requests_that_can_never_fit_are_refused() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 1);
    let mut engine = live_engine(&step);
    let error = engine.submit(1, 10_000_000, 10).unwrap_err().to_string();
    assert!(error.contains("do not fit the KV pool"), "{error}");
    assert!(engine.submit(2, 0, 10).is_err());
    assert!(engine.start_step().is_none());
}

#[test]
fn the_request_table_is_compacted_without_losing_requests() {
    let step = step_model("Qwen/Qwen3-8B", 1, 1, 1, 1);
    let mut engine = live_engine(&step);
    let mut finished = 0;
    let mut next = 0u64;
    for _ in 0..64 {
        engine.submit(next, 8, 2).unwrap();
        next += 1;
    }
    while engine.start_step().is_some() {
        for chunk in engine.finish_step() {
            if chunk.finished {
                finished += 1;
                if next < 3000 {
                    engine.submit(next, 8, 2).unwrap();
                    next += 1;
                }
            }
        }
    }
    assert_eq!(finished, 3000);
    assert!(engine.requests.len() < 2100, "{}", engine.requests.len());
    assert_eq!(engine.kv_used_tokens(), 0);
}
