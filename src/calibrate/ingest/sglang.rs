//! SGLang's own benchmark outputs: `bench_serving` and `bench_one_batch` JSONL.

use super::*;

fn jsonl_objects<'t>(text: &'t str, path: &'t str) -> impl Iterator<Item = (usize, std::result::Result<Value, String>)> + 't {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(index, line)| {
            let parsed =
                serde_json::from_str::<Value>(&replace_non_finite(line)).map_err(|e| format!("{path}: line {}: not JSON: {e}", index + 1));
            (index + 1, parsed)
        })
}

fn summary_from(object: &Value, name: &str) -> Option<Summary> {
    let get = |prefix: &str| field(object, &format!("{prefix}_{name}_ms")).filter(|v| v.is_finite() && *v > 0.0);
    let summary = Summary {
        mean: get("mean"),
        p50: get("median"),
        p90: get("p90"),
        p99: get("p99"),
    };
    (!summary.is_empty()).then_some(summary)
}

/// One point per JSONL line through `point`; bad lines become warnings, and a file with no usable
/// line is an error naming `what`.
fn parse_points(
    text: &str,
    path: &str,
    what: &str,
    point: impl Fn(&Value, &str, usize) -> std::result::Result<MeasuredPoint, String>,
) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for (line, parsed) in jsonl_objects(text, path) {
        match parsed.and_then(|object| point(&object, path, line).map_err(|message| format!("{path}: line {line}: {message}"))) {
            Ok(point) => points.push(point),
            Err(message) => warnings.push(message),
        }
    }
    if points.is_empty() && !warnings.is_empty() {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("no usable {what} line ({})", warnings.join("; ")),
        });
    }
    Ok((points, warnings))
}

/// Parses `sglang.bench_serving --output-file` JSONL: one point per line; bad lines become warnings.
pub fn parse_bench_serving(text: &str, path: &str) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    parse_points(text, path, "bench_serving", bench_serving_point)
}

fn bench_serving_point(object: &Value, path: &str, line: usize) -> std::result::Result<MeasuredPoint, String> {
    let completed = positive_u64(field(object, "completed")).ok_or("no completed requests")?;
    let mean_of = |total_key: &str| field(object, total_key).map(|total| total / completed as f64);
    let isl_tokens = positive_u64(field(object, "random_input_len"))
        .or_else(|| positive_u64(mean_of("total_input_tokens")))
        .ok_or("no random_input_len or total_input_tokens")?;
    let osl_tokens = positive_u64(field(object, "random_output_len"))
        .or_else(|| positive_u64(mean_of("total_output_tokens")))
        .ok_or("no random_output_len or total_output_tokens")?;
    let rate = field(object, "request_rate").unwrap_or(f64::INFINITY);
    // A finite rate with a concurrency cap is modelled as the rate (the cap binds only near saturation).
    let load = match positive_u64(field(object, "max_concurrency")) {
        Some(concurrency) if !(rate.is_finite() && rate > 0.0) => Load::Concurrency(concurrency),
        _ if rate > 0.0 => Load::RequestRatePerS(rate),
        _ => return Err(format!("request_rate {rate} without max_concurrency")),
    };
    let lengths = match field(object, "random_range_ratio") {
        Some(ratio) if (0.0..1.0).contains(&ratio) => Lengths::Uniform { range_ratio: ratio },
        _ => Lengths::Fixed,
    };
    let measured = MeasuredMetrics {
        ttft_ms: summary_from(object, "ttft"),
        itl_ms: summary_from(object, "itl"),
        tpot_ms: summary_from(object, "tpot"),
        e2e_ms: summary_from(object, "e2e_latency"),
        output_tok_per_s: field(object, "output_throughput").filter(|v| *v > 0.0),
        input_tok_per_s: field(object, "input_throughput").filter(|v| *v > 0.0),
        request_per_s: field(object, "request_throughput").filter(|v| *v > 0.0),
    };
    if measured.ttft_ms.is_none() && measured.itl_ms.is_none() && measured.tpot_ms.is_none() {
        return Err("no TTFT, ITL or TPOT".into());
    }
    Ok(MeasuredPoint {
        workload: Workload::Served {
            isl_tokens,
            osl_tokens,
            lengths,
            load,
            n_requests: completed,
            n_warmup: 0,
        },
        measured,
        provenance: Provenance {
            path: path.into(),
            kind: SourceKind::BenchServing,
            label: format!("line {line} {} isl={isl_tokens} osl={osl_tokens}", load_label(load)),
        },
    })
}

/// Parses `sglang.bench_one_batch --result-filename` JSONL: prefill latency of the batch and median decode step (seconds in the file).
pub fn parse_bench_one_batch(text: &str, path: &str) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    parse_points(text, path, "bench_one_batch", bench_one_batch_point)
}

fn bench_one_batch_point(object: &Value, path: &str, line: usize) -> std::result::Result<MeasuredPoint, String> {
    let batch = positive_u64(field(object, "batch_size"));
    let isl = positive_u64(field(object, "input_len"));
    let osl = positive_u64(field(object, "output_len"));
    let (Some(batch), Some(isl_tokens), Some(osl_tokens)) = (batch, isl, osl) else {
        return Err("needs batch_size, input_len and output_len".into());
    };
    let seconds = |key: &str| field(object, key).filter(|v| v.is_finite() && *v > 0.0).map(|s| s * 1e3);
    let prefill_ms = seconds("prefill_latency");
    let decode_ms = seconds("median_decode_latency");
    if prefill_ms.is_none() && decode_ms.is_none() {
        return Err("no prefill_latency or median_decode_latency".into());
    }
    Ok(MeasuredPoint {
        workload: Workload::StaticBatch {
            batch,
            isl_tokens,
            osl_tokens,
        },
        measured: MeasuredMetrics {
            ttft_ms: prefill_ms.map(Summary::mean_only),
            itl_ms: decode_ms.map(|ms| Summary {
                p50: Some(ms),
                ..Summary::default()
            }),
            e2e_ms: seconds("total_latency").map(Summary::mean_only),
            ..MeasuredMetrics::default()
        },
        provenance: Provenance {
            path: path.into(),
            kind: SourceKind::BenchOneBatch,
            label: format!("line {line} batch={batch} isl={isl_tokens} osl={osl_tokens}"),
        },
    })
}
