use sglsim::model::ops::*;
use sglsim::model::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model = model_catalog::find_bundled_spec(&a[1]).unwrap().unwrap();
    let gpu = gpu::GpuCatalog::builtin().unwrap().find(&a[2]).unwrap().clone();
    let (tp, dp, ep): (u32, u32, u32) = (a[3].parse().unwrap(), a[4].parse().unwrap(), a[5].parse().unwrap());
    let batch: u64 = a[6].parse().unwrap();
    let ctx: u64 = a[7].parse().unwrap();
    let mapping = mapping::ParallelMapping::new(&model, tp, dp, ep).unwrap();
    let mut sa = server_args::ServerArgs::sglang_defaults();
    sa.mem_fraction_static = Some(0.8);
    sa.cuda_graph_max_bs = Some(512);
    if a.len() > 8 {
        sa.moe_a2a_backend = server_args::MoeA2aBackend::Deepep;
    }
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
    let contexts = vec![ctx; batch as usize];
    let mut opsv = Vec::new();
    describe_attention(
        &model,
        &mapping,
        m.kv_bytes_per_token_per_layer,
        RankBatch::Decode(&contexts),
        batch,
        &mut opsv,
    );
    describe_mlp(
        &model,
        &mapping,
        step.args(),
        batch * dp as u64,
        batch,
        co.kernels_per_layer,
        &mut opsv,
    );
    describe_head(&model, &mapping, step.args(), batch, batch, &mut opsv);
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
    let s = step.decode_step_s(batch, ctx);
    println!("sum {:.2} ms; decode_step {:.2} ms", tot * 1e3, s.total_s * 1e3);
}
