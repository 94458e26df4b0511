//! Property tests of the CLI's inputs (issue 13): traces and the numeric flags of `predict`,
//! `search` and `profile`, fed arbitrary and extreme values, end in a bounded plan (and run) or a
//! clear error naming the input; never a panic, a wrap-around or an unbounded allocation.

use proptest::prelude::*;

use super::args::{Cli, Command};
use super::plan::{parse_trace, predict_request};
use super::run::predict;
use super::search_cmd::search_config;
use sglsim::sim::limits::{MAX_ARRIVAL_S, MAX_REQUESTS, MAX_REQUEST_TOKENS};

/// 64 cases from a fixed seed: deterministic; `PROPTEST_CASES`/`PROPTEST_RNG_SEED` explore further by hand.
fn deterministic() -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").map_or(64, |cases| cases as u32),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(13)),
        ..ProptestConfig::default()
    }
}

/// Values a user may type for a count: small ones that run, and every kind of extreme.
fn count(small: std::ops::Range<u64>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => small.prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => Just("100000000".to_string()),
        1 => Just("10000000000".to_string()),
        1 => Just("18446744073709551606".to_string()),
        1 => Just("18446744073709551615".to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("-1".to_string()),
    ]
}

/// Values a user may type for a real number.
fn real() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0.01f64..100.0).prop_map(|x| format!("{x:.3}")),
        1 => Just("0".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("inf".to_string()),
        1 => Just("1e-20".to_string()),
        1 => Just("1e300".to_string()),
    ]
}

fn parse(words: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("sglsim").chain(words.iter().map(String::as_str)))
}

/// A trace row of any numbers, as a CSV line or a JSON line.
fn trace_field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (1u64..5000).prop_map(|n| n.to_string()),
        1 => (0.0f64..1e4).prop_map(|x| x.to_string()),
        1 => Just("0".to_string()),
        1 => Just("-3".to_string()),
        1 => Just("1e30".to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("12.5".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("\"7\"".to_string()),
        1 => Just(String::new()),
        1 => Just("x".to_string()),
    ]
}

use clap::Parser;

proptest! {
    #![proptest_config(deterministic())]

    /// A trace of any rows: requests of whole, bounded lengths and finite, non-negative arrivals
    /// in time order, or an error naming the row.
    #[test]
    fn traces_parse_to_bounded_requests_or_err(
        rows in proptest::collection::vec(proptest::collection::vec(trace_field(), 3), 1..8),
        json in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let text = if json {
            rows.iter()
                .map(|r| format!("{{\"arrival_s\":{},\"isl\":{},\"osl\":{}}}\n", r[0], r[1], r[2]))
                .collect::<String>()
        } else {
            let body: String = rows.iter().map(|r| format!("{}\n", r.join(","))).collect();
            format!("{}arrival_s,isl,osl\n{body}", if bom { "\u{feff}" } else { "" })
        };
        match parse_trace(&text, "t", json) {
            Ok(requests) => {
                prop_assert_eq!(requests.len(), rows.len());
                for pair in requests.windows(2) {
                    prop_assert!(pair[0].arrival_s <= pair[1].arrival_s);
                }
                for request in &requests {
                    prop_assert!((1..=MAX_REQUEST_TOKENS).contains(&request.isl));
                    prop_assert!((1..=MAX_REQUEST_TOKENS).contains(&request.osl));
                    let arrival_s = request.arrival_s.unwrap();
                    prop_assert!(arrival_s.is_finite() && arrival_s >= 0.0);
                }
            }
            Err(error) => prop_assert!(error.to_string().starts_with("t"), "{error:#}"),
        }
    }

    /// Any text as a trace: never a panic.
    #[test]
    fn trace_text_never_panics(text in "(arrival_s|isl|osl|timestamp|[0-9.e\"-]{1,5}|,|\n|\u{feff}|\\{|\\}|:){0,40}") {
        let _ = parse_trace(&text, "t", false);
        let _ = parse_trace(&text, "t", true);
    }

    /// `predict` with any numbers: a clear error, or a plan within the limits that runs to an answer.
    #[test]
    fn predict_numbers_give_a_bounded_run_or_an_error(
        isl in count(1..3000),
        osl in count(1..200),
        load in 0usize..4,
        load_value in count(1..64),
        rate in real(),
        num_requests in proptest::option::of(count(1..200)),
        warmup in proptest::option::of(count(0..20)),
        ttft in proptest::option::of(real()),
        context_length in proptest::option::of(count(1..200_000)),
    ) {
        let mut words: Vec<String> = ["predict", "--model", "Qwen3-8B", "--gpu", "h100", "--json", "--isl", &isl, "--osl", &osl]
            .iter()
            .map(|w| w.to_string())
            .collect();
        match load {
            0 => words.extend(["--concurrency".to_string(), load_value]),
            1 => words.extend(["--request-rate".to_string(), rate]),
            2 => words.extend(["--batch".to_string(), load_value]),
            _ => {}
        }
        let batch_load = load >= 2;
        for (flag, value) in [
            ("--num-requests", num_requests.filter(|_| !batch_load)),
            ("--warmup-requests", warmup),
            ("--ttft", ttft),
            ("--context-length", context_length),
        ] {
            if let Some(value) = value {
                words.extend([flag.to_string(), value]);
            }
        }
        let Ok(cli) = parse(&words) else { return Ok(()) };
        let Command::Predict(args) = cli.command else { unreachable!() };
        match sglsim::api::predict::workload(&predict_request(&args)) {
            Ok(workload) => {
                prop_assert!(!workload.is_empty() && workload.len() as u64 <= MAX_REQUESTS);
                for request in &workload {
                    prop_assert!(request.arrival_s.is_none_or(|t| t.is_finite() && t <= MAX_ARRIVAL_S));
                }
                // Small plans run to a physically possible answer.
                let tokens: u64 = workload.iter().map(|r| r.isl + r.osl).sum();
                if tokens <= 400_000 {
                    let outcome = predict(&args);
                    prop_assert!(outcome.is_ok(), "{:#}", outcome.err().unwrap());
                }
            }
            Err(error) => {
                let message = format!("{error:#}");
                prop_assert!(message.contains("--") || message.contains("context length"), "{message}");
            }
        }
    }

    /// `search` with any numbers: a configuration that validates, or a clear error; the search itself
    /// is not run (its bounds are the configuration's).
    #[test]
    fn search_numbers_validate_or_err(
        isl in count(1..3000),
        osl in count(1..200),
        concurrency in proptest::option::of(count(1..5000)),
        ttft in real(),
        itl in real(),
    ) {
        let mut words: Vec<String> = [
            "search", "--model", "Qwen3-8B", "--gpu", "h100", "--total-gpus", "8", "--isl", &isl, "--osl", &osl,
            "--ttft", &ttft, "--itl", &itl,
        ]
        .iter()
        .map(|w| w.to_string())
        .collect();
        if let Some(concurrency) = concurrency {
            words.extend(["--concurrency".to_string(), concurrency]);
        }
        let Ok(cli) = parse(&words) else { return Ok(()) };
        let Command::Search(args) = cli.command else { unreachable!() };
        if let Ok(config) = search_config(&args) {
            if config.validate().is_ok() {
                let (max_isl, max_osl) = config.workload.max_lengths_tokens();
                prop_assert!(max_isl < config.model.max_context_tokens);
                prop_assert!(max_isl + max_osl <= config.model.max_context_tokens);
            }
        }
    }
}
