//! AIPerf artifacts: run summaries (`profile_export_aiperf.json`) and sweep aggregates.

use super::*;

/// The workload an AIPerf run's `input_config` (or its command line) describes.
#[derive(Debug, Clone, PartialEq)]
struct AiperfConfig {
    isl_tokens: Option<f64>,
    isl_std_tokens: f64,
    osl_tokens: Option<f64>,
    osl_std_tokens: f64,
    load: Option<Load>,
    n_requests: Option<u64>,
    n_warmup: u64,
    model: Option<String>,
}

fn prompt_length(prompts: &Value, key: &str) -> (Option<f64>, f64) {
    let Some(spec) = prompts.get(key) else { return (None, 0.0) };
    let mean = field(spec, "mean").or_else(|| field(spec, "value")).or_else(|| number(spec));
    (mean, field(spec, "stddev").unwrap_or(0.0))
}

fn cli_flag(command: &str, flag: &str) -> Option<String> {
    let mut words = command.split_whitespace();
    while let Some(word) = words.next() {
        if word == flag {
            return words.next().map(|w| w.trim_matches('\'').trim_matches('"').to_string());
        }
        if let Some(value) = word.strip_prefix(&format!("{flag}=")) {
            return Some(value.trim_matches('\'').trim_matches('"').to_string());
        }
    }
    None
}

fn aiperf_config(summary: &Value) -> AiperfConfig {
    let config = summary.get("input_config").unwrap_or(&Value::Null);
    let prompts = config
        .get("datasets")
        .and_then(|d| d.get(0))
        .and_then(|d| d.get("prompts"))
        .unwrap_or(&Value::Null);
    let (mut isl_tokens, isl_std_tokens) = prompt_length(prompts, "isl");
    let (mut osl_tokens, osl_std_tokens) = prompt_length(prompts, "osl");
    if osl_tokens.is_none() {
        osl_tokens = config.pointer("/endpoint/extra/max_tokens").and_then(number);
    }
    let phases = config.get("phases").and_then(Value::as_array).cloned().unwrap_or_default();
    let profiling = phases.iter().find(|p| p.get("kind").and_then(Value::as_str) == Some("profiling"));
    let n_warmup: u64 = phases
        .iter()
        .filter(|p| p.get("kind").and_then(Value::as_str) == Some("warmup"))
        .filter_map(|p| positive_u64(field(p, "requests")))
        .sum();
    let mut load = profiling.and_then(|phase| match phase.get("type").and_then(Value::as_str) {
        Some("concurrency") => positive_u64(field(phase, "concurrency")).map(Load::Concurrency),
        Some(_) => field(phase, "request_rate")
            .or_else(|| field(phase, "rate"))
            .filter(|r| *r > 0.0)
            .map(Load::RequestRatePerS),
        None => None,
    });
    let mut n_requests = profiling.and_then(|p| positive_u64(field(p, "requests")));
    let command = summary.pointer("/run_info/cli_command").and_then(Value::as_str).unwrap_or("");
    if load.is_none() {
        load = cli_flag(command, "--request-rate")
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| *r > 0.0)
            .map(Load::RequestRatePerS)
            .or_else(|| {
                cli_flag(command, "--concurrency")
                    .and_then(|c| c.parse::<u64>().ok())
                    .map(Load::Concurrency)
            });
    }
    if isl_tokens.is_none() {
        isl_tokens = ["--isl", "--synthetic-input-tokens-mean"]
            .iter()
            .find_map(|flag| cli_flag(command, flag)?.parse().ok());
    }
    if osl_tokens.is_none() {
        osl_tokens = ["--osl", "--output-tokens-mean"]
            .iter()
            .find_map(|flag| cli_flag(command, flag)?.parse().ok());
    }
    if n_requests.is_none() {
        n_requests = cli_flag(command, "--request-count").and_then(|c| c.parse().ok());
    }
    let model = config
        .pointer("/models/items/0/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| cli_flag(command, "--model"));
    AiperfConfig {
        isl_tokens,
        isl_std_tokens,
        osl_tokens,
        osl_std_tokens,
        load,
        n_requests,
        n_warmup,
        model,
    }
}

/// Converts a time to ms from an AIPerf unit.
fn to_ms(value: f64, unit: &str) -> f64 {
    match unit {
        "s" | "sec" | "seconds" => value * 1e3,
        "us" => value * 1e-3,
        "ns" => value * 1e-6,
        _ => value,
    }
}

/// One AIPerf metric: `{"unit": "ms", "avg": ..., "p50": ...}` (runs) or `{"mean"/"avg": ...}` (sweeps).
fn aiperf_summary(metrics: &Value, key: &str) -> Option<Summary> {
    let metric = metrics.get(key)?;
    let unit = metric.get("unit").and_then(Value::as_str).unwrap_or("ms");
    let get = |stat: &str| field(metric, stat).filter(|v| v.is_finite()).map(|v| to_ms(v, unit));
    let summary = Summary {
        mean: get("avg").or_else(|| get("mean")),
        p50: get("p50"),
        p90: get("p90"),
        p99: get("p99"),
    };
    (!summary.is_empty()).then_some(summary)
}

fn aiperf_rate(metrics: &Value, key: &str) -> Option<f64> {
    let metric = metrics.get(key)?;
    field(metric, "avg")
        .or_else(|| field(metric, "mean"))
        .filter(|v| v.is_finite() && *v > 0.0)
}

fn aiperf_metrics(metrics: &Value) -> MeasuredMetrics {
    MeasuredMetrics {
        ttft_ms: aiperf_summary(metrics, "time_to_first_token"),
        itl_ms: aiperf_summary(metrics, "inter_chunk_latency"),
        tpot_ms: aiperf_summary(metrics, "inter_token_latency"),
        e2e_ms: aiperf_summary(metrics, "request_latency"),
        output_tok_per_s: aiperf_rate(metrics, "output_token_throughput"),
        input_tok_per_s: aiperf_rate(metrics, "input_token_throughput"),
        request_per_s: aiperf_rate(metrics, "request_throughput"),
    }
}

fn aiperf_workload(config: &AiperfConfig, metrics: &Value, path: &str) -> Result<Workload> {
    let measured_mean = |key: &str| metrics.get(key).and_then(|m| field(m, "avg").or_else(|| field(m, "mean")));
    let isl = config.isl_tokens.or_else(|| measured_mean("input_sequence_length"));
    let osl = config.osl_tokens.or_else(|| measured_mean("output_sequence_length"));
    let bad = |message: &str| Error::BadSource {
        path: path.into(),
        message: message.into(),
    };
    let isl_tokens = positive_u64(isl).ok_or_else(|| bad("no input length in input_config or metrics"))?;
    let osl_tokens = positive_u64(osl).ok_or_else(|| bad("no output length in input_config or metrics"))?;
    let load = config
        .load
        .ok_or_else(|| bad("no concurrency or request rate in the profiling phase"))?;
    let n_requests = config
        .n_requests
        .or_else(|| positive_u64(measured_mean("request_count")))
        .unwrap_or(match load {
            Load::Concurrency(c) => 10 * c,
            Load::RequestRatePerS(_) => 100,
        });
    let lengths = if config.isl_std_tokens > 0.0 || config.osl_std_tokens > 0.0 {
        Lengths::Normal {
            isl_std_tokens: config.isl_std_tokens,
            osl_std_tokens: config.osl_std_tokens,
        }
    } else {
        Lengths::Fixed
    };
    Ok(Workload::Served {
        isl_tokens,
        osl_tokens,
        lengths,
        load,
        n_requests,
        n_warmup: config.n_warmup,
    })
}

/// Parses one AIPerf run summary (`profile_export_aiperf.json`) into a point; also returns the model name.
pub fn parse_aiperf_run(text: &str, path: &str) -> Result<(MeasuredPoint, Option<String>)> {
    let summary: Value = serde_json::from_str(text).map_err(|e| Error::BadSource {
        path: path.into(),
        message: format!("not JSON: {e}"),
    })?;
    if summary.get("time_to_first_token").is_none() && summary.get("request_latency").is_none() {
        return Err(Error::BadSource {
            path: path.into(),
            message: "no time_to_first_token or request_latency: not an AIPerf summary".into(),
        });
    }
    if summary.get("was_cancelled").and_then(Value::as_bool) == Some(true) {
        return Err(Error::BadSource {
            path: path.into(),
            message: "the run was cancelled".into(),
        });
    }
    let config = aiperf_config(&summary);
    let workload = aiperf_workload(&config, &summary, path)?;
    let measured = aiperf_metrics(&summary);
    let label = match &workload {
        Workload::Served {
            isl_tokens,
            osl_tokens,
            load,
            ..
        } => format!("{} isl={isl_tokens} osl={osl_tokens}", load_label(*load)),
        _ => String::new(),
    };
    Ok((
        MeasuredPoint {
            workload,
            measured,
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::AiperfRun,
                label,
            },
        },
        config.model,
    ))
}

/// A swept parameter by name: the key itself (`concurrency`) or a dotted path ending in it
/// (`datasets.main.prompts.isl.mean`, as multi-parameter sweeps name them).
fn sweep_parameter(parameters: &Value, names: &[&str]) -> Option<f64> {
    let object = parameters.as_object()?;
    names.iter().find_map(|name| {
        let suffix = format!(".{name}");
        object
            .iter()
            .find(|(key, _)| key.as_str() == *name || key.ends_with(&suffix))
            .and_then(|(_, value)| number(value))
    })
}

/// Parses a sweep aggregate (`profile_export_aiperf_sweep.json`): one point per combination.
///
/// `base` is the summary text of any run of the sweep; its `input_config` supplies what the
/// combination's parameters do not (lengths, request counts). Without it lengths come from the
/// measured means.
pub fn parse_aiperf_sweep(text: &str, path: &str, base: Option<&str>) -> Result<(Vec<MeasuredPoint>, Option<String>)> {
    let sweep: Value = serde_json::from_str(text).map_err(|e| Error::BadSource {
        path: path.into(),
        message: format!("not JSON: {e}"),
    })?;
    let combinations = sweep
        .get("per_combination_metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadSource {
            path: path.into(),
            message: "no per_combination_metrics: not an AIPerf sweep aggregate".into(),
        })?;
    let base_config = base
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .map(|summary| aiperf_config(&summary));
    let mut points = Vec::new();
    for (index, combination) in combinations.iter().enumerate() {
        let parameters = combination.get("parameters").unwrap_or(&Value::Null);
        let metrics = combination.get("metrics").unwrap_or(&Value::Null);
        let mut config = base_config.clone().unwrap_or(AiperfConfig {
            isl_tokens: None,
            isl_std_tokens: 0.0,
            osl_tokens: None,
            osl_std_tokens: 0.0,
            load: None,
            n_requests: None,
            n_warmup: 0,
            model: None,
        });
        if base_config.is_none() {
            config.n_requests = positive_u64(metrics.get("request_count").and_then(|m| field(m, "avg")));
        }
        if let Some(isl) = sweep_parameter(parameters, &["isl", "isl.mean"]) {
            config.isl_tokens = Some(isl);
        }
        if let Some(osl) = sweep_parameter(parameters, &["osl", "osl.mean"]) {
            config.osl_tokens = Some(osl);
        }
        if let Some(concurrency) = positive_u64(sweep_parameter(parameters, &["concurrency"])) {
            config.load = Some(Load::Concurrency(concurrency));
        }
        if let Some(rate) = sweep_parameter(parameters, &["request_rate"]).filter(|r| *r > 0.0) {
            config.load = Some(Load::RequestRatePerS(rate));
        }
        if let Some(requests) = positive_u64(sweep_parameter(parameters, &["requests", "request_count"])) {
            config.n_requests = Some(requests);
        }
        let label_path = format!("{path} combination {index}");
        let workload = aiperf_workload(&config, metrics, &label_path)?;
        let label = serde_json::to_string(parameters).unwrap_or_default();
        points.push(MeasuredPoint {
            workload,
            measured: aiperf_metrics(metrics),
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::AiperfSweepAggregate,
                label,
            },
        });
    }
    Ok((points, base_config.and_then(|c| c.model)))
}

pub(super) fn ingest_aiperf_run_dir(dir: &Path, out: &mut Ingested) {
    let path = dir.join(AIPERF_SUMMARY);
    let Some(text) = read_text(&path, out) else { return };
    match parse_aiperf_run(&text, &path.display().to_string()) {
        Ok((point, model)) => {
            if let Some(model) = model {
                out.hint(&model);
            }
            out.add(&path, SourceKind::AiperfRun, vec![point]);
        }
        Err(error) => out.warnings.push(error.to_string()),
    }
}

/// A sweep folder: run folders first, then the aggregate's combinations that no run folder covers.
pub(super) fn ingest_aiperf_sweep_dir(dir: &Path, out: &mut Ingested) {
    let mut run_workloads = Vec::new();
    let mut base_text = None;
    for entry in sorted_entries(dir) {
        if entry.is_dir() && entry.join(AIPERF_SUMMARY).is_file() {
            let before = out.points.len();
            ingest_aiperf_run_dir(&entry, out);
            run_workloads.extend(out.points[before..].iter().map(|p| p.workload.clone()));
            if base_text.is_none() {
                base_text = std::fs::read_to_string(entry.join(AIPERF_SUMMARY)).ok();
            }
        }
    }
    let sweep_path = dir.join("sweep_aggregate").join(AIPERF_SWEEP);
    let Some(text) = read_text(&sweep_path, out) else { return };
    match parse_aiperf_sweep(&text, &sweep_path.display().to_string(), base_text.as_deref()) {
        Ok((points, _)) => {
            let missing: Vec<MeasuredPoint> = points
                .into_iter()
                .filter(|p| !run_workloads.iter().any(|w| same_served_setup(w, &p.workload)))
                .collect();
            if !missing.is_empty() {
                out.add(&sweep_path, SourceKind::AiperfSweepAggregate, missing);
            }
        }
        Err(error) => out.warnings.push(error.to_string()),
    }
}

fn same_served_setup(a: &Workload, b: &Workload) -> bool {
    match (a, b) {
        (
            Workload::Served {
                isl_tokens: ia,
                osl_tokens: oa,
                load: la,
                ..
            },
            Workload::Served {
                isl_tokens: ib,
                osl_tokens: ob,
                load: lb,
                ..
            },
        ) => ia == ib && oa == ob && la == lb,
        _ => false,
    }
}
