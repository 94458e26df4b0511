//! Kernel-level accuracy: measured GEMM, attention and collective timings against the cost model.
//!
//! Reads the CSVs written by `tools/measure_kernels.py` (`data/measured/<gpu>_kernels.csv` and
//! `<gpu>_collectives.csv`), prices each measured shape with [`cost_op`] / [`collective_s`], and
//! reports per-family median and p90 absolute % error. [`fit_families`] adjusts the coefficients each
//! family identifies (within their plausible ranges) to minimise the absolute log error.

use serde::Serialize;

use super::error::{Error, Result};
use super::validate::quantile;
use crate::model::coefficients::{Coefficients, COEFFICIENT_INFO};
use crate::model::cost::{
    activation_quant_s, allreduce_s, cost_op, gemm_compute_dtype, moe_cost, nccl_with_s, ExpertLoad, MoeKernel, MoeWork, NcclOp, Nvls,
};
use crate::model::gpu::GpuSpec;
use crate::model::moe_shapes::{builtin_moe_shapes, moe_shape_factors, MoeShape, MoeShapeFactors};
use crate::model::ops::{AttentionKernel, ExtendRequest, Op, OpKind};
use crate::model::quant::{ComputeDtype, KvDtype, WeightDtype};

mod aic;

/// One measured kernel time.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSample {
    /// Op family: `gemm_bf16`, `gemm_fp8`, `attn_prefill`, `attn_decode`, `moe_bf16`, `moe_fp8`, `moe_mxfp4`,
    /// `custom_allreduce`, `custom_allreduce_eager`, `nccl_all_reduce`, `nccl_all_gather`, `nccl_alltoall`,
    /// our torch.distributed NCCL rows `all_reduce`, `all_gather`, `all_to_all`, and AIC's SGLang
    /// `aic_gemm_bf16`, `aic_gemm_fp8`, `aic_gemm_fp8_block`, `aic_attn_prefill`, `aic_attn_decode`, `aic_mla_prefill`,
    /// `aic_mla_decode`, `aic_mla_bmm`.
    pub family: String,
    /// What was measured.
    pub shape: KernelShape,
    /// Measured time, microseconds.
    pub time_us: f64,
}

/// The shape of a measured kernel.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelShape {
    /// `[m × k] · [k × n]`.
    Gemm {
        /// Rows.
        m: u64,
        /// Columns.
        n: u64,
        /// Reduction.
        k: u64,
        /// Weight format.
        weights: WeightDtype,
    },
    /// Causal prefill of `seq` tokens, batch 1.
    AttentionPrefill {
        /// Tokens.
        seq: u64,
        /// Query heads.
        heads: u64,
        /// KV heads.
        kv_heads: u64,
        /// Head dimension.
        head_dim: u64,
    },
    /// One decode query per request over `context` tokens.
    AttentionDecode {
        /// Requests.
        batch: u64,
        /// Context per request, tokens.
        context: u64,
        /// Query heads.
        heads: u64,
        /// KV heads.
        kv_heads: u64,
        /// Head dimension.
        head_dim: u64,
    },
    /// A GEMM as SGLang runs it, timed by AIConfigurator's collector: FP8 rows include the activation
    /// quantisation kernel, and the collector's copies of the operands may stay in L2 (module `aic`).
    SglangGemm {
        /// Rows.
        m: u64,
        /// Columns.
        n: u64,
        /// Reduction.
        k: u64,
        /// Weight format.
        weights: WeightDtype,
    },
    /// SGLang's FA3 prefill of `batch` prompts of `isl` tokens from an empty cache, KV-cache store included.
    SglangAttentionPrefill {
        /// Requests.
        batch: u64,
        /// Prompt tokens per request.
        isl: u64,
        /// Query heads.
        heads: u64,
        /// KV heads.
        kv_heads: u64,
        /// Head dimension.
        head_dim: u64,
        /// KV-cache element type (FP8 runs FA3's FP8 attention).
        kv: KvDtype,
    },
    /// SGLang's FA3 decode of one token per request over `attended` tokens, KV-cache store included.
    SglangAttentionDecode {
        /// Requests.
        batch: u64,
        /// Tokens each request attends (cached plus the new one).
        attended: u64,
        /// Query heads.
        heads: u64,
        /// KV heads.
        kv_heads: u64,
        /// Head dimension.
        head_dim: u64,
        /// KV-cache element type.
        kv: KvDtype,
    },
    /// SGLang's absorbed MLA prefill on the FA3 backend (AIC's context_mla table): `batch` prompts of `isl`
    /// tokens from an empty cache over the 576-wide latent, latent-cache store included (module `aic`).
    SglangMlaPrefill {
        /// Requests.
        batch: u64,
        /// Prompt tokens per request.
        isl: u64,
        /// Query heads on the GPU.
        heads: u64,
        /// Latent-cache element type (FP8 is upcast to BF16 before attention).
        kv: KvDtype,
    },
    /// SGLang's absorbed MLA decode on the FA3 backend (AIC's generation_mla table), latent-cache store included.
    SglangMlaDecode {
        /// Requests.
        batch: u64,
        /// Tokens each request attends (cached plus the new one).
        attended: u64,
        /// Query heads on the GPU.
        heads: u64,
        /// Latent-cache element type.
        kv: KvDtype,
    },
    /// MLA's per-head BF16 `torch.bmm` around absorbed decode (AIC's mla_bmm table): `heads` GEMMs of
    /// `[tokens × k] · [k × n]`.
    SglangMlaBmm {
        /// Tokens.
        tokens: u64,
        /// Query heads on the GPU (independent GEMMs).
        heads: u64,
        /// Output columns (512 into the latent, 128 back to `v_head_dim`).
        n: u64,
        /// Reduction (128 or 512).
        k: u64,
    },
    /// A fused MoE layer (routed experts only) on one rank.
    Moe {
        /// Tokens entering the layer.
        tokens: u64,
        /// Hidden size.
        hidden: u64,
        /// Expert intermediate size.
        intermediate: u64,
        /// Experts per token.
        top_k: u64,
        /// Routed experts.
        n_experts: u64,
        /// Expert tensor-parallel size.
        moe_tp: u64,
        /// Expert-parallel size.
        ep: u64,
        /// Weight format.
        weights: WeightDtype,
        /// How the collector routed the tokens.
        routing: MoeRouting,
        /// Tokens entering the kernel on rank 0 under that routing.
        tokens_in: u64,
        /// Token slots per local expert under that routing ([`collector_moe_loads`]).
        loads: Vec<ExpertLoad>,
        /// Where the row comes from (model and mapping), for the shape table.
        source: String,
    },
    /// A collective over `n_ranks` of a `bytes` buffer (all-reduce buffer, gathered output, or each
    /// rank's all-to-all send buffer).
    Collective {
        /// Ranks.
        n_ranks: u32,
        /// Buffer bytes.
        bytes: f64,
        /// Which implementation ran.
        path: CollectivePath,
    },
}

/// How AIConfigurator's MoE collector (collector/sglang/collect_moe.py and collector/helper.py, the
/// version that collected aiconfigurator-core 0.12.0's SGLang 0.5.14 tables) fed tokens to the kernel.
/// Every row uses `balanced_logits`: token `t` picks experts `(t + j * stride) % E` for `j < top_k`,
/// `stride = ceil(E / top_k)` (`t * stride / T + j * stride` when `T < stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeRouting {
    /// `fused_moe` called directly (Qwen3, Mixtral). At EP > 1 `build_rank0_workloads` keeps the tokens
    /// with at least one expert on rank 0 (experts `0 .. E/EP`); their remote slots get expert id -1 and
    /// weight 0, and `run_op` clamps the ids to 0, so local expert 0 also computes every remote slot.
    Plain,
    /// SGLang's MoE layer with its own top-k (Llama-4): every token enters and slots of experts on other
    /// ranks are dropped.
    Layer,
    /// The same with grouped top-k (DeepSeek-V3: 8 expert groups, the best 4 kept). Balanced logits put
    /// one picked expert in every group, so all groups tie and the lowest 4 win (`torch.topk` keeps the
    /// lower index); each token keeps its picks in those groups and fills the rest of its `top_k` with
    /// the lowest-numbered experts of those groups, so only 128 of 256 experts ever get tokens.
    LayerGrouped {
        /// Expert groups.
        groups: u64,
        /// Groups kept per token.
        topk_groups: u64,
    },
}

/// The implementation a measured collective went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectivePath {
    /// SGLang's `tensor_model_parallel_all_reduce` inside a CUDA graph: custom all-reduce up to 8 MiB, NCCL above.
    SglangAllReduce,
    /// The same, called eagerly: each call also pays the CPU launch of an eager kernel.
    SglangAllReduceEager,
    /// NCCL called directly, as nccl-tests does, with NVLS as the measurement ran it.
    NcclTests {
        /// The collective.
        op: NcclOp,
        /// Whether NCCL could take NVLink SHARP.
        nvls: Nvls,
    },
    /// NCCL through torch.distributed (ProcessGroupNCCL) inside a CUDA graph: NCCL plus the process group's
    /// per-call overhead (`torch_process_group_call_us`).
    TorchDistributed {
        /// The collective.
        op: NcclOp,
    },
}

/// Reads a `*_kernels.csv`; attention rows are kept for the cuDNN backend only (the FA3-class
/// kernel; PyTorch's flash backend is FlashAttention-2, which SGLang does not use on Hopper).
///
/// AIConfigurator tables (a `latency` column in ms instead of `time_us`) are read with [`parse_aic`].
pub fn parse_kernels(text: &str, path: &str) -> Result<Vec<KernelSample>> {
    let header = text.lines().next().unwrap_or("");
    if header.split(',').any(|h| h.trim() == "latency") {
        return parse_aic(text, path);
    }
    let mut samples = Vec::new();
    for (index, record) in records(text, path)?.into_iter().enumerate() {
        let number = |name: &str| record.get(name).and_then(|v| v.parse::<f64>().ok());
        let Some(time_us) = number("time_us") else { continue };
        check_time_us(time_us, "time_us", path, index)?;
        for name in ["m", "n", "k", "heads", "kv_heads", "head_dim", "seq", "batch", "context"] {
            check_dimension(number(name), name, path, index)?;
        }
        let integer = |name: &str| number(name).map(|v| v as u64);
        let op = record.get("op").map(String::as_str).unwrap_or("");
        let dtype = record.get("dtype").map(String::as_str).unwrap_or("");
        let backend = record.get("backend").map(String::as_str).unwrap_or("");
        let sample = match op {
            "gemm" => {
                let (Some(m), Some(n), Some(k)) = (integer("m"), integer("n"), integer("k")) else {
                    continue;
                };
                let weights = if dtype == "fp8" {
                    WeightDtype::Fp8PerTensor
                } else {
                    WeightDtype::Bf16
                };
                KernelSample {
                    family: format!("gemm_{dtype}"),
                    shape: KernelShape::Gemm { m, n, k, weights },
                    time_us,
                }
            }
            "attn_prefill" | "attn_decode" if backend.contains("cudnn") => {
                let (Some(heads), Some(kv_heads), Some(head_dim)) = (integer("heads"), integer("kv_heads"), integer("head_dim")) else {
                    continue;
                };
                let shape = if op == "attn_prefill" {
                    let Some(seq) = integer("seq") else { continue };
                    KernelShape::AttentionPrefill {
                        seq,
                        heads,
                        kv_heads,
                        head_dim,
                    }
                } else {
                    let (Some(batch), Some(context)) = (integer("batch"), integer("context")) else {
                        continue;
                    };
                    KernelShape::AttentionDecode {
                        batch,
                        context,
                        heads,
                        kv_heads,
                        head_dim,
                    }
                };
                KernelSample {
                    family: op.to_string(),
                    shape,
                    time_us,
                }
            }
            _ => continue,
        };
        samples.push(sample);
    }
    Ok(samples)
}

/// Reads a `*_collectives.csv` (rows timed inside CUDA graphs, as SGLang's decode runs them), measured with
/// `NCCL_NVLS_ENABLE=0` through torch.distributed.
pub fn parse_collectives(text: &str, path: &str) -> Result<Vec<KernelSample>> {
    let mut samples = Vec::new();
    for (index, record) in records(text, path)?.into_iter().enumerate() {
        if !record.get("method").is_some_and(|m| m.contains("cuda_graph")) {
            continue;
        }
        let (Some(n_ranks), Some(bytes), Some(time_us)) = (
            record.get("n_ranks").and_then(|v| v.parse::<u32>().ok()),
            record.get("bytes").and_then(|v| v.parse::<f64>().ok()),
            record.get("time_us").and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        check_time_us(time_us, "time_us", path, index)?;
        check_dimension(Some(f64::from(n_ranks)), "n_ranks", path, index)?;
        check_dimension(Some(bytes), "bytes", path, index)?;
        let op = record.get("op").map(String::as_str).unwrap_or("");
        let (family, op) = match op {
            "all_reduce" => ("all_reduce", NcclOp::AllReduce),
            "all_gather_into_tensor" | "reduce_scatter_tensor" => ("all_gather", NcclOp::AllGather),
            "all_to_all_single" => ("all_to_all", NcclOp::AllToAll),
            _ => continue,
        };
        samples.push(KernelSample {
            family: family.into(),
            shape: KernelShape::Collective {
                n_ranks,
                bytes,
                path: CollectivePath::TorchDistributed { op },
            },
            time_us,
        });
    }
    Ok(samples)
}

/// A measured time must be positive and finite: a kernel that takes no time (or less) is a broken
/// row, and dividing by it would turn every error statistic into nonsense.
fn check_time_us(value: f64, column: &str, path: &str, index: usize) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(Error::BadFile {
        path: path.into(),
        message: format!(
            "data row {}: {column} = {value} must be a positive, finite time (a kernel cannot take no time)",
            index + 1
        ),
    })
}

/// Largest kernel dimension a row may give (tokens, features, heads, ranks; bytes may be larger):
/// 2^24, the bound `config.json` fields have, so that the shapes priced stay physical.
const MAX_KERNEL_DIMENSION: f64 = (1u64 << 24) as f64;

/// A shape column, when given, must be a whole number from 1 to [`MAX_KERNEL_DIMENSION`]
/// (`bytes`: from 1 to 2^40): a GEMM of no rows, or of 1e30, is a broken row, not a measurement.
fn check_dimension(value: Option<f64>, column: &str, path: &str, index: usize) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let max = if column == "bytes" {
        (1u64 << 40) as f64
    } else {
        MAX_KERNEL_DIMENSION
    };
    if value.fract() == 0.0 && (1.0..=max).contains(&value) {
        return Ok(());
    }
    Err(Error::BadFile {
        path: path.into(),
        message: format!("data row {}: {column} = {value} must be a whole number from 1 to {max}", index + 1),
    })
}

fn records(text: &str, path: &str) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::BadFile {
            path: path.into(),
            message: e.to_string(),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| Error::BadFile {
                path: path.into(),
                message: e.to_string(),
            })?;
            Ok(headers.iter().cloned().zip(record.iter().map(|v| v.trim().to_string())).collect())
        })
        .collect()
}

/// Reads AIConfigurator's tables (latency in ms): `data/measured/aic/<gpu>_moe.csv` (SGLang's fused MoE),
/// `<gpu>_custom_allreduce.csv` (SGLang's `tensor_model_parallel_all_reduce`, AIC's
/// collector/network/collect_all_reduce.py: custom all-reduce up to 8 MiB, NCCL above; `sglang_graph`
/// rows are family `custom_allreduce`, `sglang_eager` rows `custom_allreduce_eager`) and `<gpu>_nccl.csv`
/// (nccl-tests: families `nccl_all_reduce`, `nccl_all_gather` with reduce-scatter, and `nccl_alltoall`).
///
/// nccl-tests runs NCCL with its defaults, NVLink SHARP included, which NCCL can use only for reductions of
/// types the switch adds (half, not int8). The tables show it at 8 ranks only: their 2- and 4-rank half
/// all-reduces take the int8 rows' time at every size, while at 8 ranks half reaches ~460 GB/s bus bandwidth
/// where int8 stays at a ring's ~350. So half all-reduces over 8 ranks are priced with NVLS available.
pub fn parse_aic(text: &str, path: &str) -> Result<Vec<KernelSample>> {
    let mut samples = Vec::new();
    for (index, record) in records(text, path)?.into_iter().enumerate() {
        let number = |name: &str| record.get(name).and_then(|v| v.parse::<f64>().ok());
        let Some(latency_ms) = number("latency") else { continue };
        check_time_us(latency_ms, "latency", path, index)?;
        let time_us = latency_ms * 1e3;
        if record.contains_key("gemm_dtype")
            || record.contains_key("num_key_value_heads")
            || record.contains_key("bmm_dtype")
            || (record.contains_key("num_heads") && record.contains_key("tp_size"))
        {
            samples.extend(aic::parse_row(&record, time_us));
        } else if record.contains_key("num_experts") {
            if record.get("kernel_source").map(String::as_str) != Some("sglang_fused_moe_triton") {
                continue;
            }
            let weights = match record.get("moe_dtype").map(String::as_str) {
                Some("fp8_block") => WeightDtype::Fp8Block,
                Some("bfloat16") => WeightDtype::Bf16,
                // gpt-oss's MXFP4 experts with BF16 activations (SGLang's Hopper path).
                Some("w4a16_mxfp4") => WeightDtype::Mxfp4,
                _ => continue,
            };
            let (Some(tokens), Some(hidden), Some(intermediate), Some(top_k), Some(n_experts), Some(moe_tp), Some(ep)) = (
                number("num_tokens"),
                number("hidden_size"),
                number("inter_size"),
                number("topk"),
                number("num_experts"),
                number("moe_tp_size"),
                number("moe_ep_size"),
            ) else {
                continue;
            };
            let model = record.get("model_hint").map(String::as_str).unwrap_or("");
            let routing = if model.starts_with("DeepSeek") {
                // DeepSeek-V3's config.json: `n_group = 8`, `topk_group = 4`.
                MoeRouting::LayerGrouped { groups: 8, topk_groups: 4 }
            } else if model.starts_with("Llama-4") || model.starts_with("gpt-oss") {
                MoeRouting::Layer
            } else {
                MoeRouting::Plain
            };
            let (tokens_in, loads) = collector_moe_loads(tokens as u64, top_k as u64, n_experts as u64, ep as u64, routing);
            let shape = KernelShape::Moe {
                tokens_in,
                loads,
                tokens: tokens as u64,
                hidden: hidden as u64,
                intermediate: intermediate as u64,
                top_k: top_k as u64,
                n_experts: n_experts as u64,
                moe_tp: moe_tp as u64,
                ep: ep as u64,
                weights,
                routing,
                source: format!("AIC 0.12.0 SGLang 0.5.14 {model} tp{moe_tp} ep{ep}"),
            };
            samples.push(KernelSample {
                family: match weights {
                    WeightDtype::Bf16 => "moe_bf16",
                    WeightDtype::Mxfp4 => "moe_mxfp4",
                    _ => "moe_fp8",
                }
                .to_string(),
                shape,
                time_us,
            });
        } else {
            // NCCL tables name the collective; SGLang's all-reduce table names the launch mode.
            let (family, path) = if record.contains_key("nccl_dtype") {
                let n_ranks = number("num_gpus").unwrap_or(0.0);
                let switch_reduces = record.get("nccl_dtype").map(String::as_str) == Some("half") && n_ranks == 8.0;
                let (family, op) = match record.get("op_name").map(String::as_str) {
                    Some("all_reduce") => ("nccl_all_reduce", NcclOp::AllReduce),
                    Some("all_gather") | Some("reduce_scatter") => ("nccl_all_gather", NcclOp::AllGather),
                    Some("alltoall") => ("nccl_alltoall", NcclOp::AllToAll),
                    _ => continue,
                };
                let nvls = if op == NcclOp::AllReduce && switch_reduces {
                    Nvls::Available
                } else {
                    Nvls::Off
                };
                (family, CollectivePath::NcclTests { op, nvls })
            } else {
                match record.get("backend").map(String::as_str) {
                    Some("sglang_graph") => ("custom_allreduce", CollectivePath::SglangAllReduce),
                    Some("sglang_eager") => ("custom_allreduce_eager", CollectivePath::SglangAllReduceEager),
                    _ => continue,
                }
            };
            let (Some(n_ranks), Some(bytes)) = (number("num_gpus"), number("message_bytes")) else {
                continue;
            };
            samples.push(KernelSample {
                family: family.into(),
                shape: KernelShape::Collective {
                    n_ranks: n_ranks as u32,
                    bytes,
                    path,
                },
                time_us,
            });
        }
    }
    Ok(samples)
}

/// Predicted time of a measured kernel, microseconds, with the bundled MoE shape table.
///
/// Microbenchmarks run in short bursts at boost clock, so the sustained-clock derate is not applied.
pub fn predict_us(sample: &KernelSample, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    predict_us_with(sample, gpu, coefficients, builtin_moe_shapes())
}

/// [`predict_us`] with MoE shape factors from `moe_table`.
pub fn predict_us_with(sample: &KernelSample, gpu: &GpuSpec, coefficients: &Coefficients, moe_table: &[MoeShapeFactors]) -> f64 {
    let mut burst = coefficients.clone();
    burst.sustained_clock_ratio = 1.0;
    let coefficients = &burst;
    let op = |kind: OpKind<'_>| op_us(kind, gpu, coefficients);
    match &sample.shape {
        KernelShape::Gemm { m, n, k, weights } => {
            let serving_us = op(OpKind::Gemm {
                m: *m,
                n: *n,
                k: *k,
                weights: *weights,
            });
            // In serving an FP8/FP4 GEMM first quantises its input activations (one more kernel, which
            // `cost_op` counts); the microbenchmark timed `torch._scaled_mm` on inputs already quantised.
            if gemm_compute_dtype(gpu, *weights) == ComputeDtype::Bf16 {
                serving_us
            } else {
                serving_us - coefficients.act_quant_kernel_us - activation_quant_s(gpu, coefficients, *m, *k) * 1e6
            }
        }
        KernelShape::AttentionPrefill {
            seq,
            heads,
            kv_heads,
            head_dim,
        } => {
            let requests = [ExtendRequest {
                new_tokens: *seq,
                cached_tokens: 0,
            }];
            let kv_bytes_per_token = (2 * kv_heads * head_dim * 2) as f64;
            op(OpKind::AttentionPrefill {
                kernel: AttentionKernel::Mha,
                requests: &requests,
                heads: *heads,
                kv_heads: *kv_heads,
                qk_dim: *head_dim,
                v_dim: *head_dim,
                window_tokens: None,
                kv_bytes_per_token,
                kv_dtype: KvDtype::Bf16,
            })
        }
        KernelShape::AttentionDecode {
            batch,
            context,
            heads,
            kv_heads,
            head_dim,
        } => {
            let kv_bytes_per_token = (2 * kv_heads * head_dim * 2) as f64;
            op(OpKind::AttentionDecode {
                kernel: AttentionKernel::Mha,
                requests: *batch,
                attended_tokens: batch * context,
                kv_heads: *kv_heads,
                heads: *heads,
                qk_dim: *head_dim,
                v_dim: *head_dim,
                kv_bytes_per_token,
                kv_dtype: KvDtype::Bf16,
            })
        }
        KernelShape::SglangGemm { .. }
        | KernelShape::SglangAttentionPrefill { .. }
        | KernelShape::SglangAttentionDecode { .. }
        | KernelShape::SglangMlaPrefill { .. }
        | KernelShape::SglangMlaDecode { .. }
        | KernelShape::SglangMlaBmm { .. } => aic::predict_us(&sample.shape, gpu, coefficients),
        KernelShape::Moe {
            hidden,
            intermediate,
            moe_tp,
            ep,
            weights,
            routing,
            tokens_in,
            loads,
            top_k,
            n_experts,
            ..
        } => {
            let shape = moe_sample_shape(sample).expect("a MoE sample");
            let work = MoeWork {
                tokens_in: *tokens_in as f64,
                top_k: *top_k as f64,
                local_experts: (*n_experts / (*ep).max(1)) as f64,
                loads,
                hidden: *hidden,
                slice: *intermediate / (*moe_tp).max(1),
                weights: *weights,
                // The plain path at EP 1 runs `select_experts` and three `copy_`s of its output into the
                // static top-k tensors on every call (`run_op`); at EP > 1 a `clamp` replaces them.
                extra_kernels: match (*routing, *ep) {
                    (MoeRouting::Plain, 1) => 3.0,
                    (MoeRouting::Plain, _) => 1.0,
                    _ => 0.0,
                },
            };
            let factors = moe_shape_factors(moe_table, &gpu.name, &shape, false);
            moe_cost(&work, MoeKernel::Triton(factors), gpu, coefficients).total_s() * 1e6
        }
        KernelShape::Collective { n_ranks, bytes, path } => {
            let seconds = match path {
                CollectivePath::SglangAllReduce => allreduce_s(gpu, coefficients, *n_ranks, *bytes),
                // An eager call: the CPU launch and the GPU work overlap across back-to-back calls.
                CollectivePath::SglangAllReduceEager => {
                    allreduce_s(gpu, coefficients, *n_ranks, *bytes).max(coefficients.eager_allreduce_call_us * 1e-6)
                }
                CollectivePath::NcclTests { op, nvls } => nccl_with_s(gpu, coefficients, *op, *n_ranks, *bytes, *nvls),
                // Measured with NVLS off (data/measured/README.md).
                CollectivePath::TorchDistributed { op } => {
                    nccl_with_s(gpu, coefficients, *op, *n_ranks, *bytes, Nvls::Off) + coefficients.torch_process_group_call_us * 1e-6
                }
            };
            seconds * 1e6
        }
    }
}

/// Time of one op with `coefficients` as given, microseconds.
fn op_us(kind: OpKind<'_>, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    cost_op(
        &Op {
            name: "kernel",
            kind,
            repeat: 1,
        },
        gpu,
        coefficients,
    )
    .total_s()
        * 1e6
}

/// The expert shape a MoE sample ran (what selects its tuned kernel config); `None` for other samples.
pub fn moe_sample_shape(sample: &KernelSample) -> Option<MoeShape> {
    match &sample.shape {
        KernelShape::Moe {
            hidden,
            intermediate,
            n_experts,
            moe_tp,
            ep,
            weights,
            ..
        } => Some(MoeShape {
            weights: *weights,
            hidden: *hidden,
            slice: *intermediate / (*moe_tp).max(1),
            local_experts: *n_experts / (*ep).max(1),
        }),
        _ => None,
    }
}

/// Which experts each token picks under AIConfigurator's `balanced_logits`.
fn balanced_picks(tokens: u64, n_experts: u64, top_k: u64, token: u64) -> impl Iterator<Item = u64> {
    let stride = n_experts.div_ceil(top_k);
    (0..top_k).map(move |j| {
        if tokens >= stride {
            (token + j * stride) % n_experts
        } else {
            // `(token * stride / num_tokens + j * stride) % num_experts`, truncated by `.long()`.
            ((token as f64 * stride as f64 / tokens as f64 + (j * stride) as f64).floor() as u64) % n_experts
        }
    })
}

/// The work AIConfigurator's collector hands rank 0's fused-MoE kernel for a row: the tokens entering
/// the kernel and the token slots of each local expert that gets any (see [`MoeRouting`]).
pub fn collector_moe_loads(tokens: u64, top_k: u64, n_experts: u64, ep: u64, routing: MoeRouting) -> (u64, Vec<ExpertLoad>) {
    let local = n_experts / ep.max(1);
    let mut counts = vec![0u64; local as usize];
    let mut tokens_in = 0u64;
    let mut picks = Vec::with_capacity(top_k as usize);
    for token in 0..tokens {
        picks.clear();
        picks.extend(balanced_picks(tokens, n_experts, top_k, token));
        if let MoeRouting::LayerGrouped { groups, topk_groups } = routing {
            let kept_experts = n_experts / groups * topk_groups;
            picks.retain(|&e| e < kept_experts);
            let mut filler = 0;
            while (picks.len() as u64) < top_k && filler < kept_experts {
                if !picks.contains(&filler) {
                    picks.push(filler);
                }
                filler += 1;
            }
        }
        let local_slots = picks.iter().filter(|&&e| e < local).count();
        match routing {
            MoeRouting::Plain if ep > 1 => {
                if local_slots == 0 {
                    continue;
                }
                tokens_in += 1;
                for &e in &picks {
                    counts[if e < local { e as usize } else { 0 }] += 1;
                }
            }
            _ => {
                tokens_in += 1;
                for &e in picks.iter().filter(|&&e| e < local) {
                    counts[e as usize] += 1;
                }
            }
        }
    }
    let mut histogram: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    for count in counts.into_iter().filter(|&c| c > 0) {
        *histogram.entry(count).or_default() += 1.0;
    }
    let loads = histogram
        .into_iter()
        .map(|(tokens, experts)| ExpertLoad {
            experts,
            tokens: tokens as f64,
        })
        .collect();
    (tokens_in, loads)
}

/// Fits, for each MoE shape among `samples`, the factors on the MoE compute and memory efficiencies
/// (coordinate search in log space over 1/16–4, minimising squared log error), with `coefficients` fixed.
pub fn fit_moe_shapes(samples: &[KernelSample], gpu: &GpuSpec, coefficients: &Coefficients) -> Vec<MoeShapeFactors> {
    let mut shapes: Vec<(MoeShape, String, bool)> = Vec::new();
    for sample in samples {
        if let (Some(shape), KernelShape::Moe { source, routing, ep, .. }) = (moe_sample_shape(sample), &sample.shape) {
            let serving = !(*routing == MoeRouting::Plain && *ep > 1);
            match shapes.iter_mut().find(|(s, _, _)| *s == shape) {
                Some(entry) => entry.2 &= serving,
                None => shapes.push((shape, source.clone(), serving)),
            }
        }
    }
    shapes
        .into_iter()
        .map(|(shape, source, serving)| {
            let members: Vec<&KernelSample> = samples.iter().filter(|s| moe_sample_shape(s) == Some(shape)).collect();
            let entry = |compute_factor: f64, mem_factor: f64| MoeShapeFactors {
                gpu: gpu.name.clone(),
                shape,
                compute_factor,
                mem_factor,
                rows: members.len(),
                median_ape: 0.0,
                serving,
                source: source.clone(),
            };
            let errors = |factors: &MoeShapeFactors| -> Vec<f64> {
                let table = std::slice::from_ref(factors);
                members
                    .iter()
                    .map(|s| predict_us_with(s, gpu, coefficients, table) / s.time_us)
                    .collect()
            };
            let loss = |factors: &MoeShapeFactors| errors(factors).iter().map(|r| r.ln().powi(2)).sum::<f64>();
            let mut best = entry(1.0, 1.0);
            let mut best_loss = loss(&best);
            for _round in 0..4 {
                for which in 0..2 {
                    for step in 0..=120 {
                        let value = 0.0625 * 64f64.powf(step as f64 / 120.0);
                        let trial = if which == 0 {
                            entry(value, best.mem_factor)
                        } else {
                            entry(best.compute_factor, value)
                        };
                        let trial_loss = loss(&trial);
                        if trial_loss < best_loss {
                            best_loss = trial_loss;
                            best = trial;
                        }
                    }
                }
            }
            let mut ape: Vec<f64> = errors(&best).iter().map(|r| (r - 1.0).abs() * 100.0).collect();
            best.median_ape = quantile(&mut ape, 0.5);
            best
        })
        .collect()
}

/// Error statistics of one kernel family.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyError {
    /// Family name.
    pub family: String,
    /// Samples.
    pub n: usize,
    /// Median absolute % error.
    pub median_ape: f64,
    /// 90th-percentile absolute % error.
    pub p90_ape: f64,
    /// Median signed % error.
    pub median_signed: f64,
}

/// Per-family errors of the cost model on measured kernels, with the bundled MoE shape table.
pub fn family_errors(samples: &[KernelSample], gpu: &GpuSpec, coefficients: &Coefficients) -> Vec<FamilyError> {
    family_errors_with(samples, gpu, coefficients, builtin_moe_shapes())
}

/// [`family_errors`] with MoE shape factors from `moe_table`.
pub fn family_errors_with(
    samples: &[KernelSample],
    gpu: &GpuSpec,
    coefficients: &Coefficients,
    moe_table: &[MoeShapeFactors],
) -> Vec<FamilyError> {
    let mut families: Vec<String> = samples.iter().map(|s| s.family.clone()).collect();
    families.sort();
    families.dedup();
    families
        .into_iter()
        .map(|family| {
            let signed: Vec<f64> = samples
                .iter()
                .filter(|s| s.family == family)
                .map(|s| (predict_us_with(s, gpu, coefficients, moe_table) / s.time_us - 1.0) * 100.0)
                .collect();
            let mut ape: Vec<f64> = signed.iter().map(|e| e.abs()).collect();
            let mut signed = signed;
            FamilyError {
                n: ape.len(),
                median_ape: quantile(&mut ape, 0.5),
                p90_ape: quantile(&mut ape, 0.9),
                median_signed: quantile(&mut signed, 0.5),
                family,
            }
        })
        .collect()
}

/// The coefficients each kernel family identifies.
pub fn identified_coefficients(family: &str) -> &'static [&'static str] {
    match family {
        "gemm_bf16" => &["gemm_bf16_eff", "gemm_mem_eff", "kernel_floor_us"],
        "gemm_fp8" => &["gemm_fp8_eff"],
        "attn_prefill" => &["attn_prefill_eff"],
        "aic_attn_prefill" => &[
            "attn_prefill_eff",
            "attn_prefill_tile_us",
            "attn_prefill_row_ns",
            "attn_fp8_speedup",
        ],
        "aic_mla_prefill" => &[
            "attn_prefill_eff",
            "attn_prefill_tile_us",
            "attn_prefill_row_ns",
            "fp8_upcast_gelems_per_sm",
        ],
        "aic_mla_decode" => &["attn_decode_mem_eff", "attn_decode_tile_us", "fp8_upcast_gelems_per_sm"],
        "aic_mla_bmm" => &["l2_tb_per_s"],
        "attn_decode" | "aic_attn_decode" => &[
            "attn_decode_mem_eff",
            "attn_decode_tile_us",
            "attn_decode_token_ns",
            "attn_decode_request_ns",
        ],
        "nccl_all_reduce" | "nccl_all_gather" => &[
            "nccl_latency_us",
            "nccl_step_us",
            "nccl_ll128_latency_us",
            "nccl_simple_latency_us",
            "nccl_bw_eff",
            "nccl_nvls_latency_us",
            "nccl_nvls_bw_eff",
        ],
        "nccl_alltoall" => &["nccl_p2p_ll_latency_us", "nccl_p2p_simple_latency_us"],
        "all_reduce" | "all_gather" | "all_to_all" => &["torch_process_group_call_us"],
        "moe_bf16" | "moe_fp8" => &["moe_compute_eff", "moe_fp8_compute_eff", "moe_mem_eff"],
        "custom_allreduce" => &["allreduce_latency_us", "allreduce_peer_us", "comm_bw_eff"],
        "custom_allreduce_eager" => &["eager_allreduce_call_us"],
        _ => &[],
    }
}

/// The families `sglsim kernels --fit` fits, in order. `a+b` fits families together, over the union of
/// the coefficients they identify. NCCL comes before the custom all-reduce, whose tables go to NCCL above
/// 8 MiB, and before our torch.distributed rows (`all_reduce`, `all_gather`, `all_to_all`), which identify only the
/// process group's per-call overhead on top of NCCL.
pub const FIT_ORDER: &[&str] = &[
    "gemm_bf16",
    "gemm_fp8",
    "attn_prefill+aic_attn_prefill+aic_mla_prefill",
    "attn_decode+aic_attn_decode+aic_mla_decode",
    "nccl_all_reduce+nccl_all_gather+nccl_alltoall",
    "all_reduce+all_gather+all_to_all",
    "custom_allreduce",
    "custom_allreduce_eager",
    "moe_bf16+moe_fp8",
    "aic_mla_bmm",
];

/// Fits, family by family, the coefficients the family identifies: coordinate search in log space
/// over each coefficient's plausible range (a coarse grid, then a fine one around its best point),
/// minimising the sum of absolute log errors: the median-seeking loss, which the few rows a model term
/// does not describe (they set each family's p90) pull less than a squared one. Families that share
/// coefficients are fitted together (the MLA tables with the FA3 ones).
pub fn fit_families(samples: &[KernelSample], gpu: &GpuSpec, start: &Coefficients, families: &[&str]) -> Result<Coefficients> {
    let mut values = start.to_vec();
    for family in families {
        let names: Vec<&str> = family.split('+').collect();
        let members: Vec<&KernelSample> = samples.iter().filter(|s| names.contains(&s.family.as_str())).collect();
        if members.is_empty() {
            continue;
        }
        let mut indices: Vec<usize> = Vec::new();
        for name in names.iter().flat_map(|name| identified_coefficients(name)) {
            let Some(index) = COEFFICIENT_INFO.iter().position(|info| info.name == *name) else {
                continue;
            };
            if !indices.contains(&index) {
                indices.push(index);
            }
        }
        let loss = |values: &[f64]| -> f64 {
            let Ok(coefficients) = Coefficients::from_slice(values) else {
                return f64::INFINITY;
            };
            members
                .iter()
                .map(|s| (predict_us(s, gpu, &coefficients) / s.time_us).ln().abs())
                .sum()
        };
        for _round in 0..4 {
            for &index in &indices {
                let info = &COEFFICIENT_INFO[index];
                let (low, high) = (info.min.max(1e-6), info.max);
                let mut best = (loss(&values), values[index]);
                let try_value = |candidate: f64, best: &mut (f64, f64)| {
                    let mut trial = values.clone();
                    trial[index] = candidate;
                    let value = loss(&trial);
                    if value < best.0 {
                        *best = (value, candidate);
                    }
                };
                // A log grid over the range, then a finer one between the best point's neighbours.
                let ratio = (high / low).powf(1.0 / 60.0);
                for step in 0..=60 {
                    try_value(low * ratio.powi(step), &mut best);
                }
                let centre = best.1;
                for step in -10..=10 {
                    try_value((centre * ratio.powf(f64::from(step) / 10.0)).clamp(low, high), &mut best);
                }
                values[index] = best.1;
            }
        }
    }
    Ok(Coefficients::from_slice(&values)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fp8_gemm_samples_are_priced_without_the_activation_quantisation() {
        // `torch._scaled_mm` timed on quantised inputs: one kernel, where serving launches two.
        let gpu = crate::model::gpu::GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let sample = |weights| KernelSample {
            family: "gemm".into(),
            shape: KernelShape::Gemm {
                m: 1,
                n: 4096,
                k: 4096,
                weights,
            },
            time_us: 1.0,
        };
        let mut burst = coefficients.clone();
        burst.sustained_clock_ratio = 1.0;
        let serving_us = op_us(
            OpKind::Gemm {
                m: 1,
                n: 4096,
                k: 4096,
                weights: WeightDtype::Fp8PerTensor,
            },
            &gpu,
            &burst,
        );
        let priced = predict_us(&sample(WeightDtype::Fp8PerTensor), &gpu, &coefficients);
        // The sample is m = 1, k = 4096: the quantisation kernel's fixed time and its (tiny) traffic.
        let quant_us = coefficients.act_quant_kernel_us + activation_quant_s(&gpu, &coefficients, 1, 4096) * 1e6;
        assert!((serving_us - priced - quant_us).abs() < 1e-9, "{serving_us} {priced}");
        assert!(predict_us(&sample(WeightDtype::Bf16), &gpu, &coefficients) > priced);
    }

    use super::*;
    use crate::model::gpu::GpuCatalog;

    #[test]
    fn collector_moe_loads_follow_aic_conventions() {
        // 128 experts, top-8, EP 1: stride 16, every expert gets T*8/128 slots.
        let (tokens_in, loads) = collector_moe_loads(256, 8, 128, 1, MoeRouting::Plain);
        assert_eq!(tokens_in, 256);
        assert_eq!(
            loads,
            vec![ExpertLoad {
                experts: 128.0,
                tokens: 16.0
            }]
        );
        // EP 32 (experts 0..3 local): a quarter of the tokens enter with one local slot each, and their
        // seven remote slots land on expert 0 (clamped from -1).
        let (tokens_in, loads) = collector_moe_loads(256, 8, 128, 32, MoeRouting::Plain);
        assert_eq!(tokens_in, 64);
        let slots: f64 = loads.iter().map(|l| l.experts * l.tokens).sum();
        assert_eq!(slots, 64.0 * 8.0);
        assert!(
            loads.contains(&ExpertLoad {
                experts: 1.0,
                tokens: 16.0 + 64.0 * 7.0
            }),
            "{loads:?}"
        );
        // DeepSeek-V3's grouped top-k: only the 128 experts of groups 0..3 get slots, so EP 2 equals EP 1.
        let grouped = MoeRouting::LayerGrouped { groups: 8, topk_groups: 4 };
        let one = collector_moe_loads(64, 8, 256, 1, grouped);
        let two = collector_moe_loads(64, 8, 256, 2, grouped);
        assert_eq!(one, two);
        let active: f64 = one.1.iter().map(|l| l.experts).sum();
        assert_eq!(active, 128.0);
    }

    #[test]
    fn moe_shape_fit_recovers_known_factors() {
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let truth = MoeShapeFactors {
            gpu: gpu.name.clone(),
            shape: MoeShape {
                weights: WeightDtype::Bf16,
                hidden: 2048,
                slice: 768,
                local_experts: 128,
            },
            compute_factor: 0.7,
            mem_factor: 1.2,
            rows: 0,
            median_ape: 0.0,
            serving: true,
            source: "synthetic".into(),
        };
        let samples: Vec<KernelSample> = [1u64, 8, 64, 512, 4096, 16384]
            .iter()
            .map(|&tokens| {
                let (tokens_in, loads) = collector_moe_loads(tokens, 8, 128, 1, MoeRouting::Plain);
                let mut sample = KernelSample {
                    family: "moe_bf16".into(),
                    shape: KernelShape::Moe {
                        tokens,
                        hidden: 2048,
                        intermediate: 768,
                        top_k: 8,
                        n_experts: 128,
                        moe_tp: 1,
                        ep: 1,
                        weights: WeightDtype::Bf16,
                        routing: MoeRouting::Plain,
                        tokens_in,
                        loads,
                        source: "synthetic".into(),
                    },
                    time_us: 0.0,
                };
                sample.time_us = predict_us_with(&sample, &gpu, &coefficients, std::slice::from_ref(&truth));
                sample
            })
            .collect();
        let fitted = fit_moe_shapes(&samples, &gpu, &coefficients);
        assert_eq!(fitted.len(), 1);
        assert!((fitted[0].compute_factor / 0.7 - 1.0).abs() < 0.05, "{:?}", fitted[0]);
        assert!((fitted[0].mem_factor / 1.2 - 1.0).abs() < 0.05, "{:?}", fitted[0]);
        assert!(fitted[0].median_ape < 2.0 && fitted[0].serving, "{:?}", fitted[0]);
    }

    #[test]
    fn fit_recovers_a_known_gemm_efficiency() {
        let gpu = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
        let mut truth = Coefficients::defaults();
        truth.gemm_bf16_eff = 0.6;
        let samples: Vec<KernelSample> = [1024u64, 2048, 4096, 8192]
            .iter()
            .map(|&m| {
                let shape = KernelShape::Gemm {
                    m,
                    n: 8192,
                    k: 8192,
                    weights: WeightDtype::Bf16,
                };
                let mut sample = KernelSample {
                    family: "gemm_bf16".into(),
                    shape,
                    time_us: 0.0,
                };
                sample.time_us = predict_us(&sample, &gpu, &truth);
                sample
            })
            .collect();
        let fitted = fit_families(&samples, &gpu, &Coefficients::defaults(), &["gemm_bf16"]).unwrap();
        assert!((fitted.gemm_bf16_eff / 0.6 - 1.0).abs() < 0.03, "{}", fitted.gemm_bf16_eff);
        let errors = family_errors(&samples, &gpu, &fitted);
        assert!(errors[0].median_ape < 3.0, "{:?}", errors);
    }

    #[test]
    fn aic_nccl_rows_read_alltoall_and_nvls_only_for_half_all_reduce_over_8_ranks() {
        let text = "framework,version,op_name,kernel_source,nccl_dtype,num_gpus,message_size,message_bytes,latency\n\
            TRTLLM,2.29.2,all_reduce,NCCL,half,8,1024,2048,0.016\n\
            TRTLLM,2.29.2,all_reduce,NCCL,int8,8,2048,2048,0.017\n\
            TRTLLM,2.29.2,all_reduce,NCCL,half,4,1024,2048,0.010\n\
            TRTLLM,2.29.2,all_gather,NCCL,half,8,1024,2048,0.010\n\
            TRTLLM,2.29.2,alltoall,NCCL,half,8,1024,2048,0.007\n";
        let samples = parse_kernels(text, "t.csv").unwrap();
        let paths: Vec<(&str, CollectivePath)> = samples
            .iter()
            .map(|s| match s.shape {
                KernelShape::Collective { path, .. } => (s.family.as_str(), path),
                _ => panic!("{s:?}"),
            })
            .collect();
        let nccl = |op, nvls| CollectivePath::NcclTests { op, nvls };
        assert_eq!(
            paths,
            [
                ("nccl_all_reduce", nccl(NcclOp::AllReduce, Nvls::Available)),
                ("nccl_all_reduce", nccl(NcclOp::AllReduce, Nvls::Off)),
                ("nccl_all_reduce", nccl(NcclOp::AllReduce, Nvls::Off)),
                ("nccl_all_gather", nccl(NcclOp::AllGather, Nvls::Off)),
                ("nccl_alltoall", nccl(NcclOp::AllToAll, Nvls::Off)),
            ]
        );
        assert!((samples[4].time_us - 7.0).abs() < 1e-9);
    }

    #[test]
    fn torch_distributed_rows_cost_the_process_group_overhead_more_than_a_direct_nccl_call() {
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let sample = |path| KernelSample {
            family: "all_reduce".into(),
            shape: KernelShape::Collective {
                n_ranks: 4,
                bytes: 65536.0,
                path,
            },
            time_us: 1.0,
        };
        let direct = CollectivePath::NcclTests {
            op: NcclOp::AllReduce,
            nvls: Nvls::Off,
        };
        let direct_us = predict_us(&sample(direct), &gpu, &coefficients);
        let torch_us = predict_us(
            &sample(CollectivePath::TorchDistributed { op: NcclOp::AllReduce }),
            &gpu,
            &coefficients,
        );
        assert!(
            (torch_us - direct_us - coefficients.torch_process_group_call_us).abs() < 1e-9,
            "{direct_us} {torch_us}"
        );
        assert!(coefficients.torch_process_group_call_us > 5.0);
        // The fit recovers a known overhead from torch rows alone, leaving NCCL's coefficients as they are.
        let mut truth = coefficients.clone();
        truth.torch_process_group_call_us = 14.0;
        let samples: Vec<KernelSample> = [8192.0, 131072.0, 2097152.0, 33554432.0]
            .iter()
            .map(|&bytes| {
                let mut sample = KernelSample {
                    family: "all_gather".into(),
                    shape: KernelShape::Collective {
                        n_ranks: 2,
                        bytes,
                        path: CollectivePath::TorchDistributed { op: NcclOp::AllGather },
                    },
                    time_us: 0.0,
                };
                sample.time_us = predict_us(&sample, &gpu, &truth);
                sample
            })
            .collect();
        let fitted = fit_families(&samples, &gpu, &coefficients, &["all_reduce+all_gather"]).unwrap();
        assert!(
            (fitted.torch_process_group_call_us / 14.0 - 1.0).abs() < 0.05,
            "{}",
            fitted.torch_process_group_call_us
        );
        assert_eq!(fitted.nccl_latency_us, coefficients.nccl_latency_us);
    }

    #[test]
    fn all_to_all_rows_are_read_as_torch_distributed_nccl_all_to_all() {
        let text = "op,n_ranks,bytes,time_us,method\n\
                    all_to_all_single,4,67108864,183.0,cuda_graph_loop(L=5)\n\
                    all_to_all_single,4,67108864,183.0,eager_loop(L=5)\n";
        let samples = parse_collectives(text, "t.csv").unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].family, "all_to_all");
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let c = Coefficients::defaults();
        let expect_us = (nccl_with_s(&gpu, &c, NcclOp::AllToAll, 4, 67108864.0, Nvls::Off) * 1e6) + c.torch_process_group_call_us;
        assert!((predict_us(&samples[0], &gpu, &c) - expect_us).abs() < 1e-6);
    }
}
