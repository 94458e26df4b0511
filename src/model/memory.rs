//! SGLang's memory model: weights per GPU, KV cell size, KV capacity and `max_running_requests`.
//!
//! Reproduces `model_executor/model_runner.py` (`profile_max_num_token`) and the KV pools of
//! `mem_cache/memory_pool.py` (v0.5.x): the KV pool gets what is left of
//! `total × mem_fraction_static` after the weights, divided by the bytes one token needs on one rank.

use super::arch::{Attention, ModelSpec};
use super::coefficients::Coefficients;
use super::gpu::{GpuSpec, GIB};
use super::mapping::ParallelMapping;
use super::quant::WeightDtype;
use super::server_args::{MoeA2aBackend, ResolvedServerArgs};

/// Where the memory of one GPU goes, and what it leaves for the KV cache.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Weights resident on one GPU, bytes.
    pub weights_bytes_per_gpu: f64,
    /// KV bytes one token occupies on one rank (all layers).
    pub kv_bytes_per_token_per_rank: f64,
    /// KV bytes per token per rank for one full-attention layer (what decode attention reads).
    pub kv_bytes_per_token_per_layer: f64,
    /// Bytes left for the KV pool on one GPU (negative when the weights do not fit).
    pub kv_pool_bytes_per_gpu: f64,
    /// Tokens the KV pool of one rank holds.
    pub kv_capacity_tokens_per_rank: u64,
    /// Tokens the whole engine holds (per rank × DP-attention ranks).
    pub kv_capacity_tokens: u64,
    /// Requests the engine runs at once (per DP rank: this divided by dp).
    pub max_running_requests: u64,
    /// The `mem_fraction_static` used.
    pub mem_fraction_static: f64,
    /// GPU memory as the driver reports it, bytes.
    pub gpu_memory_bytes: f64,
    /// Free memory SGLang measures before loading the weights (what `mem_fraction_static` multiplies), bytes.
    pub free_before_weights_bytes: f64,
    /// Tokens per KV page (the pool is whole pages).
    pub page_size: u64,
    /// Tokens of one prefill chunk (`chunked_prefill_size`, or `max_prefill_tokens` without chunking): the
    /// least KV cache in which the scheduler admits a whole chunk.
    pub chunk_tokens: u64,
}

/// Highest `--mem-fraction-static` sglsim proposes: SGLang's own default rule never goes above it
/// (`server_args.py`, the fraction clamped to at most 0.95), keeping at least 5% of the GPU outside the static
/// pool for activations, CUDA graphs and communicator buffers.
pub const MAX_PROPOSED_MEM_FRACTION_STATIC: f64 = 0.95;

/// A `--mem-fraction-static` that gives a KV pool, and the pool it gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittingFraction {
    /// The fraction (in hundredths, as operators write it).
    pub mem_fraction_static: f64,
    /// KV tokens one rank then holds.
    pub kv_capacity_tokens_per_rank: u64,
}

impl MemoryPlan {
    /// Computes the plan for a model, GPU, mapping and resolved flags.
    pub fn new(
        model: &ModelSpec,
        gpu: &GpuSpec,
        mapping: &ParallelMapping,
        args: &ResolvedServerArgs,
        coefficients: &Coefficients,
    ) -> MemoryPlan {
        let weights_bytes_per_gpu = weights_bytes_per_gpu(model, mapping, args);
        let (kv_bytes_per_token_per_rank, kv_bytes_per_token_per_layer) = kv_cell_bytes(model, mapping, args);
        // SGLang measures free memory before the weights (CUDA context and communicators already
        // allocated) and keeps `1 - mem_fraction_static` of that free memory out of the pool.
        let free_before_weights = gpu.memory_bytes - runtime_reserve_bytes(mapping, coefficients);
        let kv_pool_bytes_per_gpu = free_before_weights * args.mem_fraction_static - weights_bytes_per_gpu;
        let raw_tokens = if kv_pool_bytes_per_gpu > 0.0 {
            (kv_pool_bytes_per_gpu / kv_bytes_per_token_per_rank).floor() as u64
        } else {
            0
        };
        let kv_capacity_tokens_per_rank = raw_tokens / args.page_size * args.page_size;
        let kv_capacity_tokens = kv_capacity_tokens_per_rank * u64::from(mapping.dp());
        let max_running_requests = max_running_requests(model, mapping, args, kv_capacity_tokens_per_rank);
        MemoryPlan {
            weights_bytes_per_gpu,
            kv_bytes_per_token_per_rank,
            kv_bytes_per_token_per_layer,
            kv_pool_bytes_per_gpu,
            kv_capacity_tokens_per_rank,
            kv_capacity_tokens,
            max_running_requests,
            mem_fraction_static: args.mem_fraction_static,
            gpu_memory_bytes: gpu.memory_bytes,
            free_before_weights_bytes: free_before_weights,
            page_size: args.page_size,
            chunk_tokens: args.chunked_prefill_size.unwrap_or(args.max_prefill_tokens),
        }
    }

    /// KV tokens one rank holds at `mem_fraction_static` (whole pages; 0 when the weights do not fit).
    pub fn kv_tokens_per_rank_at(&self, mem_fraction_static: f64) -> u64 {
        let pool_bytes = self.free_before_weights_bytes * mem_fraction_static - self.weights_bytes_per_gpu;
        if pool_bytes <= 0.0 {
            return 0;
        }
        let tokens = (pool_bytes / self.kv_bytes_per_token_per_rank).floor() as u64;
        tokens / self.page_size * self.page_size
    }

    /// The smallest `--mem-fraction-static` in hundredths, above the one used and at most
    /// [`MAX_PROPOSED_MEM_FRACTION_STATIC`], whose KV pool holds at least `min_tokens_per_rank` tokens per rank;
    /// `None` when none does (the weights need more GPUs or a narrower format).
    pub fn fraction_for_kv_tokens(&self, min_tokens_per_rank: u64) -> Option<FittingFraction> {
        let first = (self.mem_fraction_static * 100.0).floor() as u32 + 1;
        let last = (MAX_PROPOSED_MEM_FRACTION_STATIC * 100.0).round() as u32;
        (first..=last).find_map(|hundredths| {
            let fraction = f64::from(hundredths) / 100.0;
            let tokens = self.kv_tokens_per_rank_at(fraction);
            (tokens >= min_tokens_per_rank.max(1)).then_some(FittingFraction {
                mem_fraction_static: fraction,
                kv_capacity_tokens_per_rank: tokens,
            })
        })
    }

    /// Whether a KV pool exists at all.
    pub fn fits(&self) -> bool {
        self.kv_capacity_tokens_per_rank > 0
    }

    /// Why the configuration does not fit, with GiB needed and available per GPU.
    pub fn shortfall(&self) -> Option<String> {
        if self.fits() {
            return None;
        }
        let budget = self.weights_bytes_per_gpu + self.kv_pool_bytes_per_gpu;
        let remedy = match self.fraction_for_kv_tokens(self.chunk_tokens) {
            Some(fit) => format!(
                "--mem-fraction-static {:.2} would fit, leaving {} KV tokens per rank (operators raise it so; at most {:.2} keeps room for activations), or use more GPUs (larger --tp), a narrower --dtype, or a larger GPU",
                fit.mem_fraction_static, fit.kv_capacity_tokens_per_rank, MAX_PROPOSED_MEM_FRACTION_STATIC
            ),
            None => "use more GPUs (larger --tp), a narrower --dtype, or a larger GPU".to_string(),
        };
        Some(format!(
            "weights need {:.1} GB per GPU but mem_fraction_static {:.3} of {:.1} GB leaves {:.1} GB for weights and KV cache; {remedy}",
            self.weights_bytes_per_gpu / GIB,
            self.mem_fraction_static,
            self.gpu_memory_bytes / GIB,
            budget / GIB
        ))
    }
}

/// Device memory gone before the weights load: CUDA context plus communicator buffers per TP peer.
pub fn runtime_reserve_bytes(mapping: &ParallelMapping, coefficients: &Coefficients) -> f64 {
    (coefficients.runtime_reserve_gib + coefficients.runtime_reserve_per_peer_gib * f64::from(mapping.tp() - 1)) * GIB
}

/// Bytes of weights on one GPU. Routed experts (redundant replicas included) split over the engine;
/// shared experts are replicated under DeepEP, dense MLP layers with `--moe-dense-tp-size 1`, and the
/// vocabulary splits over the attention-TP group with `--enable-dp-lm-head` (SGLang's layouts).
pub fn weights_bytes_per_gpu(model: &ModelSpec, mapping: &ParallelMapping, args: &ResolvedServerArgs) -> f64 {
    let tp = f64::from(mapping.tp());
    let attention_tp = f64::from(mapping.attention_tp());
    let layers = model.n_layers as f64;
    let hidden = model.hidden_size as f64;
    let attention_bytes = model.weights.attention.bytes_per_param();
    let attention_per_layer = match model.attention {
        Attention::Gqa {
            n_heads,
            n_kv_heads,
            head_dim,
        } => {
            let kv_heads_per_rank = (n_kv_heads as f64 / attention_tp).max(1.0);
            let heads_per_rank = n_heads as f64 / attention_tp;
            hidden * (heads_per_rank + 2.0 * kv_heads_per_rank) * head_dim as f64 + heads_per_rank * head_dim as f64 * hidden
        }
        Attention::Mla {
            n_heads,
            q_lora_rank,
            kv_lora_rank,
            qk_nope_head_dim,
            qk_rope_head_dim,
            v_head_dim,
        } => {
            let heads_per_rank = n_heads as f64 / attention_tp;
            let qk_head_dim = (qk_nope_head_dim + qk_rope_head_dim) as f64;
            // q_a and kv_a are replicated on every rank; q_b, kv_b and o are split by head.
            let replicated = hidden * (q_lora_rank.unwrap_or(0) + kv_lora_rank + qk_rope_head_dim) as f64;
            let q_b = match q_lora_rank {
                Some(rank) => rank as f64 * heads_per_rank * qk_head_dim,
                None => hidden * heads_per_rank * qk_head_dim,
            };
            let kv_b = kv_lora_rank as f64 * heads_per_rank * (qk_nope_head_dim + v_head_dim) as f64;
            let o_proj = heads_per_rank * v_head_dim as f64 * hidden;
            replicated + q_b + kv_b + o_proj
        }
    };
    let dense_tp = if args.moe_dense_tp1 && mapping.dp_attention() { 1.0 } else { tp };
    let shared_tp = if args.moe_a2a_backend == MoeA2aBackend::Deepep && mapping.ep() > 1 {
        1.0
    } else {
        tp
    };
    let dense_mlp = model.n_dense_mlp_layers() as f64 * model.dense_mlp_params() / dense_tp * model.weights.dense_mlp.bytes_per_param();
    let moe = match &model.moe {
        Some(moe) => {
            let physical_experts = (moe.n_experts + u64::from(mapping.redundant_experts())) as f64;
            let experts = physical_experts * model.expert_params() / tp * model.weights.experts.bytes_per_param();
            let shared = model.shared_expert_params() / shared_tp * model.weights.dense_mlp.bytes_per_param();
            let router = hidden * moe.n_experts as f64 * WeightDtype::Bf16.bytes_per_param();
            model.n_moe_layers() as f64 * (experts + shared + router)
        }
        None => 0.0,
    };
    let vocab_tp = if args.enable_dp_lm_head { attention_tp } else { tp };
    let embeddings = model.embedding_params() / vocab_tp * WeightDtype::Bf16.bytes_per_param();
    layers * attention_per_layer * attention_bytes + dense_mlp + moe + embeddings
}

/// KV bytes per token on one rank: (all layers, for capacity) and (one full-attention layer, for decode reads).
pub fn kv_cell_bytes(model: &ModelSpec, mapping: &ParallelMapping, args: &ResolvedServerArgs) -> (f64, f64) {
    let kv_bytes = args.kv_cache_dtype.bytes();
    let per_layer = match model.attention {
        Attention::Gqa { n_kv_heads, head_dim, .. } => {
            // KV heads are replicated when the attention TP size exceeds them.
            let kv_heads_per_rank = (n_kv_heads as f64 / f64::from(mapping.attention_tp())).max(1.0);
            kv_heads_per_rank * head_dim as f64 * 2.0 * kv_bytes
        }
        // The latent is replicated on every attention-TP rank (DP attention splits requests instead).
        Attention::Mla {
            kv_lora_rank,
            qk_rope_head_dim,
            ..
        } => (kv_lora_rank + qk_rope_head_dim) as f64 * kv_bytes,
    };
    // SGLang 0.5.5 sets `disable_hybrid_swa_memory` for gpt-oss: one pool over all layers,
    // sliding-window layers included (0.5.23 splits it with `swa_full_tokens_ratio`).
    (per_layer * model.n_layers as f64, per_layer)
}

/// SGLang's `max_running_requests` for the whole engine (v0.5.5 `model_runner.init_memory_pool`):
/// per DP rank `min(clamp(capacity / context_len × 512, 2048, 4096), capacity / 2)`, or the flag
/// divided over the DP ranks; times the DP ranks.
pub fn max_running_requests(
    model: &ModelSpec,
    mapping: &ParallelMapping,
    args: &ResolvedServerArgs,
    kv_capacity_tokens_per_rank: u64,
) -> u64 {
    let dp = u64::from(mapping.dp());
    let request_pool = ((kv_capacity_tokens_per_rank as f64 / model.max_context_tokens as f64 * 512.0) as u64).clamp(2048, 4096);
    let per_rank = match args.max_running_requests {
        Some(cap) => (cap / dp).max(1),
        None => request_pool.min(kv_capacity_tokens_per_rank / 2),
    };
    per_rank * dp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gpu::GpuCatalog;
    use crate::model::model_catalog::find_bundled_spec;
    use crate::model::server_args::ServerArgs;

    fn plan(model: &str, gpu: &str, tp: u32, dp: u32, ep: u32, mem_fraction: Option<f64>) -> MemoryPlan {
        let catalog = GpuCatalog::builtin().unwrap();
        let gpu = catalog.find(gpu).unwrap();
        let model = find_bundled_spec(model).unwrap().unwrap();
        let mapping = ParallelMapping::new(&model, tp, dp, ep).unwrap();
        let mut args = ServerArgs::sglang_defaults();
        args.mem_fraction_static = mem_fraction;
        let resolved = args.resolve(gpu, &mapping).unwrap();
        MemoryPlan::new(&model, gpu, &mapping, &resolved, &Coefficients::defaults())
    }

    #[test]
    fn deepseek_v3_mla_cell_is_70272_bytes_in_bf16() {
        let plan = plan("DeepSeek-V3", "h200", 8, 1, 1, Some(0.907));
        assert_eq!(plan.kv_bytes_per_token_per_rank, 70_272.0);
    }

    #[test]
    fn deepseek_r1_tp8_h200_kv_capacity_within_five_percent_of_server_log() {
        // SkyPilot log, SGLang v0.4.5.post3: `KV Cache is allocated. #tokens: 654280` at mem_fraction_static 0.907.
        let plan = plan("DeepSeek-R1", "h200", 8, 1, 1, Some(0.907));
        let error = plan.kv_capacity_tokens as f64 / 654_280.0 - 1.0;
        assert!(error.abs() < 0.05, "{} tokens ({:+.1}%)", plan.kv_capacity_tokens, error * 100.0);
    }

    #[test]
    fn dp_attention_splits_mla_requests_across_ranks() {
        let tp = plan("DeepSeek-R1", "h200", 8, 1, 1, None);
        let dep = plan("DeepSeek-R1", "h200", 8, 8, 8, None);
        // Same latent per token per rank, but each rank holds its own requests: the engine holds
        // dp times one rank's pool (each rank's pool is smaller: attention weights are replicated).
        assert_eq!(tp.kv_bytes_per_token_per_rank, dep.kv_bytes_per_token_per_rank);
        assert_eq!(dep.kv_capacity_tokens, 8 * dep.kv_capacity_tokens_per_rank);
        assert!(dep.weights_bytes_per_gpu > tp.weights_bytes_per_gpu);
        assert!(dep.kv_capacity_tokens > 3 * tp.kv_capacity_tokens);
    }

    #[test]
    fn gqa_kv_heads_replicate_beyond_their_count() {
        let tp8 = plan("Llama-3.1-70B-Instruct", "h100", 8, 1, 1, None);
        assert_eq!(tp8.kv_bytes_per_token_per_layer, 128.0 * 2.0 * 2.0);
        let tp4 = plan("Llama-3.1-70B-Instruct", "h100", 4, 1, 1, None);
        assert_eq!(tp4.kv_bytes_per_token_per_layer, 2.0 * 128.0 * 2.0 * 2.0);
        // Qwen2.5-7B has 4 KV heads: at TP8 each rank still holds one.
        let qwen = plan("Qwen2.5-7B-Instruct", "h100", 4, 1, 1, None);
        assert_eq!(qwen.kv_bytes_per_token_per_layer, 128.0 * 2.0 * 2.0);
    }

    #[test]
    fn a_higher_mem_fraction_static_is_proposed_where_one_fits() {
        // DeepSeek-R1 FP8 on 4 x B200 at SGLang's default 0.855 (16384-token chunk reserve): 157.5 GiB of weights
        // per GPU against 0.855 x 177.2 GiB free (179.1 GiB less 0.6 + 3 x 0.45 GiB of runtime) = 151.5 GiB.
        let r1 = plan("DeepSeek-R1", "b200", 4, 1, 1, None);
        assert!(!r1.fits());
        // 0.89 x 177.2 = 157.7 GiB leaves 0.2 GiB, under one 16384-token chunk of 70,272-byte latents (1.07 GiB);
        // 0.90 x 177.2 = 159.5 GiB leaves 2.0 GiB: about 30,000 tokens.
        let fit = r1.fraction_for_kv_tokens(r1.chunk_tokens).unwrap();
        assert_eq!(fit.mem_fraction_static, 0.90);
        let expected = ((0.90 * r1.free_before_weights_bytes - r1.weights_bytes_per_gpu) / 70_272.0).floor() as u64;
        assert_eq!(fit.kv_capacity_tokens_per_rank, expected);
        assert!((25_000..35_000).contains(&expected), "{expected}");
        let reason = r1.shortfall().unwrap();
        assert!(reason.contains("--mem-fraction-static 0.90 would fit"), "{reason}");
        // Nothing up to 0.95 holds Llama-3.1-405B on one H100: no fraction is proposed.
        let huge = plan("Llama-3.1-405B-Instruct", "h100", 1, 1, 1, None);
        assert_eq!(huge.fraction_for_kv_tokens(1), None);
        assert!(!huge.shortfall().unwrap().contains("would fit"));
    }

    #[test]
    fn too_big_does_not_fit_and_says_how_much() {
        let plan = plan("Llama-3.1-405B-Instruct", "h100", 1, 1, 1, None);
        assert!(!plan.fits());
        let reason = plan.shortfall().unwrap();
        assert!(reason.contains("weights need") && reason.contains("GB"), "{reason}");
    }
}
