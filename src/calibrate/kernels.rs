//! Kernel-level accuracy: measured GEMM, attention and collective timings against the cost model.
//!
//! Reads the CSVs written by `tools/measure_kernels.py` (`data/measured/<gpu>_kernels.csv` and
//! `<gpu>_collectives.csv`), prices each measured shape with [`cost_op`] / [`collective_s`], and
//! reports per-family median and p90 absolute % error. [`fit_families`] adjusts the coefficients each
//! family identifies (within their plausible ranges) to minimise squared log error.

use serde::Serialize;

use super::error::{Error, Result};
use super::validate::quantile;
use crate::model::coefficients::{Coefficients, COEFFICIENT_INFO};
use crate::model::cost::{allreduce_s, cost_op, gemm_compute_dtype, nccl_s, NcclOp};
use crate::model::gpu::GpuSpec;
use crate::model::ops::{AttentionKernel, ExtendRequest, Op, OpKind};
use crate::model::quant::{ComputeDtype, WeightDtype};

/// One measured kernel time.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSample {
    /// Op family: `gemm_bf16`, `gemm_fp8`, `attn_prefill`, `attn_decode`, `moe_bf16`, `moe_fp8`,
    /// `custom_allreduce`, `custom_allreduce_eager`, `nccl_all_reduce`, `nccl_all_gather`, and our
    /// torch.distributed NCCL rows `all_reduce`, `all_gather`, `all_to_all`.
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

/// The implementation a measured collective went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectivePath {
    /// SGLang's `tensor_model_parallel_all_reduce` inside a CUDA graph: custom all-reduce up to 8 MiB, NCCL above.
    SglangAllReduce,
    /// The same, called eagerly: each call also pays the CPU launch of an eager kernel.
    SglangAllReduceEager,
    /// NCCL all-reduce.
    NcclAllReduce,
    /// NCCL all-gather or reduce-scatter.
    NcclAllGather,
    /// NCCL all-to-all (torch.distributed `all_to_all_single`): each rank sends `bytes / n` to every rank.
    NcclAllToAll,
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
    for record in records(text, path)? {
        let number = |name: &str| record.get(name).and_then(|v| v.parse::<f64>().ok());
        let integer = |name: &str| number(name).map(|v| v as u64);
        let Some(time_us) = number("time_us") else { continue };
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

/// Reads a `*_collectives.csv` (rows timed inside CUDA graphs, as SGLang's decode runs them).
pub fn parse_collectives(text: &str, path: &str) -> Result<Vec<KernelSample>> {
    let mut samples = Vec::new();
    for record in records(text, path)? {
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
        let op = record.get("op").map(String::as_str).unwrap_or("");
        let (family, path) = match op {
            "all_reduce" => ("all_reduce", CollectivePath::NcclAllReduce),
            "all_gather_into_tensor" | "reduce_scatter_tensor" => ("all_gather", CollectivePath::NcclAllGather),
            "all_to_all_single" => ("all_to_all", CollectivePath::NcclAllToAll),
            _ => continue,
        };
        samples.push(KernelSample {
            family: family.into(),
            shape: KernelShape::Collective { n_ranks, bytes, path },
            time_us,
        });
    }
    Ok(samples)
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
/// (nccl-tests: families `nccl_all_reduce` and `nccl_all_gather`, reduce-scatter included; all-to-all
/// rows are not read: the model's all-to-all is DeepEP's, not NCCL's).
pub fn parse_aic(text: &str, path: &str) -> Result<Vec<KernelSample>> {
    let mut samples = Vec::new();
    for record in records(text, path)? {
        let number = |name: &str| record.get(name).and_then(|v| v.parse::<f64>().ok());
        let Some(latency_ms) = number("latency") else { continue };
        let time_us = latency_ms * 1e3;
        if record.contains_key("num_experts") {
            if record.get("kernel_source").map(String::as_str) != Some("sglang_fused_moe_triton") {
                continue;
            }
            let weights = match record.get("moe_dtype").map(String::as_str) {
                Some("fp8_block") => WeightDtype::Fp8Block,
                Some("bfloat16") => WeightDtype::Bf16,
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
            let shape = KernelShape::Moe {
                tokens: tokens as u64,
                hidden: hidden as u64,
                intermediate: intermediate as u64,
                top_k: top_k as u64,
                n_experts: n_experts as u64,
                moe_tp: moe_tp as u64,
                ep: ep as u64,
                weights,
            };
            samples.push(KernelSample {
                family: format!("moe_{}", if weights == WeightDtype::Bf16 { "bf16" } else { "fp8" }),
                shape,
                time_us,
            });
        } else {
            // NCCL tables name the collective; SGLang's all-reduce table names the launch mode.
            let (family, path) = if record.contains_key("nccl_dtype") {
                match record.get("op_name").map(String::as_str) {
                    Some("all_reduce") => ("nccl_all_reduce", CollectivePath::NcclAllReduce),
                    Some("all_gather") | Some("reduce_scatter") => ("nccl_all_gather", CollectivePath::NcclAllGather),
                    _ => continue,
                }
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

/// Predicted time of a measured kernel, microseconds.
///
/// Microbenchmarks run in short bursts at boost clock, so the sustained-clock derate is not applied.
pub fn predict_us(sample: &KernelSample, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    let mut burst = coefficients.clone();
    burst.sustained_clock_ratio = 1.0;
    let coefficients = &burst;
    let op = |kind: OpKind<'_>| {
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
    };
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
                serving_us - coefficients.kernel_floor_us
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
                qk_dim: *head_dim,
                v_dim: *head_dim,
                window_tokens: None,
                kv_bytes_per_token,
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
                attended_tokens: batch * context,
                heads: *heads,
                qk_dim: *head_dim,
                v_dim: *head_dim,
                kv_bytes_per_token,
            })
        }
        KernelShape::Moe {
            tokens,
            hidden,
            intermediate,
            top_k,
            n_experts,
            moe_tp,
            ep,
            weights,
        } => op(OpKind::MoeExperts {
            global_tokens: *tokens,
            top_k: *top_k,
            n_experts: *n_experts,
            ep: *ep,
            moe_tp: *moe_tp,
            hidden: *hidden,
            intermediate: *intermediate,
            weights: *weights,
            deepgemm: false,
        }),
        KernelShape::Collective { n_ranks, bytes, path } => {
            let seconds = match path {
                CollectivePath::SglangAllReduce => allreduce_s(gpu, coefficients, *n_ranks, *bytes),
                // An eager call: the CPU launch and the GPU work overlap across back-to-back calls.
                CollectivePath::SglangAllReduceEager => {
                    allreduce_s(gpu, coefficients, *n_ranks, *bytes).max(coefficients.eager_launch_us * 1e-6)
                }
                CollectivePath::NcclAllReduce => nccl_s(gpu, coefficients, NcclOp::AllReduce, *n_ranks, *bytes),
                CollectivePath::NcclAllGather => nccl_s(gpu, coefficients, NcclOp::AllGather, *n_ranks, *bytes),
                // TODO(merge): use cost::nccl_alltoall_s. A plain NCCL all-to-all within one NVLink
                // domain: one latency, then the (n-1)/n of its send buffer that leaves each rank.
                CollectivePath::NcclAllToAll if *n_ranks > 1 => {
                    let n = f64::from(*n_ranks);
                    coefficients.nccl_latency_us * 1e-6 + (n - 1.0) / n * bytes / (gpu.nvlink_bytes_per_s * coefficients.nccl_bw_eff)
                }
                CollectivePath::NcclAllToAll => 0.0,
            };
            seconds * 1e6
        }
    }
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

/// Per-family errors of the cost model on measured kernels.
pub fn family_errors(samples: &[KernelSample], gpu: &GpuSpec, coefficients: &Coefficients) -> Vec<FamilyError> {
    let mut families: Vec<String> = samples.iter().map(|s| s.family.clone()).collect();
    families.sort();
    families.dedup();
    families
        .into_iter()
        .map(|family| {
            let signed: Vec<f64> = samples
                .iter()
                .filter(|s| s.family == family)
                .map(|s| (predict_us(s, gpu, coefficients) / s.time_us - 1.0) * 100.0)
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
        "attn_prefill" => &["attn_prefill_eff", "attn_prefill_half_tokens"],
        "attn_decode" => &["attn_decode_mem_eff"],
        "nccl_all_reduce" | "nccl_all_gather" => &["nccl_latency_us", "nccl_step_us", "nccl_bw_eff"],
        "moe_fp8" | "moe_bf16" => &["moe_compute_eff", "moe_mem_eff"],
        "custom_allreduce" => &["allreduce_latency_us", "allreduce_peer_us", "comm_bw_eff"],
        _ => &[],
    }
}

/// The families `sglsim kernels --fit` fits, in order. `a+b` fits families that share coefficients
/// together. NCCL comes before the custom all-reduce, whose tables go to NCCL above 8 MiB; our
/// torch.distributed rows (`all_reduce`, `all_gather`, `all_to_all`) are not fitted: they carry PyTorch's and the
/// VM's overhead, which SGLang's pynccl calls inside CUDA graphs do not pay.
pub const FIT_ORDER: &[&str] = &[
    "gemm_bf16",
    "gemm_fp8",
    "attn_prefill",
    "attn_decode",
    "nccl_all_reduce+nccl_all_gather",
    "custom_allreduce",
    "moe_fp8",
    "moe_bf16",
];

/// Fits, family by family, the coefficients the family identifies: coordinate search in log space
/// over each coefficient's plausible range, minimising the sum of squared log errors.
pub fn fit_families(samples: &[KernelSample], gpu: &GpuSpec, start: &Coefficients, families: &[&str]) -> Result<Coefficients> {
    let mut values = start.to_vec();
    for family in families {
        let names: Vec<&str> = family.split('+').collect();
        let members: Vec<&KernelSample> = samples.iter().filter(|s| names.contains(&s.family.as_str())).collect();
        if members.is_empty() {
            continue;
        }
        let indices: Vec<usize> = identified_coefficients(names[0])
            .iter()
            .filter_map(|name| COEFFICIENT_INFO.iter().position(|info| info.name == *name))
            .collect();
        let loss = |values: &[f64]| -> f64 {
            let Ok(coefficients) = Coefficients::from_slice(values) else {
                return f64::INFINITY;
            };
            members
                .iter()
                .map(|s| (predict_us(s, gpu, &coefficients) / s.time_us).ln().powi(2))
                .sum()
        };
        for _round in 0..4 {
            for &index in &indices {
                let info = &COEFFICIENT_INFO[index];
                let (low, high) = (info.min.max(1e-6), info.max);
                let mut best = (loss(&values), values[index]);
                for step in 0..=60 {
                    let candidate = low * (high / low).powf(step as f64 / 60.0);
                    let mut trial = values.clone();
                    trial[index] = candidate;
                    let value = loss(&trial);
                    if value < best.0 {
                        best = (value, candidate);
                    }
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
        let serving_us = cost_op(
            &Op {
                name: "g",
                kind: OpKind::Gemm {
                    m: 1,
                    n: 4096,
                    k: 4096,
                    weights: WeightDtype::Fp8PerTensor,
                },
                repeat: 1,
            },
            &gpu,
            &burst,
        )
        .total_s()
            * 1e6;
        let priced = predict_us(&sample(WeightDtype::Fp8PerTensor), &gpu, &coefficients);
        assert!(
            (serving_us - priced - coefficients.kernel_floor_us).abs() < 1e-9,
            "{serving_us} {priced}"
        );
        assert!(predict_us(&sample(WeightDtype::Bf16), &gpu, &coefficients) > priced);
    }

    use super::*;
    use crate::model::gpu::GpuCatalog;

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
    fn all_to_all_rows_are_read_and_priced_as_a_plain_nccl_all_to_all() {
        let text = "op,n_ranks,bytes,time_us,method\n\
                    all_to_all_single,4,67108864,183.0,cuda_graph_loop(L=5)\n\
                    all_to_all_single,4,67108864,183.0,eager_loop(L=5)\n";
        let samples = parse_collectives(text, "t.csv").unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].family, "all_to_all");
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let c = Coefficients::defaults();
        let expect_us = c.nccl_latency_us + 0.75 * 67108864.0 / (gpu.nvlink_bytes_per_s * c.nccl_bw_eff) * 1e6;
        assert!((predict_us(&samples[0], &gpu, &c) - expect_us).abs() < 1e-6);
    }
}
