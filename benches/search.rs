//! The full SLA search, as `sglsim search` runs it: Qwen3-32B-FP8 on 32 × H200 (agg and disagg),
//! and DeepSeek-V3 on 16 × H200. Fixed, seeded inputs; nothing here reads the network or `../shared`.

use criterion::{criterion_group, criterion_main, Criterion};

use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::model_catalog::find_bundled_spec;
use sglsim::model::server_args::ServerArgs;
use sglsim::search::config::{GpuLimits, ModeChoice, SearchConfig, SlaTarget, WorkloadShape};
use sglsim::sim::metrics::Percentile;
use sglsim::sim::workload::LengthDistribution;

fn config(model: &str, total_gpus: u32, ttft_ms: f64, itl_ms: f64) -> SearchConfig {
    SearchConfig {
        model: find_bundled_spec(model).unwrap().unwrap(),
        model_flags: format!("--model {model}"),
        gpus: vec![GpuCatalog::builtin().unwrap().find("h200").unwrap().clone()],
        coefficients: Coefficients::defaults(),
        server_args: ServerArgs::sglang_defaults(),
        limits: GpuLimits {
            total_gpus: Some(total_gpus),
            max_gpus_per_engine: None,
        },
        workload: WorkloadShape {
            isl: 4000,
            osl: 500,
            lengths: LengthDistribution::Fixed,
            seed: 0,
        },
        sla: SlaTarget {
            ttft_ms,
            itl_ms,
            percentile: Percentile::P90,
        },
        modes: ModeChoice::Both,
        load: None,
        top_k: 5,
        max_simulations: 96,
        n_threads: None,
    }
}

fn bench_search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search");
    group.sample_size(10);
    let qwen = config("Qwen/Qwen3-32B-FP8", 32, 300.0, 10.0);
    group.bench_function("qwen3-32b-fp8 32xh200 4000/500 ttft300 itl10 both", |b| {
        b.iter(|| sglsim::search::search(&qwen).unwrap().evaluated)
    });
    let deepseek = config("deepseek-ai/DeepSeek-V3", 16, 2000.0, 50.0);
    group.bench_function("deepseek-v3 16xh200 4000/500 ttft2000 itl50 both", |b| {
        b.iter(|| sglsim::search::search(&deepseek).unwrap().evaluated)
    });
    group.finish();
}

criterion_group!(benches, bench_search);
criterion_main!(benches);
