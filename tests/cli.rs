//! The command line: contracts of `predict`, `gpus`, `models`, and clear errors for bad input.

use crate::util::{number, sglsim, sglsim_args, temp_dir};

#[test]
fn predict_json_has_the_contract_keys() {
    let out = sglsim("predict --model Llama-3.1-8B-Instruct --gpu h100 --isl 1024 --osl 128 --batch 8 --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["fits"], true);
    for key in [
        "weights_gb_per_gpu",
        "kv_capacity_tokens",
        "max_running_requests",
        "prefill_ms",
        "decode_step_ms",
    ] {
        assert!(json[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {}", json[key]);
    }
    for metric in ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"] {
        for stat in ["mean", "p50", "p90", "p99"] {
            assert!(json[metric][stat].as_f64().is_some_and(|v| v > 0.0), "{metric}.{stat}");
        }
    }
    for key in [
        "output_tok_s",
        "input_tok_s",
        "output_tok_s_per_gpu",
        "total_tok_s_per_gpu",
        "request_s",
    ] {
        assert!(json["throughput"][key].as_f64().is_some_and(|v| v > 0.0), "throughput.{key}");
    }
    // Static batch of 8 on one GPU: E2E = TTFT + 127 decode steps, output throughput = 8 × 128 / E2E.
    let e2e_s = number(&json, "e2e_ms.p50") / 1e3;
    let expected = 8.0 * 128.0 / number(&json, "e2e_ms.mean") * 1e3;
    assert!((number(&json, "throughput.output_tok_s") / expected - 1.0).abs() < 0.01);
    assert!(e2e_s > 0.1 && e2e_s < 5.0, "{e2e_s}");
}

#[test]
fn predict_prints_a_table_without_json() {
    let out = sglsim("predict --model qwen3-8b --gpu H100_SXM --isl 512 --osl 64");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("TTFT ms") && out.stdout.contains("output tok/s"),
        "{}",
        out.stdout
    );
}

#[test]
fn served_workload_with_sla_reports_goodput_and_timeline() {
    let dir = temp_dir();
    let timeline = dir.path().join("timeline.csv");
    let out = sglsim_args(&[
        "predict",
        "--model",
        "Qwen3-8B",
        "--gpu",
        "h100",
        "--isl",
        "2000",
        "--osl",
        "200",
        "--concurrency",
        "16",
        "--num-requests",
        "64",
        "--range-ratio",
        "0.5",
        "--ttft",
        "500",
        "--itl",
        "30",
        "--json",
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["n_requests"], 64);
    let fraction = number(&json, "goodput.fraction_meeting_sla");
    assert!((0.0..=1.0).contains(&fraction));
    let csv = std::fs::read_to_string(&timeline).unwrap();
    assert!(csv.starts_with("engine,start_ms,duration_ms,kind,batch_size,tokens,kv_used_tokens"));
    assert!(csv.lines().count() > 100, "{} iterations", csv.lines().count());
}

#[test]
fn same_seed_same_answer_other_seed_other_answer() {
    let args = "predict --model Qwen3-8B --gpu h100 --isl 1000 --osl 100 --request-rate 20 --num-requests 200 --range-ratio 0.2 --json";
    let first = sglsim(&format!("{args} --seed 1")).stdout;
    assert_eq!(first, sglsim(&format!("{args} --seed 1")).stdout);
    assert_ne!(first, sglsim(&format!("{args} --seed 2")).stdout);
}

#[test]
fn disaggregated_mode_runs_both_roles() {
    let out = sglsim("predict --model Llama-3.1-70B-Instruct --gpu h200 --mode disagg --prefill-tp 4 --decode-tp 4 --isl 4000 --osl 300 --concurrency 32 --num-requests 96 --json");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["mode"], "disagg");
    assert_eq!(json["n_gpus"], 8);
    let launches: Vec<&str> = json["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["launch"].as_str().unwrap())
        .collect();
    assert!(launches.iter().any(|l| l.contains("--disaggregation-mode prefill")));
    assert!(launches.iter().any(|l| l.contains("--disaggregation-mode decode")));
    // TTFT includes prefill, transfer and the first decode step: above the bare prefill time.
    assert!(number(&json, "ttft_ms.p50") > number(&json, "prefill_ms"));
}

#[test]
fn trace_files_drive_arrivals() {
    let dir = temp_dir();
    let csv = dir.path().join("trace.csv");
    std::fs::write(
        &csv,
        "arrival_s,isl,osl,prefix_group,prefix_tokens\n0.0,1000,50,1,800\n0.5,1200,60,1,800\n1.0,900,40,,\n",
    )
    .unwrap();
    let out = sglsim_args(&[
        "predict",
        "--model",
        "Qwen3-8B",
        "--gpu",
        "h100",
        "--trace",
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["n_requests"], 3);
    let jsonl = dir.path().join("trace.jsonl");
    std::fs::write(&jsonl, "{\"timestamp\": 0, \"input_length\": 500, \"output_length\": 20}\n{\"timestamp\": 250, \"input_length\": 700, \"output_length\": 30}\n").unwrap();
    let out = sglsim_args(&[
        "predict",
        "--model",
        "Qwen3-8B",
        "--gpu",
        "h100",
        "--trace",
        jsonl.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["n_requests"], 2);
    std::fs::write(&csv, "arrival_s,isl,osl\n0.0,abc,50\n").unwrap();
    let out = sglsim_args(&["predict", "--model", "Qwen3-8B", "--gpu", "h100", "--trace", csv.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("row 1") && out.stderr.contains("isl = 'abc'"), "{}", out.stderr);
}

#[test]
fn gpus_and_models_list_the_catalogs() {
    let gpus = sglsim("gpus");
    assert_eq!(gpus.code, 0);
    for name in ["a100-40g", "h100-sxm", "h200", "b200", "gb200", "l40s", "rtx-pro-6000"] {
        assert!(gpus.stdout.contains(name), "{name} missing from\n{}", gpus.stdout);
    }
    let models = sglsim("models --json").json();
    let ids: Vec<&str> = models.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"deepseek-ai/DeepSeek-R1") && ids.contains(&"openai/gpt-oss-120b"),
        "{ids:?}"
    );
}

#[test]
fn large_scale_ep_flags_reach_the_launch_command() {
    // SGLang's DeepSeek-V3 decode deployment on 72 H100s (lmsys.org 2025-05-05), as flags.
    let out = sglsim(
        "predict --model deepseek-ai/DeepSeek-V3 --gpu h100 --tp 72 --dp 72 --ep 72 --ep-num-redundant-experts 32 \
         --moe-a2a-backend deepep --moe-dense-tp-size 1 --enable-dp-lm-head --enable-two-batch-overlap \
         --mem-fraction-static 0.8 --cuda-graph-max-bs 256 --isl 2000 --osl 4 --batch 72 --json",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let launch = json["engines"][0]["launch"].as_str().unwrap();
    for flag in [
        "--ep 72 --ep-num-redundant-experts 32",
        "--moe-a2a-backend deepep",
        "--moe-dense-tp-size 1",
        "--enable-dp-lm-head",
        "--enable-two-batch-overlap",
    ] {
        assert!(launch.contains(flag), "{flag} not in {launch}");
    }
    assert_eq!(json["engines"][0]["mapping"], "tp72-dp72-ep72+r32");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_2() {
    let cases: &[(&str, &[&str])] = &[
        (
            "predict --model Llama-3.1-8B-Instruct --gpu h100-sx --isl 10 --osl 10",
            &["unknown GPU 'h100-sx'", "h100-sxm"],
        ),
        (
            "predict --model Llama-3.1-8C --gpu h100 --isl 10 --osl 10",
            &["unknown model", "Llama-3.1-8B"],
        ),
        (
            "predict --model Qwen3-14B --gpu h100 --tp 16 --isl 10 --osl 10",
            &["invalid mapping tp16", "num_attention_heads 40"],
        ),
        (
            "predict --model Qwen3-8B --gpu h100 --ep 2 --tp 2 --isl 10 --osl 10",
            &["needs an MoE model"],
        ),
        (
            "predict --model Qwen3-8B --gpu h100 --isl 10 --osl 10 --dtype int3",
            &["--dtype", "int3"],
        ),
        (
            "predict --model Qwen3-8B --gpu h100 --isl 10 --osl 10 --request-rate -3",
            &["--request-rate"],
        ),
        ("predict --model Qwen3-8B --gpu h100 --osl 10", &["--isl and --osl are required"]),
        (
            "predict --model Qwen3-8B --gpu h100 --isl 10 --osl 10 --mem-fraction-static 1.5",
            &["--mem-fraction-static", "1.5"],
        ),
        (
            "predict --model deepseek-ai/DeepSeek-V3 --gpu h100 --tp 72 --dp 72 --ep 72 --isl 10 --osl 10",
            &["256 routed experts", "--ep-num-redundant-experts 32"],
        ),
        (
            "predict --model deepseek-ai/DeepSeek-V3 --gpu h100 --tp 16 --dp 16 --ep 16 --moe-dense-tp-size 2 --isl 10 --osl 10",
            &["--moe-dense-tp-size 2", "only 1"],
        ),
        (
            "predict --model Qwen3-8B --gpu h100 --ep-num-redundant-experts 8 --isl 10 --osl 10",
            &["--ep-num-redundant-experts 8", "MoE model"],
        ),
        (
            "predict --model Qwen3-8B --gpu h100 --enable-two-batch-overlap --isl 10 --osl 10",
            &["--enable-two-batch-overlap", "--moe-a2a-backend deepep"],
        ),
        (
            "predict --model deepseek-ai/DeepSeek-V3 --gpu h200 --tp 8 --enable-dp-lm-head --isl 10 --osl 10",
            &["--enable-dp-lm-head", "--dp > 1"],
        ),
    ];
    for (args, needles) in cases {
        let out = sglsim(args);
        assert_eq!(out.code, 2, "{args}: {}", out.stderr);
        for needle in *needles {
            assert!(out.stderr.contains(needle), "{args}: '{needle}' not in {}", out.stderr);
        }
    }
}

#[test]
fn configuration_that_does_not_fit_says_how_much() {
    let out = sglsim("predict --model Llama-3.1-405B-Instruct --gpu h100 --tp 2 --isl 10 --osl 10 --json");
    assert_eq!(out.code, 2);
    let json = out.json();
    assert_eq!(json["fits"], false);
    assert!(json["reason"].as_str().unwrap().contains("GB"), "{json}");
    let out = sglsim("predict --model Llama-3.1-405B-Instruct --gpu h100 --tp 2 --isl 10 --osl 10");
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("does not fit") && out.stdout.contains("GB"), "{}", out.stdout);
}

#[test]
fn config_json_paths_load_and_malformed_fields_are_named() {
    let dir = temp_dir();
    let good = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,
        "num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"tie_word_embeddings":true}"#;
    std::fs::write(dir.path().join("config.json"), good).unwrap();
    let out = sglsim_args(&[
        "predict",
        "--model",
        dir.path().to_str().unwrap(),
        "--gpu",
        "l40s",
        "--isl",
        "100",
        "--osl",
        "10",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, good.replace("\"num_hidden_layers\":16", "\"num_hidden_layers\":\"sixteen\"")).unwrap();
    let out = sglsim_args(&[
        "predict",
        "--model",
        bad.to_str().unwrap(),
        "--gpu",
        "l40s",
        "--isl",
        "100",
        "--osl",
        "10",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("num_hidden_layers") && out.stderr.contains("bad.json"),
        "{}",
        out.stderr
    );
}
