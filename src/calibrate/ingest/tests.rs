use super::*;

const RUN1: &str = include_str!("../../../tests/fixtures/aiperf/run1_dynamo_style_c2_n8/profile_export_aiperf.json");
const RUN4_RUN: &str =
    include_str!("../../../tests/fixtures/aiperf/run4_recipe_prefill_ttft_curve/isl_2048__concurrency_1/profile_export_aiperf.json");
const RUN4_SWEEP: &str =
    include_str!("../../../tests/fixtures/aiperf/run4_recipe_prefill_ttft_curve/sweep_aggregate/profile_export_aiperf_sweep.json");
const PREFILL_NPZ: &[u8] =
    include_bytes!("../../../tests/fixtures/dynamo/h200_vllm_llama31_8b_fp8_tp1p_tp1d/selected_prefill_interpolation/raw_data.npz");
const DECODE_NPZ: &[u8] =
    include_bytes!("../../../tests/fixtures/dynamo/h200_vllm_llama31_8b_fp8_tp1p_tp1d/selected_decode_interpolation/raw_data.npz");
const COMPRESSED_NPZ: &[u8] = include_bytes!("../../../tests/fixtures/dynamo/pre_swept_h200_llama31_8b_fp8/prefill.npz");

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn aiperf_run_gives_workload_and_both_itl_definitions() {
    let (point, model) = parse_aiperf_run(RUN1, "run1").unwrap();
    assert_eq!(model.as_deref(), Some("mock-model"));
    assert_eq!(
        point.workload,
        Workload::Served {
            isl_tokens: 256,
            osl_tokens: 32,
            lengths: Lengths::Fixed,
            load: Load::Concurrency(2),
            n_requests: 8,
            n_warmup: 2,
        }
    );
    let ttft = point.measured.ttft_ms.unwrap();
    assert!(close(ttft.p50.unwrap(), 31.139418) && close(ttft.mean.unwrap(), 31.8499));
    // AIPerf's inter_token_latency is bench_serving's TPOT; its inter_chunk_latency is the ITL.
    assert!(close(point.measured.tpot_ms.unwrap().mean.unwrap(), 7.952845446228378));
    assert!(close(point.measured.itl_ms.unwrap().mean.unwrap(), 8.028575338709677));
    assert!(close(point.measured.output_tok_per_s.unwrap(), 228.27027510741488));
    assert_eq!(point.provenance.kind, SourceKind::AiperfRun);
}

#[test]
fn aiperf_sweep_aggregate_takes_lengths_from_parameters_and_base_run() {
    let (points, model) = parse_aiperf_sweep(RUN4_SWEEP, "sweep", Some(RUN4_RUN)).unwrap();
    assert_eq!(model.as_deref(), Some("mock-model"));
    let isls: Vec<(u64, u64)> = points
        .iter()
        .map(|p| match p.workload {
            Workload::Served {
                isl_tokens,
                osl_tokens,
                load: Load::Concurrency(1),
                ..
            } => (isl_tokens, osl_tokens),
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(isls, [(128, 8), (512, 8), (2048, 8)]);
    assert!(close(points[0].measured.ttft_ms.unwrap().mean.unwrap(), 37.847340333333335));
    // Without a base run the lengths come from the measured means.
    let (alone, _) = parse_aiperf_sweep(RUN4_SWEEP, "sweep", None).unwrap();
    assert!(matches!(
        alone[1].workload,
        Workload::Served {
            isl_tokens: 512,
            osl_tokens: 10,
            ..
        }
    ));
}

#[test]
fn zip_sweep_parameters_are_read_by_their_dotted_names() {
    // A multi-parameter (zip) sweep names its parameters by config path, as `aiperf profile --isl
    // 128,512 --osl 4,64 --concurrency 1,8 --request-count 4,16 --sweep-type zip` writes them.
    let sweep = r#"{"per_combination_metrics": [
        {"parameters": {"datasets.main.prompts.isl.mean": 128, "datasets.main.prompts.osl.mean": 4, "concurrency": 1, "requests": 4},
         "metrics": {"time_to_first_token": {"unit": "ms", "avg": 15.0}}},
        {"parameters": {"datasets.main.prompts.isl.mean": 512, "datasets.main.prompts.osl.mean": 64, "concurrency": 8, "requests": 16},
         "metrics": {"time_to_first_token": {"unit": "ms", "avg": 110.0}}}]}"#;
    let (points, _) = parse_aiperf_sweep(sweep, "sweep", Some(RUN1)).unwrap();
    let workloads: Vec<(u64, u64, Load, u64)> = points
        .iter()
        .map(|p| match p.workload {
            Workload::Served {
                isl_tokens,
                osl_tokens,
                load,
                n_requests,
                ..
            } => (isl_tokens, osl_tokens, load, n_requests),
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(workloads, [(128, 4, Load::Concurrency(1), 4), (512, 64, Load::Concurrency(8), 16)]);
}

#[test]
fn simulated_time_scales_latencies_up_and_rates_down() {
    let metrics = MeasuredMetrics {
        ttft_ms: Some(Summary::mean_only(2.0)),
        output_tok_per_s: Some(1000.0),
        ..MeasuredMetrics::default()
    };
    let scaled = metrics.in_simulated_time(5.0);
    assert_eq!(scaled.ttft_ms.unwrap().mean, Some(10.0));
    assert_eq!(scaled.output_tok_per_s, Some(200.0));
    assert_eq!(scaled.tpot_ms, None);
}

#[test]
fn dynamo_npz_prefill_and_decode_points() {
    let prefill = parse_dynamo_npz(PREFILL_NPZ, "prefill.npz").unwrap();
    assert_eq!(prefill.kind, SourceKind::DynamoPrefill);
    assert_eq!(prefill.points.len(), 17);
    assert_eq!(prefill.points[0].workload, Workload::PrefillAlone { isl_tokens: 100 });
    assert!(close(prefill.points[0].measured.ttft_ms.unwrap().mean.unwrap(), 19.525209));
    let decode = parse_dynamo_npz(DECODE_NPZ, "decode.npz").unwrap();
    assert_eq!(decode.points.len(), 41);
    // kv usage 3.7e-4 × 945029 tokens / 350 tokens of context = 1 request.
    assert_eq!(
        decode.points[0].workload,
        Workload::DecodeStep {
            batch: 1,
            context_tokens: 350
        }
    );
    assert!(close(decode.points[0].measured.itl_ms.unwrap().mean.unwrap(), 4.379871));
    assert!(decode.warnings.is_empty() && prefill.warnings.is_empty());
}

#[test]
fn compressed_npz_is_refused_with_a_way_out() {
    let error = parse_dynamo_npz(COMPRESSED_NPZ, "pre.npz").unwrap_err().to_string();
    assert!(error.contains("pre.npz") && error.contains("np.savez"), "{error}");
}

#[test]
fn dynamo_json_twins_parse_like_the_archives() {
    let prefill = parse_dynamo_json(
        r#"{"prefill_isl": [100, 2000], "prefill_ttft": [20.0, -1.0], "prefill_thpt_per_gpu": [5000, 1]}"#,
        "p.json",
    )
    .unwrap();
    assert_eq!(prefill.points.len(), 1);
    assert_eq!(prefill.warnings.len(), 1, "{:?}", prefill.warnings);
    let decode = parse_dynamo_json(
        r#"{"x_kv_usage": [0.5], "y_context_length": [1000], "z_itl": [12.5], "z_thpt_per_gpu": [1], "max_kv_tokens": 100000}"#,
        "d.json",
    )
    .unwrap();
    assert_eq!(
        decode.points[0].workload,
        Workload::DecodeStep {
            batch: 50,
            context_tokens: 1000
        }
    );
}

#[test]
fn bench_serving_lines_with_infinity_and_bad_lines() {
    let text = concat!(
        r#"{"backend": "sglang", "request_rate": Infinity, "max_concurrency": 16, "random_input_len": 1024, "random_output_len": 256, "random_range_ratio": 1.0, "completed": 64, "median_ttft_ms": 120.5, "mean_ttft_ms": 130.0, "p99_ttft_ms": 300.0, "median_tpot_ms": 9.5, "median_itl_ms": 9.1, "output_throughput": 1500.0, "note": "NaN stays a string"}"#,
        "\n",
        "not json\n",
        r#"{"request_rate": 4.0, "max_concurrency": null, "random_input_len": 2000, "random_output_len": 100, "random_range_ratio": 0.5, "completed": 100, "mean_ttft_ms": 80.0}"#,
        "\n",
    );
    let (points, warnings) = parse_bench_serving(text, "serving.jsonl").unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("line 2"));
    assert!(matches!(
        points[0].workload,
        Workload::Served {
            isl_tokens: 1024,
            lengths: Lengths::Fixed,
            load: Load::Concurrency(16),
            ..
        }
    ));
    assert_eq!(points[0].measured.ttft_ms.unwrap().p50, Some(120.5));
    assert!(matches!(
        points[1].workload,
        Workload::Served {
            lengths: Lengths::Uniform { range_ratio: 0.5 },
            load: Load::RequestRatePerS(4.0),
            ..
        }
    ));
    assert_eq!(
        replace_non_finite(r#"{"a": "NaN Infinity", "b": -Infinity}"#),
        r#"{"a": "NaN Infinity", "b": "-inf"}"#
    );
}

#[test]
fn bench_one_batch_latencies_are_converted_to_ms() {
    let text = r#"{"run_name": "x", "batch_size": 8, "input_len": 1024, "output_len": 16, "prefill_latency": 0.25, "median_decode_latency": 0.0075, "total_latency": 0.4}"#;
    let (points, warnings) = parse_bench_one_batch(text, "one.jsonl").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        points[0].workload,
        Workload::StaticBatch {
            batch: 8,
            isl_tokens: 1024,
            osl_tokens: 16
        }
    );
    assert!(close(points[0].measured.ttft_ms.unwrap().mean.unwrap(), 250.0));
    assert!(close(points[0].measured.itl_ms.unwrap().p50.unwrap(), 7.5));
}

#[test]
fn bench_records_group_by_load_and_length_and_compute_client_metrics() {
    let record = |id: u64, isl: u64, sent: f64, concurrency: u64, warmup: bool, status: &str| {
        let first = sent + 0.1;
        format!(
            r#"{{"schema_version":1,"id":{id},"isl":{isl},"osl_requested":3,"sent_s":{sent},"first_chunk_s":{first},"chunk_times_s":[{first},{},{}],"output_tokens":3,"status":"{status}","error":null,"warmup":{warmup},"concurrency":{concurrency},"request_rate":null}}"#,
            first + 0.01,
            first + 0.03
        )
    };
    let text = [
        record(0, 100, 0.0, 1, true, "ok"),
        record(1, 100, 1.0, 1, false, "ok"),
        record(2, 100, 2.0, 1, false, "ok"),
        record(3, 500, 3.0, 1, false, "ok"),
        record(4, 100, 0.0, 4, false, "error"),
        record(5, 100, 0.0, 4, false, "ok"),
        "garbage".to_string(),
    ]
    .join("\n");
    let (points, warnings) = parse_bench_records(&text, "bench.jsonl").unwrap();
    assert_eq!(points.len(), 3, "{points:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    // The load as a user writes it, not Rust's `Some(4)` (issue 13).
    assert!(
        warnings.contains(&"bench.jsonl: 1 failed requests at concurrency 4, osl 3, left out".to_string()),
        "{warnings:?}"
    );
    let first = &points[0];
    assert!(matches!(
        first.workload,
        Workload::Served {
            isl_tokens: 100,
            osl_tokens: 3,
            load: Load::Concurrency(1),
            n_requests: 2,
            ..
        }
    ));
    let ttft = first.measured.ttft_ms.unwrap().p50.unwrap();
    let tpot = first.measured.tpot_ms.unwrap().mean.unwrap();
    let itl = first.measured.itl_ms.unwrap();
    assert!(close(ttft, 100.0) && close(tpot, 15.0), "{ttft} {tpot}");
    assert!(close(itl.mean.unwrap(), 15.0) && close(itl.p50.unwrap(), 15.0), "{itl:?}");
}
