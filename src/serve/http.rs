//! The HTTP glue: an axum router over the step loop, started on its own thread and runtime.
//!
//! [`spawn`] binds the socket (port 0 picks a free one), starts the step loop and the server, and
//! returns a [`ServeHandle`] with the bound address; dropping the handle stops the server.
//! Handlers parse a request ([`protocol::parse_request`]), check that it can ever fit the KV pool,
//! hand it to the step loop and stream its chunks back as server-sent events.
//! Endpoints: `POST /v1/completions`, `POST /v1/chat/completions`, `POST /generate`, `GET /v1/models`,
//! `GET /get_server_info`, `GET /get_model_info`, `GET /health`, `GET /health_generate`, `GET /metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::engine::{LiveEngine, LiveEngineConfig};
use super::error::ServeError;
use super::protocol::{self, Api, ResponseWriter};
use super::runner::{spawn_step_loop, Counters, Submission};
use crate::model::step::StepModel;
use crate::sim::cluster::Role;
use crate::sim::deploy::engine_spec;
use crate::sim::scheduler::SchedulerConfig;

/// Everything the twin needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The engine configuration whose timing the twin follows (coefficients possibly perturbed).
    pub step_model: StepModel,
    /// The model name reported as `model_path` and echoed in answers.
    pub model_path: String,
    /// Address to listen on (`127.0.0.1` keeps the twin local).
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Simulated seconds per wall-clock second: 1 is real time, 10 runs ten times faster.
    pub time_scale: f64,
}

/// A running twin; dropping it stops the server.
pub struct ServeHandle {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl ServeHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Blocks until the server stops (it stops only on an IO error or when the process ends).
    pub fn wait(mut self) -> Result<(), ServeError> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| ServeError::Runtime("the server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct AppState {
    submissions: Sender<Submission>,
    counters: Arc<Counters>,
    next_request_id: AtomicU64,
    scheduler: SchedulerConfig,
    model_path: String,
    server_info: Value,
    /// The served context window (SGLang's `context_len`), tokens.
    context_tokens: u64,
}

/// How long a connection may take to send a request's headers, and how long an idle keep-alive
/// connection is kept: uvicorn's `timeout_keep_alive` default (5 s), under which SGLang's HTTP
/// server runs. A client that opens a connection and sends half a request is dropped after it, so
/// half-open connections cannot hold the server's file descriptors and starve health checks.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request's body may take to arrive once its headers have, for the same reason.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the socket, starts the step loop and the HTTP server, and returns at once.
pub fn spawn(config: ServeConfig) -> Result<ServeHandle, ServeError> {
    let address_text = format!("{}:{}", config.host, config.port);
    let listener = std::net::TcpListener::bind((config.host.as_str(), config.port)).map_err(|source| ServeError::Bind {
        address: address_text.clone(),
        source,
    })?;
    let address = listener.local_addr().map_err(|source| ServeError::Bind {
        address: address_text.clone(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Bind {
        address: address_text,
        source,
    })?;
    let engine_config = LiveEngineConfig::from_engine_spec(&engine_spec(&config.step_model, Role::Aggregated));
    let scheduler = engine_config.scheduler.clone();
    let server_info = server_info(&config);
    let context_tokens = config.step_model.model().max_context_tokens;
    let counters = Arc::new(Counters::default());
    let engine = LiveEngine::new(config.step_model, engine_config);
    let submissions = spawn_step_loop(engine, config.time_scale, counters.clone())?;
    let state = Arc::new(AppState {
        submissions,
        counters,
        next_request_id: AtomicU64::new(0),
        scheduler,
        model_path: config.model_path,
        server_info,
        context_tokens,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sglsim-serve")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Runtime(format!("cannot start the async runtime: {e}")))?;
    let (shutdown_sender, shutdown_receiver) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sglsim-serve".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| ServeError::Runtime(format!("cannot listen: {e}")))?;
                tokio::select! {
                    result = accept_loop(listener, router(state)) => result,
                    _ = shutdown_receiver => Ok(()),
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
            result
        })
        .map_err(|e| ServeError::Runtime(format!("cannot start the server thread: {e}")))?;
    Ok(ServeHandle {
        address,
        shutdown: Some(shutdown_sender),
        thread: Some(thread),
    })
}

/// Accepts connections and serves each on its own task with HTTP/1.1 keep-alive and
/// [`HEADER_READ_TIMEOUT`]. A failed accept (out of file descriptors, a connection reset before it
/// was taken) is waited out briefly rather than ending the server.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router) -> Result<(), ServeError> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, Nagle's algorithm holds each small SSE chunk until the client's
        // delayed ACK (up to 40 ms), bunching tokens together.
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true);
            // A connection ends with an error when its client vanishes or times out; nothing to report.
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/generate", post(generate))
        .route("/v1/models", get(models))
        .route("/get_server_info", get(get_server_info))
        .route("/server_info", get(get_server_info))
        .route("/get_model_info", get(get_model_info))
        .route("/model_info", get(get_model_info))
        .route("/health", get(health))
        .route("/health_generate", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// What `/get_server_info` reports, under SGLang's key names.
fn server_info(config: &ServeConfig) -> Value {
    let step = &config.step_model;
    let args = step.args();
    let memory = step.memory();
    let mapping = step.mapping();
    let dp = u64::from(mapping.dp());
    json!({
        "model_path": config.model_path,
        "served_model_name": config.model_path,
        "tp_size": mapping.tp(),
        "dp_size": mapping.dp(),
        "ep_size": mapping.ep(),
        "enable_dp_attention": mapping.dp_attention(),
        "chunked_prefill_size": args.chunked_prefill_size.map_or(-1, |chunk| (chunk * dp) as i64),
        "max_prefill_tokens": args.max_prefill_tokens,
        "cuda_graph_max_bs": args.cuda_graph_max_bs,
        "max_running_requests": memory.max_running_requests,
        "max_total_num_tokens": memory.kv_capacity_tokens_per_rank,
        "mem_fraction_static": memory.mem_fraction_static,
        "page_size": args.page_size,
        "stream_interval": args.stream_interval,
        "disable_radix_cache": args.disable_radix_cache,
        "enable_mixed_chunk": args.enable_mixed_chunk,
        "disable_overlap_schedule": args.overlap_schedule == crate::model::server_args::OverlapSchedule::Off,
        "kv_cache_dtype": args.kv_cache_dtype.to_string(),
        "context_length": step.model().max_context_tokens,
        "version": "sglsim-twin",
        "gpu": step.gpu().name,
        "time_scale": config.time_scale,
    })
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(protocol::error_body(message, status.as_u16()))).into_response()
}

async fn completions(State(state): State<Arc<AppState>>, body: Body) -> Response {
    answer(state, Api::Completions, body).await
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Body) -> Response {
    answer(state, Api::Chat, body).await
}

async fn generate(State(state): State<Arc<AppState>>, body: Body) -> Response {
    answer(state, Api::Generate, body).await
}

/// Largest request body, bytes: a prompt of 10M token ids (the longest context of any model) as JSON.
const MAX_BODY_BYTES: usize = 128 << 20;

/// Reads a body within [`BODY_READ_TIMEOUT`] and [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body (at most {MAX_BODY_BYTES} bytes): {error}"),
        )),
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        )),
    }
}

async fn answer(state: Arc<AppState>, api: Api, body: Body) -> Response {
    let received_at = std::time::Instant::now();
    let body = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let request = match protocol::parse_request(api, &body, &state.model_path)
        .and_then(|request| protocol::check_context(&request, state.context_tokens).map(|()| request))
    {
        Ok(request) => request,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if let Err(error) = LiveEngine::<StepModel>::check_fits(&state.scheduler, request.isl, request.osl) {
        return error_response(StatusCode::BAD_REQUEST, &error.to_string());
    }
    let request_id = state.next_request_id.fetch_add(1, Ordering::Relaxed);
    let (sink, mut chunks) = mpsc::unbounded_channel();
    let submission = Submission {
        request_id,
        isl: request.isl,
        osl: request.osl,
        sink,
        received_at,
    };
    if state.submissions.send(submission).is_err() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "the step loop has stopped");
    }
    state.counters.requests_total.fetch_add(1, Ordering::Relaxed);
    state.counters.prompt_tokens_total.fetch_add(request.isl, Ordering::Relaxed);
    let created_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stream = request.stream;
    let mut writer = ResponseWriter::new(request, request_id, created_s);
    if !stream {
        while let Some(chunk) = chunks.recv().await {
            if chunk.finished {
                return Json(writer.full_response(chunk.generated_tokens)).into_response();
            }
        }
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "the request was dropped by the step loop");
    }
    let events = futures_util::stream::unfold((chunks, false), |(mut receiver, done)| async move {
        if done {
            return None;
        }
        let chunk = receiver.recv().await?;
        Some((chunk, (receiver, chunk.finished)))
    });
    let body = futures_util::StreamExt::map(events, move |chunk| Ok::<_, Infallible>(writer.chunk_events(&chunk)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model_path, "object": "model", "created": 0, "owned_by": "sglsim"}],
    }))
}

async fn get_server_info(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.server_info.clone())
}

async fn get_model_info(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"model_path": state.model_path, "tokenizer_path": state.model_path, "is_generation": true}))
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counters = &state.counters;
    let label = format!("{{model_name=\"{}\"}}", state.model_path.replace('"', "'"));
    let rows: [(&str, &str, &str, u64); 6] = [
        (
            "sglang:num_requests_total",
            "counter",
            "Requests received.",
            counters.requests_total.load(Ordering::Relaxed),
        ),
        (
            "sglang:prompt_tokens_total",
            "counter",
            "Prompt tokens received.",
            counters.prompt_tokens_total.load(Ordering::Relaxed),
        ),
        (
            "sglang:generation_tokens_total",
            "counter",
            "Output tokens generated.",
            counters.generation_tokens_total.load(Ordering::Relaxed),
        ),
        (
            "sglang:num_running_reqs",
            "gauge",
            "Requests running.",
            counters.running.load(Ordering::Relaxed),
        ),
        (
            "sglang:num_queue_reqs",
            "gauge",
            "Requests waiting.",
            counters.waiting.load(Ordering::Relaxed),
        ),
        (
            "sglang:forward_steps_total",
            "counter",
            "Engine steps run.",
            counters.steps_total.load(Ordering::Relaxed),
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in rows {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{label} {value}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
