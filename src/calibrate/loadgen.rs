//! The load generator: streams a workload to an OpenAI-compatible server and records what a client sees.
//!
//! [`BenchConfig`] names the server, the endpoint and the workload, a [`WorkloadSpec`] drawn with
//! [`generate_requests`], so that `sglsim bench` and `sglsim predict` send identical requests for one seed.
//! [`run_bench`] builds its own tokio runtime (callers stay synchronous), checks that the server
//! answers TCP connections, then sends the requests as `sglang.bench_serving` does: a closed loop of
//! `concurrency` workers whose first requests start together, or open-loop (Poisson or all-at-once)
//! arrivals at the drawn times.
//! Prompts are lists of random token ids of exactly `isl` tokens (`/v1/completions`) or about `isl`
//! random words (`/v1/chat/completions`); every request asks for exactly `osl` tokens
//! (`max_tokens = min_tokens = osl`, `ignore_eos`) and streams them.
//! Each request becomes one [`BenchRecord`], appended to a JSONL file and flushed as soon as it
//! completes, so an interrupted run keeps every finished record.
//! [`summarise_records`] turns records into `bench_serving`'s metrics ([`BenchMetrics`]).
//!
//! Failures (refused connections, HTTP errors, malformed SSE, stalls past the timeout) become error
//! records and are counted; they never abort the run.
//! Refused connections and HTTP 5xx answers are retried with exponential backoff before the first byte.
//!
//! This module and `serve` are the only ones with network IO and tokio.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::sim::limits;
use crate::sim::metrics::Distribution;
use crate::sim::workload::{generate_requests, Arrivals, RequestSpec, WorkloadSpec};

/// Version of the [`BenchRecord`] JSONL schema.
pub const RECORD_SCHEMA_VERSION: u32 = 1;

/// Prompt token ids are drawn uniformly from this range (clear of special tokens in common vocabularies).
pub const PROMPT_TOKEN_IDS: std::ops::Range<u64> = 1000..20_000;

/// Errors of the load generator: bad configuration, an unreachable server, a records file that cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadgenError {
    /// The URL does not parse or is not plain `http://`.
    #[error("invalid --url '{url}': {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid {field} {value}: expected {expected}")]
    BadValue {
        /// The flag.
        field: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The workload cannot be drawn.
    #[error(transparent)]
    Workload(#[from] crate::sim::Error),
    /// Nothing accepts connections at the URL.
    #[error("cannot reach {url} after {attempts} tries: {reason}; is the server running?")]
    Unreachable {
        /// The URL given.
        url: String,
        /// Connection attempts made.
        attempts: u32,
        /// The last connection error.
        reason: String,
    },
    /// The records file cannot be opened or written.
    #[error("cannot write records to {path}: {source}")]
    Records {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The async runtime or HTTP client cannot start.
    #[error("cannot start the load generator: {0}")]
    Startup(String),
}

/// Which OpenAI-compatible endpoint requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`, with the prompt as a list of token ids (exact input length).
    Completions,
    /// `/v1/chat/completions`, with a text prompt of about `isl` words.
    Chat,
}

impl Endpoint {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// Everything a benchmark run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Base URL of the server, `http://host:port` (a trailing `/v1` is accepted and dropped).
    pub url: String,
    /// The `model` field of requests; `None` asks `/v1/models` and falls back to `default`.
    pub model: Option<String>,
    /// The endpoint requests go to.
    pub endpoint: Endpoint,
    /// The workload: lengths, arrivals, request counts and seed.
    pub workload: WorkloadSpec,
    /// Limit on one request from its send to its last byte, seconds; a stall past it is an error.
    pub timeout_s: f64,
    /// JSONL file each record is appended to as it completes (created when missing).
    pub records_path: Option<PathBuf>,
    /// Attempts per request for refused connections and HTTP 5xx before the first byte (at least 1).
    pub max_tries: u32,
    /// Wait before the second attempt, seconds; it doubles for each further attempt.
    pub initial_backoff_s: f64,
}

/// Whether a request completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// The stream ended normally.
    Ok,
    /// The request failed; `error` says why.
    Error,
}

/// What the client saw of one request: one line of the records file.
///
/// Times are seconds since the benchmark started.
/// `concurrency` is set for closed loops, `request_rate` for Poisson arrivals; both are null for
/// `--request-rate inf` (every request sent at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// Always [`RECORD_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Index of the request in the workload (warm-up requests first).
    pub id: u64,
    /// Input tokens sent.
    pub isl: u64,
    /// Output tokens asked for.
    pub osl_requested: u64,
    /// When the request was sent.
    pub sent_s: f64,
    /// When the first content chunk arrived.
    pub first_chunk_s: Option<f64>,
    /// When each content chunk arrived.
    pub chunk_times_s: Vec<f64>,
    /// Output tokens: the server's `usage.completion_tokens` when it sent one, else the chunk count.
    pub output_tokens: u64,
    /// Whether it completed.
    pub status: RecordStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether it was a warm-up request (left out of the metrics).
    pub warmup: bool,
    /// Clients of the closed loop.
    pub concurrency: Option<u64>,
    /// Poisson arrival rate, requests/s.
    pub request_rate: Option<f64>,
}

impl BenchRecord {
    /// Arrival of the last content chunk, seconds since the benchmark started.
    pub fn last_chunk_s(&self) -> Option<f64> {
        self.chunk_times_s.last().copied()
    }

    /// Time to first token, ms.
    pub fn ttft_ms(&self) -> Option<f64> {
        self.first_chunk_s.map(|first| (first - self.sent_s) * 1e3)
    }

    /// End-to-end latency (send to last chunk), ms.
    pub fn e2e_ms(&self) -> Option<f64> {
        self.last_chunk_s().map(|last| (last - self.sent_s) * 1e3)
    }

    /// `bench_serving`'s TPOT: (E2E − TTFT) / (output tokens − 1), ms.
    pub fn tpot_ms(&self) -> Option<f64> {
        match (self.first_chunk_s, self.last_chunk_s()) {
            (Some(first), Some(last)) if self.output_tokens > 1 => Some((last - first) * 1e3 / (self.output_tokens - 1) as f64),
            _ => None,
        }
    }
}

/// Throughput of a benchmark run, over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct BenchThroughput {
    /// Output tokens per second.
    pub output_tok_s: f64,
    /// Input tokens per second.
    pub input_tok_s: f64,
    /// Completed requests per second.
    pub request_s: f64,
}

/// The metrics of a run with `sglang.bench_serving`'s definitions, under `sglsim predict --json`'s keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchMetrics {
    /// Measured requests that completed.
    pub n_requests: u64,
    /// Measured requests that failed.
    pub n_errors: u64,
    /// First send to last completed chunk of the measured requests, seconds.
    pub duration_s: f64,
    /// Send to first chunk.
    pub ttft_ms: Distribution,
    /// Gaps between consecutive chunks, over all chunks of all requests.
    pub itl_ms: Distribution,
    /// (E2E − TTFT) / (output tokens − 1) per request.
    pub tpot_ms: Distribution,
    /// Send to last chunk.
    pub e2e_ms: Distribution,
    /// Throughput over the whole run.
    pub throughput: BenchThroughput,
}

/// What a benchmark run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchOutcome {
    /// The `model` field requests carried.
    pub model: String,
    /// Metrics of the measured requests.
    pub metrics: BenchMetrics,
    /// Failed requests (warm-up included) by kind of failure, such as `connect`, `http 500`, `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Every record, in completion order.
    #[serde(skip)]
    pub records: Vec<BenchRecord>,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchProgress {
    /// Requests finished (completed or failed), warm-up included.
    pub n_done: u64,
    /// Requests failed so far.
    pub n_failed: u64,
    /// Requests in the run, warm-up included.
    pub n_total: u64,
}

/// Runs a benchmark and returns its records and metrics.
pub fn run_bench(config: &BenchConfig) -> Result<BenchOutcome, LoadgenError> {
    run_bench_observed(config, &mut |_, _| {})
}

/// What request bodies carry beyond the OpenAI fields every compatible server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestShape {
    /// `min_tokens` and `ignore_eos` (SGLang's and vLLM's extensions) for exact output lengths;
    /// without them only `max_tokens` bounds the output, and records count what came back.
    pub length_extensions: bool,
    /// `/v1/completions` prompts as token ids (exact input lengths); false: a text of `isl` words.
    pub token_id_prompts: bool,
}

impl Default for RequestShape {
    fn default() -> RequestShape {
        RequestShape {
            length_extensions: true,
            token_id_prompts: true,
        }
    }
}

/// Like [`run_bench`], calling `observer` with each record as it completes (for a progress bar).
pub fn run_bench_observed(
    config: &BenchConfig,
    observer: &mut dyn FnMut(&BenchRecord, BenchProgress),
) -> Result<BenchOutcome, LoadgenError> {
    run_bench_shaped(config, RequestShape::default(), observer)
}

/// Like [`run_bench_observed`], with request bodies of the given shape (for servers that refuse
/// SGLang's extension fields or token-id prompts).
pub fn run_bench_shaped(
    config: &BenchConfig,
    shape: RequestShape,
    observer: &mut dyn FnMut(&BenchRecord, BenchProgress),
) -> Result<BenchOutcome, LoadgenError> {
    let base_url = base_url(&config.url)?;
    if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
        return Err(LoadgenError::BadValue {
            field: "--timeout-s".into(),
            value: config.timeout_s.to_string(),
            expected: "a positive number of seconds".into(),
        });
    }
    if config.max_tries == 0 || !(config.initial_backoff_s.is_finite() && config.initial_backoff_s >= 0.0) {
        return Err(LoadgenError::BadValue {
            field: "retry policy".into(),
            value: format!("{} tries, {} s backoff", config.max_tries, config.initial_backoff_s),
            expected: "at least one try and a non-negative backoff".into(),
        });
    }
    check_workload(&config.workload)?;
    let workload = generate_requests(&config.workload)?;
    let mut sink = match &config.records_path {
        Some(path) => Some(RecordSink::open(path)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadgenError::Startup(e.to_string()))?;
    let client = http_client()?;
    runtime.block_on(async {
        let retry = RetryPolicy {
            timeout_s: config.timeout_s,
            max_tries: config.max_tries,
            initial_backoff_s: config.initial_backoff_s,
        };
        check_reachable(&base_url, &config.url, retry).await?;
        let model = match &config.model {
            Some(model) => model.clone(),
            None => discover_model(&client, &base_url).await.unwrap_or_else(|| "default".into()),
        };
        let shared = Arc::new(Shared {
            client,
            url: format!("{base_url}{}", config.endpoint.path()),
            model: model.clone(),
            endpoint: config.endpoint,
            seed: config.workload.seed,
            timeout: Duration::from_secs_f64(config.timeout_s),
            max_tries: config.max_tries,
            initial_backoff: Duration::from_secs_f64(config.initial_backoff_s),
            start: Instant::now(),
            load: load_labels(config.workload.arrivals),
            shape,
        });
        let (sender, mut receiver) = mpsc::unbounded_channel();
        dispatch(&shared, Arc::new(workload.clone()), config.workload.arrivals, sender);
        let mut records = Vec::with_capacity(workload.len());
        let mut progress = BenchProgress {
            n_done: 0,
            n_failed: 0,
            n_total: workload.len() as u64,
        };
        while let Some(record) = receiver.recv().await {
            if let Some(sink) = sink.as_mut() {
                sink.append(&record)?;
            }
            progress.n_done += 1;
            progress.n_failed += u64::from(record.status == RecordStatus::Error);
            observer(&record, progress);
            records.push(record);
        }
        let mut errors = BTreeMap::new();
        for record in records.iter().filter(|r| r.status == RecordStatus::Error) {
            *errors.entry(error_kind(record.error.as_deref().unwrap_or(""))).or_insert(0) += 1;
        }
        Ok(BenchOutcome {
            model,
            metrics: summarise_records(&records),
            errors,
            records,
        })
    })
}

/// Bounds a benchmark before anything is allocated: each prompt is built in memory (8 bytes per
/// token id) and every record is kept, so lengths stay within [`limits::MAX_REQUEST_TOKENS`] and
/// requests within [`limits::MAX_REQUESTS`]; Poisson arrivals must end within the simulated span
/// too, so that `predict` can replay the same workload.
fn check_workload(workload: &WorkloadSpec) -> Result<(), LoadgenError> {
    for (field, tokens) in [("--isl", workload.isl), ("--osl", workload.osl)] {
        if tokens > limits::MAX_REQUEST_TOKENS {
            return Err(LoadgenError::BadValue {
                field: field.into(),
                value: tokens.to_string(),
                expected: format!(
                    "at most {} tokens, the longest context of any published model",
                    limits::MAX_REQUEST_TOKENS
                ),
            });
        }
    }
    if let Arrivals::Closed { concurrency } = workload.arrivals {
        limits::check_concurrency("--concurrency", concurrency)?;
    }
    let total = limits::total_requests(workload.n_requests, workload.n_warmup)?;
    if let Arrivals::Poisson { rate_per_s } = workload.arrivals {
        limits::check_poisson_span(rate_per_s, total)?;
    }
    Ok(())
}

/// What a server says about itself before a benchmark: the models it lists and, for SGLang, its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerProbe {
    /// Base URL as requests use it (`http://host:port`).
    pub base_url: String,
    /// Ids `/v1/models` lists; `None` when the server does not answer it with a model list.
    pub models: Option<Vec<String>>,
    /// The JSON object `/get_server_info` answers (SGLang, `sglsim serve`); `None` for other servers.
    pub server_info: Option<serde_json::Value>,
}

/// Checks that a server accepts connections (with `max_tries` attempts, doubling `initial_backoff_s`),
/// then asks `/v1/models` and `/get_server_info`; a server that answers neither is still reachable.
pub fn probe_server(url: &str, timeout_s: f64, max_tries: u32, initial_backoff_s: f64) -> Result<ServerProbe, LoadgenError> {
    let base_url = base_url(url)?;
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(LoadgenError::BadValue {
            field: "probe timeout".into(),
            value: timeout_s.to_string(),
            expected: "a positive number of seconds".into(),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadgenError::Startup(e.to_string()))?;
    let client = http_client()?;
    runtime.block_on(async {
        let retry = RetryPolicy {
            timeout_s,
            max_tries: max_tries.max(1),
            initial_backoff_s: if initial_backoff_s.is_finite() {
                initial_backoff_s.clamp(0.0, 60.0)
            } else {
                0.0
            },
        };
        check_reachable(&base_url, url, retry).await?;
        let limit = Duration::from_secs_f64(timeout_s.clamp(0.1, 10.0));
        let get_json = |path: &'static str| {
            let request = client.get(format!("{base_url}{path}")).timeout(limit);
            async move {
                let response = request.send().await.ok()?.error_for_status().ok()?;
                response.json::<serde_json::Value>().await.ok()
            }
        };
        let models = get_json("/v1/models").await.and_then(|value| {
            let ids: Vec<String> = value["data"]
                .as_array()?
                .iter()
                .filter_map(|model| model["id"].as_str().map(str::to_string))
                .collect();
            Some(ids)
        });
        let server_info = get_json("/get_server_info").await.filter(serde_json::Value::is_object);
        Ok(ServerProbe {
            base_url: base_url.clone(),
            models,
            server_info,
        })
    })
}

/// Computes `bench_serving`'s metrics from the measured (non-warm-up) records; failed requests are
/// counted in `n_errors` and left out of the latencies and throughput.
pub fn summarise_records(records: &[BenchRecord]) -> BenchMetrics {
    let measured: Vec<&BenchRecord> = records.iter().filter(|r| !r.warmup).collect();
    let completed: Vec<&BenchRecord> = measured
        .iter()
        .copied()
        .filter(|r| r.status == RecordStatus::Ok && r.first_chunk_s.is_some())
        .collect();
    let start_s = measured.iter().map(|r| r.sent_s).fold(f64::INFINITY, f64::min);
    let end_s = completed.iter().filter_map(|r| r.last_chunk_s()).fold(f64::NEG_INFINITY, f64::max);
    let duration_s = if end_s > start_s { end_s - start_s } else { 0.0 };
    let rate = |amount: f64| if duration_s > 0.0 { amount / duration_s } else { 0.0 };
    let mut gaps_ms: Vec<f64> = completed
        .iter()
        .flat_map(|r| r.chunk_times_s.windows(2).map(|pair| (pair[1] - pair[0]) * 1e3))
        .collect();
    BenchMetrics {
        n_requests: completed.len() as u64,
        n_errors: (measured.len() - completed.len()) as u64,
        duration_s,
        ttft_ms: Distribution::of(&mut completed.iter().filter_map(|r| r.ttft_ms()).collect::<Vec<_>>()),
        itl_ms: Distribution::of(&mut gaps_ms),
        tpot_ms: Distribution::of(&mut completed.iter().filter_map(|r| r.tpot_ms()).collect::<Vec<_>>()),
        e2e_ms: Distribution::of(&mut completed.iter().filter_map(|r| r.e2e_ms()).collect::<Vec<_>>()),
        throughput: BenchThroughput {
            output_tok_s: rate(completed.iter().map(|r| r.output_tokens).sum::<u64>() as f64),
            input_tok_s: rate(completed.iter().map(|r| r.isl).sum::<u64>() as f64),
            request_s: rate(completed.len() as f64),
        },
    }
}

/// The kind of a failure, for counting: the part of the error message before its first colon.
pub fn error_kind(message: &str) -> String {
    message.split(':').next().unwrap_or(message).trim().to_string()
}

/// The token ids of request `id`'s prompt: `isl` ids drawn from [`PROMPT_TOKEN_IDS`], seeded by
/// the workload seed and the request id.
pub fn prompt_token_ids(seed: u64, id: u64, isl: u64) -> Vec<u64> {
    let mut rng = request_rng(seed, id);
    (0..isl).map(|_| rng.gen_range(PROMPT_TOKEN_IDS)).collect()
}

/// A text prompt of `isl` random words for the chat endpoint, seeded like [`prompt_token_ids`].
pub fn prompt_text(seed: u64, id: u64, isl: u64) -> String {
    const WORDS: &[&str] = &[
        "time", "river", "stone", "light", "green", "market", "paper", "signal", "window", "garden", "orbit", "copper", "silver", "forest",
        "engine", "letter", "bridge", "winter", "summer", "number", "island", "planet", "circle", "thread", "harbor", "valley", "mirror",
        "pocket", "candle", "ladder", "rocket", "desert",
    ];
    let mut rng = request_rng(seed, id);
    let words: Vec<&str> = (0..isl).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect();
    words.join(" ")
}

fn request_rng(seed: u64, id: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Normalises a base URL: plain `http://host[:port]`, no trailing slash or `/v1`.
fn base_url(url: &str) -> Result<String, LoadgenError> {
    let bad = |reason: &str| LoadgenError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(bad(
            "only http:// is supported (no TLS); the server is expected on localhost or a trusted network",
        ));
    }
    if parsed.host_str().is_none() {
        return Err(bad("no host"));
    }
    let mut text = parsed.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = text.strip_suffix("/v1") {
        text = stripped.to_string();
    }
    Ok(text)
}

/// Labels every record carries: the closed loop's concurrency or the Poisson rate.
fn load_labels(arrivals: Arrivals) -> (Option<u64>, Option<f64>) {
    match arrivals {
        Arrivals::Closed { concurrency } => (Some(concurrency), None),
        Arrivals::Poisson { rate_per_s } => (None, Some(rate_per_s)),
        Arrivals::AllAtOnce | Arrivals::Trace => (None, None),
    }
}

/// How connection attempts are repeated.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    timeout_s: f64,
    max_tries: u32,
    initial_backoff_s: f64,
}

/// Tries a TCP connection to the server's address, with the request retry policy; `shown_url` names it in errors.
async fn check_reachable(base_url: &str, shown_url: &str, retry: RetryPolicy) -> Result<(), LoadgenError> {
    let parsed = reqwest::Url::parse(base_url).map_err(|e| LoadgenError::BadUrl {
        url: shown_url.to_string(),
        reason: e.to_string(),
    })?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let connect_timeout = Duration::from_secs_f64(retry.timeout_s.min(10.0));
    let mut backoff = Duration::from_secs_f64(retry.initial_backoff_s);
    let mut reason = String::new();
    for attempt in 1..=retry.max_tries {
        match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err(error)) => reason = error.to_string(),
            Err(_) => reason = format!("no answer within {:.1} s", connect_timeout.as_secs_f64()),
        }
        if attempt < retry.max_tries {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(LoadgenError::Unreachable {
        url: shown_url.to_string(),
        attempts: retry.max_tries,
        reason,
    })
}

/// The first model `/v1/models` lists, if the server answers it.
async fn discover_model(client: &reqwest::Client, base_url: &str) -> Option<String> {
    let response = client
        .get(format!("{base_url}/v1/models"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let value: serde_json::Value = response.error_for_status().ok()?.json().await.ok()?;
    value["data"][0]["id"].as_str().map(str::to_string)
}

/// State every request task shares.
struct Shared {
    client: reqwest::Client,
    url: String,
    model: String,
    endpoint: Endpoint,
    seed: u64,
    timeout: Duration,
    max_tries: u32,
    initial_backoff: Duration,
    start: Instant,
    load: (Option<u64>, Option<f64>),
    shape: RequestShape,
}

/// Starts the request tasks; each sends its record to `sender`, which closes when all are done.
fn dispatch(shared: &Arc<Shared>, workload: Arc<Vec<RequestSpec>>, arrivals: Arrivals, sender: mpsc::UnboundedSender<BenchRecord>) {
    match arrivals {
        Arrivals::Closed { concurrency } => {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..concurrency.min(workload.len() as u64) {
                let (shared, workload, next, sender) = (shared.clone(), workload.clone(), next.clone(), sender.clone());
                tokio::spawn(async move {
                    loop {
                        let request_idx = next.fetch_add(1, Ordering::Relaxed);
                        let Some(spec) = workload.get(request_idx) else { break };
                        let record = send_request(&shared, request_idx as u64, spec).await;
                        if sender.send(record).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        _ => {
            let shared = shared.clone();
            tokio::spawn(async move {
                for (request_idx, spec) in workload.iter().enumerate() {
                    let arrival = Duration::from_secs_f64(spec.arrival_s.unwrap_or(0.0).max(0.0));
                    tokio::time::sleep_until(shared.start + arrival).await;
                    let (shared, spec, sender) = (shared.clone(), *spec, sender.clone());
                    tokio::spawn(async move {
                        let record = send_request(&shared, request_idx as u64, &spec).await;
                        let _ = sender.send(record);
                    });
                }
            });
        }
    }
}

/// What a request saw before it ended or timed out.
#[derive(Default)]
struct Progress {
    chunk_times_s: Vec<f64>,
    usage_tokens: Option<u64>,
    malformed: Option<String>,
}

/// Sends one request, streams its answer and returns its record; never fails.
async fn send_request(shared: &Shared, id: u64, spec: &RequestSpec) -> BenchRecord {
    // As `bench_serving` does, the clock starts once the payload is ready: drawing and encoding a
    // long prompt is the client's work, not the server's.
    let body = serde_json::to_vec(&request_body(shared, id, spec)).unwrap_or_default();
    let sent_s = shared.start.elapsed().as_secs_f64();
    let mut progress = Progress::default();
    let outcome = match tokio::time::timeout(shared.timeout, stream_request(shared, &body, &mut progress)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timeout: no complete answer within {:.3} s ({} chunks received)",
            shared.timeout.as_secs_f64(),
            progress.chunk_times_s.len()
        )),
    };
    let error = match (outcome, progress.malformed.take()) {
        (Err(error), _) => Some(error),
        (Ok(()), Some(malformed)) => Some(malformed),
        (Ok(()), None) if progress.chunk_times_s.is_empty() => Some("empty: the stream carried no content".to_string()),
        (Ok(()), None) => None,
    };
    BenchRecord {
        schema_version: RECORD_SCHEMA_VERSION,
        id,
        isl: spec.isl,
        osl_requested: spec.osl,
        sent_s,
        first_chunk_s: progress.chunk_times_s.first().copied(),
        output_tokens: progress.usage_tokens.unwrap_or(progress.chunk_times_s.len() as u64),
        chunk_times_s: progress.chunk_times_s,
        status: if error.is_some() { RecordStatus::Error } else { RecordStatus::Ok },
        error,
        warmup: spec.warmup,
        concurrency: shared.load.0,
        request_rate: shared.load.1,
    }
}

fn request_body(shared: &Shared, id: u64, spec: &RequestSpec) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": shared.model,
        "max_tokens": spec.osl,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if shared.shape.length_extensions {
        body["min_tokens"] = serde_json::json!(spec.osl);
        body["ignore_eos"] = serde_json::json!(true);
    }
    match shared.endpoint {
        Endpoint::Completions if shared.shape.token_id_prompts => {
            body["prompt"] = serde_json::json!(prompt_token_ids(shared.seed, id, spec.isl));
        }
        Endpoint::Completions => body["prompt"] = serde_json::json!(prompt_text(shared.seed, id, spec.isl)),
        Endpoint::Chat => {
            body["messages"] = serde_json::json!([{"role": "user", "content": prompt_text(shared.seed, id, spec.isl)}]);
        }
    }
    body
}

/// Sends with retries, then reads the SSE stream into `progress`.
async fn stream_request(shared: &Shared, body: &[u8], progress: &mut Progress) -> Result<(), String> {
    let mut backoff = shared.initial_backoff;
    let mut attempt = 1;
    let response = loop {
        let request = shared
            .client
            .post(&shared.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let retry = match request.send().await {
            Ok(response) if response.status().is_success() => break response,
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let message = format!("http {}: {}", status.as_u16(), text.chars().take(200).collect::<String>().trim());
                if !status.is_server_error() {
                    return Err(message);
                }
                message
            }
            Err(error) if error.is_timeout() => return Err(format!("request: {}", root_cause(&error))),
            Err(error) if error.is_connect() => format!("connect: {}", root_cause(&error)),
            // No response at all (for example a pooled connection the server closed): retried too.
            Err(error) => format!("request: {}", root_cause(&error)),
        };
        if attempt >= shared.max_tries {
            return Err(format!("{retry} (after {attempt} tries)"));
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    };
    let mut parser = SseParser::default();
    let mut stream = response.bytes_stream();
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| format!("stream: {}", root_cause(&e)))?;
        let now_s = shared.start.elapsed().as_secs_f64();
        for event in parser.push(&bytes) {
            match event {
                SseEvent::Done => return Ok(()),
                SseEvent::Malformed(line) => {
                    progress
                        .malformed
                        .get_or_insert_with(|| format!("malformed sse: {}", line.chars().take(120).collect::<String>()));
                }
                SseEvent::Data(value) => {
                    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
                        return Err(format!("server error: {}", error.get("message").unwrap_or(error)));
                    }
                    if let Some(tokens) = value["usage"]["completion_tokens"].as_u64() {
                        progress.usage_tokens = Some(tokens);
                    }
                    if has_content(&value) {
                        progress.chunk_times_s.push(now_s);
                    }
                }
            }
        }
    }
    if parser.has_partial_line() {
        progress
            .malformed
            .get_or_insert_with(|| "malformed sse: the stream ended inside a line".into());
    }
    Ok(())
}

/// Whether an OpenAI chunk carries generated text (`bench_serving` skips empty ones).
fn has_content(value: &serde_json::Value) -> bool {
    let Some(choice) = value["choices"].get(0) else { return false };
    let text = choice["text"]
        .as_str()
        .or_else(|| choice["delta"]["content"].as_str())
        .or_else(|| choice["delta"]["reasoning_content"].as_str());
    text.is_some_and(|t| !t.is_empty())
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// One server-sent event's data line.
#[derive(Debug, Clone, PartialEq)]
pub enum SseEvent {
    /// A JSON payload.
    Data(serde_json::Value),
    /// `data: [DONE]`.
    Done,
    /// A data line that is not JSON, or a line that is not UTF-8.
    Malformed(String),
}

/// Splits a byte stream into SSE `data:` lines; other fields and comments are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    /// Feeds bytes; returns the events of every line they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(offset) = self.pending[consumed..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[consumed..consumed + offset];
            consumed += offset + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Ok(text) = std::str::from_utf8(line) else {
                events.push(SseEvent::Malformed(String::from_utf8_lossy(line).into_owned()));
                continue;
            };
            let Some(payload) = text.strip_prefix("data:") else { continue };
            let payload = payload.trim();
            if payload == "[DONE]" {
                events.push(SseEvent::Done);
            } else {
                events.push(match serde_json::from_str(payload) {
                    Ok(value) => SseEvent::Data(value),
                    Err(_) => SseEvent::Malformed(payload.to_string()),
                });
            }
        }
        self.pending.drain(..consumed);
        events
    }

    /// Whether bytes of an unfinished line are buffered.
    pub fn has_partial_line(&self) -> bool {
        self.pending.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// The records file: one JSON object per line, flushed per line.
struct RecordSink {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl RecordSink {
    fn open(path: &Path) -> Result<RecordSink, LoadgenError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LoadgenError::Records {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(RecordSink {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    fn append(&mut self, record: &BenchRecord) -> Result<(), LoadgenError> {
        let error = |source| LoadgenError::Records {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(record).map_err(|e| error(std::io::Error::other(e)))?;
        writeln!(self.writer, "{line}").map_err(error)?;
        self.writer.flush().map_err(error)
    }
}

/// How long the client keeps an idle connection for reuse: below the 5 s after which uvicorn (under
/// SGLang) and `sglsim serve` close one, so a request is never sent on a connection being closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The HTTP client of benches and probes: no Nagle delay, so streamed chunks are timed as they arrive.
fn http_client() -> Result<reqwest::Client, LoadgenError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(|e| LoadgenError::Startup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sent_s: f64, chunks: &[f64], output_tokens: u64) -> BenchRecord {
        BenchRecord {
            schema_version: 1,
            id: 0,
            isl: 100,
            osl_requested: output_tokens,
            sent_s,
            first_chunk_s: chunks.first().copied(),
            chunk_times_s: chunks.to_vec(),
            output_tokens,
            status: RecordStatus::Ok,
            error: None,
            warmup: false,
            concurrency: Some(1),
            request_rate: None,
        }
    }

    #[test]
    fn metrics_follow_bench_serving_definitions() {
        let mut failed = record(0.0, &[0.5], 1);
        failed.status = RecordStatus::Error;
        let mut warmup = record(0.0, &[9.0, 9.5], 2);
        warmup.warmup = true;
        let records = [record(1.0, &[1.1, 1.2, 1.4], 3), record(1.0, &[1.3, 1.4], 2), failed, warmup];
        let metrics = summarise_records(&records);
        assert_eq!((metrics.n_requests, metrics.n_errors), (2, 1));
        // TTFT 100 and 300 ms; gaps 100, 200, 100 ms; TPOT (1.4 - 1.1) / 2 and 0.1 / 1 s.
        assert!((metrics.ttft_ms.mean - 200.0).abs() < 1e-9);
        assert!((metrics.itl_ms.mean - 400.0 / 3.0).abs() < 1e-9);
        assert!((metrics.tpot_ms.mean - 125.0).abs() < 1e-9);
        assert!((metrics.e2e_ms.p50 - 400.0).abs() < 1e-9);
        // Measured sends start at 0 (the failed one), the last chunk is at 1.4 s.
        assert!((metrics.duration_s - 1.4).abs() < 1e-12);
        assert!((metrics.throughput.output_tok_s - 5.0 / 1.4).abs() < 1e-9);
    }

    #[test]
    fn sse_lines_split_across_reads_and_malformed_lines_are_reported() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: {\"choices\":[{\"te").is_empty());
        let events = parser.push(b"xt\":\"a\"}]}\r\n\r\n: keep-alive\nevent: x\ndata: {oops\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], SseEvent::Data(v) if has_content(v)));
        assert_eq!(events[1], SseEvent::Malformed("{oops".into()));
        assert_eq!(events[2], SseEvent::Done);
        assert!(!parser.has_partial_line());
    }

    #[test]
    fn prompts_are_exact_and_seeded() {
        let ids = prompt_token_ids(7, 3, 500);
        assert_eq!(ids.len(), 500);
        assert!(ids.iter().all(|id| PROMPT_TOKEN_IDS.contains(id)));
        assert_eq!(ids, prompt_token_ids(7, 3, 500));
        assert_ne!(ids, prompt_token_ids(7, 4, 500));
        assert_eq!(prompt_text(1, 2, 40).split_whitespace().count(), 40);
    }

    #[test]
    fn urls_are_normalised_and_tls_is_refused() {
        assert_eq!(base_url("http://127.0.0.1:30000/v1/").unwrap(), "http://127.0.0.1:30000");
        assert_eq!(base_url("http://localhost:8000").unwrap(), "http://localhost:8000");
        assert!(base_url("https://example.com").unwrap_err().to_string().contains("only http://"));
        assert!(base_url("not a url").is_err());
        assert_eq!(error_kind("http 500: boom"), "http 500");
    }
}
