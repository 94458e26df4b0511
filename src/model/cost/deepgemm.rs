//! DeepGEMM's block-FP8 GEMM on Hopper: its SM90 tile choice and the per-SM K loop that bounds few-tile
//! shapes.

use std::cell::RefCell;

use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;

/// Block sizes and waves DeepGEMM picks for a block-FP8 GEMM of `m` rows and `n` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeepGemmTile {
    /// `BLOCK_M`: output rows per tile.
    pub block_m: u64,
    /// `BLOCK_N`: output columns per tile.
    pub block_n: u64,
    /// Waves of tiles over the SMs (DeepGEMM runs one persistent CTA per SM).
    pub waves: u64,
}

/// DeepGEMM's SM90 tile choice for a normal (non-grouped) FP8 GEMM with 128x128 block scales and BF16 output
/// (github deepseek-ai/DeepGEMM, csrc/jit_kernels/heuristics/common.hpp `get_best_config` and sm90.hpp
/// `SM90ArchSpec`, release of 2026-01-16): `BLOCK_M` from 64, 128, 256 (16 and 32 too when `m` is that
/// small), `BLOCK_N` from 16 to 256 in steps of 16, where the 1D2D kernel takes above 128 only 144, 160 and
/// 192 and one of the two must be at most 128; the fewest waves win, then the fullest last wave, then the
/// smaller block in the dimension that wastes, then the wider `BLOCK_N`.
/// Memoised per thread in a direct-mapped cache: serving prices the same few GEMM shapes at every step.
pub fn deepgemm_tile(m: u64, n: u64, sms: u64) -> DeepGemmTile {
    const SLOT_BITS: u32 = 12;
    type Slot = Option<((u64, u64, u64), DeepGemmTile)>;
    thread_local! {
        static CHOSEN: RefCell<Vec<Slot>> = RefCell::new(vec![None; 1 << SLOT_BITS]);
    }
    let key = (m, n, sms);
    // Fibonacci hashing of the three values into the table's top bits.
    let slot = ((m ^ n.rotate_left(21) ^ sms.rotate_left(42)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize;
    CHOSEN.with(|chosen| {
        let mut chosen = chosen.borrow_mut();
        if let Some((cached, tile)) = chosen[slot] {
            if cached == key {
                return tile;
            }
        }
        let tile = choose_tile(m, n, sms);
        chosen[slot] = Some((key, tile));
        tile
    })
}

fn choose_tile(m: u64, n: u64, sms: u64) -> DeepGemmTile {
    let block_ms: &[u64] = if m <= 16 {
        &[64, 128, 256, 16, 32]
    } else if m <= 32 {
        &[64, 128, 256, 32]
    } else {
        &[64, 128, 256]
    };
    let sms = sms.max(1);
    // (block_m, block_n, waves, last-wave blocks)
    let mut best: Option<(u64, u64, u64, u64)> = None;
    for &block_m in block_ms {
        for block_n in (16..=256u64).step_by(16) {
            // Above 128 columns only 144, 160 and 192 (register spills otherwise), and then at most 128 rows.
            let legal = block_n <= 128 || (matches!(block_n, 144 | 160 | 192) && block_m <= 128);
            if !legal {
                continue;
            }
            let blocks = m.div_ceil(block_m) * n.div_ceil(block_n);
            let waves = blocks.div_ceil(sms);
            let last = match blocks % sms {
                0 => sms,
                r => r,
            };
            let better = match best {
                None => true,
                Some((bm, bn, w, l)) => {
                    waves < w
                        || (waves == w
                            && (last > l
                                || (last == l
                                    && ((block_m == bm && block_n < bn)
                                        || (block_n == bn && block_m < bm)
                                        || (block_m != bm && block_n > bn && block_n <= n && block_m <= m)))))
                }
            };
            if better {
                best = Some((block_m, block_n, waves, last));
            }
        }
    }
    let (block_m, block_n, waves, _) = best.unwrap_or((128, 128, 1, sms));
    DeepGemmTile { block_m, block_n, waves }
}

/// Time of DeepGEMM's K loop, seconds: each SM runs its tiles one after another, and each tile walks K in
/// 128-deep blocks (the block-scale granularity). Per block the CTA's TMA loads bring its A and B tiles
/// (`(BLOCK_M + BLOCK_N) x 128` FP8 bytes) from L2 at the SM's share of L2 bandwidth, and its math warps
/// wait on the block's WGMMAs and promote the FP32 partial sums with the block scales on CUDA cores before
/// the next block's partials can start; the pipeline overlaps the two, so a block costs the longer. Both are
/// SM-clock bound. With few tiles (decode-sized m, small n) few SMs work and this bounds the GEMM above its
/// HBM stream; large GEMMs stay bound by their math.
pub fn deepgemm_kloop_s(gpu: &GpuSpec, coefficients: &Coefficients, m: u64, n: u64, k: u64) -> f64 {
    let tile = deepgemm_tile(m, n, u64::from(gpu.sm_count));
    let load_s = ((tile.block_m + tile.block_n) * 128) as f64 / (coefficients.deepgemm_sm_load_gb_per_s * 1e9);
    let block_s = (coefficients.deepgemm_kblock_us * 1e-6).max(load_s);
    tile.waves as f64 * k.div_ceil(128) as f64 * block_s / coefficients.sustained_clock_ratio
}

#[cfg(test)]
mod tests {
    use super::super::cost_op;
    use super::*;
    use crate::model::gpu::GpuCatalog;
    use crate::model::ops::{Op, OpKind};
    use crate::model::quant::WeightDtype;

    fn h100() -> GpuSpec {
        GpuCatalog::builtin().unwrap().find("h100-sxm").unwrap().clone()
    }

    #[test]
    fn deepgemm_tile_follows_its_sm90_heuristic() {
        let tile = |m, n| {
            let t = deepgemm_tile(m, n, 132);
            (t.block_m, t.block_n, t.waves)
        };
        // Decode: 16-row blocks and the narrowest columns, 64 tiles for n = 1024 (one wave, half the SMs).
        assert_eq!(tile(1, 1024), (16, 16, 1));
        assert_eq!(tile(1, 4096), (16, 32, 1));
        assert_eq!(tile(1, 16384), (16, 128, 1));
        // 256-row blocks when they save a wave; the wider 192-column block for an odd width.
        assert_eq!(tile(4096, 1024), (256, 128, 1));
        assert_eq!(tile(2048, 1536), (128, 192, 1));
        assert_eq!(tile(16384, 16384).2, 63);
    }

    #[test]
    fn deepgemm_k_loop_bounds_few_tile_long_k_gemms() {
        // m = 1, n = 1024, k = 16384 block-FP8: DeepGEMM runs 64 tiles of 16 columns on 64 SMs, each walking
        // 128 K blocks, so the GEMM takes longer than its 16 MiB of weights at HBM speed. Per-tensor FP8 (CUTLASS)
        // of the same shape streams at the HBM rate.
        let gpu = h100();
        let mut coefficients = Coefficients::defaults();
        coefficients.sustained_clock_ratio = 1.0;
        let gemm = |weights, k| {
            cost_op(
                &Op {
                    name: "g",
                    kind: OpKind::Gemm { m: 1, n: 1024, k, weights },
                    repeat: 1,
                },
                &gpu,
                &coefficients,
            )
        };
        let block = gemm(WeightDtype::Fp8Block, 16384);
        let tensor = gemm(WeightDtype::Fp8PerTensor, 16384);
        let k_blocks = 128.0;
        assert!(block.compute_s >= k_blocks * coefficients.deepgemm_kblock_us * 1e-6, "{block:?}");
        assert!(block.compute_s > 1.5 * tensor.memory_s, "{block:?} {tensor:?}");
        // Ten times the tiles (n = 10240 at 80 columns each) take about as long: the loop is per SM.
        let wide = deepgemm_kloop_s(&gpu, &coefficients, 1, 10240, 16384);
        let narrow = deepgemm_kloop_s(&gpu, &coefficients, 1, 1024, 16384);
        assert!(wide < 2.0 * narrow, "{wide} {narrow}");
        // The quantisation kernel costs its own fixed time on top of the GEMM's floor.
        let floor = (coefficients.kernel_floor_us + coefficients.act_quant_kernel_us) * 1e-6;
        assert!((block.floor_s - floor).abs() < 1e-15 && block.n_kernels == 2.0, "{block:?}");
    }

    #[test]
    fn the_memoised_tile_is_the_chosen_tile() {
        // Enough shapes to collide in the direct-mapped cache, each asked twice.
        for _ in 0..2 {
            for m in (1..4000u64).step_by(37) {
                for n in [512, 1024, 2048, 7168, 18432] {
                    assert_eq!(deepgemm_tile(m, n, 132), choose_tile(m, n, 132), "{m} {n}");
                }
            }
        }
    }
}
