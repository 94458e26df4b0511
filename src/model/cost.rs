//! Costs ops on a GPU: roofline time at shape-dependent efficiency, communication, kernel floors.
//!
//! [`cost_op`] is a pure function of an [`Op`], a [`GpuSpec`] and the [`Coefficients`]. An op's time
//! is the larger of its compute time (FLOPs at an efficiency that depends on the shape: tile and
//! wave quantisation for GEMMs, query length for prefill attention, tokens per expert for MoE) and
//! its memory time (bytes at an achieved fraction of HBM bandwidth), plus a fixed latency per kernel
//! (launch, ramp-up and tail). Collectives cost a latency plus bytes over the scale-up or scale-out link.

use super::coefficients::Coefficients;
use super::gpu::GpuSpec;
use super::moe_shapes::{builtin_moe_shapes, moe_shape_factors, MoeShape};
use super::ops::{Op, OpKind};
use super::quant::{ComputeDtype, WeightDtype};

mod attention;
mod deepgemm;

pub use attention::{prefill_tiles, prefill_tiles_of, PrefillTiles};
pub use deepgemm::{deepgemm_kloop_s, deepgemm_tile, DeepGemmTile};

/// Kernels of SGLang's Triton fused MoE with BF16 weights (python/sglang/srt/layers/moe/fused_moe_triton/
/// fused_moe.py `fused_experts_impl`): top-k, `moe_align_block_size`, up GEMM, `silu_and_mul`, down GEMM,
/// `moe_sum_reduce`.
const MOE_KERNELS: f64 = 6.0;
/// FP8 weights add an activation quantisation before each of the two GEMMs.
const MOE_FP8_QUANT_KERNELS: f64 = 2.0;

/// Experts of one rank that each receive the same number of token slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertLoad {
    /// Experts (fractional where it is an expectation).
    pub experts: f64,
    /// Token slots each of them receives.
    pub tokens: f64,
}

/// What one fused-MoE layer processes on one rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeWork<'a> {
    /// Tokens entering the layer on this rank (rows of the hidden-state input).
    pub tokens_in: f64,
    /// Top-k slots each entering token holds: the Triton path's intermediate caches and its element-wise
    /// kernels cover `tokens_in * top_k` rows, remote experts' slots included.
    pub top_k: f64,
    /// Experts held by this rank (the `E` that selects the Triton kernel's tile config).
    pub local_experts: f64,
    /// Token slots per local expert, grouped; experts with no slot are left out.
    pub loads: &'a [ExpertLoad],
    /// Hidden size.
    pub hidden: u64,
    /// Intermediate size of one expert on this rank (after the expert tensor split).
    pub slice: u64,
    /// Weight format.
    pub weights: WeightDtype,
    /// Kernels beyond the fused MoE's own (e.g. a separate routing step), priced at the kernel floor.
    pub extra_kernels: f64,
}

/// Which expert GEMMs run the layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MoeKernel {
    /// SGLang's Triton fused MoE, with the (compute, memory) efficiency factors of its shape
    /// ([`super::moe_shapes`]).
    Triton((f64, f64)),
    /// DeepGEMM grouped GEMMs (DeepEP deployments), at `moe_deepgemm_eff`.
    DeepGemm,
}

/// `BLOCK_SIZE_M` of the Triton fused-MoE GEMMs for a mean load per active expert: SGLang's tuned configs
/// (fused_moe_triton/configs/) use 16-row blocks for decode-sized loads and 32, 64 and 128 rows as the
/// tokens per expert grow.
pub fn moe_block_m(tokens_per_expert: f64) -> f64 {
    if tokens_per_expert <= 16.0 {
        16.0
    } else if tokens_per_expert <= 32.0 {
        32.0
    } else if tokens_per_expert <= 256.0 {
        64.0
    } else {
        128.0
    }
}

/// `BLOCK_SIZE_M` of SGLang's untuned Triton fused-MoE config (`get_default_config` in
/// fused_moe_triton_config.py), which the weight-only MXFP4 kernel runs with since no tuned config file
/// exists for its dtype: 16-row blocks while the tokens entering the layer (`M`) are no more than the local
/// experts (`E`), 64-row blocks (with wider N tiles and L2-grouped M blocks) once `M > E`, however few
/// slots each expert then receives.
pub fn moe_default_block_m(tokens_in: f64, local_experts: f64) -> f64 {
    if tokens_in <= local_experts {
        16.0
    } else {
        64.0
    }
}

/// Time of one fused-MoE layer on one rank: each expert's token slots padded to whole `BLOCK_SIZE_M` row
/// blocks (the GEMMs run whole blocks); the larger of that math and the stream of every active expert's
/// weights; plus the activations each slot reads and writes between the kernels (gathered input,
/// up-projection output, activation, down-projection output, weighted sum), which move at the
/// element-wise rate; plus a floor per kernel.
pub fn moe_cost(work: &MoeWork<'_>, kernel: MoeKernel, gpu: &GpuSpec, coefficients: &Coefficients) -> OpCost {
    let active: f64 = work.loads.iter().map(|l| l.experts).sum();
    let slots: f64 = work.loads.iter().map(|l| l.experts * l.tokens).sum();
    let mean_load = if active > 0.0 { slots / active } else { 0.0 };
    // MXFP4 experts on a GPU without FP4 tensor cores run weight-only (w4a16): the kernel dequantises
    // the weights and multiplies in BF16, with no activation quantisation (SGLang's Hopper path for
    // gpt-oss).
    let weight_only = work.weights == WeightDtype::Mxfp4 && !gpu.supports(ComputeDtype::Fp4);
    let block = if weight_only && kernel != MoeKernel::DeepGemm {
        moe_default_block_m(work.tokens_in, work.local_experts)
    } else {
        moe_block_m(mean_load)
    };
    let padded: f64 = work.loads.iter().map(|l| l.experts * (l.tokens / block).ceil() * block).sum();
    let (hidden, slice) = (work.hidden as f64, work.slice as f64);
    let compute_dtype = if weight_only {
        ComputeDtype::Bf16
    } else {
        gemm_compute_dtype(gpu, work.weights)
    };
    let (compute_factor, mem_factor) = match kernel {
        MoeKernel::Triton(factors) => factors,
        MoeKernel::DeepGemm => (1.0, 1.0),
    };
    let efficiency = match (kernel, compute_dtype) {
        (MoeKernel::DeepGemm, _) => coefficients.moe_deepgemm_eff,
        (_, ComputeDtype::Bf16) => coefficients.moe_compute_eff,
        _ => coefficients.moe_fp8_compute_eff,
    } * compute_factor;
    let rate = gpu.peak_flops_per_s(compute_dtype) * efficiency.min(1.0) * coefficients.sustained_clock_ratio;
    let compute_s = 2.0 * 3.0 * hidden * slice * padded / rate;
    let weights_s = active * 3.0 * hidden * slice * work.weights.bytes_per_param()
        / (gpu.hbm_bytes_per_s * (coefficients.moe_mem_eff * mem_factor).min(1.0));
    // DeepEP dispatches FP8 activations already quantised and DeepGEMM reads them inside its grouped
    // GEMMs, so there the activation traffic overlaps the math; the Triton path moves it between kernels.
    let deepgemm = kernel == MoeKernel::DeepGemm;
    // The Triton path's caches hold every top-k slot of every entering token (`fused_experts_impl`:
    // `(M, top_k, N)`): a slot routed to another rank's expert is still written (zeros, by the GEMMs'
    // `filter_expert` blocks), activated and summed, so the element-wise traffic covers all of them.
    let cache_slots = if deepgemm { slots } else { slots.max(work.tokens_in * work.top_k) };
    let activation_bytes = cache_slots * (2.0 * hidden + 3.0 * slice) * 2.0 + work.tokens_in * hidden * 4.0;
    let activations_s = activation_bytes / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff);
    let n_kernels = MOE_KERNELS
        + if compute_dtype == ComputeDtype::Bf16 || deepgemm {
            0.0
        } else {
            MOE_FP8_QUANT_KERNELS
        }
        + work.extra_kernels;
    let (compute_s, memory_s) = if deepgemm {
        let memory_s = weights_s + activations_s;
        if compute_s >= memory_s {
            (compute_s, 0.0)
        } else {
            (0.0, memory_s)
        }
    } else if weight_only {
        // Weight-only kernels dequantise each weight tile inside the main loop, between its load and the
        // multiply, so the weight stream and the math do not overlap.
        (compute_s, weights_s + activations_s)
    } else if compute_s >= weights_s {
        (compute_s, activations_s)
    } else {
        (0.0, weights_s + activations_s)
    };
    OpCost {
        compute_s,
        memory_s,
        comm_s: 0.0,
        floor_s: n_kernels * coefficients.kernel_floor_us * 1e-6,
        n_kernels,
    }
}

/// Time of one op (all its repeats), seconds, split by what bounds it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpCost {
    /// Seconds where compute bounds the op.
    pub compute_s: f64,
    /// Seconds where memory bounds the op.
    pub memory_s: f64,
    /// Seconds of communication.
    pub comm_s: f64,
    /// Seconds where the kernel floor bounds the op.
    pub floor_s: f64,
    /// Kernels launched.
    pub n_kernels: f64,
}

impl OpCost {
    /// Total seconds.
    pub fn total_s(&self) -> f64 {
        self.compute_s + self.memory_s + self.comm_s + self.floor_s
    }

    /// This cost repeated `times` times.
    pub fn scaled(self, times: f64) -> OpCost {
        OpCost {
            compute_s: self.compute_s * times,
            memory_s: self.memory_s * times,
            comm_s: self.comm_s * times,
            floor_s: self.floor_s * times,
            n_kernels: self.n_kernels * times,
        }
    }

    /// Adds another cost into this one.
    pub fn add(&mut self, other: &OpCost) {
        self.compute_s += other.compute_s;
        self.memory_s += other.memory_s;
        self.comm_s += other.comm_s;
        self.floor_s += other.floor_s;
        self.n_kernels += other.n_kernels;
    }

    /// Roofline time (the larger of compute and memory) plus the fixed latency of the op's kernels.
    fn bounded(compute_s: f64, memory_s: f64, latency_s: f64, n_kernels: f64, repeat: f64) -> OpCost {
        let mut cost = OpCost {
            n_kernels: n_kernels * repeat,
            floor_s: latency_s * repeat,
            ..OpCost::default()
        };
        if compute_s >= memory_s {
            cost.compute_s = compute_s * repeat;
        } else {
            cost.memory_s = memory_s * repeat;
        }
        cost
    }
}

/// The tensor-core dtype a GEMM with these weights runs in: its own if the GPU has it, else
/// dequantised to the next wider one the GPU has (SGLang's weight-only kernels).
pub fn gemm_compute_dtype(gpu: &GpuSpec, weights: WeightDtype) -> ComputeDtype {
    let wanted = weights.compute();
    [wanted, ComputeDtype::Fp8, ComputeDtype::Bf16]
        .into_iter()
        .filter(|d| *d >= wanted)
        .find(|d| gpu.supports(*d))
        .unwrap_or(ComputeDtype::Bf16)
}

/// Memory time of quantising an `m × k` BF16 activation to FP8 before a low-precision GEMM (read two
/// bytes, write one per element, scales aside), seconds; its kernel floor is counted separately.
pub fn activation_quant_s(gpu: &GpuSpec, coefficients: &Coefficients, m: u64, k: u64) -> f64 {
    m as f64 * k as f64 * 3.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff)
}

/// Achieved dense-GEMM rate for weights of this format, FLOP/s.
pub fn gemm_flops_per_s(gpu: &GpuSpec, coefficients: &Coefficients, weights: WeightDtype) -> f64 {
    let used = gemm_compute_dtype(gpu, weights);
    let efficiency = match used {
        ComputeDtype::Fp4 => coefficients.gemm_fp4_eff,
        ComputeDtype::Fp8 => coefficients.gemm_fp8_eff,
        ComputeDtype::Bf16 => coefficients.gemm_bf16_eff,
    };
    gpu.peak_flops_per_s(used) * efficiency * coefficients.sustained_clock_ratio
}

/// Share of SMs a GEMM grid keeps busy: tiles over whole waves.
fn wave_utilisation(gpu: &GpuSpec, m: u64, n: u64) -> f64 {
    let tile_m = if m <= 64 { 64 } else { 128 };
    let tiles = m.div_ceil(tile_m) * n.div_ceil(128);
    let sms = u64::from(gpu.sm_count);
    let waves = tiles.div_ceil(sms);
    if waves <= 1 {
        // A single partial wave: split-K/stream-K kernels spread small grids over the SMs, so
        // compute time is the work over the whole GPU.
        return 1.0;
    }
    tiles as f64 / (waves * sms) as f64
}

/// Tensor-core time of a GEMM of `m` rows, seconds: rows padded to the kernel's row tile, tiles in waves over
/// the SMs.
pub fn gemm_math_s(gpu: &GpuSpec, coefficients: &Coefficients, m: u64, n: u64, k: u64, weights: WeightDtype) -> f64 {
    let tile_m = if m <= 64 { m.next_power_of_two().max(16) } else { 128 };
    let padded_m = m.div_ceil(tile_m) * tile_m;
    let flops = 2.0 * padded_m as f64 * n as f64 * k as f64;
    flops / (gemm_flops_per_s(gpu, coefficients, weights) * wave_utilisation(gpu, m, n))
}

/// A GEMM of `m` rows over `weight_sets` weight matrices of `[k × n]` (more than one for a batched GEMM).
#[allow(clippy::too_many_arguments)]
fn gemm_cost(
    m: u64,
    n: u64,
    k: u64,
    weights: WeightDtype,
    weight_sets: u64,
    gpu: &GpuSpec,
    coefficients: &Coefficients,
    repeat: f64,
) -> OpCost {
    let floor_s = coefficients.kernel_floor_us * 1e-6;
    let hbm = gpu.hbm_bytes_per_s;
    if m == 0 || n == 0 || k == 0 {
        return OpCost::default();
    }
    let compute_s = gemm_math_s(gpu, coefficients, m, n, k, weights);
    let bytes = (weight_sets * n) as f64 * k as f64 * weights.bytes_per_param() + (m as f64) * (k + n) as f64 * 2.0;
    let memory_s = bytes / (hbm * coefficients.gemm_mem_eff);
    // Block-FP8 GEMMs run DeepGEMM, whose per-SM K loop can bound few-tile shapes above both rooflines.
    // That loop is Hopper's (FP8 without FP4 tensor cores): Blackwell's block-scaled MMA applies the
    // scales in the tensor core, with no promotion on CUDA cores, and DeepGEMM runs other tiles there.
    let compute_s = if weights == WeightDtype::Fp8Block && gpu.supports(ComputeDtype::Fp8) && !gpu.supports(ComputeDtype::Fp4) {
        compute_s.max(deepgemm_kloop_s(gpu, coefficients, m, n, k))
    } else {
        compute_s
    };
    // FP8 and FP4 GEMMs on tensor cores that take them quantise their input activations first:
    // one more kernel per GEMM, which reads the BF16 activations and writes them quantised before
    // the GEMM starts; it costs its own fixed time, not a GEMM's floor.
    if gemm_compute_dtype(gpu, weights) == ComputeDtype::Bf16 {
        OpCost::bounded(compute_s, memory_s, floor_s, 1.0, repeat)
    } else {
        let quant_floor_s = coefficients.act_quant_kernel_us * 1e-6;
        let mut cost = OpCost::bounded(compute_s, memory_s, floor_s + quant_floor_s, 2.0, repeat);
        cost.memory_s += activation_quant_s(gpu, coefficients, m, k) * repeat;
        cost
    }
}

/// Costs one op on one GPU.
pub fn cost_op(op: &Op<'_>, gpu: &GpuSpec, coefficients: &Coefficients) -> OpCost {
    let repeat = op.repeat as f64;
    let floor_s = coefficients.kernel_floor_us * 1e-6;
    let hbm = gpu.hbm_bytes_per_s;
    match &op.kind {
        OpKind::Gemm { m, n, k, weights } => gemm_cost(*m, *n, *k, *weights, 1, gpu, coefficients, repeat),
        // One GEMM over all the rows (cuBLAS runs the batch as one grid), streaming every batch's weights.
        OpKind::BatchedGemm { batch, m, n, k } => gemm_cost(batch * m, *n, *k, WeightDtype::Bf16, *batch, gpu, coefficients, repeat),
        OpKind::AttentionPrefill { .. } => attention::prefill_cost(op, gpu, coefficients),
        OpKind::AttentionDecode { .. } => attention::decode_cost(op, gpu, coefficients),
        OpKind::MoeExperts {
            global_tokens,
            top_k,
            n_experts,
            ep,
            moe_tp,
            hidden,
            intermediate,
            weights,
            deepgemm,
        } => {
            let tokens = *global_tokens as f64;
            let experts = *n_experts as f64;
            let local_experts = experts / *ep as f64;
            // Each expert is hit by a token with probability top_k / n_experts (uniform routing).
            let hit_probability = 1.0 - (1.0 - *top_k as f64 / experts).powf(tokens);
            let active_local = (local_experts * hit_probability).max(1.0);
            let imbalance = if *ep > 1 { coefficients.moe_ep_imbalance } else { 1.0 };
            let rank_tokens = tokens * *top_k as f64 / *ep as f64 * imbalance;
            let slice = *intermediate / (*moe_tp).max(1);
            let loads = [ExpertLoad {
                experts: active_local,
                tokens: rank_tokens / active_local,
            }];
            let work = MoeWork {
                tokens_in: tokens / *ep as f64,
                top_k: *top_k as f64,
                local_experts,
                loads: &loads,
                hidden: *hidden,
                slice,
                weights: *weights,
                extra_kernels: 0.0,
            };
            let kernel = if *deepgemm {
                MoeKernel::DeepGemm
            } else {
                let shape = MoeShape {
                    weights: *weights,
                    hidden: *hidden,
                    slice,
                    local_experts: (*n_experts / (*ep).max(1)),
                };
                MoeKernel::Triton(moe_shape_factors(builtin_moe_shapes(), &gpu.name, &shape, true))
            };
            moe_cost(&work, kernel, gpu, coefficients).scaled(repeat)
        }
        OpKind::Elementwise { bytes, n_kernels } => {
            let memory_s = bytes / (hbm * coefficients.gemm_mem_eff);
            OpCost::bounded(0.0, memory_s, n_kernels * floor_s, *n_kernels, repeat)
        }
        OpKind::AllReduce { bytes, n_ranks } => {
            let comm_s = allreduce_s(gpu, coefficients, *n_ranks, *bytes);
            OpCost {
                comm_s: comm_s * repeat,
                n_kernels: repeat,
                ..OpCost::default()
            }
        }
        OpKind::AllGather { bytes_total, n_ranks } => {
            // SGLang gathers through NCCL (pynccl inside CUDA graphs, torch.distributed outside).
            let comm_s = nccl_s(gpu, coefficients, NcclOp::AllGather, *n_ranks, *bytes_total);
            OpCost {
                comm_s: comm_s * repeat,
                n_kernels: repeat,
                ..OpCost::default()
            }
        }
        OpKind::AllToAll {
            tokens_per_rank,
            bytes_per_token,
            top_k,
            n_ranks,
            node_dedup,
        } => {
            let comm_s = all_to_all_s(gpu, coefficients, *n_ranks, *tokens_per_rank, *bytes_per_token, *top_k, *node_dedup);
            OpCost {
                comm_s: comm_s * repeat,
                n_kernels: repeat,
                ..OpCost::default()
            }
        }
    }
}

/// World sizes SGLang's custom all-reduce supports (`CustomAllreduce._SUPPORTED_WORLD_SIZES`,
/// python/sglang/srt/distributed/device_communicators/custom_all_reduce.py).
const CUSTOM_AR_WORLD_SIZES: [u32; 4] = [2, 4, 6, 8];
/// Largest message SGLang's custom all-reduce takes on CUDA (`_MAX_CAR_SIZE = 8192 * 1024`, same file);
/// larger all-reduces go to NCCL.
pub const CUSTOM_AR_MAX_BYTES: f64 = 8192.0 * 1024.0;

/// The all-reduce kernel SGLang's custom all-reduce launches for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomArAlgo {
    /// `cross_device_reduce_1stage`: every rank reads all peers' buffers and reduces, `(n-1) × bytes` read.
    OneShot,
    /// `cross_device_reduce_2stage`: reduce-scatter then all-gather, `2(n-1)/n × bytes` moved.
    TwoShot,
}

/// SGLang's choice between one-shot and two-shot (`REDUCE_CASE` in sgl-kernel
/// csrc/allreduce/custom_all_reduce.cuh, as in vLLM): two ranks always one-shot; on full NVLink,
/// one-shot below 512 KiB up to 4 ranks and below 256 KiB up to 8 ranks, two-shot above.
pub fn custom_ar_algo(n_ranks: u32, bytes: f64) -> CustomArAlgo {
    if n_ranks == 2 || (n_ranks <= 4 && bytes < 512.0 * 1024.0) || (n_ranks <= 8 && bytes < 256.0 * 1024.0) {
        CustomArAlgo::OneShot
    } else {
        CustomArAlgo::TwoShot
    }
}

/// Time of SGLang's custom all-reduce of a `bytes` buffer over `n_ranks` inside one NVLink domain,
/// seconds: a fixed latency (launch and the two barriers) plus the bytes each rank moves over
/// NVLink. `None` where SGLang would not use it (world size, size above its buffer, beyond NVLink).
pub fn custom_allreduce_s(gpu: &GpuSpec, coefficients: &Coefficients, n_ranks: u32, bytes: f64, max_bytes: f64) -> Option<f64> {
    let domain = gpu.nvlink_domain_size.max(gpu.gpus_per_node);
    if !CUSTOM_AR_WORLD_SIZES.contains(&n_ranks) || n_ranks > domain || bytes > max_bytes {
        return None;
    }
    let n = f64::from(n_ranks);
    // Each stage ends in a barrier that signals every peer; two-shot has two stages.
    let stage_us = coefficients.allreduce_latency_us + coefficients.allreduce_peer_us * (n - 1.0);
    let (stages, moved) = match custom_ar_algo(n_ranks, bytes) {
        CustomArAlgo::OneShot => (1.0, (n - 1.0) * bytes),
        CustomArAlgo::TwoShot => (2.0, 2.0 * (n - 1.0) / n * bytes),
    };
    Some(stages * stage_us * 1e-6 + moved / (gpu.nvlink_bytes_per_s * coefficients.comm_bw_eff))
}

/// NCCL collectives on one NVLink domain (and beyond it, over the scale-out link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcclOp {
    /// All-reduce of a `bytes` buffer: ring, `2(n-1)` steps, `2(n-1)/n × bytes` per rank.
    AllReduce,
    /// All-gather or reduce-scatter of a `bytes` result (or input): ring, `n-1` steps, `(n-1)/n × bytes` per rank.
    AllGather,
    /// All-to-all of a `bytes` send buffer (`ncclAllToAll` as nccl-tests calls it: grouped send/recv, `bytes / n` to
    /// each rank), `(n-1)/n × bytes` per rank, all peers at once.
    AllToAll,
}

/// The protocols NCCL moves data with (`ncclProtoStr` in NVIDIA/nccl src/graph/tuning.cc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcclProtocol {
    /// Low latency: 8-byte stores of 4 bytes of data and a 4-byte flag, so half the payload is flags.
    Ll,
    /// 128-byte lines of 120 bytes of data and an 8-byte flag.
    Ll128,
    /// Full-bandwidth copies with a synchronisation per chunk: the highest latency.
    Simple,
}

/// How NCCL runs a collective: a ring in one protocol, or NVLink SHARP (in-switch reduction, all-reduce only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcclAlgo {
    /// Ring (or, for all-to-all, direct send/recv to every peer) in a protocol.
    Ring(NcclProtocol),
    /// NVLink SHARP (`NCCL_ALGO_NVLS`): the NVSwitch reduces and multicasts; Simple protocol only.
    Nvls,
}

/// Whether NCCL may take NVLink SHARP for an all-reduce.
///
/// SGLang serves with NVLS off: it sets `NCCL_NVLS_ENABLE` from `--enable-nccl-nvls`, default false
/// (python/sglang/srt/entrypoints/engine.py `_set_envs_and_config`, server_args.py). nccl-tests leaves NCCL's
/// default (on where the NVSwitch supports multicast), so only measurements of nccl-tests ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nvls {
    /// NVLS disabled (SGLang's default): rings only.
    Off,
    /// NVLS available: NCCL's tuner may pick it for an all-reduce within one NVLink domain.
    Available,
}

// NCCL's tuner (NVIDIA/nccl v2.29.2-1, src/graph/tuning.cc, `ncclTunerConstantsDefaults` and `ncclTopoTuneModel`)
// estimates each (algorithm, protocol) as a base latency plus a latency per ring step plus bytes over a bus
// bandwidth, and takes the fastest. Its constants below choose the protocol as NCCL does; the time of the chosen
// one is then priced with the fitted coefficients (`nccl_*` in coefficients.rs).
/// Ring base latency per protocol (LL, LL128, Simple), microseconds: `baseLatencies[Ring]`.
const NCCL_TUNER_RING_BASE_US: [f64; 3] = [6.6, 14.0, 8.4];
/// Ring latency per step over NVLink per protocol (LL, LL128, Simple), microseconds: `hwLatencies[NVLINK][Ring]`.
const NCCL_TUNER_RING_NVLINK_STEP_US: [f64; 3] = [0.6, 1.9, 3.4];
/// NVLS latency over NVLink (Simple), microseconds: `hwLatencies[NVLINK][NVLS]`, base latency 0.
const NCCL_TUNER_NVLS_US: f64 = 25.0;
/// NCCL's ring bandwidth per GPU over the NVLink bandwidth: 20.6 GB/s per NVLink 4 link (`SM90_NVLINK_BW`,
/// src/graph/topo.h) of its 25 GB/s per direction (A100 20 of 25, B200 40.1 of 50: about the same share).
const NCCL_TUNER_NVLINK_SHARE: f64 = 20.6 / 25.0;
/// LL's bus bandwidth cap over the ring bandwidth: `llMaxBws` Hopper single node 141 GB/s over 18 × 20.6 GB/s
/// (Ampere 87.7 of 240, Blackwell 282 of 722: about the same share).
const NCCL_TUNER_LL_MAX_SHARE: f64 = 141.0 / (18.0 * 20.6);
/// LL's bus bandwidth share of the ring bandwidth before the cap (`busBw * .5`: half of each store is a flag).
const NCCL_LL_SHARE: f64 = 0.5;
/// LL128's bus bandwidth share of the ring bandwidth (`0.92 /*120.0/128.0*/`).
const NCCL_LL128_SHARE: f64 = 0.92;
/// NVLS bus bandwidth over the ring bandwidth for an all-reduce: `nvlsEfficiency` Hopper 0.85 × (16 − 1)/16
/// channels (`NVLS_NCHANNELS_SM90` 16, src/transport/nvls.cc) × 2 (the all-reduce pipelines two operations).
const NCCL_TUNER_NVLS_ALLREDUCE_SHARE: f64 = 0.85 * 15.0 / 16.0 * 2.0;
/// Largest send to one peer that NCCL's send/recv (all-to-all) moves in LL: `NCCL_P2P_LL_THRESHOLD` default
/// 16384 bytes (src/enqueue.cc, v2.29.2-1; one channel per peer at that size); larger sends use Simple.
const NCCL_P2P_LL_THRESHOLD_BYTES: f64 = 16384.0;

impl NcclOp {
    /// Ring steps (`nsteps` in NCCL's tuner): `2(n-1)` for all-reduce, `n-1` for all-gather / reduce-scatter;
    /// an all-to-all sends to all peers at once.
    fn steps(self, n: f64) -> f64 {
        match self {
            NcclOp::AllReduce => 2.0 * (n - 1.0),
            NcclOp::AllGather => n - 1.0,
            NcclOp::AllToAll => 1.0,
        }
    }

    /// Bytes that cross the link, before the `(n-1)/n` share [`link_s`] applies.
    fn moved_bytes(self, bytes: f64) -> f64 {
        match self {
            NcclOp::AllReduce => 2.0 * bytes,
            NcclOp::AllGather | NcclOp::AllToAll => bytes,
        }
    }
}

impl NcclProtocol {
    const ALL: [NcclProtocol; 3] = [NcclProtocol::Ll, NcclProtocol::Ll128, NcclProtocol::Simple];

    fn index(self) -> usize {
        match self {
            NcclProtocol::Ll => 0,
            NcclProtocol::Ll128 => 1,
            NcclProtocol::Simple => 2,
        }
    }

    /// Share of the Simple bandwidth the protocol's payload gets (flags take the rest).
    fn payload_share(self) -> f64 {
        match self {
            NcclProtocol::Ll => NCCL_LL_SHARE,
            NcclProtocol::Ll128 => NCCL_LL128_SHARE,
            NcclProtocol::Simple => 1.0,
        }
    }
}

/// The algorithm and protocol NCCL's tuner picks for a collective (NCCL 2.29's own estimate with its own
/// constants; Tree is never the fastest on one NVSwitch node by the same table, PAT is off on one node, and
/// all-to-all picks LL or Simple by the bytes sent to each peer).
pub fn nccl_algo(gpu: &GpuSpec, op: NcclOp, n_ranks: u32, bytes: f64, nvls: Nvls) -> NcclAlgo {
    let n = f64::from(n_ranks.max(2));
    if op == NcclOp::AllToAll {
        return if bytes / n <= NCCL_P2P_LL_THRESHOLD_BYTES {
            NcclAlgo::Ring(NcclProtocol::Ll)
        } else {
            NcclAlgo::Ring(NcclProtocol::Simple)
        };
    }
    let steps = op.steps(n);
    // NCCL's tuner works in GB/s and microseconds: bytes / (1000 × GB/s) is microseconds.
    let ring_gb_per_s = gpu.nvlink_bytes_per_s * 1e-9 * NCCL_TUNER_NVLINK_SHARE;
    let algorithm_gb_per_s = |bus_gb_per_s: f64| bus_gb_per_s * n / steps;
    let ring_us = |protocol: NcclProtocol| {
        let bus = match protocol {
            NcclProtocol::Ll => ring_gb_per_s * NCCL_LL_SHARE.min(NCCL_TUNER_LL_MAX_SHARE),
            NcclProtocol::Ll128 => ring_gb_per_s * NCCL_LL128_SHARE,
            NcclProtocol::Simple => ring_gb_per_s,
        };
        let i = protocol.index();
        NCCL_TUNER_RING_BASE_US[i] + steps * NCCL_TUNER_RING_NVLINK_STEP_US[i] + bytes / (1e3 * algorithm_gb_per_s(bus))
    };
    let (mut best, mut best_us) = (NcclAlgo::Ring(NcclProtocol::Ll), f64::INFINITY);
    for protocol in NcclProtocol::ALL {
        let us = ring_us(protocol);
        if us < best_us {
            (best, best_us) = (NcclAlgo::Ring(protocol), us);
        }
    }
    if nvls_applies(gpu, op, n_ranks, nvls) {
        let us = NCCL_TUNER_NVLS_US + bytes / (1e3 * algorithm_gb_per_s(ring_gb_per_s * NCCL_TUNER_NVLS_ALLREDUCE_SHARE));
        if us < best_us {
            best = NcclAlgo::Nvls;
        }
    }
    best
}

/// NVLS serves all-reduces within one NVLink domain (across domains it needs CollNet).
fn nvls_applies(gpu: &GpuSpec, op: NcclOp, n_ranks: u32, nvls: Nvls) -> bool {
    nvls == Nvls::Available && op == NcclOp::AllReduce && n_ranks <= gpu.nvlink_domain_size.max(gpu.gpus_per_node)
}

/// Time of an NCCL collective in a given algorithm, seconds: the protocol's fixed latency, a latency per ring
/// step, and the bytes over the link at the protocol's share of NCCL's bandwidth; NVLS moves the buffer once
/// each way through the switch.
pub fn nccl_algo_s(gpu: &GpuSpec, coefficients: &Coefficients, op: NcclOp, n_ranks: u32, bytes: f64, algo: NcclAlgo) -> f64 {
    if n_ranks <= 1 {
        return 0.0;
    }
    let n = f64::from(n_ranks);
    match algo {
        NcclAlgo::Nvls => coefficients.nccl_nvls_latency_us * 1e-6 + bytes / (gpu.nvlink_bytes_per_s * coefficients.nccl_nvls_bw_eff),
        NcclAlgo::Ring(protocol) => {
            let latency_us = match (op, protocol) {
                (NcclOp::AllToAll, NcclProtocol::Simple) => coefficients.nccl_p2p_simple_latency_us,
                (NcclOp::AllToAll, _) => coefficients.nccl_p2p_ll_latency_us,
                (_, NcclProtocol::Ll) => coefficients.nccl_latency_us + op.steps(n) * coefficients.nccl_step_us,
                (_, NcclProtocol::Ll128) => coefficients.nccl_ll128_latency_us + op.steps(n) * coefficients.nccl_step_us,
                (_, NcclProtocol::Simple) => coefficients.nccl_simple_latency_us + op.steps(n) * coefficients.nccl_step_us,
            };
            let bw_eff = coefficients.nccl_bw_eff * protocol.payload_share();
            link_s(gpu, bw_eff, n_ranks, latency_us, op.moved_bytes(bytes))
        }
    }
}

/// Time of an NCCL collective over `n_ranks` of a `bytes` buffer (all-reduce buffer, gathered output, all-to-all
/// send buffer) as SGLang runs it (NVLS off), seconds: the protocol NCCL's tuner picks, priced by [`nccl_algo_s`].
pub fn nccl_s(gpu: &GpuSpec, coefficients: &Coefficients, op: NcclOp, n_ranks: u32, bytes: f64) -> f64 {
    nccl_with_s(gpu, coefficients, op, n_ranks, bytes, Nvls::Off)
}

/// [`nccl_s`] with NVLS as given: [`Nvls::Available`] where NCCL runs with its defaults (nccl-tests).
pub fn nccl_with_s(gpu: &GpuSpec, coefficients: &Coefficients, op: NcclOp, n_ranks: u32, bytes: f64, nvls: Nvls) -> f64 {
    if n_ranks <= 1 {
        return 0.0;
    }
    let algo = nccl_algo(gpu, op, n_ranks, bytes, nvls);
    nccl_algo_s(gpu, coefficients, op, n_ranks, bytes, algo)
}

/// Time of an all-reduce the way SGLang runs it: its custom all-reduce where it applies, NCCL otherwise.
pub fn allreduce_s(gpu: &GpuSpec, coefficients: &Coefficients, n_ranks: u32, bytes: f64) -> f64 {
    if n_ranks <= 1 {
        return 0.0;
    }
    custom_allreduce_s(gpu, coefficients, n_ranks, bytes, CUSTOM_AR_MAX_BYTES)
        .unwrap_or_else(|| nccl_s(gpu, coefficients, NcclOp::AllReduce, n_ranks, bytes))
}

/// Time of a collective over `n_ranks` that moves `(n-1)/n × bytes` per rank: a latency plus bytes over
/// the scale-up link within a node or NVLink domain, plus the scale-out link when it spans several.
pub fn collective_s(gpu: &GpuSpec, coefficients: &Coefficients, n_ranks: u32, latency_us: f64, bytes: f64) -> f64 {
    link_s(gpu, coefficients.comm_bw_eff, n_ranks, latency_us, bytes)
}

/// One MoE dispatch or combine over `n_ranks` (DeepEP): each rank sends each of `tokens_per_rank`
/// tokens (`bytes_per_token` a copy) to the ranks of its `top_k` experts, spread evenly. Copies for
/// other nodes (NVLink domains) cross RDMA while same-node copies cross NVLink at the same time,
/// plus a fixed cost. The low-latency kernels (decode) within one NVLink domain send every copy as
/// NVLink stores, at their own fixed cost and efficiency (`deepep_ll_nvlink_*`); across domains they
/// have their own RDMA fit (`deepep_ll_rdma_*`), the normal kernels (prefill) `alltoall_*`. With `node_dedup` (DeepEP's normal kernels) a token crosses RDMA once per
/// distinct remote node among its experts' nodes — n_nodes × (1 − (1 − 1/n_nodes)^top_k) nodes in
/// all under uniform routing — and is forwarded over NVLink inside that node.
pub fn all_to_all_s(
    gpu: &GpuSpec,
    coefficients: &Coefficients,
    n_ranks: u32,
    tokens_per_rank: f64,
    bytes_per_token: f64,
    top_k: u64,
    node_dedup: bool,
) -> f64 {
    if n_ranks <= 1 || tokens_per_rank <= 0.0 {
        return 0.0;
    }
    let n = f64::from(n_ranks);
    let domain = f64::from(gpu.nvlink_domain_size.max(gpu.gpus_per_node).min(n_ranks));
    let k = top_k as f64;
    let bytes = tokens_per_rank * bytes_per_token;
    if !node_dedup && n <= domain {
        // Low-latency kernels inside one NVLink domain: every copy to another rank is an NVLink store.
        let copies = k * (n - 1.0) / n;
        return coefficients.deepep_ll_nvlink_latency_us * 1e-6
            + copies * bytes / (gpu.nvlink_bytes_per_s * coefficients.deepep_ll_nvlink_bw_eff);
    }
    let n_nodes = (n / domain).ceil();
    let (fixed_us, eff) = if node_dedup {
        (coefficients.alltoall_latency_us, coefficients.alltoall_bw_eff)
    } else {
        (coefficients.deepep_ll_rdma_latency_us, coefficients.deepep_ll_rdma_bw_eff)
    };
    let local_copies = k * (domain - 1.0) / n;
    let remote_copies = if node_dedup && n_nodes > 1.0 {
        n_nodes * (1.0 - (1.0 - 1.0 / n_nodes).powf(k)) * (n_nodes - 1.0) / n_nodes
    } else {
        k * (n - domain) / n
    };
    // Tokens received over RDMA are forwarded to their experts' GPUs over NVLink in the normal kernels.
    let forwarded_copies = if node_dedup { k * (n - domain) / n } else { 0.0 };
    let local_s = (local_copies + forwarded_copies) * bytes / (gpu.nvlink_bytes_per_s * eff);
    let remote_s = remote_copies * bytes / (gpu.rdma_bytes_per_s * eff);
    let latency_s = if n > domain { gpu.rdma_latency_us * 1e-6 } else { 0.0 };
    fixed_us * 1e-6 + latency_s + local_s.max(remote_s)
}

/// [`collective_s`] at a given fraction of the link bandwidths.
fn link_s(gpu: &GpuSpec, bw_eff: f64, n_ranks: u32, latency_us: f64, bytes: f64) -> f64 {
    if n_ranks <= 1 {
        return 0.0;
    }
    let n = f64::from(n_ranks);
    let domain = gpu.nvlink_domain_size.max(gpu.gpus_per_node);
    let mut seconds = latency_us * 1e-6 + (n - 1.0) / n * bytes / (gpu.nvlink_bytes_per_s * bw_eff);
    if n_ranks > domain {
        let n_domains = f64::from(n_ranks.div_ceil(domain));
        seconds += gpu.rdma_latency_us * 1e-6 + (n_domains - 1.0) / n_domains * bytes / (gpu.rdma_bytes_per_s * bw_eff);
    }
    seconds
}

/// Query-key pairs a causal chunk of `new` tokens after `cached` tokens attends, with an optional window.
pub fn attended_pairs(cached: u64, new: u64, window: Option<u64>) -> f64 {
    let full = |c: f64, q: f64| q * c + q * (q + 1.0) / 2.0;
    let (c, q) = (cached as f64, new as f64);
    match window {
        None => full(c, q),
        Some(w) => {
            let w = w as f64;
            // Positions c+1 ..= c+q attend min(position, w) tokens.
            let ramp_end = w.min(c + q);
            let ramp = if ramp_end > c { full(c, ramp_end - c) } else { 0.0 };
            let flat_tokens = (c + q - ramp_end.max(c)).max(0.0);
            ramp + flat_tokens * w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gpu::GpuCatalog;
    use crate::model::quant::WeightDtype;

    fn h100() -> GpuSpec {
        GpuCatalog::builtin().unwrap().find("h100-sxm").unwrap().clone()
    }

    #[test]
    fn moe_pads_each_expert_to_whole_blocks_and_deepgemm_skips_the_quantisation_kernels() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let cost = |tokens: f64, kernel: MoeKernel, weights: WeightDtype| {
            let loads = [ExpertLoad { experts: 8.0, tokens }];
            let work = MoeWork {
                tokens_in: 8.0 * tokens,
                top_k: 1.0,
                local_experts: 8.0,
                loads: &loads,
                hidden: 4096,
                slice: 1536,
                weights,
                extra_kernels: 0.0,
            };
            moe_cost(&work, kernel, &gpu, &coefficients)
        };
        let triton = MoeKernel::Triton((1.0, 1.0));
        assert_eq!(moe_block_m(1.0), 16.0);
        assert_eq!(moe_block_m(1000.0), 128.0);
        // 257 slots per expert pad to three 128-row blocks, as 384 do.
        let padded = cost(257.0, triton, WeightDtype::Bf16);
        let full = cost(384.0, triton, WeightDtype::Bf16);
        assert!((padded.compute_s / full.compute_s - 1.0).abs() < 1e-12, "{padded:?} {full:?}");
        assert_eq!(cost(1.0, triton, WeightDtype::Bf16).n_kernels, 6.0);
        assert_eq!(cost(1.0, triton, WeightDtype::Fp8Block).n_kernels, 8.0);
        assert_eq!(cost(1.0, MoeKernel::DeepGemm, WeightDtype::Fp8Block).n_kernels, 6.0);
        // MXFP4 experts on Hopper run weight-only: BF16 math, no activation quantisation, and the weight
        // stream adds to the math instead of hiding under it.
        let w4a16 = cost(4096.0, triton, WeightDtype::Mxfp4);
        assert_eq!(w4a16.n_kernels, 6.0);
        assert!(w4a16.compute_s > 0.0 && w4a16.memory_s > 0.0, "{w4a16:?}");
        // A smaller memory factor slows the weight-bound decode case.
        let slow = cost(1.0, MoeKernel::Triton((1.0, 0.5)), WeightDtype::Bf16);
        assert!(slow.total_s() > cost(1.0, triton, WeightDtype::Bf16).total_s() * 1.5);
    }

    #[test]
    fn weight_only_mxfp4_switches_to_64_row_blocks_once_tokens_outnumber_local_experts() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let triton = MoeKernel::Triton((1.0, 1.0));
        // 32 local experts, each with 2 slots: 16 tokens with top-4 (M <= E) run 16-row blocks, the same
        // slots from 64 tokens of which most go to other ranks (M > E) run 64-row blocks.
        let cost = |tokens_in: f64| {
            let loads = [ExpertLoad {
                experts: 32.0,
                tokens: 2.0,
            }];
            let work = MoeWork {
                tokens_in,
                top_k: 4.0,
                local_experts: 32.0,
                loads: &loads,
                hidden: 2880,
                slice: 2880,
                weights: WeightDtype::Mxfp4,
                extra_kernels: 0.0,
            };
            moe_cost(&work, triton, &gpu, &coefficients)
        };
        assert_eq!(moe_default_block_m(32.0, 32.0), 16.0);
        assert_eq!(moe_default_block_m(33.0, 32.0), 64.0);
        let small = cost(16.0);
        let large = cost(64.0);
        assert!((large.compute_s / small.compute_s - 4.0).abs() < 1e-9, "{small:?} {large:?}");
        // Remote experts' slots still pass through the intermediate caches: 64 tokens x 4 slots of
        // activation traffic although only 64 slots are local.
        let bytes = |slots: f64| slots * (2.0 * 2880.0 + 3.0 * 2880.0) * 2.0 + 64.0 * 2880.0 * 4.0;
        let weights_s =
            32.0 * 3.0 * 2880.0 * 2880.0 * WeightDtype::Mxfp4.bytes_per_param() / (gpu.hbm_bytes_per_s * coefficients.moe_mem_eff);
        let activations_s = large.memory_s - weights_s;
        let expected = bytes(256.0) / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff);
        assert!((activations_s / expected - 1.0).abs() < 1e-9, "{activations_s} {expected}");
        assert!(activations_s > 1.5 * bytes(64.0) / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff));
    }

    #[test]
    fn fp8_gemms_pay_their_activation_quantisation_traffic() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let gemm = |weights| {
            cost_op(
                &Op {
                    name: "g",
                    kind: OpKind::Gemm {
                        m: 16384,
                        n: 8192,
                        k: 8192,
                        weights,
                    },
                    repeat: 1,
                },
                &gpu,
                &coefficients,
            )
        };
        let fp8 = gemm(WeightDtype::Fp8Block);
        // Compute-bound: the memory time left is the quantisation pass, 16384 x 8192 x 3 bytes.
        let expected = 16384.0 * 8192.0 * 3.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff);
        assert!(fp8.compute_s > 0.0 && (fp8.memory_s / expected - 1.0).abs() < 1e-9, "{fp8:?}");
        assert_eq!(gemm(WeightDtype::Bf16).memory_s, 0.0);
    }

    #[test]
    fn attended_pairs_counts_causal_and_window() {
        assert_eq!(attended_pairs(0, 4, None), 10.0);
        assert_eq!(attended_pairs(2, 2, None), 2.0 * 2.0 + 3.0);
        // Window 2 over 4 tokens: 1 + 2 + 2 + 2.
        assert_eq!(attended_pairs(0, 4, Some(2)), 7.0);
        assert_eq!(attended_pairs(10, 3, Some(4)), 12.0);
    }

    #[test]
    fn small_gemm_is_memory_bound_large_is_compute_bound() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let small = cost_op(
            &Op {
                name: "g",
                kind: OpKind::Gemm {
                    m: 1,
                    n: 8192,
                    k: 8192,
                    weights: WeightDtype::Bf16,
                },
                repeat: 1,
            },
            &gpu,
            &coefficients,
        );
        assert!(small.memory_s > 0.0 && small.compute_s == 0.0, "{small:?}");
        let expected = 8192.0 * 8192.0 * 2.0 / (gpu.hbm_bytes_per_s * coefficients.gemm_mem_eff);
        assert!((small.memory_s / expected - 1.0).abs() < 0.01);
        let large = cost_op(
            &Op {
                name: "g",
                kind: OpKind::Gemm {
                    m: 8192,
                    n: 8192,
                    k: 8192,
                    weights: WeightDtype::Bf16,
                },
                repeat: 1,
            },
            &gpu,
            &coefficients,
        );
        assert!(large.compute_s > 0.0 && large.memory_s == 0.0, "{large:?}");
        let fp8 = cost_op(
            &Op {
                name: "g",
                kind: OpKind::Gemm {
                    m: 8192,
                    n: 8192,
                    k: 8192,
                    weights: WeightDtype::Fp8PerTensor,
                },
                repeat: 1,
            },
            &gpu,
            &coefficients,
        );
        assert!(fp8.total_s() < large.total_s() * 0.75);
    }

    #[test]
    fn all_to_all_sends_the_remote_share_over_rdma() {
        // DeepEP's README (H800, 400 Gb/s NICs): low-latency dispatch of 128 tokens x top-8 x 7168 FP8
        // bytes per rank takes 173 us at EP64; within 2x of that here, and a single node is NVLink-fast.
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let a2a = |ranks: u32, dedup: bool| all_to_all_s(&gpu, &coefficients, ranks, 128.0, 7168.0, 8, dedup);
        let ep64 = a2a(64, false);
        assert!(ep64 > 173e-6 / 2.0 && ep64 < 173e-6 * 2.0, "{ep64}");
        let ep8 = a2a(8, false);
        assert!(ep8 < ep64 / 2.0, "{ep8} {ep64}");
        // More ranks across nodes: a larger remote share, never faster.
        assert!(a2a(16, false) < ep64);
        assert_eq!(a2a(1, false), 0.0);
        // The normal kernels send a token to a remote node once, not once per expert there: over
        // 4 nodes, 8 experts reach about 2.7 remote nodes instead of 6 remote experts (compared at the
        // same fixed cost and efficiency).
        let mut same = coefficients.clone();
        same.deepep_ll_rdma_latency_us = same.alltoall_latency_us;
        same.deepep_ll_rdma_bw_eff = same.alltoall_bw_eff;
        let a2a_same = |ranks: u32, dedup: bool| all_to_all_s(&gpu, &same, ranks, 128.0, 7168.0, 8, dedup);
        let (low_latency, normal) = (a2a_same(32, false), a2a_same(32, true));
        assert!(normal < 0.6 * low_latency && normal > 0.3 * low_latency, "{normal} {low_latency}");
    }

    #[test]
    fn deepep_low_latency_within_one_nvlink_domain_matches_aic_timings() {
        // AIConfigurator 0.12.0 wideep_deepep_ll tables (SGLang 0.5.12, one node, hidden 7168, top-8, 256
        // experts): (GPU, ranks, tokens per rank, bytes per copy, measured us). FP8 dispatch copies 7168 bytes,
        // BF16 combine 14336. Hand-derived: B200 EP8, 128 tokens: 18.5 + 7 x 128 x 7168 / (900e9 x 0.6) =
        // 30.4 us; 1024-token combine 208.8; H200 1024-token dispatch 18.5 + 190.3 = 208.8; a GB200 tray (EP4,
        // 6 copies of 8 leave the rank), 128 tokens: 28.7.
        let catalog = GpuCatalog::builtin().unwrap();
        let coefficients = Coefficients::defaults();
        let rows = [
            ("b200", 8, 128.0, 7168.0, 32.95, 30.4),
            ("b200", 8, 1024.0, 14336.0, 189.29, 208.8),
            ("h200", 8, 1024.0, 7168.0, 211.10, 208.8),
            ("gb200", 4, 128.0, 7168.0, 26.86, 28.7),
        ];
        for (name, ranks, tokens, bytes, measured_us, derived_us) in rows {
            let gpu = catalog.find(name).unwrap();
            let us = all_to_all_s(gpu, &coefficients, ranks, tokens, bytes, 8, false) * 1e6;
            assert!((us - derived_us).abs() < 0.2, "{name} {tokens}: {us} vs {derived_us}");
            assert!(
                (us / measured_us).ln().abs() < 0.15,
                "{name} {tokens}: {us} vs measured {measured_us}"
            );
        }
    }

    #[test]
    fn deepep_low_latency_across_nodes_matches_aic_timings() {
        // AIC 0.12.0 wideep_deepep_ll, SGLang 0.5.6.post2, H100 nodes of 8 (hidden 7168, top-8, 256 experts):
        // (ranks, tokens, bytes per copy, measured us). Hand-derived with 20 us + 5 us NIC latency and the
        // remote copies (8 x (n - 8) / n) at 0.92 x 50 GB/s: EP16, 128-token dispatch: 4 x 917,504 B -> 79.8 +
        // 25 = 104.8 us; EP32: 6 copies -> 144.7 us; EP64, 256-token combine: 7 x 3,670,016 B -> 583.5 us.
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        for (ranks, tokens, bytes, measured_us, derived_us) in [
            (16, 128.0, 7168.0, 102.10, 104.8),
            (32, 128.0, 7168.0, 142.97, 144.7),
            (64, 256.0, 14336.0, 579.53, 583.5),
        ] {
            let us = all_to_all_s(&gpu, &coefficients, ranks, tokens, bytes, 8, false) * 1e6;
            assert!((us - derived_us).abs() < 0.2, "EP{ranks}: {us} vs {derived_us}");
            assert!((us / measured_us).ln().abs() < 0.05, "EP{ranks}: {us} vs measured {measured_us}");
        }
    }

    #[test]
    fn collectives_pay_more_across_nodes() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let within = collective_s(&gpu, &coefficients, 8, 10.0, 64e6);
        let across = collective_s(&gpu, &coefficients, 16, 10.0, 64e6);
        assert!(across > within * 1.5, "{within} {across}");
        assert_eq!(collective_s(&gpu, &coefficients, 1, 10.0, 64e6), 0.0);
    }

    #[test]
    fn custom_allreduce_switches_one_shot_two_shot_and_nccl() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        assert_eq!(custom_ar_algo(2, 4e6), CustomArAlgo::OneShot);
        assert_eq!(custom_ar_algo(4, 256.0 * 1024.0), CustomArAlgo::OneShot);
        assert_eq!(custom_ar_algo(4, 512.0 * 1024.0), CustomArAlgo::TwoShot);
        assert_eq!(custom_ar_algo(8, 128.0 * 1024.0), CustomArAlgo::OneShot);
        assert_eq!(custom_ar_algo(8, 256.0 * 1024.0), CustomArAlgo::TwoShot);
        // Two-shot pays two stages of latency but moves 2(n-1)/n instead of (n-1) times the bytes:
        // at 8 ranks and 4 MiB it beats what one-shot would cost.
        let bytes = 4.0 * 1024.0 * 1024.0;
        let two_shot = custom_allreduce_s(&gpu, &coefficients, 8, bytes, CUSTOM_AR_MAX_BYTES).unwrap();
        let one_shot_bytes = 7.0 * bytes / (gpu.nvlink_bytes_per_s * coefficients.comm_bw_eff);
        assert!(two_shot < one_shot_bytes, "{two_shot} {one_shot_bytes}");
        // Small messages cost the latency only; more peers cost more.
        let small = |n| allreduce_s(&gpu, &coefficients, n, 16384.0);
        assert!(small(2) < small(8) && small(8) < 10e-6, "{} {}", small(2), small(8));
        // Above 8 MiB, or at a world size the custom kernel lacks, SGLang uses NCCL.
        assert!(custom_allreduce_s(&gpu, &coefficients, 8, 16.0 * 1024.0 * 1024.0, CUSTOM_AR_MAX_BYTES).is_none());
        assert!(custom_allreduce_s(&gpu, &coefficients, 3, 1024.0, CUSTOM_AR_MAX_BYTES).is_none());
        let big = 64.0 * 1024.0 * 1024.0;
        assert_eq!(
            allreduce_s(&gpu, &coefficients, 8, big),
            nccl_s(&gpu, &coefficients, NcclOp::AllReduce, 8, big)
        );
        // NCCL's latency grows with ring steps: an 8-rank all-reduce (14 steps) over a 2-rank one (2).
        let tiny = |op, n| nccl_s(&gpu, &coefficients, op, n, 1024.0);
        let steps = (tiny(NcclOp::AllReduce, 8) - tiny(NcclOp::AllReduce, 2)) * 1e6;
        assert!((steps - 12.0 * coefficients.nccl_step_us).abs() < 0.1, "{steps}");
        assert!(tiny(NcclOp::AllGather, 8) < tiny(NcclOp::AllReduce, 8));
        assert!(tiny(NcclOp::AllReduce, 2) > small(2));
    }

    #[test]
    fn nccl_protocol_goes_from_ll_to_ll128_to_simple_as_messages_grow() {
        let gpu = h100();
        let algo = |n, bytes| nccl_algo(&gpu, NcclOp::AllReduce, n, bytes, Nvls::Off);
        let ring = NcclAlgo::Ring;
        assert_eq!(algo(8, 64.0 * 1024.0), ring(NcclProtocol::Ll));
        assert_eq!(algo(8, 8.0 * 1024.0 * 1024.0), ring(NcclProtocol::Ll128));
        assert_eq!(algo(8, 256.0 * 1024.0 * 1024.0), ring(NcclProtocol::Simple));
        // Two ranks have few steps to amortise: LL up to about 1 MiB, then straight to Simple.
        assert_eq!(algo(2, 1024.0 * 1024.0), ring(NcclProtocol::Ll));
        assert_eq!(algo(2, 4.0 * 1024.0 * 1024.0), ring(NcclProtocol::Simple));
        // The chosen protocol prices the time: LL moves its payload at half Simple's rate, so at 2 MiB over
        // 8 ranks it is slower than LL128 despite its lower latency.
        let coefficients = Coefficients::defaults();
        let priced = |protocol| nccl_algo_s(&gpu, &coefficients, NcclOp::AllReduce, 8, 2.0 * 1024.0 * 1024.0, ring(protocol));
        assert!(priced(NcclProtocol::Ll) > priced(NcclProtocol::Ll128));
        let steps_s = 14.0 * coefficients.nccl_step_us * 1e-6;
        let ll_bytes_s = priced(NcclProtocol::Ll) - coefficients.nccl_latency_us * 1e-6 - steps_s;
        let simple_bytes_s = priced(NcclProtocol::Simple) - coefficients.nccl_simple_latency_us * 1e-6 - steps_s;
        assert!((ll_bytes_s / simple_bytes_s - 2.0).abs() < 1e-9, "{ll_bytes_s} {simple_bytes_s}");
        // Small messages cost LL's latency; large ones the Simple bandwidth.
        let tiny = nccl_s(&gpu, &coefficients, NcclOp::AllReduce, 8, 1024.0);
        assert!(
            (tiny * 1e6 - coefficients.nccl_latency_us - 14.0 * coefficients.nccl_step_us).abs() < 0.1,
            "{tiny}"
        );
        let big = 512.0 * 1024.0 * 1024.0;
        let busbw = 2.0 * 7.0 / 8.0 * big / nccl_s(&gpu, &coefficients, NcclOp::AllReduce, 8, big);
        assert!(
            (busbw / (gpu.nvlink_bytes_per_s * coefficients.nccl_bw_eff) - 1.0).abs() < 0.02,
            "{busbw}"
        );
    }

    #[test]
    fn nvls_only_where_nccl_may_use_it_and_never_in_serving() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let big = 256.0 * 1024.0 * 1024.0;
        assert_eq!(nccl_algo(&gpu, NcclOp::AllReduce, 8, big, Nvls::Available), NcclAlgo::Nvls);
        assert_ne!(nccl_algo(&gpu, NcclOp::AllReduce, 8, big, Nvls::Off), NcclAlgo::Nvls);
        // Small messages stay on LL rings; gathers and all-to-alls never reduce in the switch; beyond one
        // NVLink domain NVLS needs CollNet.
        assert_eq!(
            nccl_algo(&gpu, NcclOp::AllReduce, 8, 4096.0, Nvls::Available),
            NcclAlgo::Ring(NcclProtocol::Ll)
        );
        assert_ne!(nccl_algo(&gpu, NcclOp::AllGather, 8, big, Nvls::Available), NcclAlgo::Nvls);
        assert_ne!(nccl_algo(&gpu, NcclOp::AllReduce, 16, big, Nvls::Available), NcclAlgo::Nvls);
        // nccl-tests' NVLS all-reduce is faster than SGLang's ring at 256 MiB, and SGLang's path is the ring.
        let nvls_s = nccl_with_s(&gpu, &coefficients, NcclOp::AllReduce, 8, big, Nvls::Available);
        let ring_s = nccl_s(&gpu, &coefficients, NcclOp::AllReduce, 8, big);
        assert!(nvls_s < 0.85 * ring_s, "{nvls_s} {ring_s}");
        assert_eq!(allreduce_s(&gpu, &coefficients, 8, big), ring_s);
    }

    #[test]
    fn nccl_all_to_all_sends_to_every_peer_at_once_in_ll_up_to_16_kib_each() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let algo = |n, bytes| nccl_algo(&gpu, NcclOp::AllToAll, n, bytes, Nvls::Off);
        assert_eq!(algo(8, 8.0 * 16384.0), NcclAlgo::Ring(NcclProtocol::Ll));
        assert_eq!(algo(8, 8.0 * 16384.0 + 8.0), NcclAlgo::Ring(NcclProtocol::Simple));
        assert_eq!(algo(2, 65536.0), NcclAlgo::Ring(NcclProtocol::Simple));
        // No ring steps: 8 ranks cost what 2 do at tiny sizes.
        let a2a = |n, bytes| nccl_s(&gpu, &coefficients, NcclOp::AllToAll, n, bytes);
        assert!((a2a(8, 1024.0) - a2a(2, 1024.0)).abs() < 0.05e-6);
        assert!(a2a(8, 1024.0) < nccl_s(&gpu, &coefficients, NcclOp::AllGather, 8, 1024.0));
        // Large: (n-1)/n of the buffer at the Simple bandwidth.
        let big = 256.0 * 1024.0 * 1024.0;
        let expected =
            coefficients.nccl_p2p_simple_latency_us * 1e-6 + 7.0 / 8.0 * big / (gpu.nvlink_bytes_per_s * coefficients.nccl_bw_eff);
        assert!((a2a(8, big) / expected - 1.0).abs() < 1e-9);
    }
}
