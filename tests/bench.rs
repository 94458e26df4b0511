//! The load generator against the serving twin and against tiny faulty servers, all on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sglsim::calibrate::loadgen::{run_bench, BenchConfig, BenchOutcome, BenchRecord, Endpoint, LoadgenError, RecordStatus};
use sglsim::model::coefficients::Coefficients;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::model_catalog::find_bundled_spec;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::{EngineConfig, StepModel};
use sglsim::serve::{spawn, ServeConfig, ServeHandle};
use sglsim::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{number, sglsim_args, temp_dir};

const MODEL: &str = "Qwen/Qwen3-8B";

/// The twin of Qwen3-8B on one H100, on a free loopback port.
fn twin(time_scale: f64) -> ServeHandle {
    let model = find_bundled_spec(MODEL).unwrap().unwrap();
    let gpu = GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
    let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
    let step_model = StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients: Coefficients::defaults(),
    })
    .unwrap();
    spawn(ServeConfig {
        step_model,
        model_path: MODEL.into(),
        host: "127.0.0.1".into(),
        port: 0,
        time_scale,
    })
    .unwrap()
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
    assert!(records.iter().all(|r| r.status == RecordStatus::Ok && r.output_tokens == 8 && r.chunk_times_s.len() == 8));
    assert!(records.iter().all(|r| r.concurrency == Some(1) && r.request_rate.is_none() && r.isl == 6000));
    assert_eq!(records.iter().filter(|r| r.warmup).map(|r| r.id).collect::<Vec<_>>(), [0]);
    assert_eq!((outcome.metrics.n_requests, outcome.metrics.n_errors), (3, 0));

    let predicted = sglsim_args(&[
        "predict", "--model", MODEL, "--gpu", "h100", "--isl", "6000", "--osl", "8", "--concurrency", "1", "--num-requests", "3",
        "--warmup-requests", "1", "--seed", "1", "--json",
    ])
    .json();
    within(outcome.metrics.ttft_ms.mean, number(&predicted, "ttft_ms.mean"), 0.3, "TTFT");
    within(outcome.metrics.tpot_ms.mean, number(&predicted, "tpot_ms.mean"), 0.3, "TPOT");
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
        assert_eq!((record.isl, record.osl_requested, record.warmup), (request.isl, request.osl, request.warmup));
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
    assert!(outcome.records.iter().all(|r| r.request_rate == Some(200.0) && r.output_tokens == 4));
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
    let header = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    let _ = socket.write_all(header.as_bytes()).await;
    match script(post_idx) {
        Reply::Status(code) => {
            let answer = format!("HTTP/1.1 {code} Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom");
            // The 200 header above was not sent for errors: rewrite on a fresh connection is not
            // possible, so error replies skip it (see `send_header`).
            let _ = answer;
        }
        Reply::Stall => {
            for _ in 0..2 {
                let _ = socket.write_all(event(" x").as_bytes()).await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Reply::Malformed | Reply::Stream => {
            for token in 0..max_tokens {
                if token == 1 && matches!(script(post_idx), Reply::Malformed) {
                    let _ = socket.write_all(b"data: {not json\n\n").await;
                }
                let _ = socket.write_all(event(" x").as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let usage = format!("data: {{\"choices\":[],\"usage\":{{\"completion_tokens\":{max_tokens}}}}}\n\ndata: [DONE]\n\n");
            let _ = socket.write_all(usage.as_bytes()).await;
        }
    }
    let _ = socket.shutdown().await;
}
