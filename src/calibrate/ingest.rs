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

impl MeasuredMetrics {
    /// The metrics of a server whose clock ran `factor` times faster than real time (`sglsim serve
    /// --time-scale`), in its simulated time: latencies multiplied by `factor`, rates divided by it.
    pub fn in_simulated_time(&self, factor: f64) -> MeasuredMetrics {
        let scale = |summary: Option<Summary>| {
            summary.map(|s| Summary {
                mean: s.mean.map(|v| v * factor),
                p50: s.p50.map(|v| v * factor),
                p90: s.p90.map(|v| v * factor),
                p99: s.p99.map(|v| v * factor),
            })
        };
        MeasuredMetrics {
            ttft_ms: scale(self.ttft_ms),
            itl_ms: scale(self.itl_ms),
            tpot_ms: scale(self.tpot_ms),
            e2e_ms: scale(self.e2e_ms),
            output_tok_per_s: self.output_tok_per_s.map(|v| v / factor),
            input_tok_per_s: self.input_tok_per_s.map(|v| v / factor),
            request_per_s: self.request_per_s.map(|v| v / factor),
        }
    }
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

/// `concurrency=4` or `request_rate=2`, for labels.
fn load_label(load: Load) -> String {
    match load {
        Load::Concurrency(c) => format!("concurrency={c}"),
        Load::RequestRatePerS(r) => format!("request_rate={r}"),
    }
}

mod aiperf;
mod dynamo;
mod records;
mod sglang;

pub use aiperf::{parse_aiperf_run, parse_aiperf_sweep};
pub use dynamo::{parse_dynamo_json, parse_dynamo_npz, DynamoParsed};
pub use records::{parse_bench_records, BenchRecord};
pub use sglang::{parse_bench_one_batch, parse_bench_serving};

use aiperf::{ingest_aiperf_run_dir, ingest_aiperf_sweep_dir};
use dynamo::{add_dynamo, ingest_dynamo_dir, is_dynamo_dir};

#[cfg(test)]
mod tests;
