//! Property tests (issue 13): every parser of the library, fed arbitrary and adversarial input,
//! ends in a value that respects its invariants or in an error; never a panic or a hang.
//! The trace reader and the CLI's numeric ranges are tested beside the CLI (`src/cli/properties.rs`).

use proptest::prelude::*;
use serde_json::{json, Value};

use sglsim::calibrate::kernels::{parse_aic, parse_collectives, parse_kernels, predict_us};
use sglsim::calibrate::loadgen::{SseEvent, SseParser};
use sglsim::calibrate::measurements::{parse_rows, setup_of};
use sglsim::model::arch::ModelSpec;
use sglsim::model::coefficients::{Coefficients, COEFFICIENT_INFO};
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::{EngineConfig, StepModel};
use sglsim::serve::protocol::{check_context, parse_request, Api};
use sglsim::sim::limits::{self, MAX_REQUESTS};
use sglsim::sim::workload::Arrivals;

/// Numbers as adversarial files write them: zero, one, small, huge, negative, fractional, exponent forms.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-5".to_string()),
        Just("1e30".to_string()),
        Just("1e300".to_string()),
        Just("-1e-300".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("".to_string()),
        Just("abc".to_string()),
        (1u64..100_000).prop_map(|n| n.to_string()),
        (-1e6f64..1e6).prop_map(|x| x.to_string()),
    ]
}

/// JSON values of any type, numbers included at their extremes.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..200_000).prop_map(Value::from),
        (1u64..9).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |x| x.is_finite())
            .prop_map(Value::from),
        "[a-z ]{0,12}".prop_map(Value::from),
        Just(json!([1, 2, 3])),
        Just(json!({"type": "fp8", "quant_method": "fp8"})),
    ]
}

const CONFIG_KEYS: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "max_position_embeddings",
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "n_shared_experts",
    "shared_expert_intermediate_size",
    "first_k_dense_replace",
    "kv_lora_rank",
    "q_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "sliding_window",
    "use_sliding_window",
    "layer_types",
    "tie_word_embeddings",
    "quantization_config",
    "torch_dtype",
];

fn llama_8b_config() -> serde_json::Map<String, Value> {
    let value = json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
        "vocab_size": 128256, "num_attention_heads": 32, "num_key_value_heads": 8,
        "intermediate_size": 14336, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"
    });
    value.as_object().unwrap().clone()
}

fn h100_engine(model: ModelSpec) -> Option<StepModel> {
    let gpu = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
    let mapping = ParallelMapping::new(&model, 1, 1, 1).ok()?;
    StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients: Coefficients::defaults(),
    })
    .ok()
}

/// 64 cases from a fixed seed, so the suite is deterministic (a CI run never turns red by chance);
/// `PROPTEST_CASES=5000 PROPTEST_RNG_SEED=7 cargo test properties` explores further by hand.
pub fn deterministic() -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").map_or(64, |cases| cases as u32),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(13)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(deterministic())]

    /// A config.json with any field replaced by any JSON value: an error, or a model whose engine
    /// prices a prefill and a decode step in finite, non-negative time.
    #[test]
    fn config_json_parses_or_errs(edits in proptest::collection::vec((0..CONFIG_KEYS.len(), json_value()), 1..5)) {
        let mut config = llama_8b_config();
        for (key, value) in edits {
            config.insert(CONFIG_KEYS[key].to_string(), value);
        }
        let text = Value::Object(config).to_string();
        if let Ok(model) = ModelSpec::from_hf_config("fuzz", &text, "config.json") {
            if let Some(step) = h100_engine(model) {
                if step.memory().fits() {
                    let prefill_s = step.prefill_s(128);
                    let decode_s = step.decode_step_s(1, 128).total_s;
                    prop_assert!(prefill_s.is_finite() && prefill_s >= 0.0, "prefill {prefill_s}");
                    prop_assert!(decode_s.is_finite() && decode_s >= 0.0, "decode {decode_s}");
                }
            }
        }
    }

    /// Any text as a config.json: an error or a model, never a panic.
    #[test]
    fn config_json_text_never_panics(text in ".{0,200}") {
        let _ = ModelSpec::from_hf_config("fuzz", &text, "config.json");
    }

    /// A profile with any coefficients set to any numbers: an error naming the coefficient, or
    /// coefficients all inside their stated ranges.
    #[test]
    fn profiles_parse_within_range_or_err(
        edits in proptest::collection::vec((0..COEFFICIENT_INFO.len(), any::<f64>()), 0..6),
        toml in any::<bool>(),
    ) {
        let mut table = serde_json::Map::new();
        for (index, value) in &edits {
            if value.is_finite() {
                table.insert(COEFFICIENT_INFO[*index].name.to_string(), Value::from(*value));
            }
        }
        let parsed = if toml {
            let body: String = table.iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
            let text = format!("schema_version = 1\n[coefficients]\n{}", body.replace('"', ""));
            Coefficients::from_toml_filling(&text, "p.toml")
        } else {
            Coefficients::from_json_filling(&json!({"schema_version": 1, "coefficients": table}).to_string(), "p.json")
        };
        if let Ok((coefficients, _)) = parsed {
            prop_assert!(coefficients.validate().is_ok());
        }
    }

    /// Any text as a profile: an error or valid coefficients.
    #[test]
    fn profile_text_never_panics(text in ".{0,200}") {
        if let Ok((coefficients, _)) = Coefficients::from_json_filling(&text, "p.json") {
            prop_assert!(coefficients.validate().is_ok());
        }
        let _ = Coefficients::from_toml_filling(&text, "p.toml");
    }

    /// Measurement rows with any numbers: each row resolves to a bounded workload or says why not.
    #[test]
    fn validate_rows_resolve_to_bounded_workloads(
        fields in proptest::collection::vec(number_text(), 8),
        batch_only in any::<bool>(),
    ) {
        let [tp, isl, osl, concurrency, rate, batch, value, dp] = <[String; 8]>::try_from(fields).unwrap();
        let (concurrency, rate) = if batch_only { (String::new(), String::new()) } else { (concurrency, rate) };
        let text = format!(
            "model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit\n\
             Qwen/Qwen3-8B,h100,{tp},{dp},1,bf16,agg,{isl},{osl},{concurrency},{rate},{batch},median_tpot,{value},ms\n"
        );
        if let Ok(rows) = parse_rows(&text, "rows.csv") {
            for row in &rows {
                if let Ok(setup) = setup_of(row) {
                    let workload = &setup.workload;
                    prop_assert!(workload.n_requests >= 1 && workload.n_requests <= MAX_REQUESTS);
                    if let Arrivals::Closed { concurrency } = workload.arrivals {
                        prop_assert!((1..=MAX_REQUESTS).contains(&concurrency));
                    }
                }
            }
        }
    }

    /// Kernel tables with any numbers: samples with positive, finite times, or an error.
    #[test]
    fn kernel_csvs_keep_only_positive_times(fields in proptest::collection::vec(number_text(), 5)) {
        let [m, n, k, time, bytes] = <[String; 5]>::try_from(fields).unwrap();
        let kernels = format!("op,dtype,backend,m,n,k,time_us\ngemm,bf16,,{m},{n},{k},{time}\n");
        let collectives = format!("op,method,n_ranks,bytes,time_us\nall_reduce,cuda_graph,{m},{bytes},{time}\n");
        let aic = format!("gemm_dtype,m,n,k,latency\nfloat16,{m},{n},{k},{time}\n");
        let h100 = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
        for samples in [
            parse_kernels(&kernels, "k.csv"),
            parse_collectives(&collectives, "c.csv"),
            parse_aic(&aic, "a.csv"),
        ]
        .into_iter()
        .flatten()
        {
            for sample in samples {
                prop_assert!(sample.time_us.is_finite() && sample.time_us > 0.0, "{}", sample.time_us);
                let predicted_us = predict_us(&sample, &h100, &Coefficients::defaults());
                prop_assert!(predicted_us.is_finite() && predicted_us > 0.0, "{predicted_us} for {sample:?}");
            }
        }
    }

    /// Any text as a kernel table: never a panic.
    #[test]
    fn kernel_text_never_panics(text in "(op|time_us|latency|gemm|,|[0-9.e-]{1,6}|\n){0,40}") {
        let _ = parse_kernels(&text, "k.csv");
        let _ = parse_collectives(&text, "c.csv");
        let _ = parse_aic(&text, "a.csv");
    }

    /// An SSE stream cut into any pieces gives the events of the whole stream.
    #[test]
    fn sse_events_do_not_depend_on_how_the_stream_is_cut(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("data: {\"choices\":[{\"text\":\"a\"}]}".to_string()),
                Just("data: [DONE]".to_string()),
                Just("data: {not json".to_string()),
                Just(": keep-alive".to_string()),
                Just("event: x".to_string()),
                Just(String::new()),
                "[ -~]{0,20}",
            ],
            0..12,
        ),
        crlf in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        invalid_utf8 in any::<bool>(),
    ) {
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut bytes = lines.join(newline).into_bytes();
        bytes.extend_from_slice(newline.as_bytes());
        if invalid_utf8 {
            bytes.splice(0..0, [0xff, 0xfe, b'\n']);
        }
        let mut whole = SseParser::default();
        let expected = whole.push(&bytes);
        let mut offsets: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        offsets.push(0);
        offsets.push(bytes.len());
        offsets.sort_unstable();
        let mut pieces = SseParser::default();
        let mut events = Vec::new();
        for pair in offsets.windows(2) {
            events.extend(pieces.push(&bytes[pair[0]..pair[1]]));
        }
        prop_assert_eq!(events.len(), expected.len());
        for (got, want) in events.iter().zip(&expected) {
            prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
        prop_assert!(expected.len() <= bytes.iter().filter(|&&b| b == b'\n').count());
        prop_assert!(!pieces.has_partial_line());
        let _ = expected.iter().filter(|e| matches!(e, SseEvent::Done)).count();
    }

    /// Request bodies with any fields: a request of at least one input and one output token that
    /// fits the window when SGLang's check passes, or a 400 message.
    #[test]
    fn http_bodies_parse_or_err(
        api in prop_oneof![Just(Api::Completions), Just(Api::Chat), Just(Api::Generate)],
        fields in proptest::collection::vec(
            (prop_oneof![
                Just("prompt"), Just("messages"), Just("max_tokens"), Just("max_completion_tokens"),
                Just("n"), Just("stream"), Just("stream_options"), Just("text"), Just("input_ids"),
                Just("sampling_params"), Just("model"),
            ], json_value()),
            0..6,
        ),
        context_tokens in 1u64..200_000,
    ) {
        let body = Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string();
        if let Ok(request) = parse_request(api, body.as_bytes(), "served") {
            prop_assert!(request.isl >= 1 && request.osl >= 1);
            if check_context(&request, context_tokens).is_ok() {
                prop_assert!(request.isl < context_tokens);
                prop_assert!(u128::from(request.isl) + u128::from(request.osl) <= u128::from(context_tokens));
            }
        }
    }

    /// Any bytes as a request body: never a panic.
    #[test]
    fn http_body_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for api in [Api::Completions, Api::Chat, Api::Generate] {
            let _ = parse_request(api, &bytes, "served");
        }
    }

    /// The limits never wrap: they agree with 128-bit arithmetic.
    #[test]
    fn limits_agree_with_wide_arithmetic(n in any::<u64>(), warmup in any::<u64>(), isl in any::<u64>(), osl in any::<u64>(), context in 1u64..20_000_000) {
        let total = u128::from(n) + u128::from(warmup);
        prop_assert_eq!(limits::total_requests(n, warmup).is_ok(), n >= 1 && total <= u128::from(MAX_REQUESTS));
        let fits = isl < context && u128::from(isl) + u128::from(osl) <= u128::from(context);
        prop_assert_eq!(limits::check_context(isl, osl, context).is_ok(), fits);
    }
}
