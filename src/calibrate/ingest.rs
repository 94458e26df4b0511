//! Reads existing serving measurements into one type, [`MeasuredPoint`]: a workload, what was measured, and where it came from.
//!
//! Sources, detected from each path given to [`ingest_path`]:
//! - AIPerf artifact folders: a run (`profile_export_aiperf.json`), or a sweep (`concurrency_N/`,
//!   `isl_…__concurrency_…/` run folders, `sweep_aggregate/profile_export_aiperf_sweep.json` for
//!   combinations whose run folder is absent). AIPerf's `inter_token_latency` is per request
//!   (E2E − TTFT) / (OSL − 1), which `bench_serving` calls TPOT; its `inter_chunk_latency` is the ITL.
//! - Dynamo SLA-profiler folders: `selected_{prefill,decode}_interpolation/raw_data.npz` (stored, as
//!   `np.savez` writes) or the JSON twins `prefill_raw_data.json` / `decode_raw_data.json`. Prefill
//!   points are batch-1 TTFT by input length; decode points are ITL at (KV usage, context), turned
//!   into a batch with the archive's `max_kv_tokens`.
//! - `sglang.bench_serving` JSONL (one object per run), `sglang.bench_one_batch` JSONL (one object
//!   per batch, input and output length; latencies in seconds), and `sglsim bench` per-request
//!   records (grouped into points by file, load, requested output length and input length).
//!
//! Parsers take text or bytes ([`parse_bench_serving`], [`parse_dynamo_npz`], ...); [`ingest_path`]
//! walks files and folders. Problems with one row or one file become warnings in [`Ingested`] and
//! the rest is still read.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::NpzReader;
use serde::Serialize;
use serde_json::Value;

use super::error::{Error, Result};

/// How a measurement's requests arrived.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// A closed loop of this many clients.
    Concurrency(u64),
    /// Poisson arrivals at this rate, requests/s (`f64::INFINITY`: all at once).
    RequestRatePerS(f64),
}

/// How input and output lengths were drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lengths {
    /// Exactly the nominal lengths.
    Fixed,
    /// `bench_serving --random-range-ratio r`: uniform in `[L·r, L]`.
    Uniform {
        /// The range ratio in [0, 1].
        range_ratio: f64,
    },
    /// AIPerf: normal around the nominal lengths.
    Normal {
        /// Input-length standard deviation, tokens.
        isl_std_tokens: f64,
        /// Output-length standard deviation, tokens.
        osl_std_tokens: f64,
    },
}

/// What was run to get a measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Workload {
    /// Requests sent by a benchmark client to a server (AIPerf, `bench_serving`, `sglsim bench`).
    Served {
        /// Nominal input length (the maximum for uniform lengths), tokens.
        isl_tokens: u64,
        /// Nominal output length, tokens.
        osl_tokens: u64,
        /// Length distribution.
        lengths: Lengths,
        /// Arrivals.
        load: Load,
        /// Measured requests.
        n_requests: u64,
        /// Warm-up requests sent first.
        n_warmup: u64,
    },
    /// One static batch run without a server (`sglang.bench_one_batch`).
    StaticBatch {
        /// Requests in the batch.
        batch: u64,
        /// Input length, tokens.
        isl_tokens: u64,
        /// Output length, tokens.
        osl_tokens: u64,
    },
    /// One request's prefill alone, through a server (Dynamo prefill points).
    PrefillAlone {
        /// Input length, tokens.
        isl_tokens: u64,
    },
    /// One decode step of an engine holding `batch` requests of `context_tokens` each (Dynamo decode points).
    DecodeStep {
        /// Requests decoding together (whole engine).
        batch: u64,
        /// Tokens in KV per request.
        context_tokens: u64,
    },
}

/// Mean and percentiles of one latency metric, ms; absent statistics are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Summary {
    /// A summary holding only a mean.
    pub fn mean_only(value: f64) -> Summary {
        Summary {
            mean: Some(value),
            ..Summary::default()
        }
    }

    /// The median if known, else the mean.
    pub fn central(&self) -> Option<f64> {
        self.p50.or(self.mean)
    }

    fn is_empty(&self) -> bool {
        self.mean.is_none() && self.p50.is_none() && self.p90.is_none() && self.p99.is_none()
    }
}

/// What a client measured; a source fills what it has.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MeasuredMetrics {
    /// Time to first token, ms (for a static batch: the batch's prefill latency).
    pub ttft_ms: Option<Summary>,
    /// Gaps between streamed chunks, ms (for a static batch or a Dynamo decode point: one decode step).
    pub itl_ms: Option<Summary>,
    /// Per request (E2E − TTFT) / (output tokens − 1), ms.
    pub tpot_ms: Option<Summary>,
    /// End-to-end latency, ms.
    pub e2e_ms: Option<Summary>,
    /// Output tokens per second over the run.
    pub output_tok_per_s: Option<f64>,
    /// Input tokens per second over the run.
    pub input_tok_per_s: Option<f64>,
    /// Completed requests per second.
    pub request_per_s: Option<f64>,
}

/// The format a point was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// One AIPerf run folder (`profile_export_aiperf.json`).
    AiperfRun,
    /// An AIPerf sweep's `sweep_aggregate/profile_export_aiperf_sweep.json`.
    AiperfSweepAggregate,
    /// Dynamo profiler prefill points (npz or JSON).
    DynamoPrefill,
    /// Dynamo profiler decode points (npz or JSON).
    DynamoDecode,
    /// `sglang.bench_serving` JSONL.
    BenchServing,
    /// `sglang.bench_one_batch` JSONL.
    BenchOneBatch,
    /// `sglsim bench` per-request records.
    SglsimBench,
}

impl SourceKind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::AiperfRun => "aiperf-run",
            SourceKind::AiperfSweepAggregate => "aiperf-sweep",
            SourceKind::DynamoPrefill => "dynamo-prefill",
            SourceKind::DynamoDecode => "dynamo-decode",
            SourceKind::BenchServing => "bench-serving",
            SourceKind::BenchOneBatch => "bench-one-batch",
            SourceKind::SglsimBench => "sglsim-bench",
        }
    }
}

/// Where a point came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// The file it was read from.
    pub path: String,
    /// Its format.
    pub kind: SourceKind,
    /// Which part of the file (`concurrency=4`, `line 3`, `isl=1117`).
    pub label: String,
}

/// One measured configuration: workload, metrics and provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredPoint {
    /// What was run.
    pub workload: Workload,
    /// What was measured.
    pub measured: MeasuredMetrics,
    /// Where it came from.
    pub provenance: Provenance,
}

/// One file that gave points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    /// The file.
    pub path: String,
    /// Its format.
    pub kind: SourceKind,
    /// Points read from it.
    pub n_points: usize,
}

/// Everything read from the given paths.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ingested {
    /// Points, in the order read.
    pub points: Vec<MeasuredPoint>,
    /// Rows and files that were skipped, and why.
    pub warnings: Vec<String>,
    /// Files that gave points.
    pub sources: Vec<SourceSummary>,
    /// Model names the sources mention (AIPerf `--model`, Dynamo metadata), deduplicated.
    pub model_hints: Vec<String>,
}

impl Ingested {
    fn add(&mut self, path: &Path, kind: SourceKind, points: Vec<MeasuredPoint>) {
        self.sources.push(SourceSummary {
            path: path.display().to_string(),
            kind,
            n_points: points.len(),
        });
        self.points.extend(points);
    }

    fn hint(&mut self, model: &str) {
        if !model.is_empty() && !self.model_hints.iter().any(|m| m == model) {
            self.model_hints.push(model.to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Walking files and folders.

const AIPERF_SUMMARY: &str = "profile_export_aiperf.json";
const AIPERF_SWEEP: &str = "profile_export_aiperf_sweep.json";
const MAX_DEPTH: usize = 6;

/// Reads every measurement under `path` (a file or a folder), adding points and warnings to `out`.
///
/// A path that exists but holds nothing readable adds a warning; a path that does not exist is an error.
pub fn ingest_path(path: &Path, out: &mut Ingested) -> Result<()> {
    if !path.exists() {
        return Err(Error::BadSource {
            path: path.display().to_string(),
            message: "no such file or folder".into(),
        });
    }
    let before = out.points.len();
    if path.is_dir() {
        walk_dir(path, out, 0);
    } else {
        ingest_file(path, out, true);
    }
    if out.points.len() == before {
        out.warnings.push(format!("{}: no measured points found", path.display()));
    }
    Ok(())
}

fn read_text(path: &Path, out: &mut Ingested) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            out.warnings.push(format!("{}: cannot read: {error}", path.display()));
            None
        }
    }
}

fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn walk_dir(dir: &Path, out: &mut Ingested, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if dir.join(AIPERF_SUMMARY).is_file() {
        ingest_aiperf_run_dir(dir, out);
        return;
    }
    if is_dynamo_dir(dir) {
        ingest_dynamo_dir(dir, out);
        return;
    }
    if dir.join("sweep_aggregate").join(AIPERF_SWEEP).is_file() {
        ingest_aiperf_sweep_dir(dir, out);
        return;
    }
    for entry in sorted_entries(dir) {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if entry.is_dir() {
            if !matches!(name, "phases" | "aggregate") && !name.starts_with('.') {
                walk_dir(&entry, out, depth + 1);
            }
        } else {
            ingest_file(&entry, out, false);
        }
    }
}

/// Reads one file by its name or content; `explicit` files that match no format add a warning.
fn ingest_file(path: &Path, out: &mut Ingested, explicit: bool) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if name == AIPERF_SUMMARY {
        let dir = path.parent().unwrap_or(Path::new("."));
        ingest_aiperf_run_dir(dir, out);
        return;
    }
    if name == AIPERF_SWEEP {
        if let Some(text) = read_text(path, out) {
            match parse_aiperf_sweep(&text, &path.display().to_string(), None) {
                Ok((points, model)) => {
                    if let Some(model) = model {
                        out.hint(&model);
                    }
                    out.add(path, SourceKind::AiperfSweepAggregate, points);
                }
                Err(error) => out.warnings.push(error.to_string()),
            }
        }
        return;
    }
    if extension == "npz" {
        match std::fs::read(path) {
            Ok(bytes) => match parse_dynamo_npz(&bytes, &path.display().to_string()) {
                Ok(parsed) => add_dynamo(path, parsed, out),
                Err(error) => out.warnings.push(error.to_string()),
            },
            Err(error) => out.warnings.push(format!("{}: cannot read: {error}", path.display())),
        }
        return;
    }
    if !matches!(extension.as_str(), "json" | "jsonl") {
        if explicit {
            out.warnings.push(format!(
                "{}: not a known measurement file (expected .json, .jsonl or .npz)",
                path.display()
            ));
        }
        return;
    }
    let Some(text) = read_text(path, out) else { return };
    let display = path.display().to_string();
    let result = match sniff(&text) {
        Some(Sniffed::DynamoPrefillJson) | Some(Sniffed::DynamoDecodeJson) => {
            parse_dynamo_json(&text, &display).map(|parsed| add_dynamo(path, parsed, out))
        }
        Some(Sniffed::BenchServing) => parse_bench_serving(&text, &display).map(|(points, warnings)| {
            out.warnings.extend(warnings);
            out.add(path, SourceKind::BenchServing, points);
        }),
        Some(Sniffed::BenchOneBatch) => parse_bench_one_batch(&text, &display).map(|(points, warnings)| {
            out.warnings.extend(warnings);
            out.add(path, SourceKind::BenchOneBatch, points);
        }),
        Some(Sniffed::SglsimBench) => parse_bench_records(&text, &display).map(|(points, warnings)| {
            out.warnings.extend(warnings);
            out.add(path, SourceKind::SglsimBench, points);
        }),
        Some(Sniffed::AiperfRecords) => {
            if explicit {
                out.warnings.push(format!(
                    "{display}: AIPerf per-request records; give the run folder (with {AIPERF_SUMMARY}) instead"
                ));
            }
            Ok(())
        }
        None => {
            if explicit {
                out.warnings.push(format!("{display}: not a known measurement format"));
            }
            Ok(())
        }
    };
    if let Err(error) = result {
        out.warnings.push(error.to_string());
    }
}

enum Sniffed {
    DynamoPrefillJson,
    DynamoDecodeJson,
    BenchServing,
    BenchOneBatch,
    SglsimBench,
    AiperfRecords,
}

/// Guesses a JSON/JSONL file's format from its first object's keys.
fn sniff(text: &str) -> Option<Sniffed> {
    let first: Value = serde_json::from_str(text.trim()).ok().or_else(|| {
        let line = text.lines().find(|l| !l.trim().is_empty())?;
        serde_json::from_str(&replace_non_finite(line)).ok()
    })?;
    let has = |key: &str| first.get(key).is_some();
    if has("prefill_isl") && has("prefill_ttft") {
        Some(Sniffed::DynamoPrefillJson)
    } else if has("x_kv_usage") && has("z_itl") {
        Some(Sniffed::DynamoDecodeJson)
    } else if has("chunk_times_s") && has("sent_s") {
        Some(Sniffed::SglsimBench)
    } else if has("median_decode_latency") || (has("prefill_latency") && has("batch_size")) {
        Some(Sniffed::BenchOneBatch)
    } else if has("median_ttft_ms") || has("mean_ttft_ms") || (has("output_throughput") && has("completed")) {
        Some(Sniffed::BenchServing)
    } else if first.get("metadata").and_then(|m| m.get("benchmark_phase")).is_some() {
        Some(Sniffed::AiperfRecords)
    } else {
        None
    }
}

/// Python's `json.dumps` writes `Infinity` and `NaN`, which JSON lacks: make them strings outside string literals.
fn replace_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        if ch == '"' {
            in_string = true;
        }
        let replaced = [("-Infinity", "\"-inf\""), ("Infinity", "\"inf\""), ("NaN", "null")]
            .into_iter()
            .find(|(token, _)| rest.starts_with(token));
        if let Some((token, replacement)) = replaced {
            out.push_str(replacement);
            rest = &rest[token.len()..];
        } else {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

/// A JSON number, or a string holding one (`"inf"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn field(object: &Value, key: &str) -> Option<f64> {
    object.get(key).and_then(number)
}

fn positive_u64(value: Option<f64>) -> Option<u64> {
    value.filter(|v| v.is_finite() && *v >= 0.5).map(|v| v.round() as u64)
}

// ---------------------------------------------------------------------------------------------
// AIPerf.

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

fn load_label(load: Load) -> String {
    match load {
        Load::Concurrency(c) => format!("concurrency={c}"),
        Load::RequestRatePerS(r) => format!("request_rate={r}"),
    }
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
        if let Some(isl) = field(parameters, "isl") {
            config.isl_tokens = Some(isl);
        }
        if let Some(osl) = field(parameters, "osl") {
            config.osl_tokens = Some(osl);
        }
        if let Some(concurrency) = positive_u64(field(parameters, "concurrency")) {
            config.load = Some(Load::Concurrency(concurrency));
        }
        if let Some(rate) = field(parameters, "request_rate").filter(|r| *r > 0.0) {
            config.load = Some(Load::RequestRatePerS(rate));
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

fn ingest_aiperf_run_dir(dir: &Path, out: &mut Ingested) {
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
fn ingest_aiperf_sweep_dir(dir: &Path, out: &mut Ingested) {
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

// ---------------------------------------------------------------------------------------------
// Dynamo profiler archives.

/// Points from one Dynamo archive, with the model its metadata names.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoParsed {
    /// Prefill or decode.
    pub kind: SourceKind,
    /// The points.
    pub points: Vec<MeasuredPoint>,
    /// Rows skipped, and why.
    pub warnings: Vec<String>,
}

const PREFILL_DIR: &str = "selected_prefill_interpolation";
const DECODE_DIR: &str = "selected_decode_interpolation";

fn is_dynamo_dir(dir: &Path) -> bool {
    dir.join(PREFILL_DIR).join("raw_data.npz").is_file()
        || dir.join(DECODE_DIR).join("raw_data.npz").is_file()
        || dir.join("prefill_raw_data.json").is_file()
        || dir.join("decode_raw_data.json").is_file()
}

fn ingest_dynamo_dir(dir: &Path, out: &mut Ingested) {
    for (sub, twin) in [(PREFILL_DIR, "prefill_raw_data.json"), (DECODE_DIR, "decode_raw_data.json")] {
        let npz = dir.join(sub).join("raw_data.npz");
        if npz.is_file() {
            ingest_file(&npz, out, true);
        } else if dir.join(twin).is_file() {
            ingest_file(&dir.join(twin), out, true);
        }
    }
}

fn add_dynamo(path: &Path, parsed: DynamoParsed, out: &mut Ingested) {
    out.warnings.extend(parsed.warnings);
    out.add(path, parsed.kind, parsed.points);
}

fn npz_error(path: &str) -> impl Fn(ndarray_npy::ReadNpzError) -> Error + '_ {
    move |error| {
        let text = error.to_string();
        let message = if text.to_ascii_lowercase().contains("compression") {
            format!("{text}: deflate-compressed archives (np.savez_compressed) are not read by this build; re-save with np.savez")
        } else {
            text
        };
        Error::BadSource {
            path: path.into(),
            message,
        }
    }
}

/// Reads one numeric array of an archive as f64 (int64 and float64 both accepted), flattened.
fn npz_array(archive: &mut NpzReader<Cursor<&[u8]>>, name: &str, path: &str) -> Result<Vec<f64>> {
    let as_f64: std::result::Result<ArrayD<f64>, _> = archive.by_name::<OwnedRepr<f64>, IxDyn>(name);
    match as_f64 {
        Ok(array) => Ok(array.iter().copied().collect()),
        Err(_) => {
            let array: ArrayD<i64> = archive.by_name::<OwnedRepr<i64>, IxDyn>(name).map_err(npz_error(path))?;
            Ok(array.iter().map(|&v| v as f64).collect())
        }
    }
}

/// Parses a Dynamo profiler archive (`raw_data.npz`): prefill or decode, told apart by its keys.
pub fn parse_dynamo_npz(bytes: &[u8], path: &str) -> Result<DynamoParsed> {
    let mut archive = NpzReader::new(Cursor::new(bytes)).map_err(npz_error(path))?;
    let names: Vec<String> = archive
        .names()
        .map_err(npz_error(path))?
        .into_iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let has = |key: &str| names.iter().any(|n| n == key);
    if has("prefill_isl") && has("prefill_ttft") {
        let isl = npz_array(&mut archive, "prefill_isl", path)?;
        let ttft = npz_array(&mut archive, "prefill_ttft", path)?;
        dynamo_prefill(&isl, &ttft, path)
    } else if has("x_kv_usage") && has("y_context_length") && has("z_itl") && has("max_kv_tokens") {
        let kv_usage = npz_array(&mut archive, "x_kv_usage", path)?;
        let context = npz_array(&mut archive, "y_context_length", path)?;
        let itl = npz_array(&mut archive, "z_itl", path)?;
        let max_kv = npz_array(&mut archive, "max_kv_tokens", path)?;
        dynamo_decode(&kv_usage, &context, &itl, &max_kv, path)
    } else {
        Err(Error::BadSource {
            path: path.into(),
            message: format!(
                "keys {names:?} are neither Dynamo prefill (prefill_isl, prefill_ttft) nor decode (x_kv_usage, y_context_length, z_itl, max_kv_tokens)"
            ),
        })
    }
}

/// Parses a Dynamo JSON twin (`prefill_raw_data.json` or `decode_raw_data.json`).
pub fn parse_dynamo_json(text: &str, path: &str) -> Result<DynamoParsed> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::BadSource {
        path: path.into(),
        message: format!("not JSON: {e}"),
    })?;
    let list = |key: &str| -> Result<Vec<f64>> {
        match value.get(key) {
            Some(Value::Array(items)) => Ok(items.iter().map(|v| number(v).unwrap_or(f64::NAN)).collect()),
            Some(other) => number(other).map(|v| vec![v]).ok_or_else(|| Error::BadSource {
                path: path.into(),
                message: format!("{key} is neither a list nor a number"),
            }),
            None => Err(Error::BadSource {
                path: path.into(),
                message: format!("no key {key}"),
            }),
        }
    };
    if value.get("prefill_isl").is_some() {
        dynamo_prefill(&list("prefill_isl")?, &list("prefill_ttft")?, path)
    } else {
        dynamo_decode(
            &list("x_kv_usage")?,
            &list("y_context_length")?,
            &list("z_itl")?,
            &list("max_kv_tokens")?,
            path,
        )
    }
}

fn length_mismatch(path: &str, what: &str, lengths: &[usize]) -> Error {
    Error::BadSource {
        path: path.into(),
        message: format!("{what} arrays differ in length: {lengths:?}"),
    }
}

fn dynamo_prefill(isl: &[f64], ttft_ms: &[f64], path: &str) -> Result<DynamoParsed> {
    if isl.len() != ttft_ms.len() {
        return Err(length_mismatch(path, "prefill_isl and prefill_ttft", &[isl.len(), ttft_ms.len()]));
    }
    let mut parsed = DynamoParsed {
        kind: SourceKind::DynamoPrefill,
        points: Vec::new(),
        warnings: Vec::new(),
    };
    for (row, (&isl, &ttft)) in isl.iter().zip(ttft_ms).enumerate() {
        let Some(isl_tokens) = positive_u64(Some(isl)) else {
            parsed
                .warnings
                .push(format!("{path}: row {row}: prefill_isl {isl} is not a positive length"));
            continue;
        };
        if !(ttft.is_finite() && ttft > 0.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: prefill_ttft {ttft} ms is not a positive time"));
            continue;
        }
        parsed.points.push(MeasuredPoint {
            workload: Workload::PrefillAlone { isl_tokens },
            measured: MeasuredMetrics {
                ttft_ms: Some(Summary::mean_only(ttft)),
                ..MeasuredMetrics::default()
            },
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::DynamoPrefill,
                label: format!("isl={isl_tokens}"),
            },
        });
    }
    Ok(parsed)
}

fn dynamo_decode(kv_usage: &[f64], context: &[f64], itl_ms: &[f64], max_kv: &[f64], path: &str) -> Result<DynamoParsed> {
    if kv_usage.len() != context.len() || kv_usage.len() != itl_ms.len() {
        return Err(length_mismatch(
            path,
            "x_kv_usage, y_context_length and z_itl",
            &[kv_usage.len(), context.len(), itl_ms.len()],
        ));
    }
    let rows_of_configs = max_kv.len();
    if rows_of_configs != 1 {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!(
                "{rows_of_configs} max_kv_tokens values: archives of several configurations (pre-swept tables) are not read; give one configuration's raw_data.npz"
            ),
        });
    }
    let max_kv_tokens = max_kv[0];
    if !(max_kv_tokens.is_finite() && max_kv_tokens >= 1.0) {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("max_kv_tokens {max_kv_tokens} is not a positive token count"),
        });
    }
    let mut parsed = DynamoParsed {
        kind: SourceKind::DynamoDecode,
        points: Vec::new(),
        warnings: Vec::new(),
    };
    for row in 0..kv_usage.len() {
        let (usage, context, itl) = (kv_usage[row], context[row], itl_ms[row]);
        if !(usage.is_finite() && (0.0..=1.5).contains(&usage) && context.is_finite() && context >= 1.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: kv usage {usage} or context {context} out of range"));
            continue;
        }
        if !(itl.is_finite() && itl > 0.0) {
            parsed
                .warnings
                .push(format!("{path}: row {row}: z_itl {itl} ms is not a positive time"));
            continue;
        }
        let batch = ((usage * max_kv_tokens / context).round() as u64).max(1);
        let context_tokens = context.round() as u64;
        parsed.points.push(MeasuredPoint {
            workload: Workload::DecodeStep { batch, context_tokens },
            measured: MeasuredMetrics {
                itl_ms: Some(Summary::mean_only(itl)),
                ..MeasuredMetrics::default()
            },
            provenance: Provenance {
                path: path.into(),
                kind: SourceKind::DynamoDecode,
                label: format!("batch={batch} context={context_tokens}"),
            },
        });
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------------
// SGLang's benchmark outputs.

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

/// Parses `sglang.bench_serving --output-file` JSONL: one point per line; bad lines become warnings.
pub fn parse_bench_serving(text: &str, path: &str) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for (line, parsed) in jsonl_objects(text, path) {
        let object = match parsed {
            Ok(object) => object,
            Err(message) => {
                warnings.push(message);
                continue;
            }
        };
        match bench_serving_point(&object, path, line) {
            Ok(point) => points.push(point),
            Err(message) => warnings.push(format!("{path}: line {line}: {message}")),
        }
    }
    if points.is_empty() && !warnings.is_empty() {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("no usable bench_serving line ({})", warnings.join("; ")),
        });
    }
    Ok((points, warnings))
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
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for (line, parsed) in jsonl_objects(text, path) {
        let object = match parsed {
            Ok(object) => object,
            Err(message) => {
                warnings.push(message);
                continue;
            }
        };
        let batch = positive_u64(field(&object, "batch_size"));
        let isl = positive_u64(field(&object, "input_len"));
        let osl = positive_u64(field(&object, "output_len"));
        let (Some(batch), Some(isl_tokens), Some(osl_tokens)) = (batch, isl, osl) else {
            warnings.push(format!("{path}: line {line}: needs batch_size, input_len and output_len"));
            continue;
        };
        let seconds = |key: &str| field(&object, key).filter(|v| v.is_finite() && *v > 0.0).map(|s| s * 1e3);
        let prefill_ms = seconds("prefill_latency");
        let decode_ms = seconds("median_decode_latency");
        if prefill_ms.is_none() && decode_ms.is_none() {
            warnings.push(format!("{path}: line {line}: no prefill_latency or median_decode_latency"));
            continue;
        }
        points.push(MeasuredPoint {
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
        });
    }
    if points.is_empty() && !warnings.is_empty() {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("no usable bench_one_batch line ({})", warnings.join("; ")),
        });
    }
    Ok((points, warnings))
}

// ---------------------------------------------------------------------------------------------
// `sglsim bench` per-request records.

/// One request as `sglsim bench` records it (schema version 1).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BenchRecord {
    /// Record schema version (1).
    pub schema_version: u32,
    /// Request id.
    pub id: u64,
    /// Input tokens sent.
    pub isl: u64,
    /// Output tokens asked for (`max_tokens`, with `ignore_eos`).
    pub osl_requested: u64,
    /// Send time, seconds on the client's clock.
    pub sent_s: f64,
    /// Arrival of the first streamed chunk, seconds (same clock), if any.
    pub first_chunk_s: Option<f64>,
    /// Arrival of every streamed chunk, seconds (same clock), the first included.
    pub chunk_times_s: Vec<f64>,
    /// Output tokens received.
    pub output_tokens: u64,
    /// `ok` or `error`.
    pub status: String,
    /// The error, when `status` is `error`.
    pub error: Option<String>,
    /// Whether the request was a warm-up, left out of metrics.
    pub warmup: bool,
    /// Clients of a closed loop, if that was the load.
    pub concurrency: Option<u64>,
    /// Poisson arrival rate, requests/s, if that was the load.
    pub request_rate: Option<f64>,
}

/// Distinct input lengths above which a group's lengths count as drawn, not swept.
const MAX_DISTINCT_SWEPT_ISLS: usize = 8;

/// Groups `sglsim bench` records into points by (load, requested output length, input length) and
/// computes the metrics `bench_serving` reports: TTFT = first chunk − send; ITL = gaps between
/// chunks; TPOT = (E2E − TTFT) / (output tokens − 1); throughput over first send to last chunk.
pub fn parse_bench_records(text: &str, path: &str) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    let mut warnings = Vec::new();
    // (concurrency, rate bits, osl) -> records
    let mut groups: BTreeMap<(Option<u64>, Option<u64>, u64), Vec<BenchRecord>> = BTreeMap::new();
    let mut n_errors: BTreeMap<(Option<u64>, Option<u64>, u64), usize> = BTreeMap::new();
    for (line, line_text) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record: BenchRecord = match serde_json::from_str(line_text) {
            Ok(record) => record,
            Err(error) => {
                warnings.push(format!("{path}: line {}: not a bench record: {error}", line + 1));
                continue;
            }
        };
        if record.schema_version != 1 {
            warnings.push(format!(
                "{path}: line {}: schema_version {} (this build reads 1)",
                line + 1,
                record.schema_version
            ));
            continue;
        }
        let key = (record.concurrency, record.request_rate.map(f64::to_bits), record.osl_requested);
        if record.warmup {
            continue;
        }
        if record.status != "ok" || record.first_chunk_s.is_none() {
            *n_errors.entry(key).or_default() += 1;
            continue;
        }
        groups.entry(key).or_default().push(record);
    }
    for ((concurrency, rate, osl), n) in &n_errors {
        warnings.push(format!(
            "{path}: {n} failed requests at concurrency {concurrency:?} rate {:?} osl {osl} left out",
            rate.map(f64::from_bits)
        ));
    }
    let mut points = Vec::new();
    for ((concurrency, rate_bits, osl_requested), records) in groups {
        let load = match (concurrency, rate_bits.map(f64::from_bits)) {
            (Some(c), _) if c > 0 => Load::Concurrency(c),
            (_, Some(rate)) if rate > 0.0 => Load::RequestRatePerS(rate),
            // `sglsim bench --request-rate inf` records neither: every request was sent at once.
            (None, None) => Load::RequestRatePerS(f64::INFINITY),
            _ => {
                warnings.push(format!(
                    "{path}: {} records with neither concurrency nor request_rate left out",
                    records.len()
                ));
                continue;
            }
        };
        let mut distinct: Vec<u64> = records.iter().map(|r| r.isl).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= MAX_DISTINCT_SWEPT_ISLS {
            for isl in distinct {
                let subset: Vec<&BenchRecord> = records.iter().filter(|r| r.isl == isl).collect();
                points.push(bench_point(&subset, isl, osl_requested, Lengths::Fixed, load, path));
            }
        } else {
            let max_isl = *distinct.last().unwrap_or(&1);
            let min_isl = *distinct.first().unwrap_or(&1);
            let lengths = Lengths::Uniform {
                range_ratio: min_isl as f64 / max_isl as f64,
            };
            let all: Vec<&BenchRecord> = records.iter().collect();
            points.push(bench_point(&all, max_isl, osl_requested, lengths, load, path));
        }
    }
    if points.is_empty() {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("no successful measured requests ({})", warnings.join("; ")),
        });
    }
    Ok((points, warnings))
}

fn distribution(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let d = crate::sim::metrics::Distribution::of(samples);
    Some(Summary {
        mean: Some(d.mean),
        p50: Some(d.p50),
        p90: Some(d.p90),
        p99: Some(d.p99),
    })
}

fn bench_point(records: &[&BenchRecord], isl_tokens: u64, osl_tokens: u64, lengths: Lengths, load: Load, path: &str) -> MeasuredPoint {
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut e2e = Vec::new();
    let mut gaps = Vec::new();
    let mut start_s = f64::INFINITY;
    let mut end_s = f64::NEG_INFINITY;
    let (mut input_tokens, mut output_tokens) = (0u64, 0u64);
    for record in records {
        let first_s = record.first_chunk_s.unwrap_or(record.sent_s);
        let mut chunks: Vec<f64> = record.chunk_times_s.clone();
        if chunks.first().is_none_or(|&t| (t - first_s).abs() > 1e-6) {
            chunks.insert(0, first_s);
        }
        let last_s = chunks.iter().copied().fold(first_s, f64::max);
        ttft.push((first_s - record.sent_s) * 1e3);
        e2e.push((last_s - record.sent_s) * 1e3);
        if record.output_tokens > 1 {
            tpot.push((last_s - first_s) * 1e3 / (record.output_tokens - 1) as f64);
        }
        gaps.extend(chunks.windows(2).map(|w| (w[1] - w[0]) * 1e3));
        start_s = start_s.min(record.sent_s);
        end_s = end_s.max(last_s);
        input_tokens += record.isl;
        output_tokens += record.output_tokens;
    }
    let duration_s = end_s - start_s;
    let rate = |amount: f64| (duration_s > 0.0).then(|| amount / duration_s);
    MeasuredPoint {
        workload: Workload::Served {
            isl_tokens,
            osl_tokens,
            lengths,
            load,
            n_requests: records.len() as u64,
            n_warmup: 0,
        },
        measured: MeasuredMetrics {
            ttft_ms: distribution(&mut ttft),
            itl_ms: distribution(&mut gaps),
            tpot_ms: distribution(&mut tpot),
            e2e_ms: distribution(&mut e2e),
            output_tok_per_s: rate(output_tokens as f64),
            input_tok_per_s: rate(input_tokens as f64),
            request_per_s: rate(records.len() as f64),
        },
        provenance: Provenance {
            path: path.into(),
            kind: SourceKind::SglsimBench,
            label: format!("{} isl={isl_tokens} osl={osl_tokens}", load_label(load)),
        },
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
