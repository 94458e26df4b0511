//! Unit tests of the search: space, screen, survivors, SLA percentile and bad input.

use super::config::{GpuLimits, Load, ModeChoice, SearchConfig, SlaTarget, WorkloadShape};
use super::screen::estimate;
use super::space::{batch_sweep, build_engines, enumerate_candidates, Candidate, Layout, UnitLoad};
use super::{search, Error};
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuCatalog;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::server_args::ServerArgs;
use crate::sim::metrics::Percentile;
use crate::sim::workload::LengthDistribution;

fn config(model: &str, gpus: &[&str], limits: GpuLimits) -> SearchConfig {
    let catalog = GpuCatalog::builtin().unwrap();
    SearchConfig {
        model: find_bundled_spec(model).unwrap().unwrap(),
        model_flags: format!("--model {model}"),
        gpus: gpus.iter().map(|g| catalog.find(g).unwrap().clone()).collect(),
        coefficients: Coefficients::defaults(),
        server_args: ServerArgs::sglang_defaults(),
        limits,
        workload: WorkloadShape {
            isl: 512,
            osl: 32,
            lengths: LengthDistribution::Fixed,
            seed: 1,
        },
        sla: SlaTarget {
            ttft_ms: 200.0,
            itl_ms: 15.0,
            percentile: Percentile::P90,
        },
        modes: ModeChoice::Both,
        load: None,
        top_k: 3,
        max_simulations: 12,
        n_threads: Some(1),
    }
}

fn per_engine(max_gpus_per_engine: u32) -> GpuLimits {
    GpuLimits {
        total_gpus: None,
        max_gpus_per_engine: Some(max_gpus_per_engine),
    }
}

#[test]
fn batch_sweep_has_powers_of_two_and_halves_and_the_maximum() {
    assert_eq!(batch_sweep(20), vec![1, 2, 3, 4, 6, 8, 12, 16, 20]);
    assert_eq!(batch_sweep(1), vec![1]);
}

#[test]
fn engines_are_every_fitting_size_mapping_and_chunk() {
    // DeepSeek-V3 on H200 fits only at 8 GPUs: TP, TEP and DEP, three chunk sizes each.
    let cfg = config("DeepSeek-V3", &["h200"], per_engine(8));
    let (engines, skipped) = build_engines(&cfg);
    assert!(skipped.is_empty());
    let mut kinds: Vec<&str> = engines.iter().map(|e| e.step.mapping().kind()).collect();
    kinds.dedup();
    assert_eq!(kinds, ["TP", "TEP", "DEP"]);
    assert_eq!(engines.len(), 9);
    assert!(engines.iter().all(|e| e.step.mapping().n_gpus() == 8));
    // A dense model gets TP only, at every size that divides it.
    let cfg = config("Qwen3-8B", &["h100"], per_engine(8));
    let sizes: Vec<u32> = build_engines(&cfg).0.iter().map(|e| e.n_gpus()).collect();
    assert!(sizes.contains(&1) && sizes.contains(&2) && sizes.contains(&4) && sizes.contains(&8));
    assert!(!sizes.contains(&3), "{sizes:?}");
}

#[test]
fn engines_refused_at_the_default_mem_fraction_run_at_the_smallest_one_that_fits() {
    // DeepSeek-R1 FP8 on 4 x B200: 157.5 GiB of weights per GPU against 151.5 GiB at SGLang's default 0.855.
    // Operators raise --mem-fraction-static; 0.90 leaves about 30,000 tokens of KV per rank, enough for the
    // 16384-token chunk and a 512 + 32-token request.
    let cfg = config("DeepSeek-R1", &["b200"], per_engine(4));
    let (engines, skipped) = build_engines(&cfg);
    assert!(skipped.is_empty(), "{skipped:?}");
    let tp4 = engines
        .iter()
        .find(|e| e.chunked_prefill_size_flag.is_none() && e.step.mapping().kind() == "TP")
        .unwrap();
    assert_eq!(tp4.step.args().mem_fraction_static, 0.90);
    assert!(tp4.step.memory().kv_capacity_tokens_per_rank > 16_384);
    // A fraction the user gives is kept, even where it does not fit.
    let mut fixed = config("DeepSeek-R1", &["b200"], per_engine(4));
    fixed.server_args.mem_fraction_static = Some(0.85);
    let (engines, skipped) = build_engines(&fixed);
    assert!(engines.is_empty() && skipped.len() == 1, "{skipped:?}");
}

#[test]
fn screen_prices_disaggregated_decode_without_prefill_interference() {
    let mut cfg = config("Qwen3-8B", &["h100"], per_engine(1));
    cfg.load = Some(Load::Concurrency { n_clients: 32 });
    let (engines, _) = build_engines(&cfg);
    let engine = engines.iter().position(|e| e.chunked_prefill_size_flag.is_none()).unwrap();
    let agg = |clients| Candidate {
        layout: Layout::Agg { engine },
        replicas: 1,
        unit_load: UnitLoad::Concurrency(clients),
        max_running_cap: None,
    };
    let disagg = Candidate {
        layout: Layout::Disagg {
            prefill: engine,
            decode: engine,
            n_prefill: 1,
            n_decode: 1,
        },
        ..agg(32)
    };
    let light = estimate(&agg(4), &engines, &cfg);
    let heavy = estimate(&agg(32), &engines, &cfg);
    assert!(heavy.itl_ms > light.itl_ms && heavy.tok_s_per_gpu > light.tok_s_per_gpu);
    let split = estimate(&disagg, &engines, &cfg);
    let decode_ms = engines[engine].decode_s(32) * 1e3;
    assert!((split.itl_ms - decode_ms).abs() < 1e-9, "{} vs {decode_ms}", split.itl_ms);
    assert!(split.itl_ms < heavy.itl_ms);
}

#[test]
fn load_given_sweeps_replicas_and_batch_caps() {
    let mut cfg = config(
        "Qwen3-8B",
        &["h100"],
        GpuLimits {
            total_gpus: Some(4),
            max_gpus_per_engine: Some(1),
        },
    );
    cfg.modes = ModeChoice::Agg;
    cfg.load = Some(Load::Concurrency { n_clients: 64 });
    let (engines, _) = build_engines(&cfg);
    let candidates = enumerate_candidates(&cfg, &engines);
    let for_engine: Vec<&Candidate> = candidates.iter().filter(|c| c.layout == Layout::Agg { engine: 0 }).collect();
    let replicas: Vec<u32> = for_engine
        .iter()
        .filter(|c| c.max_running_cap.is_none())
        .map(|c| c.replicas)
        .collect();
    assert_eq!(replicas, [1, 2, 3, 4]);
    assert!(for_engine.iter().any(|c| c.replicas == 1 && c.max_running_cap == Some(32)));
    assert!(for_engine
        .iter()
        .all(|c| matches!(c.unit_load, UnitLoad::Concurrency(n) if n * u64::from(c.replicas) >= 64)));
}

#[test]
fn feasibility_is_checked_at_the_chosen_percentile() {
    let run = |percentile| {
        let mut cfg = config("Qwen3-8B", &["h100"], per_engine(2));
        cfg.sla.percentile = percentile;
        search(&cfg).unwrap()
    };
    let median = run(Percentile::P50);
    let tail = run(Percentile::P99);
    // The percentile does not change which candidates are simulated, only what is read from them.
    assert_eq!(median.points.len(), tail.points.len());
    let mut compared = 0;
    for p in &tail.points {
        assert_eq!(p.feasible, p.ttft_ms <= 200.0 && p.itl_ms <= 15.0, "{}", p.label);
        if let Some(m) = median.points.iter().find(|m| m.label == p.label) {
            assert!(p.ttft_ms >= m.ttft_ms && p.itl_ms >= m.itl_ms, "{}", p.label);
            assert!(!p.feasible || m.feasible, "{}", p.label);
            compared += 1;
        }
    }
    assert_eq!(compared, tail.points.len());
    assert!(tail.feasible <= median.feasible);
}

#[test]
fn bad_input_is_named() {
    let cfg = config(
        "DeepSeek-V3",
        &["h200"],
        GpuLimits {
            total_gpus: Some(4),
            max_gpus_per_engine: None,
        },
    );
    let error = search(&cfg).unwrap_err();
    assert!(matches!(error, Error::TotalBelowOneEngine { needed_gpus: 8, .. }), "{error}");
    assert!(error.to_string().contains("--total-gpus 4 is below one engine"), "{error}");
    let cfg = config("Llama-3.1-405B-Instruct", &["a100-40g", "l40s"], per_engine(2));
    let error = search(&cfg).unwrap_err().to_string();
    assert!(
        error.contains("fits on none") && error.contains("a100-40g") && error.contains("l40s"),
        "{error}"
    );
    let mut cfg = config("Qwen3-8B", &["h100"], per_engine(1));
    cfg.workload.osl = 1;
    assert!(search(&cfg).unwrap_err().to_string().contains("--osl"));
}

#[test]
fn dep_engines_that_do_not_fit_sglangs_default_reserve_get_a_smaller_graph_batch() {
    // DeepSeek-V3 DEP16 on H100 with DeepEP: SGLang's default reserve (512 graph batch x 16 ranks x 3 MiB)
    // leaves no room for the weights; a smaller --cuda-graph-max-bs makes it fit, as deployments set it.
    let mut config = config("deepseek-ai/DeepSeek-V3", &["h100"], per_engine(16));
    config.server_args.moe_a2a_backend = crate::model::server_args::MoeA2aBackend::Deepep;
    let (engines, _) = build_engines(&config);
    let dep: Vec<_> = engines
        .iter()
        .filter(|e| e.step.mapping().dp() == 16 && e.step.mapping().ep() == 16)
        .collect();
    assert!(!dep.is_empty(), "no DEP16 engine among {}", engines.len());
    for engine in dep {
        let graph_bs = engine.cuda_graph_max_bs_flag.expect("a lowered --cuda-graph-max-bs");
        assert!(graph_bs <= 128, "{graph_bs}");
        // The large-scale EP layout comes with it.
        assert!(engine.step.args().moe_dense_tp1 && engine.step.args().enable_dp_lm_head);
    }
}
