//! A request's progress through the simulated server.

use super::time::SimTime;
use super::workload::RequestSpec;

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Not yet sent by its client.
    Pending,
    /// Waiting for KV pre-allocation on a decode engine (disaggregated).
    AwaitingDecodeSlot,
    /// In a waiting queue.
    Waiting,
    /// Its prompt is being prefilled.
    Prefilling,
    /// Its KV is moving from a prefill to a decode engine.
    Transferring,
    /// Decoding.
    Running,
    /// Done.
    Finished,
}

/// One request and its progress.
///
/// The fields touched on every decode step come first (`repr(C)`), so that a decode batch walks
/// one cache line per request.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Request {
    /// Output tokens generated so far.
    pub generated: u64,
    /// KV tokens it holds on its current engine.
    pub kv_tokens: u64,
    /// When the client got the latest chunk.
    pub last_chunk: SimTime,
    /// Tokens generated since the latest chunk was streamed.
    pub unstreamed_tokens: u64,
    /// Output tokens to generate (a copy of `spec.osl`).
    pub osl: u64,
    /// When the client got the first output chunk.
    pub first_token: Option<SimTime>,
    /// Where it is.
    pub state: RequestState,
    /// Whether it is a warm-up request (a copy of `spec.warmup`).
    pub warmup: bool,
    /// What the client asked for.
    pub spec: RequestSpec,
    /// When the client sent it.
    pub sent: SimTime,
    /// Prompt tokens in KV (on the engine currently holding it).
    pub prefilled: u64,
    /// Engine index and rank it runs on (the decode engine once disaggregated).
    pub placement: (usize, usize),
    /// Prefill engine and rank (disaggregated only).
    pub prefill_placement: Option<(usize, usize)>,
    /// When its first prefill chunk started (for KV transfer overlap).
    pub prefill_started: Option<SimTime>,
}

impl Request {
    /// A request not yet sent.
    pub fn new(spec: RequestSpec) -> Request {
        Request {
            osl: spec.osl,
            warmup: spec.warmup,
            spec,
            state: RequestState::Pending,
            sent: SimTime::ZERO,
            prefilled: 0,
            generated: 0,
            kv_tokens: 0,
            first_token: None,
            last_chunk: SimTime::ZERO,
            unstreamed_tokens: 0,
            placement: (0, 0),
            prefill_placement: None,
            prefill_started: None,
        }
    }

    /// Tokens a prefill must put in KV: the prompt plus, after a retraction, the output so far
    /// (the prefill then samples the next token).
    pub fn prompt_tokens(&self) -> u64 {
        self.spec.isl + self.generated
    }

    /// Evicted by a retraction: KV dropped, back to waiting; its output so far is kept and re-prefilled.
    pub fn retract(&mut self) {
        self.kv_tokens = 0;
        self.prefilled = 0;
        self.state = RequestState::Waiting;
    }
}

/// All requests of a run, indexed by arrival order.
pub type RequestTable = Vec<Request>;
