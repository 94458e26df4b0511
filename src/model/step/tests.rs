//! Physics sanity of forward-pass step times.

use super::*;
use crate::model::arch::WeightFormats;
use crate::model::gpu::GpuCatalog;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::quant::WeightDtype;

fn step_model(model: &str, gpu: &str, tp: u32, dp: u32, ep: u32, dtype: Option<WeightDtype>) -> StepModel {
    let mut model = find_bundled_spec(model).unwrap().unwrap();
    if let Some(dtype) = dtype {
        model.weights = WeightFormats::uniform(dtype);
    }
    let gpu = GpuCatalog::builtin().unwrap().find(gpu).unwrap().clone();
    let mapping = ParallelMapping::new(&model, tp, dp, ep).unwrap();
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients: Coefficients::defaults(),
    })
    .unwrap()
}

#[test]
fn batch_one_decode_is_within_one_to_1_6_times_weights_over_bandwidth() {
    for (model, gpu, tp) in [
        ("Llama-3.1-8B-Instruct", "h100", 1),
        ("Llama-3.1-70B-Instruct", "h100", 4),
        ("Qwen3-32B", "h200", 2),
    ] {
        let step = step_model(model, gpu, tp, 1, 1, None);
        let floor_s = step.memory().weights_bytes_per_gpu / step.gpu().hbm_bytes_per_s;
        let ratio = step.decode_step_s(1, 1024).total_s / floor_s;
        assert!((1.0..1.6).contains(&ratio), "{model}: {ratio}");
    }
}

#[test]
fn prefill_grows_superlinearly_at_long_isl() {
    let step = step_model("Llama-3.1-8B-Instruct", "h100", 1, 1, 1, None);
    let per_token_short = step.prefill_s(4096) / 4096.0;
    let per_token_long = step.prefill_s(65_536) / 65_536.0;
    assert!(per_token_long > per_token_short * 1.3, "{per_token_short} {per_token_long}");
}

#[test]
fn decode_grows_with_batch_and_context() {
    let step = step_model("Llama-3.1-70B-Instruct", "h100", 4, 1, 1, None);
    let base = step.decode_step_s(16, 1024).total_s;
    assert!(step.decode_step_s(128, 1024).total_s > base);
    assert!(step.decode_step_s(16, 16_384).total_s > base);
}

#[test]
fn larger_tp_lowers_prefill_for_70b() {
    let tp4 = step_model("Llama-3.1-70B-Instruct", "h100", 4, 1, 1, None).prefill_s(8192);
    let tp8 = step_model("Llama-3.1-70B-Instruct", "h100", 8, 1, 1, None).prefill_s(8192);
    assert!(tp8 < tp4 * 0.7, "{tp4} {tp8}");
}

#[test]
fn fp8_beats_bf16_where_compute_bound() {
    let bf16 = step_model("Llama-3.1-70B-Instruct", "h100", 4, 1, 1, Some(WeightDtype::Bf16)).prefill_s(8192);
    let fp8 = step_model("Llama-3.1-70B-Instruct", "h100", 4, 1, 1, Some(WeightDtype::Fp8PerTensor)).prefill_s(8192);
    assert!(fp8 < bf16 * 0.85, "{bf16} {fp8}");
}

#[test]
fn eager_beyond_cuda_graph_max_bs() {
    let step = step_model("Llama-3.1-8B-Instruct", "h100", 1, 1, 1, None);
    assert!(step.decode_step_s(256, 512).cuda_graph);
    assert!(!step.decode_step_s(257, 512).cuda_graph);
}

#[test]
fn dp_attention_prefill_on_one_rank_stalls_all() {
    let step = step_model("DeepSeek-R1", "h200", 8, 8, 8, None);
    let contexts = vec![2048u64; 16];
    let requests = [ExtendRequest {
        new_tokens: 8192,
        cached_tokens: 0,
    }];
    let decode_only: Vec<RankBatch> = (0..8).map(|_| RankBatch::Decode(&contexts)).collect();
    let mut with_prefill = decode_only.clone();
    with_prefill[3] = RankBatch::Extend(&requests);
    assert!(step.forward(&with_prefill).total_s > 3.0 * step.forward(&decode_only).total_s);
}

#[test]
fn graph_decode_fast_path_matches_the_general_path() {
    for (model, gpu, tp, dp, ep) in [
        ("Llama-3.1-8B-Instruct", "h100", 1, 1, 1),
        ("gpt-oss-120b", "h100", 4, 1, 1),
        ("DeepSeek-R1", "h200", 8, 8, 8),
    ] {
        let step = step_model(model, gpu, tp, dp, ep, None);
        let short = vec![700u64; 5];
        let long: Vec<u64> = (0..37).map(|i| 100 + 397 * i).collect();
        let mut ranks = vec![RankBatch::Idle; dp as usize];
        ranks[0] = RankBatch::Decode(&long);
        if dp > 1 {
            ranks[1] = RankBatch::Decode(&short);
        }
        let fast = step.forward(&ranks);
        let general = step.forward_general(&ranks);
        assert!(fast.cuda_graph && general.cuda_graph);
        assert!(
            (fast.total_s / general.total_s - 1.0).abs() < 1e-9,
            "{model}: {} vs {}",
            fast.total_s,
            general.total_s
        );
    }
}
