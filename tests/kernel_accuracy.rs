//! The cost model against measured kernel tables bundled in `data/measured/` (AIConfigurator 0.12.0's
//! SGLang and nccl-tests tables): per-family median error stays under the 10% target.

use std::path::Path;

use sglsim::calibrate::kernels::{family_errors, parse_kernels};
use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuCatalog;

/// Median absolute % error per family of one AIC table file on `gpu`.
fn errors(gpu: &str, file: &str) -> Vec<(String, f64)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/measured/aic").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let samples = parse_kernels(&text, &path.display().to_string()).unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find(gpu).unwrap().clone();
    family_errors(&samples, &gpu, &Coefficients::defaults())
        .into_iter()
        .map(|e| (e.family, e.median_ape))
        .collect()
}

/// On H200 and H100, the tables yield exactly the families in `bounds`, each with its median error below
/// its bound (%).
fn assert_tables_within(tables: &[&str], bounds: &[(&str, f64)]) {
    for gpu in ["h200", "h100"] {
        let all: Vec<(String, f64)> = tables
            .iter()
            .flat_map(|table| errors(gpu, &format!("{gpu}_sxm_{table}.csv")))
            .collect();
        assert_eq!(all.len(), bounds.len(), "{all:?}");
        for (family, median) in all {
            let bound = bounds.iter().find(|(f, _)| *f == family).map(|(_, b)| *b);
            let bound = bound.unwrap_or_else(|| panic!("{gpu}: unexpected family {family}"));
            assert!(median < bound, "{gpu} {family}: median {median:.1}%");
        }
    }
}

#[test]
fn fused_moe_tables_stay_within_ten_percent() {
    // gpt-oss's weight-only MXFP4 path is a little above the target on H200 (11.4%; README
    // `sglsim kernels` says why); the bound keeps it from regressing.
    assert_tables_within(&["moe"], &[("moe_bf16", 10.0), ("moe_fp8", 10.0), ("moe_mxfp4", 13.0)]);
}

#[test]
fn nccl_tests_tables_stay_within_ten_percent() {
    assert_tables_within(
        &["nccl"],
        &[("nccl_all_reduce", 10.0), ("nccl_all_gather", 10.0), ("nccl_alltoall", 10.0)],
    );
}

#[test]
fn sglang_custom_all_reduce_tables_stay_within_ten_percent() {
    assert_tables_within(
        &["custom_allreduce"],
        &[("custom_allreduce", 10.0), ("custom_allreduce_eager", 10.0)],
    );
}

#[test]
fn sglang_gemm_and_fa3_attention_tables_stay_within_their_bounds() {
    // 10% is the target; the FA3 attention families are above it (README `sglsim kernels` says why), so their
    // bounds sit a little above today's error. DeepGEMM's block-FP8 GEMM is at 8.4% (H200) and 7.9% (H100).
    assert_tables_within(
        &["gemm", "context_attention", "generation_attention"],
        &[
            ("aic_gemm_bf16", 10.0),
            ("aic_gemm_fp8", 10.0),
            ("aic_gemm_fp8_block", 9.0),
            ("aic_attn_prefill", 21.0),
            ("aic_attn_decode", 16.0),
        ],
    );
}
