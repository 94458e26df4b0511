//! `sglsim calibrate`: offline fits from genuine AIPerf and Dynamo artifacts, profiles `predict` reads, refusals.

use crate::util::{number, sglsim, sglsim_args, temp_dir};

const AIPERF: &str = "tests/fixtures/aiperf";
const DYNAMO: &str = "tests/fixtures/dynamo/h200_vllm_llama31_8b_fp8_tp1p_tp1d";

#[test]
fn calibrate_from_aiperf_writes_a_profile_that_predict_uses() {
    let dir = temp_dir();
    let profile = dir.path().join("p.json");
    let profile = profile.to_str().unwrap();
    let out = sglsim_args(&[
        "calibrate",
        "--from",
        AIPERF,
        "--gpu",
        "h100",
        "--model",
        "Qwen/Qwen3-8B",
        "--out",
        profile,
        "--no-loo",
        "--max-iters",
        "150",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("11 points from 8 files") && out.stdout.contains("wrote"),
        "{}",
        out.stdout
    );
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap();
    assert_eq!(written["schema_version"], 1);
    assert_eq!(written["provenance"]["gpu"], "h100-sxm");
    assert_eq!(written["provenance"]["model"], "Qwen/Qwen3-8B");
    assert_eq!(written["provenance"]["fit"]["n_points"], 11);
    assert_eq!(written["provenance"]["sources"].as_array().unwrap().len(), 8);

    let predict = "predict --model Qwen/Qwen3-8B --gpu h100 --isl 512 --osl 64 --concurrency 2 --num-requests 8 --json";
    let calibrated = sglsim(&format!("{predict} --profile {profile}"));
    assert_eq!(calibrated.code, 0, "{}", calibrated.stderr);
    let default = sglsim(predict);
    // The fake server behind these artifacts answers with a 30 ms TTFT and 8 ms ITL, above what the
    // default coefficients predict: the fitted profile predicts a slower prefill and decode step.
    let (calibrated, default) = (calibrated.json(), default.json());
    for key in ["prefill_ms", "decode_step_ms"] {
        assert!(
            number(&calibrated, key) > number(&default, key) * 1.05,
            "{key}: {calibrated} vs {default}"
        );
    }
}

#[test]
fn calibrate_from_dynamo_archives_reports_every_point_as_json() {
    let out = sglsim(&format!(
        "calibrate --from {DYNAMO} --gpu h200 --model meta-llama/Llama-3.1-8B-Instruct --dtype fp8 --no-loo --json"
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["fit"]["n_points"], 58);
    assert_eq!(json["fit"]["targets"].as_array().unwrap().len(), 58);
    let before = number(&json, "fit.median_ape_before_pct");
    let after = number(&json, "fit.median_ape_after_pct");
    assert!(after < before, "{after} vs {before}");
    let kinds: Vec<&str> = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dynamo-prefill", "dynamo-decode"]);
    // A dense FP8 model identifies FP8 GEMMs, not BF16 or MoE ones.
    let status = |name: &str| {
        json["fit"]["fitted"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
    };
    // Identified: moved, or held where the default already fits (prefill under piecewise CUDA graphs).
    assert!(
        matches!(status("gemm_fp8_eff").as_deref(), Some("moved" | "held")),
        "{:?}",
        status("gemm_fp8_eff")
    );
    assert_eq!(status("moe_mem_eff").as_deref(), Some("not_identified"));
}

#[test]
fn calibrate_refuses_too_few_points_and_writes_nothing() {
    let dir = temp_dir();
    let profile = dir.path().join("p.json");
    let out = sglsim_args(&[
        "calibrate",
        "--from",
        "tests/fixtures/aiperf/run1_dynamo_style_c2_n8",
        "tests/fixtures/dynamo/pre_swept_h200_llama31_8b_fp8",
        "--gpu",
        "h100",
        "--model",
        "Qwen/Qwen3-8B",
        "--out",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("refusing to fit: 1 usable measured points, at least 3 needed"),
        "{}",
        out.stderr
    );
    assert!(!profile.exists());
    // The compressed pre-swept archives are named, with the way out, in a dry run.
    let dry = sglsim("calibrate --from tests/fixtures/dynamo/pre_swept_h200_llama31_8b_fp8 --gpu h100 --dry-run");
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("np.savez_compressed"), "{}", dry.stdout);
}

#[test]
fn calibrate_needs_a_model_and_existing_sources() {
    let out = sglsim(&format!("calibrate --from {AIPERF} --gpu h100"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--model is needed") && out.stderr.contains("mock-model"),
        "{}",
        out.stderr
    );
    let missing = sglsim("calibrate --from no/such/folder --gpu h100 --model Qwen/Qwen3-8B");
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no/such/folder: no such file or folder"),
        "{}",
        missing.stderr
    );
}

#[test]
fn live_calibration_plans_within_the_budget_on_a_dry_run() {
    let out = sglsim("calibrate --url http://127.0.0.1:9 --gpu h100 --model Qwen/Qwen3-8B --budget 3m --dry-run --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json();
    assert!(number(&plan, "estimated_s") <= 180.0);
    let phases: Vec<&str> = plan["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in ["prefill", "decode", "mixed"] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    let table = sglsim("calibrate --url http://127.0.0.1:9 --gpu h100 --model Qwen/Qwen3-8B --budget 3m --dry-run");
    assert!(table.stdout.contains("calibration plan for Qwen/Qwen3-8B"), "{}", table.stdout);
    let tiny = sglsim("calibrate --url http://127.0.0.1:9 --gpu h100 --model Qwen/Qwen3-8B --budget 2s --dry-run");
    assert_eq!(tiny.code, 2);
    assert!(tiny.stderr.contains("a fit needs at least 3"), "{}", tiny.stderr);
}

/// Issue 13: a failed `--from` fit says why each file was skipped (not only with `--dry-run`).
#[test]
fn calibrate_from_says_why_files_were_skipped_when_it_cannot_fit() {
    let dir = temp_dir();
    let unknown = dir.path().join("notes.json");
    std::fs::write(&unknown, "{\"a\": 1}\n").unwrap();
    let out = sglsim_args(&[
        "calibrate",
        "--from",
        unknown.to_str().unwrap(),
        "--gpu",
        "h100",
        "--model",
        "Qwen/Qwen3-8B",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to fit: 0 usable measured points"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("warning: {}:", unknown.display())), "{}", out.stderr);
}

/// Issue 13: an `--out` that cannot be written is found before the fit, and nothing is left behind.
#[test]
fn an_unwritable_out_is_refused_before_the_fit() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-folder").join("p.json");
    let out = sglsim_args(&[
        "calibrate",
        "--from",
        DYNAMO,
        "--gpu",
        "h200",
        "--model",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--out",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    // Refused up front: no fit was run (no report on stdout).
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let folder = sglsim_args(&[
        "calibrate",
        "--from",
        DYNAMO,
        "--gpu",
        "h200",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(folder.code, 2);
    assert!(
        folder.stderr.contains("is a folder: give the profile's file path"),
        "{}",
        folder.stderr
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
}
