//! Hand-computed scheduler scenarios with exact expected timelines.
//!
//! The step timer is a fake: every iteration with a prefill on any rank takes 10 ms, every
//! decode-only iteration 1 ms, so each expected time below can be derived by hand from SGLang's rules.

use super::cluster::{simulate, Deployment, EngineSpec, Role, SimOptions, StepTimer, TransferLink};
use super::metrics::RequestRecord;
use super::scheduler::SchedulerConfig;
use super::workload::{Arrivals, RequestSpec};
use crate::model::ops::RankBatch;
use crate::model::server_args::OverlapSchedule;

struct FakeTimer;

impl StepTimer for FakeTimer {
    fn step_s(&self, ranks: &[RankBatch<'_>]) -> f64 {
        if ranks.iter().any(|r| matches!(r, RankBatch::Extend(_))) {
            0.010
        } else {
            0.001
        }
    }
}

fn config(kv_capacity_tokens: u64, chunk: Option<u64>, ratios: (f64, f64)) -> SchedulerConfig {
    SchedulerConfig {
        kv_capacity_tokens,
        max_running_requests: 16,
        chunked_prefill_size: chunk,
        max_prefill_tokens: 16_384,
        page_size: 1,
        enable_mixed_chunk: false,
        radix_cache: false,
        init_new_token_ratio: ratios.0,
        min_new_token_ratio: ratios.1,
        new_token_ratio_decay: 0.0,
    }
}

fn engine(role: Role, scheduler: SchedulerConfig) -> EngineSpec<'static> {
    EngineSpec {
        role,
        timer: &FakeTimer,
        scheduler,
        dp: 1,
        n_gpus: 1,
        stream_interval: 1,
        kv_bytes_per_token_per_gpu: 1000.0,
        first_token_overhead_s: 0.0005,
        frontend_request_s: 0.0,
        overlap_schedule: OverlapSchedule::Off,
    }
}

fn request(isl: u64, osl: u64) -> RequestSpec {
    RequestSpec {
        arrival_s: Some(0.0),
        isl,
        osl,
        prefix_group: None,
        shared_prefix_tokens: 0,
        warmup: false,
    }
}

/// Runs all requests at t = 0; returns (TTFT ms, E2E ms) per request sorted by E2E, and retractions.
fn run(deployment: &Deployment<'_>, workload: &[RequestSpec]) -> (Vec<(f64, f64)>, u64) {
    let options = SimOptions {
        arrivals: Arrivals::AllAtOnce,
        sla: None,
        record_timeline: true,
    };
    let output = simulate(deployment, workload, options).unwrap();
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    let mut records: Vec<(f64, f64)> = output
        .records
        .iter()
        .map(|r: &RequestRecord| (round(r.ttft_ms()), round(r.e2e_ms())))
        .collect();
    records.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
    (records, output.n_retractions)
}

#[test]
fn two_requests_one_chunked_prompt() {
    // t=0: A (250 tokens) is chunked to 100; t=10: its second chunk; t=20: its last 50 tokens
    // with B's whole 50-token prompt in the same batch; both first tokens at t=30. Decode steps of
    // 1 ms: B (osl 2) ends at 31, A (osl 3) at 32.
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(10_000, Some(100), (0.7, 0.1)))],
        transfer: None,
    };
    let (records, retractions) = run(&deployment, &[request(250, 3), request(50, 2)]);
    assert_eq!(records, vec![(30.0, 31.0), (30.0, 32.0)]);
    assert_eq!(retractions, 0);
}

#[test]
fn kv_full_retracts_the_request_with_fewest_tokens() {
    // KV 100 tokens, three requests of 10 in / 40 out, new_token_ratio fixed at 0.3.
    // t=0 prefill A (rem_total 100 > 50); t=10 prefill B (100 - 10 - 39*0.3 = 78.3 > 50);
    // t=20 prefill C (100 - 20 - 78*0.3 = 56.6 > 50). Decode from t=30, 3 tokens per step:
    // step 24 (t=53) finds 1 free token, retracts C (all have 24 tokens; the last one pops),
    // A and B finish at t=69; C re-prefills 34 tokens (t=69..79) and decodes 15 steps to t=94.
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(100, None, (0.3, 0.3)))],
        transfer: None,
    };
    let (records, retractions) = run(&deployment, &[request(10, 40), request(10, 40), request(10, 40)]);
    assert_eq!(retractions, 1);
    assert_eq!(records, vec![(10.0, 69.0), (20.0, 69.0), (30.0, 94.0)]);
}

#[test]
fn front_end_hands_requests_over_one_at_a_time() {
    // Front end 1 ms per request, both sent at t=0: A reaches the idle scheduler at 1 ms and is
    // prefilled alone (1..11); B reaches it at 2 ms, during A's prefill, and is prefilled next
    // (11..21) before A decodes (prefill first). Both decode their second token in one 1 ms step
    // and finish at 22. TTFT counts from the send: A 11, B 21.
    let mut spec = engine(Role::Aggregated, config(10_000, None, (0.7, 0.1)));
    spec.frontend_request_s = 0.001;
    let deployment = Deployment {
        engines: vec![spec],
        transfer: None,
    };
    let (records, _) = run(&deployment, &[request(50, 2), request(50, 2)]);
    assert_eq!(records, vec![(11.0, 22.0), (21.0, 22.0)]);
    // Without the front end both reach the scheduler together and share one prefill.
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(10_000, None, (0.7, 0.1)))],
        transfer: None,
    };
    let (records, _) = run(&deployment, &[request(50, 2), request(50, 2)]);
    assert_eq!(records, vec![(10.0, 11.0), (10.0, 11.0)]);
}

#[test]
fn disaggregated_transfer_then_decode() {
    // Prefill 0..10 ms; KV of 100 tokens × 1000 B at 1e8 B/s = 1 ms plus 2 ms latency: transfer
    // done at 13; the decode engine streams the first token 0.5 ms later, then decodes token 2 at
    // 14 and token 3 at 15.
    let deployment = Deployment {
        engines: vec![
            engine(Role::Prefill, config(10_000, None, (0.7, 0.1))),
            engine(Role::Decode, config(10_000, None, (0.7, 0.1))),
        ],
        transfer: Some(TransferLink {
            bytes_per_s: 1e8,
            latency_s: 0.002,
        }),
    };
    let (records, _) = run(&deployment, &[request(100, 3)]);
    assert_eq!(records, vec![(13.5, 15.0)]);
}

#[test]
fn transfers_that_finish_prefill_together_queue_on_the_link() {
    // A and B (100 in / 3 out) are prefilled together 0..10. Each prompt's KV (100 x 1000 B at 1e8 B/s)
    // takes 1 ms on the wire: A's bytes leave 10..11 (its only chunk is computed at 10) and it is seen
    // 2 ms later, at 13; B's wait for the link and go 11..12, seen at 14. A streams its first token at
    // 13.5 and decodes 13..14, 14..15; B joins at 14 (first token 14.5) and decodes 14..15, 15..16.
    let deployment = Deployment {
        engines: vec![
            engine(Role::Prefill, config(10_000, None, (0.7, 0.1))),
            engine(Role::Decode, config(10_000, None, (0.7, 0.1))),
        ],
        transfer: Some(TransferLink {
            bytes_per_s: 1e8,
            latency_s: 0.002,
        }),
    };
    let (records, _) = run(&deployment, &[request(100, 3), request(100, 3)]);
    assert_eq!(records, vec![(13.5, 15.0), (14.5, 16.0)]);
}

#[test]
fn a_busy_decode_engine_preallocates_at_its_next_scheduling_point() {
    // A (100 in / 20 out) at t=0: pre-allocated at once (decode idle), prefilled 0..10, transfer 10..13
    // (2 ms + 100 x 1000 B at 1e8 B/s), first token at 13.5, then 19 decode steps of 1 ms to 32.
    // B (100 in / 2 out) reaches the decode engine at 20.3, during the step 20..21: SGLang's decode loop
    // pops its pre-allocation queue once per iteration, so B is pre-allocated, and handed to the prefill
    // engine, at 21; prefill 21..31, transfer to 34; the decode engine (idle since 32) streams B's first
    // token at 34.5 (TTFT 14.2) and its second at 35 (E2E 14.7). Pre-allocating at 20.3 would give 13.5 / 14.0.
    let deployment = Deployment {
        engines: vec![
            engine(Role::Prefill, config(10_000, None, (0.7, 0.1))),
            engine(Role::Decode, config(10_000, None, (0.7, 0.1))),
        ],
        transfer: Some(TransferLink {
            bytes_per_s: 1e8,
            latency_s: 0.002,
        }),
    };
    let workload = [
        request(100, 20),
        RequestSpec {
            arrival_s: Some(0.0203),
            ..request(100, 2)
        },
    ];
    let options = SimOptions {
        arrivals: Arrivals::Trace,
        sla: None,
        record_timeline: false,
    };
    let output = simulate(&deployment, &workload, options).unwrap();
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    let mut records: Vec<(f64, f64)> = output.records.iter().map(|r| (round(r.ttft_ms()), round(r.e2e_ms()))).collect();
    records.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(records, vec![(14.2, 14.7), (13.5, 32.0)]);
}

#[test]
fn closed_loop_keeps_concurrency_and_same_seed_same_output() {
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(10_000, Some(64), (0.7, 0.1)))],
        transfer: None,
    };
    let workload: Vec<RequestSpec> = (0..12)
        .map(|i| RequestSpec {
            arrival_s: None,
            ..request(40 + i, 5)
        })
        .collect();
    let options = SimOptions {
        arrivals: Arrivals::Closed { concurrency: 3 },
        sla: None,
        record_timeline: true,
    };
    let first = simulate(&deployment, &workload, options).unwrap();
    let second = simulate(&deployment, &workload, options).unwrap();
    assert_eq!(first.metrics, second.metrics);
    assert_eq!(first.metrics.n_requests, 12);
    assert!(first.timeline.iter().all(|r| r.batch_size <= 3), "more than 3 requests in flight");
}

#[test]
fn oversized_request_is_refused() {
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(100, None, (0.7, 0.1)))],
        transfer: None,
    };
    let options = SimOptions {
        arrivals: Arrivals::AllAtOnce,
        sla: None,
        record_timeline: false,
    };
    let error = simulate(&deployment, &[request(90, 20)], options).unwrap_err().to_string();
    assert!(error.contains("does not fit the KV pool of 100"), "{error}");
}

#[test]
fn overlap_scheduler_sees_a_new_request_one_batch_later() {
    // A (10 in / 5 out) prefills 0..10 and decodes from 10 in 1 ms steps. B (10 in / 2 out) arrives
    // at 10.5, during step 10..11. Without overlap the batch formed at 11 admits B (prefill 11..21);
    // with overlap the batch run at 11 was formed at 10, so B is first seen at 11 and prefilled 12..22.
    let mut spec = engine(Role::Aggregated, config(10_000, None, (0.7, 0.1)));
    let workload = [
        request(10, 5),
        RequestSpec {
            arrival_s: Some(0.0105),
            ..request(10, 2)
        },
    ];
    let options = SimOptions {
        arrivals: Arrivals::Trace,
        sla: None,
        record_timeline: false,
    };
    let ttft_of_b = |spec: EngineSpec<'static>| {
        let deployment = Deployment {
            engines: vec![spec],
            transfer: None,
        };
        let output = simulate(&deployment, &workload, options).unwrap();
        let b = output.records.iter().find(|r| r.osl == 2).unwrap();
        (b.ttft_ms() * 1000.0).round() / 1000.0
    };
    assert_eq!(ttft_of_b(engine(Role::Aggregated, config(10_000, None, (0.7, 0.1)))), 10.5);
    spec.overlap_schedule = OverlapSchedule::On;
    assert_eq!(ttft_of_b(spec), 11.5);
}

#[test]
fn decode_fast_forward_matches_step_by_step() {
    use crate::model::coefficients::Coefficients;
    use crate::model::gpu::GpuCatalog;
    use crate::model::mapping::ParallelMapping;
    use crate::model::model_catalog::find_bundled_spec;
    use crate::model::server_args::ServerArgs;
    use crate::model::step::{EngineConfig, StepModel};
    use crate::sim::deploy::engine_spec;
    use crate::sim::workload::{generate_requests, LengthDistribution, WorkloadSpec};

    for (model, gpu, tp, dp, ep) in [("Qwen3-8B", "h100", 1, 1, 1), ("DeepSeek-R1", "h200", 8, 8, 8)] {
        let model = find_bundled_spec(model).unwrap().unwrap();
        let gpu = GpuCatalog::builtin().unwrap().find(gpu).unwrap().clone();
        let mapping = ParallelMapping::new(&model, tp, dp, ep).unwrap();
        let step = StepModel::new(EngineConfig {
            model,
            gpu,
            mapping,
            server_args: ServerArgs::sglang_defaults(),
            coefficients: Coefficients::defaults(),
        })
        .unwrap();
        for arrivals in [Arrivals::Closed { concurrency: 24 }, Arrivals::Poisson { rate_per_s: 6.0 }] {
            let workload = WorkloadSpec {
                isl: 600,
                osl: 300,
                lengths: LengthDistribution::Uniform { range_ratio: 0.3 },
                arrivals,
                n_requests: 120,
                n_warmup: 2,
                seed: 3,
            };
            let requests = generate_requests(&workload).unwrap();
            let run = |record_timeline: bool| {
                let deployment = Deployment {
                    engines: vec![engine_spec(&step, Role::Aggregated)],
                    transfer: None,
                };
                simulate(
                    &deployment,
                    &requests,
                    SimOptions {
                        arrivals,
                        sla: None,
                        record_timeline,
                    },
                )
                .unwrap()
            };
            // The timeline needs every iteration, so recording it turns the fast-forward off.
            let fast = run(false);
            let slow = run(true);
            assert_eq!(fast.n_iterations, slow.n_iterations);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            for (a, b) in [
                (fast.metrics.ttft_ms.p50, slow.metrics.ttft_ms.p50),
                (fast.metrics.ttft_ms.p99, slow.metrics.ttft_ms.p99),
                (fast.metrics.itl_ms.mean, slow.metrics.itl_ms.mean),
                (fast.metrics.itl_ms.p90, slow.metrics.itl_ms.p90),
                (fast.metrics.tpot_ms.p50, slow.metrics.tpot_ms.p50),
                (fast.metrics.e2e_ms.p99, slow.metrics.e2e_ms.p99),
                (fast.metrics.throughput.output_tok_s, slow.metrics.throughput.output_tok_s),
            ] {
                assert!(close(a, b), "{arrivals:?}: fast {a} vs step-by-step {b}");
            }
        }
    }
}

/// Records of a two-client closed loop of 10-token prompts and 20-token outputs: (sent ms, TTFT ms,
/// E2E ms) in completion order.
fn two_clients(n_warmup: u64) -> Vec<(f64, f64, f64)> {
    let deployment = Deployment {
        engines: vec![engine(Role::Aggregated, config(10_000, None, (0.7, 0.1)))],
        transfer: None,
    };
    let arrivals = Arrivals::Closed { concurrency: 2 };
    let workload = super::workload::generate_requests(&super::workload::WorkloadSpec {
        isl: 10,
        osl: 20,
        lengths: super::workload::LengthDistribution::Fixed,
        arrivals,
        n_requests: 4,
        n_warmup,
        seed: 0,
    })
    .unwrap();
    let options = SimOptions {
        arrivals,
        sla: None,
        record_timeline: false,
    };
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    simulate(&deployment, &workload, options)
        .unwrap()
        .records
        .iter()
        .map(|r| {
            (
                round(r.sent.ms_since(super::time::SimTime::ZERO)),
                round(r.ttft_ms()),
                round(r.e2e_ms()),
            )
        })
        .collect()
}

#[test]
fn clients_started_together_stay_in_phase() {
    // Both prompts are prefilled in one batch (0..10), decode 19 steps together and finish at 29;
    // both clients send at 29, the idle engine prefills both again (29..39), and so on: SGLang's
    // prefill-first rule keeps a wave together for ever.
    assert_eq!(
        two_clients(0),
        vec![(0.0, 10.0, 29.0), (0.0, 10.0, 29.0), (29.0, 10.0, 29.0), (29.0, 10.0, 29.0)]
    );
}

#[test]
fn staggered_warm_up_puts_clients_out_of_phase() {
    // Warm-up outputs are staggered to 20 + ⌈20·1/2⌉ = 30 and 20 + 20 = 40 tokens. Both warm-ups
    // prefill together (0..10); W0 finishes at 10 + 29 = 39 and its client sends M0 at 39, after the
    // batch at 39 was formed (decode W1, 39..40). M0 prefills alone 40..50 (TTFT 11) while W1 waits
    // with 31 tokens; W1 then decodes beside M0 and reaches 40 tokens at 59, when M0 has 10. M1 is
    // sent at 59, prefills 60..70 (TTFT 11) after one more decode of M0, and M0 reaches 20 tokens at
    // 79 (E2E 40). From then on each client's request is prefilled while the other one decodes: sends
    // 20 ms apart, TTFT 11, E2E 40; the last one (M3, sent at 99) decodes alone once M2 is done at
    // 119 and finishes at 129 (E2E 30).
    assert_eq!(
        two_clients(2),
        vec![(39.0, 11.0, 40.0), (59.0, 11.0, 40.0), (79.0, 11.0, 40.0), (99.0, 11.0, 30.0)]
    );
}
