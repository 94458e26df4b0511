//! Live calibration (issue 4): `calibrate --url` against the serving twin and held-out workloads,
//! `--resume`, servers that are not SGLang, clear errors, and the AIPerf path when AIPerf is installed.

use std::path::Path;
use std::process::Command;

use sglsim::calibrate::loadgen::{run_bench, BenchConfig, Endpoint};
use sglsim::model::coefficients::Coefficients;
use sglsim::serve::perturb::perturb;
use sglsim::sim::workload::{Arrivals, LengthDistribution, WorkloadSpec};

use crate::util::{number, qwen3_8b_twin, sglsim_args, temp_dir, Output};

const MODEL: &str = "Qwen/Qwen3-8B";

/// Held by the tests whose timings matter or that load the CPU (the round trip, AIPerf), so that
/// they do not run at the same time: on two cores AIPerf's processes would slow the twin's client.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timing_lock() -> std::sync::MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `sglsim calibrate --url URL --gpu h100 --model MODEL` plus `extra`.
fn calibrate(url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["calibrate", "--url", url, "--gpu", "h100", "--model", MODEL];
    args.extend_from_slice(extra);
    sglsim_args(&args)
}

/// A workload the plan does not run: other lengths, concurrencies and an open loop.
///
/// Lengths are drawn as `bench_serving --random-range-ratio 0.5` draws them. With fixed lengths and
/// a handful of requests a closed loop locks into one of two timing patterns (the first prefill
/// alone or with company) that tens of microseconds of HTTP jitter decide: the unperturbed twin
/// itself gives a median TTFT of 85 or 129 ms from run to run at 700/150, concurrency 6. Such a
/// median is not a property of the server, so the held-out loads vary their lengths as real
/// benchmarks do.
struct HeldOut {
    name: &'static str,
    isl: u64,
    osl: u64,
    arrivals: Arrivals,
    n_requests: u64,
}

/// `--range-ratio` of the held-out workloads.
const HELD_OUT_RANGE_RATIO: f64 = 0.5;

const HELD_OUT: [HeldOut; 3] = [
    HeldOut {
        name: "700/150 c6",
        isl: 700,
        osl: 150,
        arrivals: Arrivals::Closed { concurrency: 6 },
        n_requests: 36,
    },
    HeldOut {
        name: "3000/300 c2",
        isl: 3000,
        osl: 300,
        arrivals: Arrivals::Closed { concurrency: 2 },
        n_requests: 10,
    },
    HeldOut {
        name: "1500/80 rate 4",
        isl: 1500,
        osl: 80,
        arrivals: Arrivals::Poisson { rate_per_s: 4.0 },
        n_requests: 30,
    },
];

const HELD_OUT_SEED: u64 = 5;

/// Median TTFT and TPOT (ms, simulated time) the client measures on a twin running `time_scale` × real time.
fn measure(url: &str, held_out: &HeldOut, time_scale: f64) -> (f64, f64) {
    let arrivals = match held_out.arrivals {
        Arrivals::Poisson { rate_per_s } => Arrivals::Poisson {
            rate_per_s: rate_per_s * time_scale,
        },
        other => other,
    };
    let outcome = run_bench(&BenchConfig {
        url: url.to_string(),
        model: Some(MODEL.into()),
        endpoint: Endpoint::Completions,
        workload: WorkloadSpec {
            isl: held_out.isl,
            osl: held_out.osl,
            lengths: LengthDistribution::Uniform {
                range_ratio: HELD_OUT_RANGE_RATIO,
            },
            arrivals,
            n_requests: held_out.n_requests,
            n_warmup: 0,
            seed: HELD_OUT_SEED,
        },
        timeout_s: 60.0,
        records_path: None,
        max_tries: 3,
        initial_backoff_s: 0.05,
    })
    .unwrap();
    assert_eq!(outcome.metrics.n_errors, 0, "{}", held_out.name);
    (outcome.metrics.ttft_ms.p50 * time_scale, outcome.metrics.tpot_ms.p50 * time_scale)
}

/// Median TTFT and TPOT (ms) `predict --profile` gives for a held-out workload.
fn predict(held_out: &HeldOut, profile: &Path) -> (f64, f64) {
    let (isl, osl, n) = (held_out.isl.to_string(), held_out.osl.to_string(), held_out.n_requests.to_string());
    let load = match held_out.arrivals {
        Arrivals::Closed { concurrency } => ["--concurrency".to_string(), concurrency.to_string()],
        Arrivals::Poisson { rate_per_s } => ["--request-rate".to_string(), rate_per_s.to_string()],
        other => panic!("{other:?}"),
    };
    let seed = HELD_OUT_SEED.to_string();
    let out = sglsim_args(&[
        "predict",
        "--model",
        MODEL,
        "--gpu",
        "h100",
        "--isl",
        &isl,
        "--osl",
        &osl,
        &load[0],
        &load[1],
        "--num-requests",
        &n,
        "--range-ratio",
        &HELD_OUT_RANGE_RATIO.to_string(),
        "--seed",
        &seed,
        "--profile",
        profile.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    (number(&json, "ttft_ms.p50"), number(&json, "tpot_ms.p50"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn ape(predicted: f64, measured: f64) -> f64 {
    (predicted / measured - 1.0).abs() * 100.0
}

/// Issue 4's round trip: a twin whose coefficients are perturbed by up to 30% is calibrated with a
/// one-minute live sweep (`--budget 60s`), and `predict --profile` with the fitted profile is
/// compared with what the client measures on workloads the sweep did not run.
///
/// The twin runs 2× faster than real time so that the test takes about a minute; that doubles the
/// client's and the HTTP path's own latency in simulated TTFT, which the fit takes into
/// `prefill_fixed_ms` (at 5× a loaded machine's scheduling delays, magnified five times, put the
/// held-out TTFT of 2 runs in 6 past 20%). It depends on wall-clock speed, so `cargo test` skips it (`#[ignore]`) and
/// `.ci/run` runs it as its own step in a release build: in a debug build on a loaded 2-core
/// machine the twin and the client fall behind 128 concurrent streams, and the measured TPOT of
/// that point is the machine's, not the model's (issue 13: TTFT error 23.7%, fit error 11.5%).
/// It also checks issue 15's intervals: most of the twin's true (perturbed) coefficients lie
/// inside the 95% intervals `calibrate` reports.
/// In real time (release build, by hand; README's `sglsim calibrate` section) the fit error goes
/// from 18.5% to 0.5% and five held-out workloads (these three, 2000/200 at concurrency 16 and
/// 400/400 at 32) give TTFT within 0.5–3.1% (median 1.7%) and TPOT within 0.0–2.5% (median 0.3%);
/// calibrated through AIPerf instead (`--aiperf --budget 180s`), TTFT within 2.6–4.7% (median 3.2%)
/// and TPOT within 0.7–2.5% (median 1.1%): AIPerf's client adds 1–2 ms to every TTFT it measures,
/// which the fit keeps and `sglsim bench` does not see.
#[test]
#[ignore = "wall-clock: runs in real time against a live twin; .ci/run runs it as its own step (cargo test --release --test integration -- --ignored wall_clock)"]
fn wall_clock_live_calibration_predicts_held_out_workloads_issue_4() {
    let _quiet = timing_lock();
    const TIME_SCALE: f64 = 2.0;
    let truth = perturb(&Coefficients::defaults(), 0.3, 1).unwrap();
    let server = qwen3_8b_twin(truth.clone(), TIME_SCALE);
    let dir = temp_dir();
    let fitted = dir.path().join("fitted.json");
    let truth_path = dir.path().join("truth.json");
    let truth_json = serde_json::json!({"schema_version": 1, "coefficients": truth});
    std::fs::write(&truth_path, truth_json.to_string()).unwrap();
    let out = calibrate(
        &server.url(),
        &["--budget", "60s", "--no-loo", "--out", fitted.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("2× faster than real time"), "{}", out.stderr);
    let report = out.json();
    let fit_error = number(&report, "fit.median_ape_after_pct");
    let (n_covered, n_intervals, coverage_table) = coverage(&report, &truth);
    let n_extra = out.stderr.matches("\nextra run ").count();

    let mut measured_vs_fitted = (Vec::new(), Vec::new());
    let mut fitted_vs_truth = (Vec::new(), Vec::new());
    let mut table = String::new();
    for held_out in &HELD_OUT {
        let (ttft, tpot) = measure(&server.url(), held_out, TIME_SCALE);
        let (ttft_fit, tpot_fit) = predict(held_out, &fitted);
        let (ttft_true, tpot_true) = predict(held_out, &truth_path);
        table.push_str(&format!(
            "{:<16} TTFT measured {ttft:8.2} fitted {ttft_fit:8.2} true {ttft_true:8.2}   TPOT measured {tpot:6.2} fitted {tpot_fit:6.2} true {tpot_true:6.2}\n",
            held_out.name
        ));
        measured_vs_fitted.0.push(ape(ttft_fit, ttft));
        measured_vs_fitted.1.push(ape(tpot_fit, tpot));
        fitted_vs_truth.0.push(ape(ttft_fit, ttft_true));
        fitted_vs_truth.1.push(ape(tpot_fit, tpot_true));
    }
    let summary = format!(
        "{coverage_table}{table}{n_extra} extra runs; fit error {fit_error:.1}%; |error| % measured vs fitted: TTFT {:.1?} TPOT {:.1?}; fitted vs true: TTFT {:.1?} TPOT {:.1?}; \
         true value inside the 95% interval for {n_covered} of {n_intervals} fitted coefficients",
        measured_vs_fitted.0, measured_vs_fitted.1, fitted_vs_truth.0, fitted_vs_truth.1
    );
    eprintln!("{summary}");
    // True values inside their intervals for at least a third of the fitted coefficients. The
    // intervals describe measurement noise around the linearised model; the twin perturbs every
    // coefficient while the sweep fits only some, so the unfitted ones bias the fitted ones beyond
    // their noise (observed: 3 or 4 of 6 inside per run with SGLang 0.5.8's defaults, 5 or 6 of 7
    // with 0.5.5's). Fewer than a third inside would mean the intervals say nothing.
    assert!(3 * n_covered >= n_intervals && n_intervals >= 3, "{summary}");
    assert!(fit_error < 8.0, "{summary}");
    assert!(median(measured_vs_fitted.1.clone()) < 6.0, "{summary}");
    assert!(measured_vs_fitted.1.iter().all(|e| *e < 10.0), "{summary}");
    assert!(median(measured_vs_fitted.0.clone()) < 10.0, "{summary}");
    assert!(measured_vs_fitted.0.iter().all(|e| *e < 20.0), "{summary}");
    assert!(median(fitted_vs_truth.1.clone()) < 5.0, "{summary}");
}

/// How a fake OpenAI-compatible server answers.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    /// Refuse SGLang's `min_tokens`/`ignore_eos` with 422 and token-id prompts with 400, as
    /// Hugging Face's `transformers serve` does, and stop at half of `max_tokens` (an early EOS).
    strict: bool,
    /// Refuse every request with 422.
    refuse_all: bool,
    /// Delay of each streamed token after the first, µs (default 1000).
    token_delay_us: Option<u64>,
}

/// How many fitted coefficients' 95% intervals hold the twin's true (perturbed) value, of how
/// many have an interval, and a table of them.
fn coverage(report: &serde_json::Value, truth: &Coefficients) -> (usize, usize, String) {
    let truth_json = serde_json::to_value(truth).unwrap();
    let (mut covered, mut total, mut table) = (0, 0, String::new());
    for coefficient in report["fit"]["fitted"].as_array().unwrap() {
        let Some(interval) = coefficient["ci95"].as_array() else { continue };
        let name = coefficient["name"].as_str().unwrap();
        let true_value = truth_json[name].as_f64().unwrap();
        let (low, high) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
        let inside = low <= true_value && true_value <= high;
        total += 1;
        covered += usize::from(inside);
        table.push_str(&format!(
            "{name:<22} start {:>9.4} fitted {:>9.4} ± {:>8.4} (95% [{low:.4}, {high:.4}]) true {true_value:>9.4} {}\n",
            number(coefficient, "start"),
            number(coefficient, "fitted"),
            number(coefficient, "std_err"),
            if inside { "inside" } else { "OUTSIDE" }
        ));
    }
    (covered, total, table)
}

/// A streaming OpenAI-compatible server that is not SGLang: `/v1/models` lists `fake-model`,
/// `/v1/completions` streams `max_tokens` chunks (the first after 1 ms plus 1 µs per prompt token,
/// then one per ms), and there is no `/get_server_info`.
struct FakeOpenAi {
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn refusal(status: u16, message: &str) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::json!({"detail": message}).to_string()))
        .unwrap()
}

async fn fake_completion(behaviour: Behaviour, body: serde_json::Value) -> axum::response::Response {
    if behaviour.refuse_all {
        return refusal(422, "this server takes no requests today");
    }
    if behaviour.strict {
        if body.get("min_tokens").is_some() || body.get("ignore_eos").is_some() {
            return refusal(422, "Unexpected fields in the request: {'min_tokens', 'ignore_eos'}");
        }
        if !body["prompt"].is_string() {
            return refusal(400, "prompt must be a string");
        }
    }
    let asked = body["max_tokens"].as_u64().unwrap_or(16);
    let max_tokens = if behaviour.strict { asked.div_ceil(2) } else { asked };
    let prompt_tokens = match &body["prompt"] {
        serde_json::Value::String(text) => text.split_whitespace().count(),
        other => other.as_array().map_or(1, Vec::len),
    } as u64;
    let token_delay_us = behaviour.token_delay_us.unwrap_or(1000);
    let stream = futures_util::stream::unfold(0u64, move |index| async move {
        if index > max_tokens {
            return None;
        }
        let line = if index == max_tokens {
            "data: [DONE]\n\n".to_string()
        } else {
            let delay_us = if index == 0 { 1000 + prompt_tokens } else { token_delay_us };
            tokio::time::sleep(std::time::Duration::from_micros(delay_us)).await;
            "data: {\"choices\":[{\"index\":0,\"text\":\" x\"}]}\n\n".to_string()
        };
        Some((Ok::<_, std::convert::Infallible>(line), index + 1))
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

impl FakeOpenAi {
    fn start() -> FakeOpenAi {
        FakeOpenAi::start_with(Behaviour::default())
    }

    fn start_with(behaviour: Behaviour) -> FakeOpenAi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let models = serde_json::json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]});
        let app = axum::Router::new()
            .route("/v1/models", axum::routing::get(move || async move { axum::Json(models) }))
            .route(
                "/v1/completions",
                axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| fake_completion(behaviour, body)),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeOpenAi {
            url,
            runtime: Some(runtime),
        }
    }
}

/// Flags describing the fake server's engine (it has no `/get_server_info`).
const FAKE_ENGINE: [&str; 8] = [
    "--served-model",
    "fake-model",
    "--tp",
    "1",
    "--max-running-requests",
    "64",
    "--max-total-tokens",
    "200000",
];

/// Issue 13: a server that refuses SGLang's extension fields (422) and token-id prompts (400) is
/// measured with `max_tokens` alone and text prompts, each said once, and fitted at the output
/// lengths it returned.
#[test]
fn a_server_refusing_sglang_fields_and_token_ids_is_measured_without_them() {
    let server = FakeOpenAi::start_with(Behaviour {
        strict: true,
        ..Behaviour::default()
    });
    let dir = temp_dir();
    let work = dir.path().join("work");
    let mut args = FAKE_ENGINE.to_vec();
    args.extend([
        "--budget",
        "25s",
        "--no-loo",
        "--max-iters",
        "40",
        "--json",
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let out = calibrate(&server.url, &args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    let warnings: Vec<&str> = report["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let said = |text: &str| warnings.iter().any(|w| w.contains(text));
    assert!(said("refused SGLang's min_tokens/ignore_eos (http 422: "), "{warnings:#?}");
    assert!(said("refused token-id prompts (http 400: "), "{warnings:#?}");
    // The server stops at half the length asked: decode points (256 asked) are fitted at 128.
    assert!(
        said("returned 128.0 output tokens on average, not the 256 asked for; fitted at 128"),
        "{warnings:#?}"
    );
    // No point failed: every request of the sweep used the accepted form.
    assert!(!out.stderr.contains("requests failed"), "{}", out.stderr);
}

/// Issue 13: when the server refuses every form of request, the run stops before the sweep with its message.
#[test]
fn a_server_refusing_every_request_stops_before_the_sweep_with_its_message() {
    let server = FakeOpenAi::start_with(Behaviour {
        refuse_all: true,
        ..Behaviour::default()
    });
    let dir = temp_dir();
    let work = dir.path().join("work");
    let mut args = FAKE_ENGINE.to_vec();
    args.extend(["--budget", "25s", "--work-dir", work.to_str().unwrap()]);
    let out = calibrate(&server.url, &args);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    // Stopped before anything was written.
    assert!(!work.exists());
    assert!(out.stderr.contains("answered no calibration request: http 422: "), "{}", out.stderr);
    assert!(out.stderr.contains("this server takes no requests today"), "{}", out.stderr);
    assert!(!out.stderr.contains("\nrun 1/"), "{}", out.stderr);
}

/// Issue 13: `--budget` bounds the sweep's wall time. Against a server five times slower per
/// token than the plan assumes, points that would end past the budget are skipped (the server
/// only gets slower on a loaded machine, so the skip does not depend on the machine's speed).
#[test]
fn the_budget_bounds_wall_time_when_the_server_is_slower_than_planned() {
    let server = FakeOpenAi::start_with(Behaviour {
        token_delay_us: Some(40_000),
        ..Behaviour::default()
    });
    let mut args = FAKE_ENGINE.to_vec();
    args.extend(["--budget", "30s", "--no-loo", "--max-iters", "20", "--json"]);
    let dir = temp_dir();
    let work = dir.path().join("work");
    args.extend(["--work-dir", work.to_str().unwrap()]);
    let out = calibrate(&server.url, &args);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let warnings = format!("{}\n{}", report["warnings"], out.stderr);
    assert!(warnings.contains("skipped: at the measured pace"), "{warnings}");
    assert!(warnings.contains("past the --budget of 30 s"), "{warnings}");
}

#[test]
fn a_server_without_server_info_is_calibrated_from_the_flags_with_a_warning() {
    let server = FakeOpenAi::start();
    let dir = temp_dir();
    let profile = dir.path().join("fake.json");
    let mut args = FAKE_ENGINE.to_vec();
    args.extend([
        "--budget",
        "25s",
        "--no-loo",
        "--max-iters",
        "40",
        "--out",
        profile.to_str().unwrap(),
    ]);
    let out = calibrate(&server.url, &args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("does not answer /get_server_info (not an SGLang server?)"),
        "{}",
        out.stderr
    );
    // The KV capacity given is met by solving --mem-fraction-static in the memory model.
    assert!(out.stderr.contains("KV capacity 200000 tokens per rank"), "{}", out.stderr);
    assert!(profile.exists() && dir.path().join("fake.calibrate").join("plan.json").exists());
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    assert_eq!(written["provenance"]["model"], MODEL);
    let n_planned = n_plan_points(&dir.path().join("fake.calibrate"));
    assert!(n_planned >= 3);
    // Every planned point, plus the extra runs that budget left over gave the worst-identified coefficient.
    let n_extra = out.stderr.matches("\nextra run ").count();
    assert_eq!(written["provenance"]["fit"]["n_points"], n_planned + n_extra, "{}", out.stderr);
}

#[test]
fn live_calibration_errors_name_the_problem() {
    // A model the server does not serve.
    let server = FakeOpenAi::start();
    let wrong = calibrate(&server.url, &["--budget", "25s"]);
    assert_eq!(wrong.code, 2);
    assert!(
        wrong.stderr.contains("serves 'fake-model', not 'Qwen/Qwen3-8B' (--model)") && wrong.stderr.contains("--served-model"),
        "{}",
        wrong.stderr
    );
    let unknown = calibrate(&server.url, &["--served-model", "other", "--budget", "25s"]);
    assert!(
        unknown.stderr.contains("--served-model 'other' is not among the models"),
        "{}",
        unknown.stderr
    );
    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = calibrate(&url, &["--budget", "25s"]);
    assert_eq!(unreachable.code, 2);
    assert!(
        unreachable.stderr.contains(&format!("cannot reach {url} after 3 tries")),
        "{}",
        unreachable.stderr
    );
    // AIPerf needs a tokenizer folder and the executable.
    let no_tokenizer = calibrate(&url, &["--aiperf"]);
    assert!(
        no_tokenizer.stderr.contains("--aiperf needs --tokenizer PATH"),
        "{}",
        no_tokenizer.stderr
    );
    let dir = temp_dir();
    let no_aiperf = Command::new(env!("CARGO_BIN_EXE_sglsim"))
        .args([
            "calibrate",
            "--url",
            &url,
            "--gpu",
            "h100",
            "--model",
            MODEL,
            "--aiperf",
            "--tokenizer",
        ])
        .arg(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&no_aiperf.stderr);
    assert_eq!(no_aiperf.status.code(), Some(2));
    assert!(stderr.contains("no `aiperf` executable on PATH"), "{stderr}");
    let missing = calibrate(&url, &["--aiperf", "--tokenizer", "no/such/folder"]);
    assert!(
        missing.stderr.contains("--tokenizer no/such/folder: no such folder"),
        "{}",
        missing.stderr
    );
}

/// Points in the plan a live calibration wrote to its work folder.
fn n_plan_points(work: &Path) -> usize {
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("plan.json")).unwrap()).unwrap();
    plan["points"].as_array().unwrap().len()
}

#[test]
fn resume_runs_only_the_points_without_complete_records() {
    let server = qwen3_8b_twin(Coefficients::defaults(), 50.0);
    let dir = temp_dir();
    let work = dir.path().join("work");
    let work_arg = work.to_str().unwrap();
    let args = ["--budget", "25s", "--no-loo", "--max-iters", "30", "--work-dir", work_arg];
    // A record of an earlier calibration is removed by a fresh one.
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("decode-isl9-osl9-c1-n4-w1.jsonl"), "{}\n").unwrap();
    let first = calibrate(&server.url(), &args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let files = plan_files(&work);
    let n_planned = files.len();
    assert!(n_planned >= 4, "{files:?}");
    assert!(!work.join("decode-isl9-osl9-c1-n4-w1.jsonl").exists());
    assert!(files.iter().all(|name| work.join(name).is_file()), "{files:?}");
    assert_eq!(first.stderr.matches("\nrun ").count(), n_planned, "{}", first.stderr);

    // An interrupted run: one point never ran, another lost its last record, and a third was cut
    // short by a server crash (issue 13: its failed request makes it incomplete, however many
    // records it has).
    std::fs::remove_file(work.join(&files[0])).unwrap();
    let truncated = work.join(&files[1]);
    let text = std::fs::read_to_string(&truncated).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&truncated, format!("{}\n", kept[..kept.len() - 1].join("\n"))).unwrap();
    let crashed = work.join(&files[2]);
    let text = std::fs::read_to_string(&crashed).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last_mut().unwrap();
    last["status"] = "error".into();
    last["error"] = "stream: connection reset by peer".into();
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&crashed, format!("{}\n", lines.join("\n"))).unwrap();
    let untouched = std::fs::read_to_string(work.join(&files[3])).unwrap();

    let mut resume_args = args.to_vec();
    resume_args.push("--resume");
    let resumed = calibrate(&server.url(), &resume_args);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains(&format!("resuming: {} of {n_planned} points have complete records", n_planned - 3)),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.stderr.matches("\nrun ").count(), 3, "{}", resumed.stderr);
    assert!(files.iter().all(|name| work.join(name).is_file()), "{files:?}");
    assert!(!std::fs::read_to_string(&crashed).unwrap().contains("\"status\":\"error\""));
    assert_eq!(std::fs::read_to_string(work.join(&files[3])).unwrap(), untouched);
    let n_fitted: usize = resumed
        .stdout
        .split(" points from ")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n_fitted >= n_planned, "{}", resumed.stdout);
}

/// The records files of the points in the plan a live calibration wrote to its work folder.
fn plan_files(work: &Path) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("plan.json")).unwrap()).unwrap();
    plan["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-isl{}-osl{}-c{}-n{}-w{}.jsonl",
                p["phase"].as_str().unwrap(),
                p["isl_tokens"],
                p["osl_tokens"],
                p["concurrency"],
                p["n_requests"],
                p["n_warmup"]
            )
        })
        .collect()
}

/// Whether `aiperf` runs here; says why not on stderr.
fn aiperf_runs() -> bool {
    match Command::new("aiperf").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipping the AIPerf calibration: `aiperf --version` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(error) => {
            eprintln!("skipping the AIPerf calibration: no aiperf executable ({error}); .ci/run installs aiperf==0.13.0 with pip");
            false
        }
    }
}

/// `calibrate --url --aiperf` runs the plan through the real `aiperf profile` (one zip sweep for
/// the three prefill points a 40 s budget holds at AIPerf's ~10 s per run) and fits its artifacts.
/// It takes about 35 s, nearly all of it AIPerf starting and stopping its services for each run.
#[test]
fn live_calibration_through_aiperf_fits_its_run_folders() {
    if !aiperf_runs() {
        return;
    }
    let _quiet = timing_lock();
    let dir = temp_dir();
    let tokenizer = dir.path().join("tokenizer");
    let made = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/make_word_tokenizer.py"))
        .arg(&tokenizer)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipping the AIPerf calibration: cannot write a tokenizer: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(error) => {
            eprintln!("skipping the AIPerf calibration: no python3 to write a tokenizer ({error})");
            return;
        }
    }
    let server = qwen3_8b_twin(Coefficients::defaults(), 10.0);
    let work = dir.path().join("work");
    let out = calibrate(
        &server.url(),
        &[
            "--aiperf",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--budget",
            "40s",
            "--no-loo",
            "--max-iters",
            "60",
            "--work-dir",
            work.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let json = out.json();
    assert_eq!(json["fit"]["n_points"], 3, "{}", out.stderr);
    let kinds: Vec<&str> = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["aiperf-run"; 3]);
    for isl in [128, 2048, 32768] {
        let run = work.join(format!("prefill-isl{isl}-osl4-c1-n4-w1.aiperf"));
        assert!(run.join("profile_export_aiperf.json").is_file(), "{}", run.display());
    }
    // AIPerf's client adds its own latency, magnified ten times here; the longest prefill is still
    // within 10% of what the (unperturbed) twin's own coefficients give.
    let longest = json["fit"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"].as_str().unwrap().contains("isl32768"))
        .unwrap();
    let (measured, start) = (number(longest, "measured"), number(longest, "before"));
    assert!((measured / start - 1.0).abs() < 0.1, "{measured} vs {start}");
}

/// Issue 13: an `--out` that cannot be written stops a live calibration before its sweep.
#[test]
fn an_unwritable_out_stops_a_live_calibration_before_the_sweep() {
    let server = FakeOpenAi::start();
    let dir = temp_dir();
    let missing = dir.path().join("gone").join("p.json");
    let mut args = FAKE_ENGINE.to_vec();
    args.extend(["--budget", "25s", "--out", missing.to_str().unwrap()]);
    let out = calibrate(&server.url, &args);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("gone: the folder") || out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("run 1/"), "{}", out.stderr);
}
