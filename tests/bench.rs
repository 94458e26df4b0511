//! The load generator against the serving twin and against tiny faulty servers, all on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sglsim::calibrate::loadgen::{run_bench, BenchConfig, BenchOutcome, BenchRecord, Endpoint, LoadgenError, RecordStatus};
use sglsim::model::coefficients::Coefficients;
use sglsim::serve::ServeHandle;
use sglsim::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{number, qwen3_8b_twin, sglsim_args, temp_dir};

const MODEL: &str = "Qwen/Qwen3-8B";

/// The twin of Qwen3-8B on one H100, on a free loopback port.
fn twin(time_scale: f64) -> ServeHandle {
    qwen3_8b_twin(Coefficients::defaults(), time_scale)
}

fn workload(isl: u64, osl: u64, arrivals: Arrivals, n_requests: u64, n_warmup: u64) -> WorkloadSpec {
    WorkloadSpec {
        isl,
        osl,
        lengths: LengthDistribution::Fixed,
        arrivals,
        n_requests,
        n_warmup,
        seed: 1,
    }
}

fn config(url: &str, workload: WorkloadSpec, records: Option<&Path>) -> BenchConfig {
    BenchConfig {
        url: url.to_string(),
        model: Some(MODEL.into()),
        endpoint: Endpoint::Completions,
        workload,
        timeout_s: 10.0,
        records_path: records.map(Path::to_path_buf),
        max_tries: 3,
        initial_backoff_s: 0.02,
    }
}

fn read_records(path: &Path) -> Vec<BenchRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad record ({e}): {line}")))
        .collect()
}

fn within(measured: f64, predicted: f64, tolerance: f64, what: &str) {
    assert!(
        (measured / predicted - 1.0).abs() <= tolerance,
        "{what}: measured {measured:.2} vs predicted {predicted:.2} (tolerance {:.0}%)",
        tolerance * 100.0
    );
}

#[test]
fn bench_against_the_twin_matches_predict_at_low_load() {
    let server = twin(1.0);
    let dir = temp_dir();
    let records_path = dir.path().join("records.jsonl");
    let spec = workload(6000, 8, Arrivals::Closed { concurrency: 1 }, 3, 1);
    let outcome = run_bench(&config(&server.url(), spec, Some(&records_path))).unwrap();
    let records = read_records(&records_path);
    assert_eq!(records.len(), 4, "every request, warm-up included, is on disk");
    assert_eq!(records, outcome.records);
    assert!(records
        .iter()
        .all(|r| r.status == RecordStatus::Ok && r.output_tokens == 8 && r.chunk_times_s.len() == 8));
    assert!(records
        .iter()
        .all(|r| r.concurrency == Some(1) && r.request_rate.is_none() && r.isl == 6000));
    assert_eq!(records.iter().filter(|r| r.warmup).map(|r| r.id).collect::<Vec<_>>(), [0]);
    assert_eq!((outcome.metrics.n_requests, outcome.metrics.n_errors), (3, 0));

    let predicted = sglsim_args(&[
        "predict",
        "--model",
        MODEL,
        "--gpu",
        "h100",
        "--isl",
        "6000",
        "--osl",
        "8",
        "--concurrency",
        "1",
        "--num-requests",
        "3",
        "--warmup-requests",
        "1",
        "--seed",
        "1",
        "--json",
    ])
    .json();
    within(outcome.metrics.ttft_ms.mean, number(&predicted, "ttft_ms.mean"), 0.3, "TTFT");
    within(outcome.metrics.tpot_ms.mean, number(&predicted, "tpot_ms.mean"), 0.3, "TPOT");
    // Chunks must arrive one step apart, not bunched (as they are when Nagle's algorithm holds small writes).
    within(outcome.metrics.itl_ms.p50, number(&predicted, "itl_ms.p50"), 0.3, "ITL p50");
    within(
        outcome.metrics.throughput.output_tok_s,
        number(&predicted, "throughput.output_tok_s"),
        0.3,
        "output throughput",
    );
}

#[test]
fn bench_and_predict_draw_the_same_workload_from_one_seed() {
    let server = twin(50.0);
    let mut spec = workload(2000, 48, Arrivals::Closed { concurrency: 4 }, 16, 2);
    spec.lengths = LengthDistribution::Uniform { range_ratio: 0.5 };
    let outcome = run_bench(&config(&server.url(), spec.clone(), None)).unwrap();
    let drawn = generate_requests(&spec).unwrap();
    assert_eq!(outcome.records.len(), drawn.len());
    for record in &outcome.records {
        let request = &drawn[record.id as usize];
        assert_eq!(
            (record.isl, record.osl_requested, record.warmup),
            (request.isl, request.osl, request.warmup)
        );
        assert_eq!(record.status, RecordStatus::Ok, "{record:?}");
        assert_eq!(record.output_tokens, request.osl);
        assert!(record.chunk_times_s.windows(2).all(|w| w[0] <= w[1]));
        assert!(record.first_chunk_s.unwrap() >= record.sent_s);
    }
    assert!(outcome.metrics.itl_ms.p50 > 0.0 && outcome.metrics.throughput.output_tok_s > 0.0);

    let poisson = workload(100, 4, Arrivals::Poisson { rate_per_s: 200.0 }, 8, 0);
    let mut chat = config(&server.url(), poisson, None);
    chat.endpoint = Endpoint::Chat;
    chat.model = None;
    let outcome = run_bench(&chat).unwrap();
    assert_eq!(outcome.model, MODEL, "the model comes from /v1/models");
    assert_eq!(outcome.metrics.n_requests, 8);
    assert!(outcome
        .records
        .iter()
        .all(|r| r.request_rate == Some(200.0) && r.output_tokens == 4));
}

/// What a fake server does with the n-th POST it receives.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// A well-formed stream of `max_tokens` chunks.
    Stream,
    /// An HTTP error status before any byte of the body.
    Status(u16),
    /// Two chunks, then silence.
    Stall,
    /// One chunk, a line that is not JSON, then the rest.
    Malformed,
}

/// A tiny HTTP/1.1 server on loopback that answers POSTs as `script` says and closes every connection;
/// after `limit` POSTs it closes its listener, so later connections are refused.
struct FakeServer {
    address: std::net::SocketAddr,
    posts: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FakeServer {
    fn start(script: fn(usize) -> Reply, limit: usize) -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = posts.clone();
        runtime.spawn(async move {
            while counter.load(Ordering::SeqCst) < limit {
                let Ok((socket, _)) = listener.accept().await else { break };
                let counter = counter.clone();
                // Requests are handled in turn, so the limit is exact.
                let _ = tokio::time::timeout(Duration::from_secs(5), handle(socket, script, counter)).await;
            }
        });
        FakeServer {
            address,
            posts,
            runtime: Some(runtime),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

async fn handle(mut socket: tokio::net::TcpStream, script: fn(usize) -> Reply, posts: Arc<AtomicUsize>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return; // A bare connection check.
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < body_start + length {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value = serde_json::from_slice(&buffer[body_start..]).unwrap_or_default();
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(4);
    let post_idx = posts.fetch_add(1, Ordering::SeqCst);
    let event = |text: &str| format!("data: {{\"choices\":[{{\"index\":0,\"text\":\"{text}\"}}]}}\n\n");
    let reply = script(post_idx);
    if let Reply::Status(code) = reply {
        let answer = format!("HTTP/1.1 {code} Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom");
        let _ = socket.write_all(answer.as_bytes()).await;
        let _ = socket.shutdown().await;
        return;
    }
    let header = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    let _ = socket.write_all(header.as_bytes()).await;
    if let Reply::Stall = reply {
        for _ in 0..2 {
            let _ = socket.write_all(event(" x").as_bytes()).await;
        }
        // Hold the connection open without answering more, and take the next connection meanwhile.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        return;
    }
    for token in 0..max_tokens {
        if token == 1 && matches!(reply, Reply::Malformed) {
            let _ = socket.write_all(b"data: {not json\n\n").await;
        }
        let _ = socket.write_all(event(" x").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let usage = format!("data: {{\"choices\":[],\"usage\":{{\"completion_tokens\":{max_tokens}}}}}\n\ndata: [DONE]\n\n");
    let _ = socket.write_all(usage.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn fault_run(server: &FakeServer, n_requests: u64, timeout_s: f64) -> (BenchOutcome, Vec<BenchRecord>, tempfile::TempDir) {
    let dir = temp_dir();
    let records_path = dir.path().join("records.jsonl");
    let mut config = config(
        &server.url(),
        workload(16, 4, Arrivals::Closed { concurrency: 1 }, n_requests, 0),
        Some(&records_path),
    );
    config.timeout_s = timeout_s;
    let outcome = run_bench(&config).unwrap();
    let records = read_records(&records_path);
    assert_eq!(records.len() as u64, n_requests, "every request has a record on disk");
    assert_eq!(outcome.metrics.n_requests + outcome.metrics.n_errors, n_requests);
    (outcome, records, dir)
}

fn statuses(records: &[BenchRecord]) -> Vec<(u64, RecordStatus)> {
    let mut statuses: Vec<(u64, RecordStatus)> = records.iter().map(|r| (r.id, r.status)).collect();
    statuses.sort_by_key(|s| s.0);
    statuses
}

#[test]
fn refused_connections_mid_run_are_retried_then_counted() {
    let server = FakeServer::start(|_| Reply::Stream, 2);
    let (outcome, records, _dir) = fault_run(&server, 4, 5.0);
    use RecordStatus::{Error, Ok};
    assert_eq!(statuses(&records), [(0, Ok), (1, Ok), (2, Error), (3, Error)]);
    assert_eq!(outcome.errors.get("connect"), Some(&2), "{:?}", outcome.errors);
    let error = records.iter().find(|r| r.id == 2).and_then(|r| r.error.clone()).unwrap();
    assert!(error.contains("after 3 tries"), "{error}");
    assert!(records
        .iter()
        .filter(|r| r.status == Ok)
        .all(|r| r.output_tokens == 4 && r.chunk_times_s.len() == 4));
}

#[test]
fn http_500_before_the_first_byte_is_retried_then_counted() {
    // POSTs: 500 then success (request 0 retried), three 500s (request 1 fails), success (request 2).
    let server = FakeServer::start(
        |post| {
            if [0, 2, 3, 4].contains(&post) {
                Reply::Status(500)
            } else {
                Reply::Stream
            }
        },
        100,
    );
    let (outcome, records, _dir) = fault_run(&server, 3, 5.0);
    use RecordStatus::{Error, Ok};
    assert_eq!(statuses(&records), [(0, Ok), (1, Error), (2, Ok)]);
    assert_eq!(server.posts.load(Ordering::SeqCst), 6);
    assert_eq!(outcome.errors.get("http 500"), Some(&1), "{:?}", outcome.errors);
    let failed = records.iter().find(|r| r.id == 1).unwrap();
    assert!(failed.first_chunk_s.is_none() && failed.chunk_times_s.is_empty() && failed.output_tokens == 0);
    // A client error is not retried.
    let server = FakeServer::start(|_| Reply::Status(400), 100);
    let (outcome, _, _dir) = fault_run(&server, 2, 5.0);
    assert_eq!(server.posts.load(Ordering::SeqCst), 2);
    assert_eq!(outcome.errors.get("http 400"), Some(&2));
}

#[test]
fn a_stall_mid_stream_hits_the_timeout_and_keeps_what_arrived() {
    let server = FakeServer::start(|post| if post == 1 { Reply::Stall } else { Reply::Stream }, 100);
    let (outcome, records, _dir) = fault_run(&server, 3, 0.4);
    use RecordStatus::{Error, Ok};
    assert_eq!(statuses(&records), [(0, Ok), (1, Error), (2, Ok)]);
    let stalled = records.iter().find(|r| r.id == 1).unwrap();
    assert_eq!(stalled.chunk_times_s.len(), 2);
    assert!(stalled.first_chunk_s.is_some());
    assert!(stalled.error.as_deref().is_some_and(|e| e.starts_with("timeout")), "{stalled:?}");
    assert_eq!(outcome.errors.get("timeout"), Some(&1));
    assert_eq!(outcome.metrics.n_requests, 2);
}

#[test]
fn malformed_sse_fails_only_that_request() {
    let server = FakeServer::start(|post| if post == 0 { Reply::Malformed } else { Reply::Stream }, 100);
    let (outcome, records, _dir) = fault_run(&server, 3, 5.0);
    use RecordStatus::{Error, Ok};
    assert_eq!(statuses(&records), [(0, Error), (1, Ok), (2, Ok)]);
    let malformed = records.iter().find(|r| r.id == 0).unwrap();
    assert!(malformed.error.as_deref().is_some_and(|e| e.contains("{not json")), "{malformed:?}");
    assert_eq!(malformed.chunk_times_s.len(), 4, "the rest of the stream is still read");
    assert_eq!(outcome.errors.get("malformed sse"), Some(&1));
}

#[test]
fn an_unreachable_url_is_a_clear_error() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let error = run_bench(&config(&url, workload(8, 2, Arrivals::Closed { concurrency: 1 }, 1, 0), None)).unwrap_err();
    assert!(matches!(error, LoadgenError::Unreachable { attempts: 3, .. }), "{error}");
    let out = sglsim_args(&["bench", "--url", &url, "--isl", "8", "--osl", "2", "--concurrency", "1"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot reach") && out.stderr.contains("after 3 tries"),
        "{}",
        out.stderr
    );
    let out = sglsim_args(&[
        "bench",
        "--url",
        "https://127.0.0.1:1",
        "--isl",
        "8",
        "--osl",
        "2",
        "--concurrency",
        "1",
    ]);
    assert!(out.code == 2 && out.stderr.contains("only http://"), "{}", out.stderr);
}

/// Sends a GET over a plain socket and returns the body.
fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

#[test]
fn serve_and_bench_binaries_talk_to_each_other() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sglsim"))
        .args([
            "serve",
            "--model",
            MODEL,
            "--gpu",
            "h100",
            "--tp",
            "1",
            "--port",
            "0",
            "--time-scale",
            "20",
        ])
        .args(["--perturb", "0.1", "--seed", "3", "--reveal"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("serve exited: {seen}");
        }
        seen.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("sglsim serve: listening on ") {
            break url.to_string();
        }
    };
    assert!(seen.contains("[coefficients]") && seen.contains("gemm_bf16_eff"), "{seen}");
    let info: serde_json::Value = serde_json::from_str(&http_get(url.trim_start_matches("http://"), "/get_server_info")).unwrap();
    for key in [
        "tp_size",
        "dp_size",
        "ep_size",
        "chunked_prefill_size",
        "cuda_graph_max_bs",
        "max_running_requests",
        "max_total_num_tokens",
        "mem_fraction_static",
    ] {
        assert!(info[key].is_number(), "{key}: {info}");
    }
    assert_eq!(
        (info["version"].as_str(), info["model_path"].as_str()),
        (Some("sglsim-twin"), Some(MODEL))
    );

    let dir = temp_dir();
    let records_path = dir.path().join("bench.jsonl");
    let out = sglsim_args(&[
        "bench",
        "--url",
        &url,
        "--isl",
        "500",
        "--osl",
        "20",
        "--concurrency",
        "2",
        "--num-requests",
        "6",
        "--json",
        "--out",
        records_path.to_str().unwrap(),
    ]);
    let metrics_text = http_get(url.trim_start_matches("http://"), "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    for metric in ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"] {
        for stat in ["mean", "p50", "p90", "p99"] {
            assert!(json[metric][stat].as_f64().is_some_and(|v| v > 0.0), "{metric}.{stat}: {json}");
        }
    }
    for key in ["output_tok_s", "input_tok_s", "request_s"] {
        assert!(json["throughput"][key].as_f64().is_some_and(|v| v > 0.0), "throughput.{key}");
    }
    assert_eq!((json["n_requests"].as_u64(), json["n_errors"].as_u64()), (Some(6), Some(0)));
    assert!(number(&json, "duration_s") > 0.0);
    assert_eq!(read_records(&records_path).len(), 6);
    assert!(
        metrics_text.contains("sglang:num_requests_total{model_name=\"Qwen/Qwen3-8B\"} 6"),
        "{metrics_text}"
    );
    assert!(
        metrics_text.contains("sglang:generation_tokens_total{model_name=\"Qwen/Qwen3-8B\"} 120"),
        "{metrics_text}"
    );
}

#[test]
fn only_loadgen_and_serve_use_tokio_or_the_network() {
    fn visit(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if ["tokio::", "reqwest", "axum", "std::net", "hyper"]
                    .iter()
                    .any(|needle| text.contains(needle))
                {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    visit(&src, &mut found);
    for (path, text) in walk_serve() {
        for import in ["crate::cli", "crate::search", "crate::calibrate"] {
            assert!(!text.contains(import), "{path} uses {import}: serve depends on sim and model only");
        }
    }
    for path in found {
        let allowed = path.ends_with("calibrate/loadgen.rs") || path.contains("/src/serve/");
        assert!(allowed, "{path} uses tokio or the network; only calibrate::loadgen and serve may");
    }
}

fn walk_serve() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("serve");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
    }
    assert!(files.len() >= 5);
    files
}

#[test]
fn bench_exits_non_zero_when_failures_exceed_the_max_error_rate() {
    // Every request fails (a malformed stream): the report still prints, then the summary, exit 2.
    let server = FakeServer::start(|_| Reply::Malformed, 100);
    let url = server.url();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--url",
            &url,
            "--isl",
            "8",
            "--osl",
            "3",
            "--concurrency",
            "1",
            "--num-requests",
            "3",
        ];
        args.extend_from_slice(extra);
        sglsim_args(&args)
    };
    let out = bench(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.contains("3 failed"), "{}", out.stdout);
    assert!(
        out.stderr.contains("3 of 3 requests failed (100.0%, above --max-error-rate 0)") && out.stderr.contains("malformed sse × 3"),
        "{}",
        out.stderr
    );
    assert_eq!(bench(&["--max-error-rate", "1"]).code, 0);
    let bad = bench(&["--max-error-rate", "1.5"]);
    assert!(bad.code == 2 && bad.stderr.contains("--max-error-rate 1.5"), "{}", bad.stderr);
}
