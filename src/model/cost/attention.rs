//! Attention priced per FlashAttention-3 tile: prefill tiles of packed query rows over key blocks,
//! decode tiles per (request, KV head); MLA prefill by its FLOP rate.

use super::{attended_pairs, OpCost};
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;
use crate::model::ops::{AttentionKernel, ExtendRequest, Op, OpKind};
use crate::model::quant::{ComputeDtype, KvDtype};

/// Query rows (tokens times the query heads packed per KV head) in one prefill-attention tile (FA3, head dim
/// up to 128: `kBlockM` 128).
const PREFILL_BLOCK_M: u64 = 128;
/// Keys per main-loop block of a prefill-attention tile (FA3 causal, head dim up to 128: `kBlockN` 128).
const PREFILL_BLOCK_N: u64 = 128;
/// Query rows and keys per block of FA3's MLA tile (head dim 64 with a 512-wide `qv`: `kBlockM` = `kBlockN` = 64;
/// github Dao-AILab/flash-attention hopper/tile_size.h).
const MLA_PREFILL_BLOCK: u64 = 64;
/// Tiles above which [`prefill_tiles`] sums the key blocks in closed form (off by under half a block per tile).
const PREFILL_EXACT_TILES: u64 = 64;

/// The tiling of one request's causal prefill attention for one KV head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillTiles {
    /// Tiles of [`PREFILL_BLOCK_M`] packed query rows.
    pub tiles: f64,
    /// Packed query rows (new tokens times query heads per KV head).
    pub rows: f64,
    /// Query-key blocks of [`PREFILL_BLOCK_N`] keys the tiles run, masked diagonal blocks included.
    pub blocks: f64,
    /// Key blocks of the longest tile.
    pub longest_blocks: f64,
}

/// Tiles FA3 runs for a chunk of `new` tokens after `cached` ones with `group` query heads per KV head
/// packed into each tile's rows (SGLang calls FA3 varlen, where FA3 packs GQA), and an optional window.
pub fn prefill_tiles(cached: u64, new: u64, group: u64, window: Option<u64>) -> PrefillTiles {
    prefill_tiles_of(cached, new, group, window, PREFILL_BLOCK_M, PREFILL_BLOCK_N)
}

/// [`prefill_tiles`] for tiles of `block_m` packed query rows over `block_n`-key blocks (FA3's MLA path: 64 x 64).
pub fn prefill_tiles_of(cached: u64, new: u64, group: u64, window: Option<u64>, block_m: u64, block_n: u64) -> PrefillTiles {
    let group = group.max(1);
    let rows = new * group;
    let tiles = rows.div_ceil(block_m);
    // Keys tile `i` reads: from the window start of its first token to its last token.
    let span = |i: u64| {
        let first = cached + i * block_m / group;
        let last = cached + ((i + 1) * block_m).min(rows).div_ceil(group);
        let start = window.map_or(0, |w| (first + 1).saturating_sub(w));
        last.div_ceil(block_n) - start / block_n
    };
    let (blocks, longest_blocks) = if tiles <= PREFILL_EXACT_TILES {
        (0..tiles).fold((0u64, 0u64), |(sum, max), i| {
            let b = span(i);
            (sum + b, max.max(b))
        })
    } else {
        // Closed form: tile i ends at cached + (i + 1) x (rows per tile / group) keys; half a block of
        // rounding per tile; a window caps every tile at the blocks its span covers.
        let tokens_per_tile = block_m as f64 / group as f64;
        let n = tiles as f64;
        let full = n * cached as f64 / block_n as f64 + tokens_per_tile / block_n as f64 * n * (n + 1.0) / 2.0 + 0.5 * n;
        let blocks = match window {
            None => full,
            Some(w) => full.min(n * ((w as f64 + tokens_per_tile) / block_n as f64 + 1.0)),
        };
        (blocks.round() as u64, span(tiles - 1))
    };
    PrefillTiles {
        tiles: tiles as f64,
        rows: rows as f64,
        blocks: blocks as f64,
        longest_blocks: longest_blocks as f64,
    }
}

/// Whether attention over a cache of `kv_dtype` runs its math in FP8 (FA3 casts the query to the cache's
/// FP8 format where the GPU has FP8 tensor cores).
fn fp8_attention(gpu: &GpuSpec, kv_dtype: KvDtype) -> bool {
    kv_dtype == KvDtype::Fp8 && gpu.supports(ComputeDtype::Fp8)
}

/// Whether absorbed MLA decode over a cache of `kv_dtype` multiplies in FP8. On Blackwell (FP4 tensor cores:
/// SM100) SGLang decodes DeepSeek's MLA with its `trtllm_mla` backend (python/sglang/srt/layers/attention/
/// trtllm_mla_backend.py), which casts the query to the cache's dtype (`q = q.to(self.data_type)`, the scales
/// folded into `bmm1_scale`) and runs trtllm-gen's MLA kernel in that dtype: with an FP8 cache its MMAs run at
/// the FP8 tensor-core rate, twice BF16 (LMSYS, GB200 NVL72 part II, 2025-09-25: FP8 attention "allows faster
/// Tensor Core instructions", up to 1.8x on the decode attention kernels). Hopper's FA3 and FlashMLA paths
/// attend an FP8 MLA cache in BF16.
fn mla_decode_in_fp8(gpu: &GpuSpec, kernel: AttentionKernel, kv_dtype: KvDtype) -> bool {
    kernel != AttentionKernel::Mha && kv_dtype == KvDtype::Fp8 && gpu.supports(ComputeDtype::Fp4) && gpu.supports(ComputeDtype::Fp8)
}

/// MLA prefill (MHA over the expanded latent): FLOPs at `attn_prefill_mla_eff`, ramped per request by its
/// query tokens (`attn_prefill_mla_half_tokens`). Not yet priced per tile: no MLA kernel table has been
/// tied to its shapes (see data/coefficients.toml).
fn mla_prefill_cost(op: &Op<'_>, gpu: &GpuSpec, coefficients: &Coefficients) -> OpCost {
    let OpKind::AttentionPrefill {
        requests,
        heads,
        qk_dim,
        v_dim,
        window_tokens,
        kv_bytes_per_token,
        ..
    } = &op.kind
    else {
        return OpCost::default();
    };
    let peak = gpu.bf16_flops_per_s * coefficients.attn_prefill_mla_eff * coefficients.sustained_clock_ratio;
    let compute_s: f64 = requests
        .iter()
        .map(|request| {
            let pairs = attended_pairs(request.cached_tokens, request.new_tokens, *window_tokens);
            let flops = 2.0 * *heads as f64 * (*qk_dim + *v_dim) as f64 * pairs;
            let q = request.new_tokens as f64;
            flops / (peak * q / (q + coefficients.attn_prefill_mla_half_tokens))
        })
        .sum();
    let memory_s = prefill_memory_s(requests, *heads * (*qk_dim + *v_dim), *kv_bytes_per_token, gpu, coefficients);
    OpCost::bounded(compute_s, memory_s, coefficients.kernel_floor_us * 1e-6, 2.0, op.repeat as f64)
}

/// HBM time of a prefill attention: the batch's cached and new KV once, and its queries and outputs
/// (`qo_width` elements per token over the heads, BF16), at the decode kernels' stream rate.
fn prefill_memory_s(requests: &[ExtendRequest], qo_width: u64, kv_bytes_per_token: f64, gpu: &GpuSpec, coefficients: &Coefficients) -> f64 {
    let kv_tokens: u64 = requests.iter().map(|r| r.cached_tokens + r.new_tokens).sum();
    let q_tokens: u64 = requests.iter().map(|r| r.new_tokens).sum();
    let bytes = kv_tokens as f64 * kv_bytes_per_token + (q_tokens * qo_width) as f64 * 2.0;
    bytes / (gpu.hbm_bytes_per_s * coefficients.attn_decode_mem_eff)
}

/// Prefill attention: the tiles of every request share the SMs; the longest tile bounds a lone prompt.
pub(super) fn prefill_cost(op: &Op<'_>, gpu: &GpuSpec, coefficients: &Coefficients) -> OpCost {
    let OpKind::AttentionPrefill {
        kernel,
        requests,
        heads,
        kv_heads,
        qk_dim,
        v_dim,
        window_tokens,
        kv_bytes_per_token,
        kv_dtype,
    } = &op.kind
    else {
        return OpCost::default();
    };
    if *kernel == AttentionKernel::Mla {
        return mla_prefill_cost(op, gpu, coefficients);
    }
    // FA3's MLA path (absorbed, one latent KV head) runs BF16 64x64 tiles, its MHA path 128x128 tiles (FP8
    // where the cache is FP8). A packed query row's load and output epilogue scale with its head dims
    // (`attn_prefill_row_ns` is per row of head dim 128).
    let latent = *kernel == AttentionKernel::MlaLatent;
    let (block_m, block_n) = if latent {
        (MLA_PREFILL_BLOCK, MLA_PREFILL_BLOCK)
    } else {
        (PREFILL_BLOCK_M, PREFILL_BLOCK_N)
    };
    let kv_heads = if latent { 1 } else { (*kv_heads).clamp(1, (*heads).max(1)) };
    let group = (*heads / kv_heads).max(1);
    let efficiency = coefficients.attn_prefill_eff;
    let fp8 = if !latent && fp8_attention(gpu, *kv_dtype) {
        coefficients.attn_fp8_speedup
    } else {
        1.0
    };
    let clock = coefficients.sustained_clock_ratio;
    let sm_flops_per_s = gpu.bf16_flops_per_s / f64::from(gpu.sm_count) * efficiency * clock * fp8;
    let block_s = 2.0 * (block_m * block_n * (*qk_dim + *v_dim)) as f64 / sm_flops_per_s;
    let tile_s = coefficients.attn_prefill_tile_us * 1e-6 / clock;
    let row_dims = if latent { (*qk_dim + *v_dim) as f64 / 256.0 } else { 1.0 };
    let row_s = coefficients.attn_prefill_row_ns * 1e-9 * row_dims / clock;
    // SM time of every tile, and the longest single tile (a lone long prompt cannot spread over
    // more SMs than it has tiles).
    let (mut sm_s, mut longest_s) = (0.0, 0.0f64);
    for request in requests.iter() {
        let tiles = prefill_tiles_of(request.cached_tokens, request.new_tokens, group, *window_tokens, block_m, block_n);
        sm_s += kv_heads as f64 * (tiles.tiles * tile_s + tiles.rows * row_s + tiles.blocks * block_s);
        let longest_rows = (request.new_tokens * group).min(block_m) as f64;
        longest_s = longest_s.max(tile_s + longest_rows * row_s + tiles.longest_blocks * block_s);
    }
    let compute_s = (sm_s / f64::from(gpu.sm_count)).max(longest_s);
    let memory_s = prefill_memory_s(requests, *heads * (*qk_dim + *v_dim), *kv_bytes_per_token, gpu, coefficients);
    OpCost::bounded(compute_s, memory_s, coefficients.kernel_floor_us * 1e-6, 2.0, op.repeat as f64)
}

/// Decode attention: KV stream or per-token SM time, plus tiles in waves, per-request time and kernels.
pub(super) fn decode_cost(op: &Op<'_>, gpu: &GpuSpec, coefficients: &Coefficients) -> OpCost {
    let OpKind::AttentionDecode {
        kernel,
        requests,
        attended_tokens,
        kv_heads,
        heads,
        qk_dim,
        v_dim,
        kv_bytes_per_token,
        kv_dtype,
    } = &op.kind
    else {
        return OpCost::default();
    };
    let repeat = op.repeat as f64;
    let floor_s = coefficients.kernel_floor_us * 1e-6;
    let hbm = gpu.hbm_bytes_per_s;
    let clock = coefficients.sustained_clock_ratio;
    let sms = f64::from(gpu.sm_count);
    let flops = 2.0 * *heads as f64 * (*qk_dim + *v_dim) as f64 * *attended_tokens as f64;
    let mma_flops_per_s = if mla_decode_in_fp8(gpu, *kernel, *kv_dtype) {
        gpu.peak_flops_per_s(ComputeDtype::Fp8)
    } else {
        gpu.bf16_flops_per_s
    };
    let mut compute_s = flops / (mma_flops_per_s * coefficients.attn_prefill_eff * clock);
    if *kernel == AttentionKernel::Mha {
        // A KV head's few query rows fill a 64-row MMA: every KV token costs SM time for the whole
        // padded tile, whatever the query heads per KV head.
        let head_dims = (*qk_dim + *v_dim) as f64 / 256.0;
        let token_s = coefficients.attn_decode_token_ns * 1e-9 * head_dims / clock;
        compute_s = compute_s.max(*attended_tokens as f64 * *kv_heads as f64 * token_s / sms);
    }
    let memory_s = *attended_tokens as f64 * kv_bytes_per_token / (hbm * coefficients.attn_decode_mem_eff);
    // One tile per (request, KV head) in waves over the SMs, each with a fixed SM time (prologue,
    // Q load, softmax and output epilogue) the KV stream does not hide; at least one wave.
    let tiles = (*requests * *kv_heads) as f64;
    let tiles_s = (tiles / sms).max(1.0) * coefficients.attn_decode_tile_us * 1e-6 / clock;
    let requests_s = *requests as f64 * coefficients.attn_decode_request_ns * 1e-9;
    // FA3's MHA decode is one kernel (AIC's tables show no second floor), and with an FP8 cache it first
    // casts the query to FP8 on GPUs that attend in FP8: one more kernel. MLA decode (FlashMLA, FA3's MLA
    // path) runs its split-KV partials and then a combine kernel; SGLang's FA3 backend casts no MLA query
    // (its 576-wide head is above FA3's FP8 limit of 256).
    let kernels = match kernel {
        AttentionKernel::Mha if fp8_attention(gpu, *kv_dtype) => 2.0,
        AttentionKernel::Mha => 1.0,
        AttentionKernel::Mla | AttentionKernel::MlaLatent => 2.0,
    };
    let mut cost = OpCost::bounded(compute_s, memory_s, kernels * floor_s, kernels, repeat);
    cost.compute_s += (tiles_s + requests_s) * repeat;
    cost
}

#[cfg(test)]
mod tests {
    use super::super::cost_op;
    use super::*;
    use crate::model::gpu::GpuCatalog;
    use crate::model::ops::ExtendRequest;

    fn h100() -> GpuSpec {
        GpuCatalog::builtin().unwrap().find("h100-sxm").unwrap().clone()
    }

    #[test]
    fn prefill_attention_grows_quadratically() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let time = |tokens| prefill_s(&gpu, &coefficients, 1, tokens, KvDtype::Bf16);
        let ratio = time(32_768) / time(8192);
        assert!(ratio > 14.0 && ratio < 17.0, "{ratio}");
    }

    fn decode_op(kernel: AttentionKernel, requests: u64, context: u64, kv_dtype: KvDtype) -> Op<'static> {
        Op {
            name: "a",
            kind: OpKind::AttentionDecode {
                kernel,
                requests,
                attended_tokens: requests * context,
                kv_heads: 8,
                heads: 32,
                qk_dim: 128,
                v_dim: 128,
                kv_bytes_per_token: 2.0 * 8.0 * 128.0 * kv_dtype.bytes(),
                kv_dtype,
            },
            repeat: 1,
        }
    }

    #[test]
    fn decode_attention_kernels_fa3_one_flashmla_two_and_an_fp8_query_cast() {
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let floors = |kernel, kv_dtype| {
            cost_op(&decode_op(kernel, 1, 1, kv_dtype), &gpu, &coefficients).floor_s / (coefficients.kernel_floor_us * 1e-6)
        };
        assert!((floors(AttentionKernel::Mha, KvDtype::Bf16) - 1.0).abs() < 1e-9);
        assert!((floors(AttentionKernel::Mla, KvDtype::Bf16) - 2.0).abs() < 1e-9);
        assert!((floors(AttentionKernel::Mha, KvDtype::Fp8) - 2.0).abs() < 1e-9);
        // No query cast for MLA's 576-wide heads.
        assert!((floors(AttentionKernel::Mla, KvDtype::Fp8) - 2.0).abs() < 1e-9);
        // Without FP8 tensor cores the cache is dequantised inside the kernel: no cast.
        let a100 = GpuCatalog::builtin().unwrap().find("a100-80g").unwrap().clone();
        let cost = cost_op(&decode_op(AttentionKernel::Mha, 1, 1, KvDtype::Fp8), &a100, &coefficients);
        assert!((cost.floor_s - coefficients.kernel_floor_us * 1e-6).abs() < 1e-12);
    }

    #[test]
    fn fp8_kv_decode_is_bound_by_per_token_sm_time_not_half_the_bytes() {
        // AIC's FA3 tables: at long contexts an FP8 cache takes about 0.9x the BF16 time, not 0.5x.
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let mut coefficients = Coefficients::defaults();
        coefficients.sustained_clock_ratio = 1.0;
        let time = |kv_dtype| cost_op(&decode_op(AttentionKernel::Mha, 64, 8192, kv_dtype), &gpu, &coefficients).total_s();
        let ratio = time(KvDtype::Fp8) / time(KvDtype::Bf16);
        assert!(ratio > 0.8 && ratio < 1.0, "{ratio}");
        // MLA decode is priced by its FLOPs and bytes: no padded-tile token time.
        let mla = |kernel| {
            let mut op = decode_op(kernel, 64, 8192, KvDtype::Fp8);
            if let OpKind::AttentionDecode {
                kv_heads,
                kv_bytes_per_token,
                ..
            } = &mut op.kind
            {
                // One latent head, and few bytes so that the SM time shows.
                *kv_heads = 1;
                *kv_bytes_per_token = 1.0;
            }
            cost_op(&op, &gpu, &coefficients).compute_s
        };
        assert!(mla(AttentionKernel::Mla) < 0.5 * mla(AttentionKernel::Mha));
    }

    /// Absorbed MLA decode of DeepSeek's shapes (128 query heads over one 576-wide latent, v 512), one
    /// cache byte per element per `kv_dtype`.
    fn mla_decode_op(requests: u64, context: u64, kv_dtype: KvDtype) -> Op<'static> {
        Op {
            name: "attn_decode",
            kind: OpKind::AttentionDecode {
                kernel: AttentionKernel::Mla,
                requests,
                attended_tokens: requests * context,
                kv_heads: 1,
                heads: 128,
                qk_dim: 576,
                v_dim: 512,
                kv_bytes_per_token: 576.0 * kv_dtype.bytes(),
                kv_dtype,
            },
            repeat: 1,
        }
    }

    #[test]
    fn blackwell_mla_decode_over_an_fp8_cache_multiplies_in_fp8_hopper_in_bf16() {
        let catalog = GpuCatalog::builtin().unwrap();
        let coefficients = Coefficients::defaults();
        // 1024 requests x 4096 tokens: 2 x 128 x (576 + 512) x 4,194,304 = 1.16823e12 FLOPs. On a B200 at
        // 0.65 x 0.8 of peak: BF16 (2.25e15) 0.99849 ms, FP8 (4.5e15) 0.49925 ms; the FP8 cache's 2.42 GB
        // stream at 0.94 x 7.7 TB/s (0.334 ms) stays under the math. Tile and request terms are the same.
        let b200 = catalog.find("b200").unwrap();
        let compute = |gpu: &GpuSpec, kv_dtype| cost_op(&mla_decode_op(1024, 4096, kv_dtype), gpu, &coefficients).compute_s;
        let saved_ms = (compute(b200, KvDtype::Bf16) - compute(b200, KvDtype::Fp8)) * 1e3;
        assert!((saved_ms - 0.49925).abs() < 0.002, "{saved_ms}");
        // Hopper (FA3's MLA path) attends the FP8 cache in BF16: same math time.
        let h200 = catalog.find("h200").unwrap();
        assert!((compute(h200, KvDtype::Bf16) - compute(h200, KvDtype::Fp8)).abs() < 1e-12);
    }

    #[test]
    fn gb200_fp8_over_bf16_mla_decode_matches_aic_trtllm_mla_rows() {
        // AIConfigurator 0.12.0, gb200 mla/sglang/0.5.14/generation_mla_perf.parquet (kernel trtllm_mla, 128
        // heads, tp 1): (batch, KV tokens, FP8 ms / BF16 ms) = (64, 16384, 0.1386 / 0.2426), (256, 8192,
        // 0.2869 / 0.4880), (128, 32768, 0.5017 / 0.9158): the FP8 cache takes 0.57, 0.59 and 0.55 of the BF16
        // time where the math dominates.
        let gpu = GpuCatalog::builtin().unwrap().find("gb200").unwrap().clone();
        let coefficients = Coefficients::defaults();
        let time = |requests, context, kv_dtype| cost_op(&mla_decode_op(requests, context, kv_dtype), &gpu, &coefficients).total_s();
        for (requests, context, measured) in [(64, 16_384, 0.571), (256, 8192, 0.588), (128, 32_768, 0.548)] {
            let ratio = time(requests, context, KvDtype::Fp8) / time(requests, context, KvDtype::Bf16);
            assert!((ratio - measured).abs() < 0.08, "{requests} x {context}: {ratio} vs {measured}");
        }
    }

    fn prefill_s(gpu: &GpuSpec, coefficients: &Coefficients, batch: u64, tokens: u64, kv_dtype: KvDtype) -> f64 {
        let requests: Vec<ExtendRequest> = (0..batch)
            .map(|_| ExtendRequest {
                new_tokens: tokens,
                cached_tokens: 0,
            })
            .collect();
        let op = Op {
            name: "a",
            kind: OpKind::AttentionPrefill {
                kernel: AttentionKernel::Mha,
                requests: &requests,
                heads: 32,
                kv_heads: 8,
                qk_dim: 128,
                v_dim: 128,
                window_tokens: None,
                kv_bytes_per_token: 2.0 * 8.0 * 128.0 * kv_dtype.bytes(),
                kv_dtype,
            },
            repeat: 1,
        };
        cost_op(&op, gpu, coefficients).total_s()
    }

    #[test]
    fn prefill_attention_tiles_fill_the_gpu_across_requests() {
        // A lone 256-token prompt runs 8 tiles on 132 SMs; 64 of them run 512 tiles, about 4 waves: far
        // less than 64 times the lone prompt (AIC's FA3 table, H200: 14.3 us vs 224.9 us).
        let gpu = GpuCatalog::builtin().unwrap().find("h200").unwrap().clone();
        let mut coefficients = Coefficients::defaults();
        coefficients.sustained_clock_ratio = 1.0;
        let (one, many) = (
            prefill_s(&gpu, &coefficients, 1, 256, KvDtype::Bf16),
            prefill_s(&gpu, &coefficients, 64, 256, KvDtype::Bf16),
        );
        assert!(many / one > 10.0 && many / one < 32.0, "{one} {many}");
        // Per tile, a short prompt's few blocks pay the tile's fixed time: 128-token prompts run at a lower
        // FLOP rate than one long prompt of the same total tokens.
        let short = prefill_s(&gpu, &coefficients, 64, 128, KvDtype::Bf16);
        let flops = |batch: f64, tokens: f64| batch * 4.0 * 32.0 * 128.0 * tokens * (tokens + 1.0) / 2.0;
        let long = prefill_s(&gpu, &coefficients, 1, 8192, KvDtype::Bf16);
        assert!(flops(64.0, 128.0) / short < 0.5 * flops(1.0, 8192.0) / long, "{short} {long}");
        // FP8 attention runs faster by `attn_fp8_speedup` on long prompts.
        let fp8 = prefill_s(&gpu, &coefficients, 1, 16384, KvDtype::Fp8);
        let bf16 = prefill_s(&gpu, &coefficients, 1, 16384, KvDtype::Bf16);
        assert!((bf16 / fp8 - coefficients.attn_fp8_speedup).abs() < 0.05, "{bf16} {fp8}");
    }

    #[test]
    fn prefill_tiles_pack_query_heads_and_count_causal_blocks() {
        // One KV head with 4 query heads, 128 tokens: 512 rows in 4 tiles of 32 tokens, all in key block 0.
        let tiles = prefill_tiles(0, 128, 4, None);
        assert_eq!(
            (tiles.tiles, tiles.rows, tiles.blocks, tiles.longest_blocks),
            (4.0, 512.0, 4.0, 1.0)
        );
        // No packing, 1024 tokens: tile i reads i + 1 blocks, 36 in all.
        assert_eq!(prefill_tiles(0, 1024, 1, None).blocks, 36.0);
        // A cached prefix adds its blocks to every tile.
        assert_eq!(prefill_tiles(256, 256, 1, None).blocks, 2.0 * 2.0 + 3.0);
        // A 128-token window caps each tile at the blocks its span touches.
        assert!(prefill_tiles(0, 8192, 1, Some(128)).longest_blocks <= 2.0);
        // The closed form for many tiles stays within 2% of the exact sum.
        let exact: f64 = (0..1024u64).map(|i| (i + 1) as f64).sum();
        let closed = prefill_tiles(0, 1024 * 128, 1, None).blocks;
        assert!((closed / exact - 1.0).abs() < 0.02, "{closed} {exact}");
    }

    #[test]
    fn mla_latent_prefill_runs_64_row_tiles_of_packed_heads() {
        // 128 heads over 64-row tiles: each token fills two tiles; 128 tokens read 2 key blocks of 64 at most.
        let tiles = prefill_tiles_of(0, 128, 128, None, MLA_PREFILL_BLOCK, MLA_PREFILL_BLOCK);
        assert_eq!((tiles.tiles, tiles.rows, tiles.longest_blocks), (256.0, 16384.0, 2.0));
        // 256 tiles: summed in closed form, within a block of the exact 128 x 1 + 128 x 2.
        assert!((tiles.blocks - (128.0 * 1.0 + 128.0 * 2.0)).abs() <= 1.0, "{tiles:?}");
        // The latent path pays its wider rows: a one-token prefill of 64 heads costs more per row than FA3's MHA.
        let gpu = h100();
        let coefficients = Coefficients::defaults();
        let requests = [ExtendRequest {
            new_tokens: 1,
            cached_tokens: 0,
        }];
        let cost = |kernel, qk_dim, v_dim| {
            cost_op(
                &Op {
                    name: "a",
                    kind: OpKind::AttentionPrefill {
                        kernel,
                        requests: &requests,
                        heads: 64,
                        kv_heads: 1,
                        qk_dim,
                        v_dim,
                        window_tokens: None,
                        kv_bytes_per_token: 0.0,
                        kv_dtype: KvDtype::Bf16,
                    },
                    repeat: 1,
                },
                &gpu,
                &coefficients,
            )
            .compute_s
        };
        let (latent, mha) = (cost(AttentionKernel::MlaLatent, 576, 512), cost(AttentionKernel::Mha, 128, 128));
        let extra_rows_s = 64.0 * coefficients.attn_prefill_row_ns * 1e-9 * (1088.0 / 256.0 - 1.0) / coefficients.sustained_clock_ratio;
        assert!(latent - mha > 0.9 * extra_rows_s, "{latent} {mha}");
    }

    #[test]
    fn closed_form_tiles_stay_close_to_the_exact_sum() {
        // Above PREFILL_EXACT_TILES the blocks are summed in closed form; check it against the exact sum.
        let exact = |cached: u64, new: u64, group: u64| -> f64 {
            let rows = new * group;
            (0..rows.div_ceil(PREFILL_BLOCK_M))
                .map(|i| (cached + ((i + 1) * PREFILL_BLOCK_M).min(rows).div_ceil(group)).div_ceil(PREFILL_BLOCK_N) as f64)
                .sum()
        };
        for (cached, new, group) in [
            (0, 1200, 8),
            (0, 4000, 8),
            (8192, 8192, 4),
            (0, 10000, 1),
            (300, 2500, 5),
            (0, 700, 16),
        ] {
            let tiles = prefill_tiles(cached, new, group, None);
            assert!(tiles.tiles > PREFILL_EXACT_TILES as f64, "{cached} {new} {group}: {tiles:?}");
            let want = exact(cached, new, group);
            assert!(
                (tiles.blocks / want - 1.0).abs() < 0.03,
                "{cached} {new} {group}: {} vs {want}",
                tiles.blocks
            );
        }
    }
}
