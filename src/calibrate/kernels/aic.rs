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
//! - MLA rows (`<gpu>_context_mla.csv`, `<gpu>_generation_mla.csv`; collector/sglang/collect_mla.py at commit
//!   e23be5a79, `run_mla`): one `RadixAttention` forward of a DeepSeek MLA layer (`num_kv_heads` 1) on SGLang's
//!   `FlashAttentionBackend` (Hopper's default MLA backend), page size 1, in a CUDA graph (`benchmark_with_power`,
//!   one call per replay). `num_heads` is the heads on the GPU (`num_heads // tp_size`, logged as the local
//!   count; `tp_size` only names which total it came from). On Hopper the collector builds the layer with
//!   `head_dim` 576 and `v_head_dim` 512 for both phases and passes the latent `q_nope` (512) with `q_rope` (64),
//!   and its server args disable the chunked prefix cache, so prefill (`ForwardMode.EXTEND` from an empty
//!   cache) takes the backend's *absorbed* branch, not serving's MHA over the kv_b-expanded heads (qk 192 /
//!   v 128): `flash_attn_with_kvcache(q=q_rope, k_cache=k_rope, v_cache=c_kv, qv=q_nope, causal)`, FA3's MLA
//!   kernel (head dim 64 + `qv` 512: 64x64 tiles, query heads packed). Decode is the same kernel over
//!   `step + 1` tokens per request. No projection is timed (no kv_b_proj, q/kv GEMMs or the absorption
//!   bmm); the forward stores the new latent (`set_mla_kv_buffer`, FP8 caches quantise it first) and, for an
//!   FP8 cache, upcasts the whole cache to BF16 (`get_key_buffer(..).to(q.dtype)`) before FA3 attends it
//!   in BF16 (no FP8 query cast: `head_dim` 576 > 256).
//! - MLA bmm rows (`<gpu>_mla_bmm.csv`; collector/sglang/collect_mla_bmm.py at e23be5a79): the absorption
//!   GEMMs around absorbed decode, eager-built then replayed in a CUDA graph. `mla_gen_pre`: `torch.bmm` of
//!   `q_nope` `[heads, tokens, 128]` with `w_kc` `[heads, 128, 512]`; `mla_gen_post`: the attention output
//!   `[heads, tokens, 512]` with `w_vc` `[heads, 512, 128]`. BF16 rows are the path serving runs for
//!   DeepSeek's block-FP8 checkpoints (w_kc / w_vc dequantised to BF16). FP8 rows (`per_tensor_quant_mla_fp8`
//!   then sgl-kernel `bmm_fp8`) run 4-7x slower than BF16 at large sizes; that path is not priced, so they are
//!   skipped.

use std::collections::BTreeMap;

use super::{op_us, KernelSample, KernelShape};
use crate::model::coefficients::Coefficients;
use crate::model::cost::gemm_math_s;
use crate::model::gpu::GpuSpec;
use crate::model::ops::{AttentionKernel, ExtendRequest, OpKind};
use crate::model::quant::{KvDtype, WeightDtype};

/// L2 cache of H100 and H200 SXM (one GH100 die): 50 MB (NVIDIA H100 Tensor Core GPU Architecture
/// whitepaper). AIC's tables exist for these two GPUs only.
const HOPPER_L2_BYTES: f64 = 50e6;
/// Time of a lone tiny GEMM kernel in AIC's harness, microseconds: its SGLang GEMM tables time `F.linear` at
/// m <= 64, n <= 2048, k = 1024 at 4.1-4.2 us on H100 and H200 (a CUDA-graph kernel plus its share of the
/// replay), above the 3.4 us `kernel_floor_us` of our own measurements.
const AIC_LONE_GEMM_US: f64 = 4.1;

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
    if let Some(dtype) = record.get("bmm_dtype") {
        if dtype != "bfloat16" {
            return None;
        }
        let (n, k) = match record.get("op_name").map(String::as_str) {
            Some("mla_gen_pre") => (512, 128),
            Some("mla_gen_post") => (128, 512),
            _ => return None,
        };
        return Some(KernelSample {
            family: "aic_mla_bmm".into(),
            shape: KernelShape::SglangMlaBmm {
                tokens: integer("num_tokens")?,
                heads: integer("num_heads")?,
                n,
                k,
            },
            time_us,
        });
    }
    if !record.contains_key("num_key_value_heads") && record.contains_key("tp_size") {
        if record.get("kernel_source").map(String::as_str) != Some("flash_attention") {
            return None;
        }
        let (batch, heads, kv) = (integer("batch_size")?, integer("num_heads")?, kv_dtype()?);
        let (family, shape) = if let Some(step) = record.get("step") {
            let step = step.parse::<f64>().ok()? as u64;
            (
                "aic_mla_decode",
                KernelShape::SglangMlaDecode {
                    batch,
                    attended: step + 1,
                    heads,
                    kv,
                },
            )
        } else {
            (
                "aic_mla_prefill",
                KernelShape::SglangMlaPrefill {
                    batch,
                    isl: integer("isl")?,
                    heads,
                    kv,
                },
            )
        };
        return Some(KernelSample {
            family: family.into(),
            shape,
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
            let requests = fresh_prompts(*batch, *isl);
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
        KernelShape::SglangMlaPrefill { batch, isl, heads, kv } => {
            let requests = fresh_prompts(*batch, *isl);
            let tokens = (batch * isl) as f64;
            let attention_us = op_us(
                OpKind::AttentionPrefill {
                    kernel: AttentionKernel::MlaLatent,
                    requests: &requests,
                    heads: *heads,
                    kv_heads: 1,
                    qk_dim: MLA_LATENT + MLA_ROPE,
                    v_dim: MLA_LATENT,
                    window_tokens: None,
                    // FA3 reads the cache in BF16 (an FP8 one upcast first).
                    kv_bytes_per_token: ((MLA_LATENT + MLA_ROPE) * 2) as f64,
                    kv_dtype: KvDtype::Bf16,
                },
                gpu,
                coefficients,
            );
            attention_us + mla_cache_us(tokens, tokens, *kv, gpu, coefficients)
        }
        KernelShape::SglangMlaDecode {
            batch,
            attended,
            heads,
            kv,
        } => {
            let attention_us = op_us(
                OpKind::AttentionDecode {
                    kernel: AttentionKernel::Mla,
                    requests: *batch,
                    attended_tokens: batch * attended,
                    kv_heads: 1,
                    heads: *heads,
                    qk_dim: MLA_LATENT + MLA_ROPE,
                    v_dim: MLA_LATENT,
                    kv_bytes_per_token: ((MLA_LATENT + MLA_ROPE) * 2) as f64,
                    kv_dtype: KvDtype::Bf16,
                },
                gpu,
                coefficients,
            );
            attention_us + mla_cache_us(*batch as f64, (batch * attended) as f64, *kv, gpu, coefficients)
        }
        KernelShape::SglangMlaBmm { tokens, heads, n, k } => {
            // One bmm per graph replay on the same tensors: a working set that fits in L2 stays there between
            // replays, and the lone kernel costs what AIC's harness shows for its smallest GEMMs.
            let bytes = (heads * (n * k + tokens * (n + k))) as f64 * 2.0;
            let memory_s = if bytes <= HOPPER_L2_BYTES {
                bytes / (coefficients.l2_tb_per_s * 1e12)
            } else {
                bytes / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff)
            };
            let math_s = gemm_math_s(gpu, coefficients, heads * tokens, *n, *k, WeightDtype::Bf16);
            AIC_LONE_GEMM_US + math_s.max(memory_s) * 1e6
        }
        _ => unreachable!("aic::predict_us takes AIC GEMM, attention and MLA shapes only"),
    }
}

/// `batch` prompts of `isl` tokens each over an empty cache, as the collector's prefill rows run them.
fn fresh_prompts(batch: u64, isl: u64) -> Vec<ExtendRequest> {
    let prompt = ExtendRequest {
        new_tokens: isl,
        cached_tokens: 0,
    };
    vec![prompt; batch as usize]
}

/// DeepSeek MLA's compressed latent per token (`kv_lora_rank`) and its rotary part (`qk_rope_head_dim`).
const MLA_LATENT: u64 = 512;
const MLA_ROPE: u64 = 64;

/// The latent-cache work of SGLang's FA3 MLA forward besides attention: the store of `new_tokens` (BF16 in;
/// an FP8 cache quantises them first, one more kernel) and, for an FP8 cache, the BF16 upcast of the
/// `cached_tokens` the pool holds (one SM-bound kernel at `fp8_upcast_gelems_per_sm`).
fn mla_cache_us(new_tokens: f64, cached_tokens: f64, kv: KvDtype, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    let width = (MLA_LATENT + MLA_ROPE) as f64;
    let store_us = kv_store_us(new_tokens, width * kv.bytes(), gpu, coefficients);
    if kv == KvDtype::Bf16 {
        return store_us;
    }
    let quantise_us = coefficients.kernel_floor_us + new_tokens * width * 3.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff) * 1e6;
    let upcast_rate = coefficients.fp8_upcast_gelems_per_sm * 1e9 * f64::from(gpu.sm_count);
    let upcast_us = coefficients.kernel_floor_us + cached_tokens * width / upcast_rate * 1e6;
    store_us + quantise_us + upcast_us
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

    #[test]
    fn mla_rows_read_local_heads_and_skip_fp8_bmm() {
        let context = "kernel_source,kv_cache_dtype,num_heads,batch_size,isl,tp_size,latency\n\
            flash_attention,fp8,16,2,1024,8,0.05\n";
        let generation = "kernel_source,kv_cache_dtype,num_heads,batch_size,tp_size,step,latency\n\
            flash_attention,bfloat16,32,64,4,4095,0.05\n";
        let bmm = "op_name,kernel_source,bmm_dtype,num_tokens,num_heads,latency\n\
            mla_gen_pre,sglang_torch_bmm,bfloat16,64,16,0.005\n\
            mla_gen_post,sglang_sgl_kernel_bmm_fp8,fp8,64,16,0.005\n";
        let context = parse_kernels(context, "c.csv").unwrap();
        assert_eq!(context[0].family, "aic_mla_prefill");
        assert_eq!(
            context[0].shape,
            KernelShape::SglangMlaPrefill {
                batch: 2,
                isl: 1024,
                heads: 16,
                kv: KvDtype::Fp8
            }
        );
        let generation = parse_kernels(generation, "g.csv").unwrap();
        assert_eq!(
            generation[0].shape,
            KernelShape::SglangMlaDecode {
                batch: 64,
                attended: 4096,
                heads: 32,
                kv: KvDtype::Bf16
            }
        );
        let bmm = parse_kernels(bmm, "b.csv").unwrap();
        assert_eq!(bmm.len(), 1, "FP8 bmm rows are skipped");
        assert_eq!(
            bmm[0].shape,
            KernelShape::SglangMlaBmm {
                tokens: 64,
                heads: 16,
                n: 512,
                k: 128
            }
        );
    }

    #[test]
    fn fp8_mla_decode_pays_the_latent_cache_upcast() {
        // 64 requests x 32k tokens: the FP8 cache's BF16 upcast (SM-bound) costs more than the attention itself.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let shape = |kv| KernelShape::SglangMlaDecode {
            batch: 64,
            attended: 32768,
            heads: 16,
            kv,
        };
        let (bf16, fp8) = (
            predict_us(&shape(KvDtype::Bf16), &gpu, &coefficients),
            predict_us(&shape(KvDtype::Fp8), &gpu, &coefficients),
        );
        let elements = 64.0 * 32768.0 * 576.0;
        let upcast_us = elements / (coefficients.fp8_upcast_gelems_per_sm * 1e9 * f64::from(gpu.sm_count)) * 1e6;
        assert!(fp8 - bf16 > 0.95 * upcast_us, "{bf16} {fp8} {upcast_us}");
    }

    #[test]
    fn serving_absorption_bmm_streams_every_heads_weights() {
        // Serving's absorption bmm (one token over 128 heads) reads 128 weight matrices of 512 x 128 BF16 from
        // HBM: each layer has its own, so none stays in L2 as in the collector's replays.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let bmm = |batch| {
            op_us(
                OpKind::BatchedGemm {
                    batch,
                    m: 1,
                    n: 512,
                    k: 128,
                },
                &gpu,
                &coefficients,
            )
        };
        let weights_us = 127.0 * 512.0 * 128.0 * 2.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff) * 1e6;
        assert!(bmm(128) - bmm(1) > 0.9 * weights_us, "{} {}", bmm(1), bmm(128));
    }

    #[test]
    fn mla_bmm_replays_read_an_l2_resident_working_set() {
        // 128 heads of [128 x 512] BF16 weights (16.8 MB) fit in the 50 MB L2: at 8 tokens the row takes less
        // than streaming the weights from HBM would; 4x the heads (67 MB) no longer fit and stream from HBM.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let mut coefficients = Coefficients::defaults();
        coefficients.sustained_clock_ratio = 1.0;
        let bmm = |heads| KernelShape::SglangMlaBmm {
            tokens: 8,
            heads,
            n: 512,
            k: 128,
        };
        let weights_hbm_us = |heads: f64| heads * 128.0 * 512.0 * 2.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff) * 1e6;
        let resident = predict_us(&bmm(128), &gpu, &coefficients);
        assert!(resident < AIC_LONE_GEMM_US + weights_hbm_us(128.0), "{resident}");
        let streamed = predict_us(&bmm(512), &gpu, &coefficients);
        assert!(streamed > AIC_LONE_GEMM_US + weights_hbm_us(512.0), "{streamed}");
        // A lone tiny bmm costs AIC's smallest-GEMM time.
        let tiny = predict_us(&bmm(1), &gpu, &coefficients);
        assert!((tiny - AIC_LONE_GEMM_US).abs() < 0.1, "{tiny}");
    }
}
