use sglsim::model::ops::*;
use sglsim::model::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = model_catalog::find_bundled_spec(&args[1]).unwrap().unwrap();
    let gpu = gpu::GpuCatalog::builtin().unwrap().find(&args[2]).unwrap().clone();
    let tp: u32 = args[3].parse().unwrap();
    let isl: u64 = args[4].parse().unwrap();
    let mapping = mapping::ParallelMapping::new(&model, tp, 1, 1).unwrap();
    let sa = server_args::ServerArgs::sglang_defaults();
    let co = coefficients::Coefficients::defaults();
    let step = step::StepModel::new_unchecked(step::EngineConfig {
        model: model.clone(),
        gpu: gpu.clone(),
        mapping,
        server_args: sa,
        coefficients: co.clone(),
    })
    .unwrap();
    let m = step.memory();
    let reqs = [ExtendRequest {
        new_tokens: isl,
        cached_tokens: 0,
    }];
    let mut opsv = Vec::new();
    describe_attention(
        &model,
        &mapping,
        m.kv_bytes_per_token_per_layer,
        RankBatch::Extend(&reqs),
        isl,
        &mut opsv,
    );
    describe_mlp(
        &model,
        &mapping,
        step.args(),
        MlpTokens {
            global: isl,
            local: isl,
            prefill: true,
        },
        co.kernels_per_layer,
        &mut opsv,
    );
    describe_head(&model, &mapping, step.args(), isl, 1, &mut opsv);
    let mut tot = 0.0;
    for op in &opsv {
        let c = cost::cost_op(op, &gpu, &co);
        tot += c.total_s();
        println!(
            "{:16} x{:3} {:8.3} ms  c{:.3} m{:.3} comm{:.3} f{:.3}",
            op.name,
            op.repeat,
            c.total_s() * 1e3,
            c.compute_s * 1e3,
            c.memory_s * 1e3,
            c.comm_s * 1e3,
            c.floor_s * 1e3
        );
    }
    println!("sum {:.2} ms; prefill_s {:.2} ms", tot * 1e3, step.prefill_s(isl) * 1e3);
}
