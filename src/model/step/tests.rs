//! Physics sanity of forward-pass step times.

use super::*;
use crate::model::arch::WeightFormats;
use crate::model::gpu::GpuCatalog;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::quant::WeightDtype;
use crate::model::server_args::{MoeA2aBackend, SglangVersion};

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

/// DeepSeek-V3 on H100 as SGLang's large-scale EP deployment decodes it (72 DEP ranks over nine nodes,
/// 32 redundant experts, DeepEP), with the given layout flags.
fn large_ep_decode(dense_tp1: bool, dp_lm_head: bool, tbo: bool) -> StepModel {
    let model = find_bundled_spec("deepseek-ai/DeepSeek-V3").unwrap().unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
    let mapping = ParallelMapping::with_redundant_experts(&model, 72, 72, 72, 32).unwrap();
    let mut server_args = ServerArgs::sglang_defaults();
    server_args.mem_fraction_static = Some(0.8);
    server_args.cuda_graph_max_bs = Some(256);
    server_args.moe_a2a_backend = MoeA2aBackend::Deepep;
    server_args.moe_dense_tp1 = dense_tp1;
    server_args.enable_dp_lm_head = dp_lm_head;
    server_args.enable_two_batch_overlap = tbo;
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args,
        coefficients: Coefficients::defaults(),
    })
    .unwrap()
}

#[test]
fn data_parallel_dense_layers_and_lm_head_skip_the_engine_wide_gathers() {
    let tp_dense = large_ep_decode(false, false, false);
    let dp_dense = large_ep_decode(true, true, false);
    // Full dense-layer and vocabulary weights on every GPU cost memory...
    assert!(dp_dense.memory().weights_bytes_per_gpu > tp_dense.memory().weights_bytes_per_gpu + 1e9);
    // ...and save gathering 256 x 72 tokens over nine nodes for each of the three dense layers.
    let (slow, fast) = (tp_dense.decode_step_s(256, 2000), dp_dense.decode_step_s(256, 2000));
    assert!(fast.comm_s < slow.comm_s && fast.total_s < slow.total_s, "{fast:?} {slow:?}");
}

#[test]
fn two_batch_overlap_hides_part_of_deepep_communication() {
    let plain = large_ep_decode(true, true, false).decode_step_s(256, 2000);
    let overlapped = large_ep_decode(true, true, true).decode_step_s(256, 2000);
    let work_s = plain.gpu_s - plain.comm_s;
    // Faster than computing and communicating in turn, never faster than the longer of the two.
    assert!(overlapped.total_s < plain.total_s, "{overlapped:?} {plain:?}");
    assert!(overlapped.gpu_s >= work_s.max(plain.comm_s), "{overlapped:?} {plain:?}");
    // The large-scale EP blog (lmsys.org 2025-05-05): 22.3k output tok/s per 8-GPU node at 256
    // requests per GPU and 2K context, i.e. about 92 ms a step; within 25% here.
    let measured_s = 8.0 * 256.0 / 22_282.0;
    assert!(
        (overlapped.total_s / measured_s - 1.0).abs() < 0.25,
        "{} vs {measured_s}",
        overlapped.total_s
    );
}

fn step_model_of_release(model: &str, gpu: &str, tp: u32, version: SglangVersion) -> StepModel {
    let model = find_bundled_spec(model).unwrap().unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find(gpu).unwrap().clone();
    let mapping = ParallelMapping::new(&model, tp, 1, 1).unwrap();
    let mut server_args = ServerArgs::sglang_defaults();
    server_args.sglang_version = Some(version);
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args,
        coefficients: Coefficients::defaults(),
    })
    .unwrap()
}

#[test]
fn eager_short_prefills_are_launch_bound_and_cost_the_same() {
    // SGLang 0.5.5 prefills eagerly: Qwen3-32B-FP8 TP2 on H200 launches 17 kernels per layer at 45 us, more than
    // the GPU needs for 100 or 1000 tokens, so both take the launches' time (issue 12's 50.3 ms).
    let step = step_model_of_release("Qwen/Qwen3-32B-FP8", "h200", 2, SglangVersion(0, 5, 5));
    assert_eq!(step.args().piecewise_cuda_graph_max_tokens, None);
    let (short, long) = (step.prefill_s(100), step.prefill_s(1000));
    assert!((short / long - 1.0).abs() < 1e-9, "{short} {long}");
    assert!(short > 64.0 * 17.0 * 45e-6, "{short}");
}

#[test]
fn piecewise_cuda_graphs_leave_only_the_attention_launches() {
    let step = step_model_of_release("Qwen/Qwen3-32B-FP8", "h200", 2, SglangVersion(0, 5, 8));
    assert_eq!(step.args().piecewise_cuda_graph_max_tokens, Some(8192));
    // 64 layers x 2 attention kernels (KV store, FA3) at 45 us, plus 65 graph pieces replayed at 30 us:
    // 5.76 ms + 1.95 ms.
    let launch_s = step.piecewise_launch_s(100, 128.0).unwrap();
    assert!((launch_s - 7.71e-3).abs() < 1e-9, "{launch_s}");
    assert_eq!(step.piecewise_launch_s(8193, 128.0), None);
    // Issue 12's target: a 100-token prefill within 30 ms and under 0.6x the 1000-token one.
    let (short, long) = (step.prefill_s(100), step.prefill_s(1000));
    assert!(short <= 0.030 && short <= 0.6 * long, "{short} {long}");
    // Without graphs (0.5.5) the same prefill costs at least twice as much.
    let eager = step_model_of_release("Qwen/Qwen3-32B-FP8", "h200", 2, SglangVersion(0, 5, 5));
    assert!(eager.prefill_s(100) > 2.0 * short);
}

#[test]
fn mla_models_and_dp_attention_prefill_eagerly_even_where_piecewise_graphs_are_the_default() {
    let deepseek = step_model_of_release("DeepSeek-R1", "h200", 8, SglangVersion(0, 5, 8));
    assert_eq!(deepseek.piecewise_launch_s(100, 122.0), None);
    let model = find_bundled_spec("DeepSeek-R1").unwrap().unwrap();
    let dp_attention = ParallelMapping::new(&model, 8, 8, 8).unwrap();
    assert_eq!(
        crate::model::server_args::default_piecewise_cuda_graph_max_tokens(&dp_attention, SglangVersion(0, 5, 8)),
        None
    );
}
