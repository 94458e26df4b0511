//! Describes one forward pass as a list of ops with shapes per GPU (no costing here).
//!
//! A forward pass on one engine is split in three parts, because under DP attention each
//! rank runs attention on its own requests while the MLP/MoE sees every rank's tokens:
//! [`describe_attention`] (per rank), [`describe_mlp`] (per engine) and [`describe_head`]
//! (embedding, LM head, sampling). Each [`Op`] carries a `repeat` count (layers of that kind).

use super::arch::{Attention, ModelSpec};
use super::mapping::ParallelMapping;
use super::quant::{ComputeDtype, KvDtype, WeightDtype};
use super::server_args::{MoeA2aBackend, ResolvedServerArgs};

/// One request's part of a prefill ("extend") forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendRequest {
    /// Tokens computed in this forward (a chunk, or the whole uncached prompt).
    pub new_tokens: u64,
    /// Tokens of the request already in the KV cache (earlier chunks or a cached prefix).
    pub cached_tokens: u64,
}

/// What one attention-DP rank (or the whole engine without DP attention) runs in a forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankBatch<'a> {
    /// Nothing: under DP attention the rank runs an empty (dummy) batch.
    Idle,
    /// A prefill batch.
    Extend(&'a [ExtendRequest]),
    /// A decode batch: each request's context length (tokens in KV) before this step.
    Decode(&'a [u64]),
    /// A decode batch known only by its size and the sum of its contexts (tokens in KV before this
    /// step): costs the same as [`RankBatch::Decode`] for models without sliding windows.
    DecodeSummed {
        /// Requests.
        requests: u64,
        /// Sum of their context lengths, tokens.
        context_sum: u64,
    },
}

impl RankBatch<'_> {
    /// Tokens this rank feeds through the GEMMs.
    pub fn n_tokens(&self) -> u64 {
        match self {
            RankBatch::Idle => 0,
            RankBatch::Extend(requests) => requests.iter().map(|r| r.new_tokens).sum(),
            RankBatch::Decode(contexts) => contexts.len() as u64,
            RankBatch::DecodeSummed { requests, .. } => *requests,
        }
    }

    /// Requests in the batch.
    pub fn n_requests(&self) -> u64 {
        match self {
            RankBatch::Idle => 0,
            RankBatch::Extend(requests) => requests.len() as u64,
            RankBatch::Decode(contexts) => contexts.len() as u64,
            RankBatch::DecodeSummed { requests, .. } => *requests,
        }
    }
}

/// The work of one op on one GPU.
#[derive(Debug, Clone, PartialEq)]
pub enum OpKind<'a> {
    /// A dense GEMM `[m × k] · [k × n]` with weights of the given format.
    Gemm {
        /// Rows (tokens).
        m: u64,
        /// Output columns on this GPU.
        n: u64,
        /// Reduction dimension on this GPU.
        k: u64,
        /// Weight format.
        weights: WeightDtype,
    },
    /// `batch` independent BF16 GEMMs `[m × k] · [k × n]`, each with its own weights (`torch.bmm`; MLA's
    /// per-head absorption of the query into the latent and of the latent output back to `v_head_dim`).
    BatchedGemm {
        /// Independent GEMMs (query heads on this GPU).
        batch: u64,
        /// Rows of each (tokens).
        m: u64,
        /// Output columns of each.
        n: u64,
        /// Reduction dimension of each.
        k: u64,
    },
    /// Causal prefill attention over each request's chunk.
    AttentionPrefill {
        /// Which kernel family runs it.
        kernel: AttentionKernel,
        /// The requests, with their cached prefix.
        requests: &'a [ExtendRequest],
        /// Query heads on this GPU.
        heads: u64,
        /// Key/value heads the kernel reads on this GPU (the query heads of one share a tile; MLA prefill
        /// expands the latent to one per query head).
        kv_heads: u64,
        /// Query/key dimension per head.
        qk_dim: u64,
        /// Value dimension per head.
        v_dim: u64,
        /// Sliding window, tokens, if the layer has one.
        window_tokens: Option<u64>,
        /// KV bytes per token per layer on this GPU.
        kv_bytes_per_token: f64,
        /// KV-cache format (an FP8 cache runs the attention math in FP8 where the GPU has it).
        kv_dtype: KvDtype,
    },
    /// Decode attention: one new query per request over its context.
    AttentionDecode {
        /// Which kernel family runs it.
        kernel: AttentionKernel,
        /// Requests decoding.
        requests: u64,
        /// Sum over requests of the tokens attended (context plus the new one, capped at the window).
        attended_tokens: u64,
        /// KV heads on this GPU; the decode grid has one tile per (request, KV head) before any KV split
        /// (FA3 packs a KV head's query heads into one tile; MLA has one latent KV head).
        kv_heads: u64,
        /// Query heads on this GPU.
        heads: u64,
        /// Query/key dimension per head.
        qk_dim: u64,
        /// Value dimension per head.
        v_dim: u64,
        /// KV bytes per token per layer on this GPU.
        kv_bytes_per_token: f64,
        /// KV-cache format (an FP8 cache costs a query-cast kernel).
        kv_dtype: KvDtype,
    },
    /// Routed experts of one MoE layer (fused/grouped GEMMs, up and down).
    MoeExperts {
        /// Tokens entering the MoE layer across the engine.
        global_tokens: u64,
        /// Experts per token.
        top_k: u64,
        /// Routed experts in the model.
        n_experts: u64,
        /// Expert-parallel ranks.
        ep: u64,
        /// Tensor split of each expert (`tp / ep`).
        moe_tp: u64,
        /// Hidden size.
        hidden: u64,
        /// Intermediate size of one expert (whole, before the split).
        intermediate: u64,
        /// Weight format.
        weights: WeightDtype,
        /// Grouped GEMMs through DeepGEMM (SGLang's runner behind DeepEP) rather than the Triton fused MoE.
        deepgemm: bool,
    },
    /// Memory-bound elementwise kernels (norms, rotary, activation, residual, routing), a count of them.
    Elementwise {
        /// Bytes read and written.
        bytes: f64,
        /// Kernels launched.
        n_kernels: f64,
    },
    /// All-reduce of `bytes` over `n_ranks`.
    AllReduce {
        /// Message size per rank, bytes.
        bytes: f64,
        /// Ranks taking part.
        n_ranks: u32,
    },
    /// All-gather (or reduce-scatter) whose gathered result is `bytes_total`.
    AllGather {
        /// Size of the gathered buffer, bytes.
        bytes_total: f64,
        /// Ranks taking part.
        n_ranks: u32,
    },
    /// MoE dispatch or combine (DeepEP): each rank sends each of its tokens to the ranks holding the
    /// token's `top_k` experts, spread evenly over `n_ranks`.
    AllToAll {
        /// Tokens one rank sends.
        tokens_per_rank: f64,
        /// Bytes of one token copy (hidden size × element bytes).
        bytes_per_token: f64,
        /// Experts per token.
        top_k: u64,
        /// Ranks taking part.
        n_ranks: u32,
        /// DeepEP's normal kernels (prefill): a token crosses RDMA once per remote node holding any of
        /// its experts and is forwarded over NVLink there; the low-latency kernels (decode) send one
        /// copy per expert.
        node_dedup: bool,
    },
}

/// The attention kernel family, whose efficiency differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// FlashAttention-style multi-head / grouped-query attention.
    Mha,
    /// DeepSeek MLA (prefill: attention over the expanded latent, qk 192 / v 128 per head; decode: absorbed
    /// attention over the compressed latent).
    Mla,
    /// Absorbed MLA prefill over the compressed latent (FA3's MLA path: qk 576 = 512 latent + 64 rope, v 512,
    /// one KV head whose query heads share 64x64 tiles). SGLang runs it for extends whose cached prefix is
    /// under its chunked-prefix threshold; AIConfigurator's context_mla table times it.
    MlaLatent,
}

/// One op, repeated `repeat` times in the forward (once per layer of its kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Op<'a> {
    /// Short name for breakdowns (`qkv_proj`, `attn_decode`, `moe_experts`, ...).
    pub name: &'static str,
    /// Shape and kind.
    pub kind: OpKind<'a>,
    /// How many times the forward runs it.
    pub repeat: u64,
}

/// Activation bytes (bf16).
const ACT_BYTES: f64 = 2.0;

/// Attention ops of one rank's batch; `m_tokens` is the GEMM row count (the padded batch for CUDA graphs).
pub fn describe_attention<'a>(
    model: &ModelSpec,
    mapping: &ParallelMapping,
    kv_bytes_per_token_per_layer: f64,
    kv_dtype: KvDtype,
    batch: RankBatch<'a>,
    m_tokens: u64,
    ops: &mut Vec<Op<'a>>,
) {
    if m_tokens == 0 {
        return;
    }
    let attention_tp = u64::from(mapping.attention_tp());
    let hidden = model.hidden_size;
    let dtype = model.weights.attention;
    let layers = model.n_layers;
    let (n_sliding, window) = match model.sliding_window {
        Some(sliding) => (sliding.n_sliding_layers, Some(sliding.window_tokens)),
        None => (0, None),
    };
    let groups = [(layers - n_sliding, None), (n_sliding, window)];
    match model.attention {
        Attention::Gqa {
            n_heads,
            n_kv_heads,
            head_dim,
        } => {
            let heads = n_heads / attention_tp;
            let kv_heads = (n_kv_heads / attention_tp).max(1);
            ops.push(Op {
                name: "qkv_proj",
                kind: OpKind::Gemm {
                    m: m_tokens,
                    n: (heads + 2 * kv_heads) * head_dim,
                    k: hidden,
                    weights: dtype,
                },
                repeat: layers,
            });
            for (repeat, window_tokens) in groups {
                if repeat > 0 {
                    push_attention_core(
                        ops,
                        AttentionKernel::Mha,
                        batch,
                        heads,
                        kv_heads,
                        head_dim,
                        head_dim,
                        window_tokens,
                        kv_bytes_per_token_per_layer,
                        kv_dtype,
                        repeat,
                    );
                }
            }
            ops.push(Op {
                name: "o_proj",
                kind: OpKind::Gemm {
                    m: m_tokens,
                    n: hidden,
                    k: heads * head_dim,
                    weights: dtype,
                },
                repeat: layers,
            });
        }
        Attention::Mla {
            n_heads,
            q_lora_rank,
            kv_lora_rank,
            qk_nope_head_dim,
            qk_rope_head_dim,
            v_head_dim,
        } => {
            let heads = n_heads / attention_tp;
            let qk_head_dim = qk_nope_head_dim + qk_rope_head_dim;
            let latent = kv_lora_rank + qk_rope_head_dim;
            let q_rank = q_lora_rank.unwrap_or(0);
            ops.push(Op {
                name: "qkv_a_proj",
                kind: OpKind::Gemm {
                    m: m_tokens,
                    n: q_rank + latent,
                    k: hidden,
                    weights: dtype,
                },
                repeat: layers,
            });
            let q_in = if q_rank > 0 { q_rank } else { hidden };
            ops.push(Op {
                name: "q_b_proj",
                kind: OpKind::Gemm {
                    m: m_tokens,
                    n: heads * qk_head_dim,
                    k: q_in,
                    weights: dtype,
                },
                repeat: layers,
            });
            match batch {
                RankBatch::Decode(_) | RankBatch::DecodeSummed { .. } | RankBatch::Idle => {
                    // Absorbed MLA: per-head bmm into the latent, attention over the latent, bmm back to v.
                    ops.push(Op {
                        name: "mla_absorb_q",
                        kind: OpKind::BatchedGemm {
                            batch: heads,
                            m: m_tokens,
                            n: kv_lora_rank,
                            k: qk_nope_head_dim,
                        },
                        repeat: layers,
                    });
                    push_attention_core(
                        ops,
                        AttentionKernel::Mla,
                        batch,
                        heads,
                        1,
                        latent,
                        kv_lora_rank,
                        None,
                        kv_bytes_per_token_per_layer,
                        kv_dtype,
                        layers,
                    );
                    ops.push(Op {
                        name: "mla_absorb_v",
                        kind: OpKind::BatchedGemm {
                            batch: heads,
                            m: m_tokens,
                            n: v_head_dim,
                            k: kv_lora_rank,
                        },
                        repeat: layers,
                    });
                }
                RankBatch::Extend(requests) => {
                    // Prefill runs MLA as MHA: expand the latent of every attended token with kv_b.
                    let expanded: u64 = requests.iter().map(|r| r.new_tokens + r.cached_tokens).sum();
                    ops.push(Op {
                        name: "kv_b_proj",
                        kind: OpKind::Gemm {
                            m: expanded,
                            n: heads * (qk_nope_head_dim + v_head_dim),
                            k: kv_lora_rank,
                            weights: dtype,
                        },
                        repeat: layers,
                    });
                    push_attention_core(
                        ops,
                        AttentionKernel::Mla,
                        batch,
                        heads,
                        heads,
                        qk_head_dim,
                        v_head_dim,
                        None,
                        kv_bytes_per_token_per_layer,
                        kv_dtype,
                        layers,
                    );
                }
            }
            ops.push(Op {
                name: "o_proj",
                kind: OpKind::Gemm {
                    m: m_tokens,
                    n: hidden,
                    k: heads * v_head_dim,
                    weights: dtype,
                },
                repeat: layers,
            });
        }
    }
    if attention_tp > 1 {
        ops.push(Op {
            name: "attn_allreduce",
            kind: OpKind::AllReduce {
                bytes: m_tokens as f64 * hidden as f64 * ACT_BYTES,
                n_ranks: mapping.attention_tp(),
            },
            repeat: layers,
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn push_attention_core<'a>(
    ops: &mut Vec<Op<'a>>,
    kernel: AttentionKernel,
    batch: RankBatch<'a>,
    heads: u64,
    kv_heads: u64,
    qk_dim: u64,
    v_dim: u64,
    window_tokens: Option<u64>,
    kv_bytes_per_token: f64,
    kv_dtype: KvDtype,
    repeat: u64,
) {
    let decode = |requests: u64, attended_tokens: u64| OpKind::AttentionDecode {
        kernel,
        requests,
        attended_tokens,
        kv_heads,
        heads,
        qk_dim,
        v_dim,
        kv_bytes_per_token,
        kv_dtype,
    };
    let kind = match batch {
        RankBatch::Idle => return,
        RankBatch::Extend(requests) => OpKind::AttentionPrefill {
            kernel,
            requests,
            heads,
            kv_heads,
            qk_dim,
            v_dim,
            window_tokens,
            kv_bytes_per_token,
            kv_dtype,
        },
        RankBatch::Decode(contexts) => {
            let attended_tokens = contexts
                .iter()
                .map(|&context| window_tokens.map_or(context + 1, |w| (context + 1).min(w)))
                .sum();
            decode(contexts.len() as u64, attended_tokens)
        }
        // Without a window every request attends its context plus the new token.
        RankBatch::DecodeSummed { requests, context_sum } => decode(requests, context_sum + requests),
    };
    let name = if matches!(batch, RankBatch::Extend(_)) {
        "attn_prefill"
    } else {
        "attn_decode"
    };
    ops.push(Op { name, kind, repeat });
}

/// The tokens one MLP forward sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpTokens {
    /// Tokens across the engine (all DP ranks).
    pub global: u64,
    /// Tokens of the busiest DP rank.
    pub local: u64,
    /// Whether the forward is a prefill (extend): DeepEP then uses its normal kernels.
    pub prefill: bool,
}

/// Feed-forward ops for `global_tokens` entering the MLP/MoE (all ranks' tokens under DP
/// attention) and `local_tokens` on the busiest rank; `n_kernels_small` is the count of small
/// elementwise kernels per layer.
pub fn describe_mlp<'a>(
    model: &ModelSpec,
    mapping: &ParallelMapping,
    args: &ResolvedServerArgs,
    tokens: MlpTokens,
    n_kernels_small: f64,
    ops: &mut Vec<Op<'a>>,
) {
    let MlpTokens {
        global: global_tokens,
        local: local_tokens,
        prefill,
    } = tokens;
    if global_tokens == 0 {
        return;
    }
    let tp = u64::from(mapping.tp());
    let hidden = model.hidden_size;
    let hidden_bytes = hidden as f64 * ACT_BYTES;
    let deepep = args.moe_a2a_backend == MoeA2aBackend::Deepep && mapping.ep() > 1;
    let dense_layers = model.n_dense_mlp_layers();
    let moe_layers = model.n_moe_layers();
    let gather = |ops: &mut Vec<Op<'a>>, repeat: u64| {
        if mapping.dp_attention() && repeat > 0 {
            let bytes_total = global_tokens as f64 * hidden_bytes;
            ops.push(Op {
                name: "dp_gather",
                kind: OpKind::AllGather {
                    bytes_total,
                    n_ranks: mapping.tp(),
                },
                repeat,
            });
            ops.push(Op {
                name: "dp_scatter",
                kind: OpKind::AllGather {
                    bytes_total,
                    n_ranks: mapping.tp(),
                },
                repeat,
            });
        }
    };
    let mlp_allreduce = |ops: &mut Vec<Op<'a>>, repeat: u64| {
        if tp > 1 && !mapping.dp_attention() && repeat > 0 {
            ops.push(Op {
                name: "mlp_allreduce",
                kind: OpKind::AllReduce {
                    bytes: global_tokens as f64 * hidden_bytes,
                    n_ranks: mapping.tp(),
                },
                repeat,
            });
        }
    };
    if dense_layers > 0 {
        // `--moe-dense-tp-size 1` under DP attention: each rank runs the dense MLP on its own tokens
        // with the full weights (SGLang's `enable_moe_dense_fully_dp`), so nothing is gathered.
        let dense_dp = args.moe_dense_tp1 && mapping.dp_attention();
        let (m, intermediate) = if dense_dp {
            (local_tokens, model.dense_intermediate)
        } else {
            (global_tokens, model.dense_intermediate / tp)
        };
        let dtype = model.weights.dense_mlp;
        ops.push(Op {
            name: "gate_up_proj",
            kind: OpKind::Gemm {
                m,
                n: 2 * intermediate,
                k: hidden,
                weights: dtype,
            },
            repeat: dense_layers,
        });
        ops.push(Op {
            name: "down_proj",
            kind: OpKind::Gemm {
                m,
                n: hidden,
                k: intermediate,
                weights: dtype,
            },
            repeat: dense_layers,
        });
        if !dense_dp {
            gather(ops, dense_layers);
            mlp_allreduce(ops, dense_layers);
        }
    }
    if let Some(moe) = &model.moe {
        if moe_layers > 0 {
            // Under DeepEP each rank routes and runs the shared experts on its own tokens, with the
            // shared experts unsplit (deepseek_v2.py: "disable tp for shared experts when enable deepep moe").
            let sparse_tokens = if deepep { local_tokens } else { global_tokens };
            ops.push(Op {
                name: "router",
                kind: OpKind::Gemm {
                    m: sparse_tokens,
                    n: moe.n_experts,
                    k: hidden,
                    weights: WeightDtype::Bf16,
                },
                repeat: moe_layers,
            });
            ops.push(Op {
                name: "moe_experts",
                kind: OpKind::MoeExperts {
                    global_tokens,
                    top_k: moe.top_k,
                    n_experts: moe.n_experts + u64::from(mapping.redundant_experts()),
                    ep: u64::from(mapping.ep()),
                    moe_tp: u64::from(mapping.moe_tp()),
                    hidden,
                    intermediate: moe.expert_intermediate,
                    weights: model.weights.experts,
                    deepgemm: deepep && model.weights.experts.compute() == ComputeDtype::Fp8,
                },
                repeat: moe_layers,
            });
            if moe.shared_intermediate > 0 {
                let shared_tp = if deepep { 1 } else { tp.min(moe.shared_intermediate) };
                let shared = moe.shared_intermediate / shared_tp;
                let dtype = model.weights.dense_mlp;
                ops.push(Op {
                    name: "shared_gate_up",
                    kind: OpKind::Gemm {
                        m: sparse_tokens,
                        n: 2 * shared,
                        k: hidden,
                        weights: dtype,
                    },
                    repeat: moe_layers,
                });
                ops.push(Op {
                    name: "shared_down",
                    kind: OpKind::Gemm {
                        m: sparse_tokens,
                        n: hidden,
                        k: shared,
                        weights: dtype,
                    },
                    repeat: moe_layers,
                });
            }
            if deepep {
                // Dispatch sends FP8 activations (one byte per element), combine BF16.
                ops.push(Op {
                    name: "ep_dispatch",
                    kind: OpKind::AllToAll {
                        tokens_per_rank: local_tokens as f64,
                        bytes_per_token: hidden as f64,
                        top_k: moe.top_k,
                        n_ranks: mapping.ep(),
                        node_dedup: prefill,
                    },
                    repeat: moe_layers,
                });
                ops.push(Op {
                    name: "ep_combine",
                    kind: OpKind::AllToAll {
                        tokens_per_rank: local_tokens as f64,
                        bytes_per_token: hidden as f64 * ACT_BYTES,
                        top_k: moe.top_k,
                        n_ranks: mapping.ep(),
                        node_dedup: prefill,
                    },
                    repeat: moe_layers,
                });
            } else {
                gather(ops, moe_layers);
                mlp_allreduce(ops, moe_layers);
            }
        }
    }
    // Norms, rotary, activation, residual adds, activation quantisation and routing: a few passes over
    // the hidden state and the intermediate activation per layer.
    let intermediate_local = match &model.moe {
        Some(moe) => (moe.top_k * moe.expert_intermediate / tp).max(model.dense_intermediate / tp),
        None => model.dense_intermediate / tp,
    };
    let bytes = local_tokens as f64 * (8.0 * hidden_bytes + 3.0 * intermediate_local as f64 * ACT_BYTES);
    ops.push(Op {
        name: "elementwise",
        kind: OpKind::Elementwise {
            bytes,
            n_kernels: n_kernels_small,
        },
        repeat: model.n_layers,
    });
}

/// Embedding lookup, LM head for `n_logit_rows` rows, logits gather and sampling. The vocabulary is
/// split over the engine, or with `--enable-dp-lm-head` (`args.enable_dp_lm_head`) over the
/// attention-TP group only.
pub fn describe_head<'a>(
    model: &ModelSpec,
    mapping: &ParallelMapping,
    args: &ResolvedServerArgs,
    local_tokens: u64,
    n_logit_rows: u64,
    ops: &mut Vec<Op<'a>>,
) {
    if local_tokens == 0 {
        return;
    }
    let vocab_group = if args.enable_dp_lm_head {
        mapping.attention_tp()
    } else {
        mapping.tp()
    };
    let tp = u64::from(vocab_group);
    let hidden = model.hidden_size;
    let vocab_local = model.vocab_size.div_ceil(tp);
    ops.push(Op {
        name: "embedding",
        kind: OpKind::Elementwise {
            bytes: local_tokens as f64 * hidden as f64 * ACT_BYTES * 2.0,
            n_kernels: 1.0,
        },
        repeat: 1,
    });
    if n_logit_rows == 0 {
        return;
    }
    ops.push(Op {
        name: "lm_head",
        kind: OpKind::Gemm {
            m: n_logit_rows,
            n: vocab_local,
            k: hidden,
            weights: WeightDtype::Bf16,
        },
        repeat: 1,
    });
    let logits_bytes = n_logit_rows as f64 * model.vocab_size as f64 * 4.0;
    if tp > 1 {
        ops.push(Op {
            name: "logits_gather",
            kind: OpKind::AllGather {
                bytes_total: logits_bytes,
                n_ranks: vocab_group,
            },
            repeat: 1,
        });
    }
    ops.push(Op {
        name: "sampling",
        kind: OpKind::Elementwise {
            bytes: 3.0 * logits_bytes,
            n_kernels: 4.0,
        },
        repeat: 1,
    });
}
