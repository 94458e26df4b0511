//! The cost model's coefficients: efficiencies, latencies and overheads, each with a meaning, a unit and a range.
//!
//! One serde profile holds them all. The defaults live in `data/coefficients.toml` (compiled in);
//! a calibrated profile written by `sglsim calibrate` has the same schema. [`COEFFICIENT_INFO`]
//! lists every coefficient with its unit and plausible range, which calibration uses as bounds
//! and [`Coefficients::validate`] enforces.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

const DEFAULT_COEFFICIENTS_TOML: &str = include_str!("../../data/coefficients.toml");

/// The defaults in [`COEFFICIENT_INFO`] order, parsed once.
static DEFAULT_VALUES: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();

fn check_schema(schema_version: u32, path: &str) -> Result<()> {
    if schema_version == 1 {
        return Ok(());
    }
    Err(Error::BadField {
        path: path.into(),
        field: "schema_version".into(),
        problem: format!("is {schema_version}; this build reads version 1"),
    })
}

/// Coefficients renamed since profiles were first written, `(old, new)`: the per-request prefill ramp now
/// prices MLA prefill only (MHA prefill is priced per FlashAttention-3 tile).
const RENAMED_COEFFICIENTS: &[(&str, &str)] = &[("attn_prefill_half_tokens", "attn_prefill_mla_half_tokens")];

/// What one coefficient means, its unit and its plausible range.
#[derive(Debug, Clone, Copy)]
pub struct CoefficientInfo {
    /// Field name in the profile.
    pub name: &'static str,
    /// Unit (`fraction`, `ns`, `us`, `ms`, `GiB`, `ratio`, `tokens`).
    pub unit: &'static str,
    /// Lowest plausible value.
    pub min: f64,
    /// Highest plausible value.
    pub max: f64,
    /// One sentence saying what it is.
    pub meaning: &'static str,
}

macro_rules! coefficients {
    ($( $(#[doc = $doc:literal])* $name:ident : $unit:literal, $min:literal ..= $max:literal; )*) => {
        /// Every coefficient of the cost model (see [`COEFFICIENT_INFO`] for units and ranges).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Coefficients {
            $( $(#[doc = $doc])* pub $name: f64, )*
        }

        /// Units, ranges and meanings, in field order.
        pub const COEFFICIENT_INFO: &[CoefficientInfo] = &[
            $( CoefficientInfo { name: stringify!($name), unit: $unit, min: $min, max: $max, meaning: concat!($($doc),*) }, )*
        ];

        impl Coefficients {
            /// The values in [`COEFFICIENT_INFO`] order.
            pub fn to_vec(&self) -> Vec<f64> {
                vec![$( self.$name, )*]
            }

            /// Builds coefficients from values in [`COEFFICIENT_INFO`] order, validating ranges.
            pub fn from_slice(values: &[f64]) -> Result<Coefficients> {
                let mut iter = values.iter().copied();
                let coefficients = Coefficients { $( $name: iter.next().ok_or_else(|| Error::BadValue {
                    field: "coefficients".into(),
                    value: format!("{} values", values.len()),
                    expected: format!("{} values", COEFFICIENT_INFO.len()),
                })?, )* };
                coefficients.validate()?;
                Ok(coefficients)
            }
        }
    };
}

coefficients! {
    /// Fraction of the dense BF16 tensor-core peak that large BF16 GEMMs reach.
    gemm_bf16_eff: "fraction", 0.3 ..= 0.95;
    /// Fraction of the dense FP8 tensor-core peak that large FP8 GEMMs reach (scaling included).
    gemm_fp8_eff: "fraction", 0.25 ..= 0.95;
    /// Fraction of the dense FP4 tensor-core peak that large FP4 GEMMs reach.
    gemm_fp4_eff: "fraction", 0.2 ..= 0.95;
    /// Tensor-core clock sustained under serving load over the clock short microbenchmarks run at (power-limited SXM parts).
    sustained_clock_ratio: "ratio", 0.5 ..= 1.0;
    /// Fraction of HBM bandwidth that weight-streaming (small-batch) GEMMs reach.
    gemm_mem_eff: "fraction", 0.4 ..= 0.98;
    /// Fixed GPU time of the activation-quantisation kernel that runs before an FP8 GEMM (SGLang's
    /// `sgl_per_token_quant_fp8` / `sglang_per_token_group_quant_fp8`), in place of a full GEMM kernel floor:
    /// a one-pass element-wise kernel with no GEMM prologue or epilogue, microseconds.
    act_quant_kernel_us: "us", 0.3 ..= 6.0;
    /// SM time of one 128-deep K block of a DeepGEMM block-FP8 tile that the operand stream does not hide:
    /// waiting on the block's WGMMAs, scaling the FP32 partial sums by the block's A and B scales on the CUDA
    /// cores and adding them into the main accumulators (the per-128-K promotion), microseconds.
    deepgemm_kblock_us: "us", 0.02 ..= 0.5;
    /// Bytes per second one SM's TMA loads bring an A and a B tile in from L2 while every SM loads
    /// (DeepGEMM's SM90 heuristic assumes about 48 bytes per cycle per SM), GB/s at boost clock.
    deepgemm_sm_load_gb_per_s: "GB/s", 30.0 ..= 300.0;
    /// Fraction of an SM's BF16 tensor-core peak at which prefill attention (FlashAttention-3) runs one
    /// 128x128 query-key block of a long tile's main loop.
    attn_prefill_eff: "fraction", 0.15 ..= 0.9;
    /// Fraction of the BF16 peak that MLA prefill attention (MHA over the expanded latent, qk 192 / v 128 per
    /// head) reaches on long prompts.
    attn_prefill_mla_eff: "fraction", 0.05 ..= 0.9;
    /// Query tokens per request at which MLA prefill attention reaches half of its long-prompt efficiency.
    attn_prefill_mla_half_tokens: "tokens", 1.0 ..= 8192.0;
    /// SM time of one prefill-attention tile (128 packed query rows of one KV head) besides its query-key
    /// blocks: scheduling, pipeline fill and drain, microseconds.
    attn_prefill_tile_us: "us", 0.0 ..= 10.0;
    /// SM time per packed query row of a prefill-attention tile (Q load, softmax finalisation, O store),
    /// nanoseconds.
    attn_prefill_row_ns: "ns", 0.0 ..= 200.0;
    /// Rate of FA3's FP8 attention (FP8 KV cache, query cast to FP8) over its BF16 rate, on GPUs with FP8
    /// tensor cores.
    attn_fp8_speedup: "ratio", 1.0 ..= 2.5;
    /// Fraction of HBM bandwidth that decode attention reaches while reading the KV cache.
    attn_decode_mem_eff: "fraction", 0.15 ..= 0.98;
    /// SM time of one decode-attention tile (one request's KV head) besides its KV stream: prologue, Q load,
    /// softmax and output epilogue, microseconds.
    attn_decode_tile_us: "us", 0.0 ..= 10.0;
    /// SM time per attended KV token per KV head of grouped-query decode attention at head dims 128 + 128
    /// (the KV head's few query rows padded to a 64-row MMA: QK, softmax and PV over the padding),
    /// nanoseconds; scales with the head dims.
    attn_decode_token_ns: "ns", 0.0 ..= 100.0;
    /// Decode-attention time per request outside its tiles (sequence metadata, KV-split scheduling),
    /// nanoseconds.
    attn_decode_request_ns: "ns", 0.0 ..= 100.0;
    /// Rate of PyTorch's elementwise FP8 (e4m3) -> BF16 cast, billions of elements per second per SM: SGLang's
    /// FA3 backend upcasts an FP8 MLA latent cache to BF16 before attending it, a conversion bound by the SMs'
    /// instruction rate, not by HBM.
    fp8_upcast_gelems_per_sm: "Gelem/s per SM", 0.5 ..= 20.0;
    /// Read bandwidth of the L2 cache for operands that stay resident between kernel replays (kernel
    /// microbenchmarks only; serving streams each layer's weights from HBM), TB/s.
    l2_tb_per_s: "TB/s", 2.0 ..= 30.0;
    /// Fraction of the BF16 tensor-core peak that SGLang's Triton fused-MoE GEMMs reach (before the per-shape
    /// factor of `data/moe_shapes.csv`).
    moe_compute_eff: "fraction", 0.15 ..= 0.9;
    /// Fraction of the FP8 tensor-core peak that the Triton fused-MoE GEMMs reach with FP8 weights (block
    /// scales applied in the inner loop; before the per-shape factor).
    moe_fp8_compute_eff: "fraction", 0.1 ..= 0.9;
    /// Fraction of HBM bandwidth that the fused-MoE GEMMs reach while streaming expert weights (before the
    /// per-shape factor).
    moe_mem_eff: "fraction", 0.15 ..= 0.95;
    /// Load of the busiest expert-parallel rank over the mean, for large batches without EPLB.
    moe_ep_imbalance: "ratio", 1.0 ..= 2.5;
    /// Share of the shorter of computation and DeepEP communication that two-batch overlap leaves exposed.
    tbo_exposed_fraction: "fraction", 0.0 ..= 1.0;
    /// Fraction of the FP8 tensor-core peak that DeepGEMM's grouped GEMMs (SGLang's MoE runner behind DeepEP) reach.
    moe_deepgemm_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed cost of one stage of SGLang's custom all-reduce (launch and end-of-stage barrier; two-shot has two stages), microseconds.
    allreduce_latency_us: "us", 1.0 ..= 80.0;
    /// Extra custom all-reduce latency per stage for each peer rank (barrier flags written to and polled from each peer), microseconds.
    allreduce_peer_us: "us", 0.0 ..= 2.0;
    /// Fixed cost of one NCCL ring collective in the LL protocol (launch and set-up; small messages), microseconds.
    nccl_latency_us: "us", 1.0 ..= 60.0;
    /// NCCL latency per ring step, any protocol (2(n-1) steps for all-reduce, n-1 for all-gather / reduce-scatter), microseconds.
    nccl_step_us: "us", 0.0 ..= 5.0;
    /// Fixed cost of one NCCL ring collective in the LL128 protocol (mid-size messages), microseconds.
    nccl_ll128_latency_us: "us", 1.0 ..= 60.0;
    /// Fixed cost of one NCCL ring collective in the Simple protocol (large messages; chunk handshakes and pipeline fill), microseconds.
    nccl_simple_latency_us: "us", 1.0 ..= 80.0;
    /// Fraction of NVLink / RDMA bandwidth NCCL's Simple protocol reaches (ring bus bandwidth over link bandwidth; LL gets half, LL128 0.92 of it).
    nccl_bw_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed cost of one NCCL all-reduce through NVLink SHARP (NVLS; nccl-tests' default on NVSwitch nodes, off in SGLang), microseconds.
    nccl_nvls_latency_us: "us", 1.0 ..= 100.0;
    /// NVLS all-reduce buffer bytes per second over NVLink bandwidth (each rank sends and receives the buffer once through the switch).
    nccl_nvls_bw_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed cost of one NCCL all-to-all (grouped send/recv) whose sends to each peer fit LL (16 KiB or less), microseconds.
    nccl_p2p_ll_latency_us: "us", 1.0 ..= 60.0;
    /// Fixed cost of one NCCL all-to-all whose sends to each peer go in the Simple protocol, microseconds.
    nccl_p2p_simple_latency_us: "us", 1.0 ..= 80.0;
    /// Extra time per collective of torch.distributed's ProcessGroupNCCL over a direct NCCL call inside a CUDA graph (its side stream's event record and wait around the kernel), microseconds.
    torch_process_group_call_us: "us", 0.0 ..= 50.0;
    /// Fixed cost of one MoE dispatch or combine (all-to-all), microseconds.
    alltoall_latency_us: "us", 5.0 ..= 300.0;
    /// Fraction of NVLink and RDMA bandwidth DeepEP's dispatch and combine reach (remote ranks over RDMA, same-node ranks over NVLink, concurrently).
    alltoall_bw_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed cost of one DeepEP low-latency dispatch or combine whose ranks all share one NVLink domain (NVLink stores, no NIC), microseconds.
    deepep_ll_nvlink_latency_us: "us", 2.0 ..= 100.0;
    /// Fraction of NVLink bandwidth DeepEP's low-latency dispatch and combine reach within one NVLink domain.
    deepep_ll_nvlink_bw_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed cost of one DeepEP low-latency dispatch or combine whose ranks span several NVLink domains (IBGDA sends over RDMA), microseconds, besides the NIC's latency.
    deepep_ll_rdma_latency_us: "us", 2.0 ..= 200.0;
    /// Fraction of RDMA (and NVLink) bandwidth DeepEP's low-latency dispatch and combine reach when their ranks span several NVLink domains.
    deepep_ll_rdma_bw_eff: "fraction", 0.2 ..= 1.0;
    /// Fraction of link bandwidth that SGLang's custom all-reduce and MoE all-to-alls reach on large messages.
    comm_bw_eff: "fraction", 0.2 ..= 0.95;
    /// Fixed GPU time of one kernel on top of its roofline time (launch, ramp-up, tail), microseconds.
    kernel_floor_us: "us", 0.5 ..= 15.0;
    /// Small kernels per decoder layer besides GEMMs, attention, MoE and collectives (norms, rotary, KV store, activation).
    kernels_per_layer: "count", 5.0 ..= 60.0;
    /// CPU time to launch one kernel outside a CUDA graph (PyTorch dispatch included), microseconds.
    eager_launch_us: "us", 2.0 ..= 60.0;
    /// CPU time of one eager call of SGLang's all-reduce (`tensor_model_parallel_all_reduce` outside a CUDA
    /// graph: Python dispatch, the custom all-reduce's buffer registration check and launch), which bounds
    /// back-to-back eager calls, microseconds. Fitted to AIC's `sglang_eager` rows; serving's eager forwards
    /// are priced per kernel with `eager_launch_us`.
    eager_allreduce_call_us: "us", 2.0 ..= 100.0;
    /// Fixed cost of replaying one captured CUDA graph, microseconds.
    graph_replay_us: "us", 2.0 ..= 200.0;
    /// Scheduler CPU time per iteration (batch building, output processing), milliseconds.
    step_cpu_ms: "ms", 0.02 ..= 10.0;
    /// Scheduler CPU time per request in the batch per iteration, microseconds.
    step_cpu_per_req_us: "us", 0.0 ..= 100.0;
    /// Fixed per-prefill-batch GPU-side cost (metadata, embedding, logits gather), milliseconds.
    prefill_fixed_ms: "ms", 0.0 ..= 20.0;
    /// Fixed cost of one disaggregated KV transfer (bootstrap handshake, polling, completion notice), milliseconds.
    kv_transfer_fixed_ms: "ms", 0.05 ..= 50.0;
    /// Time the server's front end (HTTP handling and the tokenizer manager's hand-off to the scheduler) spends on one request; requests pass through it one at a time, microseconds.
    frontend_request_us: "us", 0.0 ..= 5000.0;
    /// Device memory taken before the weights on a single GPU (CUDA context, cuBLAS workspace), GiB.
    runtime_reserve_gib: "GiB", 0.2 ..= 4.0;
    /// Extra device memory per tensor-parallel peer (NCCL channels, custom all-reduce buffers, load residue), GiB.
    runtime_reserve_per_peer_gib: "GiB", 0.0 ..= 1.5;
}

impl Coefficients {
    /// The compiled-in defaults from `data/coefficients.toml`.
    pub fn defaults() -> Coefficients {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[allow(dead_code)]
            schema_version: u32,
            coefficients: Coefficients,
        }
        let file: File = toml::from_str(DEFAULT_COEFFICIENTS_TOML).expect("data/coefficients.toml is checked by a unit test");
        file.coefficients
    }

    /// Parses a profile's coefficient table (TOML); see [`Coefficients::from_json`] for coefficients it lacks.
    pub fn from_toml(text: &str, path: &str) -> Result<Coefficients> {
        Ok(Coefficients::from_toml_filling(text, path)?.0)
    }

    /// [`Coefficients::from_toml`], also naming the coefficients the profile lacked.
    pub fn from_toml_filling(text: &str, path: &str) -> Result<(Coefficients, Vec<&'static str>)> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            schema_version: u32,
            coefficients: toml::Table,
        }
        let file: File = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        check_schema(file.schema_version, path)?;
        let values = serde_json::to_value(file.coefficients).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        Coefficients::from_value_filling(values, path)
    }

    /// Parses a profile in JSON: `{"schema_version": 1, "coefficients": {...}, ...}`; other keys
    /// (provenance, fit error) are allowed and ignored here. A coefficient the profile lacks (one
    /// added to sglsim after the profile was written) takes its compiled-in default; an unknown one
    /// is an error.
    pub fn from_json(text: &str, path: &str) -> Result<Coefficients> {
        Ok(Coefficients::from_json_filling(text, path)?.0)
    }

    /// [`Coefficients::from_json`], also naming the coefficients the profile lacked.
    pub fn from_json_filling(text: &str, path: &str) -> Result<(Coefficients, Vec<&'static str>)> {
        #[derive(Deserialize)]
        struct File {
            schema_version: u32,
            coefficients: serde_json::Value,
        }
        let file: File = serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        check_schema(file.schema_version, path)?;
        Coefficients::from_value_filling(file.coefficients, path)
    }

    fn from_value_filling(values: serde_json::Value, path: &str) -> Result<(Coefficients, Vec<&'static str>)> {
        let serde_json::Value::Object(mut values) = values else {
            return Err(Error::BadField {
                path: path.into(),
                field: "coefficients".into(),
                problem: "is not a table of coefficient names and values".into(),
            });
        };
        // Coefficients renamed since a profile may have been written: the old name's value moves to the new
        // name unless the profile has both.
        for (old, new) in RENAMED_COEFFICIENTS {
            if let Some(value) = values.remove(*old) {
                values.entry(new.to_string()).or_insert(value);
            }
        }
        let mut filled = Vec::new();
        let defaults = DEFAULT_VALUES.get_or_init(|| Coefficients::defaults().to_vec());
        for (info, default) in COEFFICIENT_INFO.iter().zip(defaults) {
            if !values.contains_key(info.name) {
                values.insert(info.name.to_string(), serde_json::Value::from(*default));
                filled.push(info.name);
            }
        }
        let coefficients: Coefficients = serde_json::from_value(serde_json::Value::Object(values)).map_err(|e| Error::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        coefficients.validate()?;
        Ok((coefficients, filled))
    }

    /// Checks every value against its plausible range.
    pub fn validate(&self) -> Result<()> {
        for (info, value) in COEFFICIENT_INFO.iter().zip(self.to_vec()) {
            if !(value.is_finite() && value >= info.min && value <= info.max) {
                return Err(Error::BadValue {
                    field: format!("coefficient {}", info.name),
                    value: value.to_string(),
                    expected: format!("{} in [{}, {}] {} ({})", info.name, info.min, info.max, info.unit, info.meaning),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_with_a_renamed_coefficient_still_load() {
        let text = r#"{"schema_version": 1, "coefficients": {"attn_prefill_half_tokens": 700.0}}"#;
        let (coefficients, filled) = Coefficients::from_json_filling(text, "old.json").unwrap();
        assert_eq!(coefficients.attn_prefill_mla_half_tokens, 700.0);
        assert!(!filled.contains(&"attn_prefill_mla_half_tokens"));
        // Both names: the new one wins.
        let both = r#"{"schema_version": 1, "coefficients": {"attn_prefill_half_tokens": 700.0, "attn_prefill_mla_half_tokens": 900.0}}"#;
        assert_eq!(Coefficients::from_json(both, "b.json").unwrap().attn_prefill_mla_half_tokens, 900.0);
        // An unknown name is still an error.
        assert!(Coefficients::from_json(r#"{"schema_version": 1, "coefficients": {"no_such": 1.0}}"#, "u.json").is_err());
    }

    #[test]
    fn defaults_load_and_lie_in_range() {
        let defaults = Coefficients::defaults();
        defaults.validate().unwrap();
        assert_eq!(defaults.to_vec().len(), COEFFICIENT_INFO.len());
        let round_trip = Coefficients::from_slice(&defaults.to_vec()).unwrap();
        assert_eq!(round_trip, defaults);
    }

    #[test]
    fn profiles_lacking_a_coefficient_take_its_default_and_unknown_ones_are_refused() {
        let mut values = serde_json::to_value(Coefficients::defaults()).unwrap();
        let table = values.as_object_mut().unwrap();
        table.remove("frontend_request_us");
        table.insert("gemm_bf16_eff".into(), serde_json::json!(0.5));
        let text = serde_json::json!({"schema_version": 1, "coefficients": values}).to_string();
        let (coefficients, filled) = Coefficients::from_json_filling(&text, "old.json").unwrap();
        assert_eq!(filled, ["frontend_request_us"]);
        assert_eq!(coefficients.frontend_request_us, Coefficients::defaults().frontend_request_us);
        assert_eq!(coefficients.gemm_bf16_eff, 0.5);
        let toml_text = "schema_version = 1\n[coefficients]\ngemm_bf16_eff = 0.6\n";
        let (coefficients, filled) = Coefficients::from_toml_filling(toml_text, "p.toml").unwrap();
        assert_eq!(coefficients.gemm_bf16_eff, 0.6);
        assert_eq!(filled.len(), COEFFICIENT_INFO.len() - 1);
        let unknown = "{\"schema_version\": 1, \"coefficients\": {\"warp_drive_eff\": 0.5}}";
        let error = Coefficients::from_json(unknown, "u.json").unwrap_err().to_string();
        assert!(error.contains("warp_drive_eff"), "{error}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_range() {
        let mut values = Coefficients::defaults().to_vec();
        values[0] = 1.7;
        let error = Coefficients::from_slice(&values).unwrap_err().to_string();
        assert!(error.contains("gemm_bf16_eff") && error.contains("[0.3, 0.95]"), "{error}");
    }
}
