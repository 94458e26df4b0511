//! Wiring of the live subcommands: `bench` drives a server with the load generator, `serve` runs the twin.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Result};
use serde::Serialize;

use super::live_args::{BenchArgs, EndpointFlag, ServeArgs};
use super::plan::{apply_context_length, load_coefficients, load_model_as, server_args, shortfall, step_model};
use super::run::Outcome;
use sglsim::calibrate::loadgen::{run_bench_observed, BenchConfig, BenchMetrics, BenchOutcome, Endpoint};
use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuCatalog;
use sglsim::serve::perturb::perturb;
use sglsim::serve::{spawn, ServeConfig};
use sglsim::sim::workload::{Arrivals, LengthDistribution, WorkloadSpec};

/// Attempts per request for refused connections and HTTP 5xx.
const BENCH_TRIES: u32 = 3;
/// Wait before the second attempt, seconds (doubling after).
const BENCH_BACKOFF_S: f64 = 0.25;

/// `bench --json`: the run's settings, then `predict --json`'s metric keys.
#[derive(Serialize)]
struct BenchReport<'a> {
    url: &'a str,
    model: &'a str,
    endpoint: &'static str,
    isl: u64,
    osl: u64,
    concurrency: Option<u64>,
    request_rate: Option<serde_json::Value>,
    n_warmup: u64,
    seed: u64,
    #[serde(flatten)]
    metrics: &'a BenchMetrics,
    errors: &'a std::collections::BTreeMap<String, u64>,
    records_file: Option<String>,
}

/// `sglsim bench`.
pub fn bench(args: &BenchArgs) -> Result<Outcome> {
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        bail!(
            "invalid --max-error-rate {}: a share of requests in [0, 1] (0: any failure fails the run)",
            args.max_error_rate
        );
    }
    let (arrivals, n_requests, rate_label) = match (args.concurrency, &args.request_rate) {
        (Some(concurrency), _) => (
            Arrivals::Closed { concurrency },
            args.num_requests
                .unwrap_or_else(|| sglsim::sim::limits::default_closed_loop_requests(concurrency)),
            None,
        ),
        (None, Some(rate)) => match rate.trim().to_ascii_lowercase().as_str() {
            "inf" | "infinity" => (
                Arrivals::AllAtOnce,
                args.num_requests.unwrap_or(1000),
                Some(serde_json::json!("inf")),
            ),
            text => match text.parse::<f64>() {
                Ok(rate_per_s) if rate_per_s > 0.0 && rate_per_s.is_finite() => (
                    Arrivals::Poisson { rate_per_s },
                    args.num_requests.unwrap_or(1000),
                    Some(serde_json::json!(rate_per_s)),
                ),
                _ => bail!("invalid --request-rate {rate}: a positive number of requests/s, or inf"),
            },
        },
        (None, None) => bail!("give --concurrency C or --request-rate R"),
    };
    let endpoint = match args.endpoint {
        EndpointFlag::Completions => Endpoint::Completions,
        EndpointFlag::Chat => Endpoint::Chat,
    };
    let config = BenchConfig {
        url: args.url.clone(),
        model: args.model.clone(),
        endpoint,
        workload: WorkloadSpec {
            isl: args.isl,
            osl: args.osl,
            lengths: match args.range_ratio {
                Some(range_ratio) => LengthDistribution::Uniform { range_ratio },
                None => LengthDistribution::Fixed,
            },
            arrivals,
            n_requests,
            n_warmup: args.warmup_requests,
            seed: args.seed,
        },
        timeout_s: args.timeout_s,
        records_path: args.out.clone(),
        max_tries: BENCH_TRIES,
        initial_backoff_s: BENCH_BACKOFF_S,
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(n_requests + args.warmup_requests),
        if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    let outcome = run_bench_observed(&config, &mut |_, progress| {
        bar.set_position(progress.n_done);
        bar.set_message(format!("{} failed", progress.n_failed));
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    let records_file = args.out.as_ref().map(|p| p.display().to_string());
    let report = bench_report(args, endpoint, rate_label, &outcome, records_file)?;
    Ok(match error_share_exceeded(&outcome, args.max_error_rate) {
        Some(error) => Outcome::Failed { report, error },
        None => Outcome::Done(report),
    })
}

/// The error summary when failed requests exceed `max_error_rate` of all sent (warm-up included).
fn error_share_exceeded(outcome: &BenchOutcome, max_error_rate: f64) -> Option<String> {
    let n_total = outcome.records.len() as u64;
    let n_failed: u64 = outcome.errors.values().sum();
    if n_total == 0 || n_failed as f64 <= max_error_rate * n_total as f64 {
        return None;
    }
    let kinds: Vec<String> = outcome.errors.iter().map(|(kind, n)| format!("{kind} × {n}")).collect();
    Some(format!(
        "{n_failed} of {n_total} requests failed ({:.1}%, above --max-error-rate {max_error_rate}): {}",
        100.0 * n_failed as f64 / n_total as f64,
        kinds.join(", ")
    ))
}

fn bench_report(
    args: &BenchArgs,
    endpoint: Endpoint,
    rate_label: Option<serde_json::Value>,
    outcome: &BenchOutcome,
    records_file: Option<String>,
) -> Result<String> {
    if args.json {
        let report = BenchReport {
            url: &args.url,
            model: &outcome.model,
            endpoint: endpoint.path(),
            isl: args.isl,
            osl: args.osl,
            concurrency: args.concurrency,
            request_rate: rate_label,
            n_warmup: args.warmup_requests,
            seed: args.seed,
            metrics: &outcome.metrics,
            errors: &outcome.errors,
            records_file,
        };
        return Ok(serde_json::to_string_pretty(&report)?);
    }
    let load = match (args.concurrency, &args.request_rate) {
        (Some(concurrency), _) => format!("concurrency {concurrency}"),
        (None, Some(rate)) => format!("request rate {rate}/s"),
        (None, None) => String::new(),
    };
    Ok(bench_table(args, endpoint, &load, outcome, records_file.as_deref()))
}

fn bench_table(args: &BenchArgs, endpoint: Endpoint, load: &str, outcome: &BenchOutcome, records_file: Option<&str>) -> String {
    let metrics = &outcome.metrics;
    let mut out = format!(
        "{} ({}, {}): {} in / {} out, {load}, {} requests + {} warm-up\n\n",
        args.url,
        outcome.model,
        endpoint.path(),
        args.isl,
        args.osl,
        metrics.n_requests + metrics.n_errors,
        args.warmup_requests
    );
    out.push_str(&format!(
        "  {:<10} {:>10} {:>10} {:>10} {:>10}\n",
        "metric", "mean", "p50", "p90", "p99"
    ));
    for (name, d) in [
        ("TTFT ms", metrics.ttft_ms),
        ("ITL ms", metrics.itl_ms),
        ("TPOT ms", metrics.tpot_ms),
        ("E2E ms", metrics.e2e_ms),
    ] {
        out.push_str(&format!(
            "  {name:<10} {:>10.2} {:>10.2} {:>10.2} {:>10.2}\n",
            d.mean, d.p50, d.p90, d.p99
        ));
    }
    out.push_str(&format!(
        "\n  {} requests in {:.2} s: {:.1} output tok/s, {:.1} input tok/s, {:.2} req/s; {} failed\n",
        metrics.n_requests,
        metrics.duration_s,
        metrics.throughput.output_tok_s,
        metrics.throughput.input_tok_s,
        metrics.throughput.request_s,
        metrics.n_errors
    ));
    if !outcome.errors.is_empty() {
        let kinds: Vec<String> = outcome.errors.iter().map(|(kind, n)| format!("{kind} × {n}")).collect();
        out.push_str(&format!("  errors (warm-up included): {}\n", kinds.join(", ")));
    }
    if let Some(path) = records_file {
        out.push_str(&format!("  records appended to {path}\n"));
    }
    out
}

/// A coefficient profile as `--profile` reads it.
#[derive(Serialize)]
struct ProfileFile<'a> {
    schema_version: u32,
    coefficients: &'a Coefficients,
}

/// `sglsim serve`: runs until the process is stopped.
pub fn serve(args: &ServeArgs) -> Result<Outcome> {
    let mut model = load_model_as(&args.model.model, args.model.dtype.as_deref())?;
    apply_context_length(&mut model, args.context_length)?;
    let gpu = GpuCatalog::builtin()?.find(&args.gpu)?.clone();
    let mut coefficients = load_coefficients(args.profile.as_deref())?;
    if let Some(fraction) = args.perturb {
        coefficients = perturb(&coefficients, fraction, args.seed)?;
        if args.reveal {
            let profile = toml::to_string(&ProfileFile {
                schema_version: 1,
                coefficients: &coefficients,
            })?;
            let _ = writeln!(
                std::io::stderr(),
                "# perturbed profile (--perturb {fraction} --seed {})\n{profile}",
                args.seed
            );
        }
    }
    let server = server_args(&args.server)?;
    let step = step_model(&model, &gpu, args.mapping, &server, &coefficients)?;
    if let Some(reason) = shortfall(&step) {
        return Ok(Outcome::DoesNotFit(format!("does not fit: {reason}")));
    }
    let summary = format!(
        "{} on {} × {} ({}), KV {} tokens/rank, max running {}",
        args.model.model,
        step.mapping().n_gpus(),
        gpu.name,
        step.mapping(),
        step.memory().kv_capacity_tokens_per_rank,
        step.memory().max_running_requests
    );
    let handle = spawn(ServeConfig {
        step_model: step,
        model_path: args.model.model.clone(),
        host: args.host.clone(),
        port: args.port,
        time_scale: args.time_scale,
    })?;
    // A closed stderr must not stop the server.
    let _ = writeln!(std::io::stderr(), "sglsim serve: {summary}");
    let _ = writeln!(std::io::stderr(), "sglsim serve: listening on {}", handle.url());
    handle.wait()?;
    Ok(Outcome::Done(String::new()))
}
