//! Hot paths: costing one forward step, and simulating 10,000 requests.
//!
//! Fixed, seeded inputs; nothing here reads the network or `../shared`.

use criterion::{criterion_group, criterion_main, Criterion};

use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::model_catalog::find_bundled_spec;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::{EngineConfig, StepModel};
use sglsim::sim::cluster::{simulate, Deployment, Role, SimOptions};
use sglsim::sim::deploy::engine_spec;
use sglsim::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};

fn step_model(model: &str, gpu: &str, tp: u32) -> StepModel {
    let model = find_bundled_spec(model).unwrap().unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find(gpu).unwrap().clone();
    let mapping = ParallelMapping::new(&model, tp, 1, 1).unwrap();
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients: Coefficients::defaults(),
    })
    .unwrap()
}

fn bench_step(c: &mut Criterion) {
    let deepseek = step_model("deepseek-ai/DeepSeek-R1", "h200", 8);
    c.bench_function("decode_step deepseek-r1 tp8 batch 256", |b| {
        b.iter(|| deepseek.decode_step_s(256, 1500))
    });
    c.bench_function("prefill 8k deepseek-r1 tp8", |b| b.iter(|| deepseek.prefill_s(8192)));
    c.bench_function("static-batch predict llama-3.1-8b (model build + 1 request)", |b| {
        b.iter(|| {
            let step = step_model("meta-llama/Llama-3.1-8B-Instruct", "h100", 1);
            step.prefill_s(1024) + step.decode_step_s(1, 1536).total_s
        })
    });
}

fn bench_simulation(c: &mut Criterion) {
    let deepseek = step_model("deepseek-ai/DeepSeek-R1", "h200", 8);
    let workload = WorkloadSpec {
        isl: 1000,
        osl: 1000,
        lengths: LengthDistribution::Fixed,
        arrivals: Arrivals::Closed { concurrency: 256 },
        n_requests: 10_000,
        n_warmup: 0,
        seed: 1,
    };
    let requests = generate_requests(&workload).unwrap();
    let options = SimOptions {
        arrivals: workload.arrivals,
        sla: None,
        record_timeline: false,
    };
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    for n_requests in [2_500usize, 10_000] {
        group.bench_function(format!("deepseek-r1 tp8 h200 1k/1k c256 {n_requests} requests"), |b| {
            b.iter(|| {
                let deployment = Deployment {
                    engines: vec![engine_spec(&deepseek, Role::Aggregated)],
                    transfer: None,
                };
                simulate(&deployment, &requests[..n_requests], options)
                    .unwrap()
                    .metrics
                    .throughput
                    .output_tok_s
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_step, bench_simulation);
criterion_main!(benches);
