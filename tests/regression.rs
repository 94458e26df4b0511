//! Regression tests named after their issue, against published SGLang measurements
//! (`../shared/ground-truth/sglang_published_dev.csv`; each number's source is named beside it).
//! Tolerances are stated per test and sit a little above today's error, so that a regression fails.

use crate::util::{number, sglsim};

fn ape(predicted: f64, measured: f64) -> f64 {
    (predicted / measured - 1.0).abs()
}

#[test]
fn issue2_kv_capacity_deepseek_r1_tp8_h200() {
    // SkyPilot llm-ie-benchmarks, SGLang 0.4.5.post3 server log: `#tokens: 654280` at mem_fraction_static 0.907.
    let json =
        sglsim("predict --model deepseek-ai/DeepSeek-R1 --gpu h200 --tp 8 --mem-fraction-static 0.907 --isl 100 --osl 10 --json").json();
    let tokens = number(&json, "kv_capacity_tokens");
    assert!(ape(tokens, 654_280.0) < 0.05, "{tokens} tokens");
}

#[test]
fn issue2_batch_one_decode_published_points() {
    // Llama: tolerance 15% (today about +5%). gpt-oss: tolerance 35% (today about +31%: mxfp4 MoE on
    // Hopper runs through Triton kernels with more launches per layer than the model counts).
    // SGLang benchmark/benchmark_vllm_060 README (v0.3.0): Llama-3.1-8B bf16, 1×H100, 158.34 tok/s at batch 1.
    let json = sglsim("predict --model meta-llama/Llama-3.1-8B-Instruct --gpu h100 --isl 1024 --osl 512 --json").json();
    let tok_s = 1e3 / number(&json, "tpot_ms.mean");
    assert!(ape(tok_s, 158.34) < 0.15, "llama-3.1-8b: {tok_s} tok/s");
    // SGLang benchmark/gpt_oss README (0.5.1.post3): gpt-oss-120b mxfp4 on 8×H100 TP8, 318.53 tok/s at batch 1.
    let json = sglsim("predict --model openai/gpt-oss-120b --gpu h100 --tp 8 --isl 1024 --osl 512 --json").json();
    let tok_s = 1e3 / number(&json, "tpot_ms.mean");
    assert!(ape(tok_s, 318.53) < 0.35, "gpt-oss-120b: {tok_s} tok/s");
}

#[test]
fn issue2_deepseek_r1_decode_step_vs_context() {
    // SkyPilot llm-ie-benchmarks server log (SGLang 0.4.5.post3, 8×H200 TP8, batch 50): decode step
    // 33.8 ms at 1.1k tokens per request and 44.7 ms at 10.1k. Tolerance 15%.
    for (context, measured_ms) in [(1100u64, 33.8), (10_100, 44.7)] {
        let json = sglsim(&format!(
            "predict --model deepseek-ai/DeepSeek-R1 --gpu h200 --tp 8 --mem-fraction-static 0.907 --isl {} --osl 2 --batch 50 --json",
            context - 1
        ))
        .json();
        let step_ms = number(&json, "decode_step_ms");
        assert!(
            ape(step_ms, measured_ms) < 0.15,
            "context {context}: {step_ms} ms vs {measured_ms} ms"
        );
    }
}

#[test]
fn issue6_dev_set_error_does_not_regress() {
    // `sglsim validate` on the published dev set (tests/fixtures/sglang_published_dev.csv, 282 rows;
    // 236 modelled). Bounds sit about 3 points above today's median absolute % errors, per metric family
    // (TTFT of open loops offered more prompt tokens than the engine can prefill is `ttft_overload`).
    let out = sglsim("validate --data tests/fixtures/sglang_published_dev.csv --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let groups = json["groups"].as_array().unwrap();
    let median = |family: &str| {
        groups
            .iter()
            .find(|g| g["group"] == "all" && g["metric"] == family)
            .map(|g| number(g, "median_ape"))
            .unwrap_or_else(|| panic!("no {family} group"))
    };
    for (family, bound) in [
        ("ttft", 19.0),
        ("ttft_overload", 18.0),
        ("itl", 20.0),
        ("tpot", 17.0),
        ("throughput", 10.5),
    ] {
        let error = median(family);
        assert!(error < bound, "{family}: median APE {error:.1}% (bound {bound}%)");
    }
    assert!(json["rows"].as_array().unwrap().len() >= 230, "fewer rows modelled than today");
}

#[test]
fn large_scale_ep_rows_of_the_dev_set_stay_close() {
    // Prefill-only and decode-only capacity of SGLang's large-scale EP deployments (DeepSeek-V3 on
    // 32/72 H100s, GB200 prefill instances, Kimi-K2 on H200), priced as one forward each: 8 rows
    // today within 1-26%; the test takes the upper median, 9.3%.
    let out = sglsim("validate --data tests/fixtures/sglang_published_dev.csv --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let mut errors: Vec<f64> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let metric = r["metric"].as_str().unwrap();
            metric.starts_with("prefill_input_throughput_") || metric.starts_with("decode_output_throughput_")
        })
        .map(|r| number(r, "ape"))
        .collect();
    assert!(errors.len() >= 8, "{} large-scale EP rows modelled", errors.len());
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    assert!(median < 12.0, "median {median:.1}% of {errors:?}");
    assert!(errors.iter().all(|e| *e < 35.0), "{errors:?}");
}

#[test]
fn issue12_added_dev_set_error_does_not_regress() {
    // `sglsim validate` on tests/fixtures/sglang_dev_added.csv (issue 12). 185 aggregated rows: 28
    // closed-loop bench_serving runs from the SGLang cookbook (sgl-project/sgl-cookbook @7b5bd9c,
    // SGLang 0.5.6: DeepSeek-R1, Qwen3-235B-A22B, gpt-oss-120b and Kimi-K2 on 8xB200, Llama-3.1-70B on
    // 8xA100) and 9 from dstack's DeepSeek-R1 8xH200 runs (SGLang 0.4.3.post2, DP attention); plus 72
    // disaggregated gpt-oss-120b rows (dstack's xPyD sweep on 8xH200) that validate may not model yet.
    // Every aggregated row must stay modelled; per metric family the median absolute % error over the
    // aggregated rows must stay under a bound about 3 points above today's (ttft 38.6%, tpot 17.9%,
    // itl 25.8%, throughput 29.4%; closed loops measured in steady state, after one staggered warm-up
    // wave, where the published means also count the synchronised first wave).
    let out = sglsim("validate --data tests/fixtures/sglang_dev_added.csv --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let rows = json["rows"].as_array().unwrap();
    let unmodelled = json["unmodelled"].as_array().unwrap();
    assert_eq!(rows.len() + unmodelled.len(), 257, "rows in the file");
    assert!(
        unmodelled.iter().all(|u| u["reason"].as_str().unwrap().contains("disaggregated")),
        "an aggregated row is not modelled: {unmodelled:?}"
    );
    let aggregated: Vec<&serde_json::Value> = rows.iter().filter(|r| r["mode"] == "agg").collect();
    assert_eq!(aggregated.len(), 185, "aggregated rows compared");
    for (family, expected_rows, bound) in [("ttft", 74, 41.5), ("tpot", 37, 21.0), ("itl", 37, 29.0), ("throughput", 37, 32.5)] {
        let mut errors: Vec<f64> = aggregated
            .iter()
            .filter(|r| r["family"] == family)
            .map(|r| number(r, "ape"))
            .collect();
        assert_eq!(errors.len(), expected_rows, "{family} rows");
        errors.sort_by(f64::total_cmp);
        let middle = errors.len() / 2;
        let median = if errors.len().is_multiple_of(2) {
            (errors[middle - 1] + errors[middle]) / 2.0
        } else {
            errors[middle]
        };
        assert!(median < bound, "{family}: median APE {median:.1}% (bound {bound}%)");
    }
}

#[test]
fn issue12_short_prompts_prefill_in_proportion_with_the_default_release() {
    // Issue 12: Qwen3-32B-FP8 TP2 on H200, a 100-token prefill at most 30 ms and at most 0.6x the
    // 1000-token one (AIConfigurator's per-op tables: 11.6 and 40.6 ms). With SGLang's eager prefill
    // (before 0.5.8) both cost the launch floor, about 50 ms.
    let prefill_ms = |isl: u32| {
        let out = sglsim(&format!(
            "predict --model Qwen/Qwen3-32B-FP8 --gpu h200 --tp 2 --isl {isl} --osl 2 --json"
        ));
        assert_eq!(out.code, 0, "{}", out.stderr);
        number(&out.json(), "prefill_ms")
    };
    let (short, long) = (prefill_ms(100), prefill_ms(1000));
    assert!(short <= 30.0 && short <= 0.6 * long, "100 tokens {short} ms, 1000 tokens {long} ms");
}
