//! AIConfigurator's SGLang GEMM and attention tables, read and priced under the conditions its collector
//! measured them in (aiconfigurator-core 0.12.0, SGLang 0.5.14; github ai-dynamo/aiconfigurator,
//! collector/sglang/collect_gemm.py and collect_attn.py, timed by collector/helper.py `benchmark_with_power`).
//!
//! - GEMM rows (`<gpu>_gemm.csv`): `run_gemm` builds up to six independent copies of the operation (own
//!   activations, weights and output each; `outside_loop_count` from a budget of 45% of device memory),
//!   captures them back to back in one CUDA graph and divides the graph's time by the copies. FP8 rows
//!   run SGLang's activation quantisation before the GEMM, as serving does (`sgl_per_token_quant_fp8`
//!   then `fp8_scaled_mm`; `sglang_per_token_group_quant_fp8` then DeepGEMM for block scales).
//!   When all copies together fit in the 50 MB L2 (1024x1024 bf16 and the like) every call could read its
//!   operands from L2, but those rows are all latency-bound (under 2 us of HBM traffic against a 4-13 us
//!   measured time), so the table cannot tell an L2 rate from HBM's and the rows are priced from HBM.
//! - Attention rows: one `RadixAttention` forward on SGLang's FA3 backend (page size 1) in a CUDA graph,
//!   which stores the layer's new K/V into the cache (one kernel) and runs FA3. Prefill starts from an
//!   empty cache; decode attends `step + 1` tokens per request. FP8-KV prefill rows run FA3's FP8 FMHA
//!   (the collector casts Q, K and V to FP8); FP8-KV decode reads an FP8 cache.

use std::collections::BTreeMap;

use super::{op_us, KernelSample, KernelShape};
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;
use crate::model::ops::{AttentionKernel, ExtendRequest, OpKind};
use crate::model::quant::{KvDtype, WeightDtype};

/// Reads one row of a GEMM or attention table; `None` for rows of other tables or rows it skips.
pub(super) fn parse_row(record: &BTreeMap<String, String>, time_us: f64) -> Option<KernelSample> {
    let integer = |name: &str| record.get(name).and_then(|v| v.parse::<f64>().ok()).map(|v| v as u64);
    let kv_dtype = || match record.get("kv_cache_dtype").map(String::as_str) {
        Some("fp8") => Some(KvDtype::Fp8),
        Some("bfloat16") => Some(KvDtype::Bf16),
        _ => None,
    };
    if let Some(dtype) = record.get("gemm_dtype") {
        let (family, weights) = match dtype.as_str() {
            "bfloat16" => ("aic_gemm_bf16", WeightDtype::Bf16),
            "fp8" => ("aic_gemm_fp8", WeightDtype::Fp8PerTensor),
            "fp8_block" => ("aic_gemm_fp8_block", WeightDtype::Fp8Block),
            _ => return None,
        };
        return Some(KernelSample {
            family: family.into(),
            shape: KernelShape::SglangGemm {
                m: integer("m")?,
                n: integer("n")?,
                k: integer("k")?,
                weights,
            },
            time_us,
        });
    }
    if !record.contains_key("num_key_value_heads") || record.get("kernel_source").map(String::as_str) != Some("fa3") {
        return None;
    }
    // Sliding-window rows are not in the extracted tables; skip any that appear.
    if integer("window_size").unwrap_or(0) != 0 {
        return None;
    }
    let (batch, heads, kv_heads, head_dim, kv) = (
        integer("batch_size")?,
        integer("num_heads")?,
        integer("num_key_value_heads")?,
        integer("head_dim")?,
        kv_dtype()?,
    );
    let (family, shape) = if let Some(step) = record.get("step") {
        let step = step.parse::<f64>().ok()? as u64;
        (
            "aic_attn_decode",
            KernelShape::SglangAttentionDecode {
                batch,
                attended: step + 1,
                heads,
                kv_heads,
                head_dim,
                kv,
            },
        )
    } else {
        (
            "aic_attn_prefill",
            KernelShape::SglangAttentionPrefill {
                batch,
                isl: integer("isl")?,
                heads,
                kv_heads,
                head_dim,
                kv,
            },
        )
    };
    Some(KernelSample {
        family: family.into(),
        shape,
        time_us,
    })
}

/// Predicted time of an AIC GEMM or attention row, microseconds; `coefficients` at boost clock.
pub(super) fn predict_us(shape: &KernelShape, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    match shape {
        KernelShape::SglangGemm { m, n, k, weights } => {
            // Priced as serving runs it: FP8 GEMMs include their activation-quantisation kernel.
            op_us(
                OpKind::Gemm {
                    m: *m,
                    n: *n,
                    k: *k,
                    weights: *weights,
                },
                gpu,
                coefficients,
            )
        }
        KernelShape::SglangAttentionPrefill {
            batch,
            isl,
            heads,
            kv_heads,
            head_dim,
            kv,
        } => {
            let requests: Vec<ExtendRequest> = (0..*batch)
                .map(|_| ExtendRequest {
                    new_tokens: *isl,
                    cached_tokens: 0,
                })
                .collect();
            let kv_bytes_per_token = 2.0 * (kv_heads * head_dim) as f64 * kv.bytes();
            let attention_us = op_us(
                OpKind::AttentionPrefill {
                    kernel: AttentionKernel::Mha,
                    requests: &requests,
                    heads: *heads,
                    kv_heads: *kv_heads,
                    qk_dim: *head_dim,
                    v_dim: *head_dim,
                    window_tokens: None,
                    kv_bytes_per_token,
                    kv_dtype: *kv,
                },
                gpu,
                coefficients,
            );
            attention_us + kv_store_us((batch * isl) as f64, kv_bytes_per_token, gpu, coefficients)
        }
        KernelShape::SglangAttentionDecode {
            batch,
            attended,
            heads,
            kv_heads,
            head_dim,
            kv,
        } => {
            let kv_bytes_per_token = 2.0 * (kv_heads * head_dim) as f64 * kv.bytes();
            let attention_us = op_us(
                OpKind::AttentionDecode {
                    kernel: AttentionKernel::Mha,
                    requests: *batch,
                    attended_tokens: batch * attended,
                    kv_heads: *kv_heads,
                    heads: *heads,
                    qk_dim: *head_dim,
                    v_dim: *head_dim,
                    kv_bytes_per_token,
                    kv_dtype: *kv,
                },
                gpu,
                coefficients,
            );
            attention_us + kv_store_us(*batch as f64, kv_bytes_per_token, gpu, coefficients)
        }
        _ => unreachable!("aic::predict_us takes AIC GEMM and attention shapes only"),
    }
}

/// The KV-cache store of `tokens` new tokens (`set_kv_buffer`): one kernel that reads the new K/V and writes
/// them into the cache.
fn kv_store_us(tokens: f64, kv_bytes_per_token: f64, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    let bytes = 2.0 * tokens * kv_bytes_per_token;
    coefficients.kernel_floor_us + bytes / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff) * 1e6
}

#[cfg(test)]
mod tests {
    use super::super::parse_kernels;
    use super::*;
    use crate::model::gpu::GpuCatalog;

    #[test]
    fn aic_gemm_rows_map_to_their_family_and_weight_format() {
        let text = "kernel_source,gemm_dtype,m,n,k,latency\n\
            sglang_torch_linear,bfloat16,1,1024,2048,0.0075\n\
            sglang_sgl_kernel_fp8_scaled_mm,fp8,2,4096,1024,0.010\n\
            sglang_deepgemm_gemm_nt_f8f8bf16,fp8_block,4,8192,7168,0.020\n\
            sglang_flashinfer_cutlass_nvfp4,nvfp4,4,8192,7168,0.020\n";
        let samples = parse_kernels(text, "t.csv").unwrap();
        let got: Vec<(&str, KernelShape)> = samples.iter().map(|s| (s.family.as_str(), s.shape.clone())).collect();
        let gemm = |m, n, k, weights| KernelShape::SglangGemm { m, n, k, weights };
        assert_eq!(
            got,
            [
                ("aic_gemm_bf16", gemm(1, 1024, 2048, WeightDtype::Bf16)),
                ("aic_gemm_fp8", gemm(2, 4096, 1024, WeightDtype::Fp8PerTensor)),
                ("aic_gemm_fp8_block", gemm(4, 8192, 7168, WeightDtype::Fp8Block)),
            ]
        );
        assert!((samples[0].time_us - 7.5).abs() < 1e-9);
        // The collector times the activation quantisation with the FP8 GEMM, as serving runs it: a tiny FP8
        // row costs a GEMM floor and the quantisation kernel's fixed time, a BF16 one a GEMM floor.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let bf16 = predict_us(&gemm(1, 1024, 1024, WeightDtype::Bf16), &gpu, &coefficients);
        let fp8 = predict_us(&gemm(1, 1024, 1024, WeightDtype::Fp8PerTensor), &gpu, &coefficients);
        assert!(fp8 - bf16 > 0.8 * coefficients.act_quant_kernel_us, "{bf16} {fp8}");
    }

    #[test]
    fn aic_attention_rows_read_batch_attended_tokens_and_kv_format() {
        let prefill = "kernel_source,batch_size,isl,num_heads,num_key_value_heads,head_dim,attn_dtype,kv_cache_dtype,window_size,latency\n\
            fa3,2,1024,32,8,128,fp8,fp8,0,0.05\n\
            fa3,2,1024,32,8,128,bfloat16,bfloat16,4096,0.05\n";
        let decode = "kernel_source,batch_size,num_heads,num_key_value_heads,head_dim,kv_cache_dtype,step,window_size,latency\n\
            fa3,64,32,8,128,bfloat16,4095,0,0.05\n";
        let prefill = parse_kernels(prefill, "p.csv").unwrap();
        assert_eq!(prefill.len(), 1, "sliding-window rows are skipped");
        assert_eq!(prefill[0].family, "aic_attn_prefill");
        assert!(matches!(
            prefill[0].shape,
            KernelShape::SglangAttentionPrefill {
                batch: 2,
                isl: 1024,
                kv: KvDtype::Fp8,
                ..
            }
        ));
        let decode = parse_kernels(decode, "d.csv").unwrap();
        assert_eq!(decode[0].family, "aic_attn_decode");
        assert!(matches!(
            decode[0].shape,
            KernelShape::SglangAttentionDecode {
                batch: 64,
                attended: 4096,
                kv_heads: 8,
                kv: KvDtype::Bf16,
                ..
            }
        ));
    }

    #[test]
    fn fa3_decode_pays_per_tile_beyond_its_kv_stream() {
        // 2048 requests over 2-token contexts read almost nothing, yet run 16k (request, KV head) tiles.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let shape = |kv_heads| KernelShape::SglangAttentionDecode {
            batch: 2048,
            attended: 2,
            heads: 32,
            kv_heads,
            head_dim: 128,
            kv: KvDtype::Bf16,
        };
        let (eight, thirty_two) = (
            predict_us(&shape(8), &gpu, &coefficients),
            predict_us(&shape(32), &gpu, &coefficients),
        );
        let waves = 2048.0 * 24.0 / f64::from(gpu.sm_count);
        assert!(
            thirty_two - eight > 0.95 * waves * coefficients.attn_decode_tile_us,
            "{eight} {thirty_two}"
        );
    }
}
