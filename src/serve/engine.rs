//! The live scheduler: one aggregated SGLang engine stepped one forward at a time by a caller that owns the clock.
//!
//! [`LiveEngine`] mirrors what `sim::cluster` does for an aggregated engine, with the simulator's own
//! [`RankScheduler`]s (one per DP-attention rank, stepping in lockstep) and the cost model's step
//! times through [`StepTimer`]: [`LiveEngine::submit`] queues a request, [`LiveEngine::start_step`]
//! forms the next batch and returns its duration, and [`LiveEngine::finish_step`] applies it and
//! returns the output [`Chunk`]s each client is sent (one per `--stream-interval` tokens).
//! Requests submitted while a step runs are seen as the simulator sees them: with the overlap
//! scheduler only after the next batch is formed.
//! The twin's own HTTP layer is its front end: the simulator's `frontend_request_us` (SGLang's
//! tokenizer manager handing requests over one at a time) is not added here.
//! The engine keeps a logical clock (the sum of step durations) and reads no wall clock, so it is
//! tested without sockets or sleeps; `serve::runner` maps it onto real time.

use crate::model::ops::{ExtendRequest, RankBatch};
use crate::model::server_args::OverlapSchedule;
use crate::sim::cluster::{EngineSpec, StepTimer};
use crate::sim::request::{Request, RequestState, RequestTable};
use crate::sim::scheduler::{RankScheduler, RankWork, SchedulerConfig, CLIP_MAX_NEW_TOKENS};
use crate::sim::time::SimTime;
use crate::sim::workload::RequestSpec;

use super::error::ServeError;

/// Finished requests kept in the request table before it is compacted.
const COMPACT_AFTER_FINISHED: usize = 1024;

/// The scheduling limits of a live engine, taken from a simulator [`EngineSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEngineConfig {
    /// Limits of each rank's scheduler.
    pub scheduler: SchedulerConfig,
    /// DP-attention ranks.
    pub dp: usize,
    /// `--stream-interval`: tokens per streamed chunk.
    pub stream_interval: u64,
    /// Whether the CPU forms batch k+1 while the GPU runs batch k.
    pub overlap_schedule: OverlapSchedule,
}

impl LiveEngineConfig {
    /// The limits of an aggregated simulator engine.
    pub fn from_engine_spec(spec: &EngineSpec<'_>) -> LiveEngineConfig {
        LiveEngineConfig {
            scheduler: spec.scheduler.clone(),
            dp: spec.dp.max(1),
            stream_interval: spec.stream_interval.max(1),
            overlap_schedule: spec.overlap_schedule,
        }
    }
}

/// Output tokens for one client, produced when a step ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// The id the request was submitted with.
    pub request_id: u64,
    /// Tokens in this chunk.
    pub n_tokens: u64,
    /// Tokens generated so far, this chunk included.
    pub generated_tokens: u64,
    /// Whether this is the request's last chunk.
    pub finished: bool,
    /// Logical time the chunk was produced.
    pub at: SimTime,
}

/// Counts of requests in each queue, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Requests decoding or being prefilled.
    pub running: u64,
    /// Requests waiting for prefill.
    pub waiting: u64,
}

/// One aggregated engine: DP ranks in lockstep, each an SGLang scheduler.
pub struct LiveEngine<T: StepTimer> {
    timer: T,
    config: LiveEngineConfig,
    ranks: Vec<RankScheduler>,
    requests: RequestTable,
    request_ids: Vec<u64>,
    arrived_during_step: Vec<Vec<usize>>,
    contexts: Vec<Vec<u64>>,
    extends: Vec<Vec<ExtendRequest>>,
    current: Option<Vec<RankWork>>,
    step_end: SimTime,
    now: SimTime,
    next_rank: usize,
    n_finished_in_table: usize,
}

impl<T: StepTimer> LiveEngine<T> {
    /// An idle engine.
    pub fn new(timer: T, config: LiveEngineConfig) -> LiveEngine<T> {
        let dp = config.dp.max(1);
        LiveEngine {
            timer,
            ranks: (0..dp).map(|_| RankScheduler::new(config.scheduler.clone())).collect(),
            requests: Vec::new(),
            request_ids: Vec::new(),
            arrived_during_step: vec![Vec::new(); dp],
            contexts: vec![Vec::new(); dp],
            extends: vec![Vec::new(); dp],
            current: None,
            step_end: SimTime::ZERO,
            now: SimTime::ZERO,
            next_rank: 0,
            n_finished_in_table: 0,
            config,
        }
    }

    /// The scheduling limits.
    pub fn config(&self) -> &LiveEngineConfig {
        &self.config
    }

    /// The step timer.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// Logical time: the sum of the durations of the steps run so far, plus idle time the caller reported.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Whether a step is running.
    pub fn is_busy(&self) -> bool {
        self.current.is_some()
    }

    /// Moves the logical clock forward while the engine idles (no effect while a step runs).
    pub fn advance_idle(&mut self, to: SimTime) {
        if self.current.is_none() && to > self.now {
            self.now = to;
        }
    }

    /// Checks that a request of `isl` input and `osl` output tokens can ever be scheduled.
    pub fn check_fits(config: &SchedulerConfig, isl: u64, osl: u64) -> Result<(), ServeError> {
        if isl == 0 || osl == 0 {
            return Err(ServeError::BadRequest(format!(
                "a request needs at least 1 input and 1 output token (got {isl} and {osl})"
            )));
        }
        let capacity = config.kv_capacity_tokens;
        if isl + osl.min(CLIP_MAX_NEW_TOKENS) >= capacity {
            return Err(ServeError::BadRequest(format!(
                "{isl} input + {osl} output tokens do not fit the KV pool of {capacity} tokens per rank"
            )));
        }
        Ok(())
    }

    /// Queues a request (round-robin over DP ranks); while a step runs it arrives during that step.
    pub fn submit(&mut self, request_id: u64, isl: u64, osl: u64) -> Result<(), ServeError> {
        Self::check_fits(&self.config.scheduler, isl, osl)?;
        let mut request = Request::new(RequestSpec {
            arrival_s: None,
            isl,
            osl,
            prefix_group: None,
            shared_prefix_tokens: 0,
            warmup: false,
        });
        let rank = self.next_rank % self.ranks.len();
        self.next_rank += 1;
        request.sent = self.now;
        request.placement = (0, rank);
        request.state = RequestState::Waiting;
        let request_idx = self.requests.len();
        self.requests.push(request);
        self.request_ids.push(request_id);
        if self.current.is_some() && self.config.overlap_schedule == OverlapSchedule::On {
            self.arrived_during_step[rank].push(request_idx);
        } else {
            self.ranks[rank].waiting.push_back(request_idx);
        }
        Ok(())
    }

    /// Forms the next batch on every rank and returns how long it runs, seconds; `None` when idle.
    ///
    /// Call [`LiveEngine::finish_step`] before starting another step.
    pub fn start_step(&mut self) -> Option<f64> {
        if self.current.is_some() {
            return None;
        }
        let mut works = self.next_batches();
        // Requests that arrived during the last step become visible now: for the next batch when
        // this one has work (the CPU runs one batch ahead), at once when the engine would idle.
        let had_arrivals = self.arrived_during_step.iter().any(|a| !a.is_empty());
        for (rank, arrived) in self.ranks.iter_mut().zip(self.arrived_during_step.iter_mut()) {
            rank.waiting.extend(arrived.drain(..));
        }
        if had_arrivals && works.iter().all(|w| *w == RankWork::Idle) {
            works = self.next_batches();
        }
        if works.iter().all(|w| *w == RankWork::Idle) {
            return None;
        }
        for (rank_idx, work) in works.iter().enumerate() {
            let extends = &mut self.extends[rank_idx];
            extends.clear();
            if let RankWork::Prefill { chunks, mixed } = work {
                for &(request_idx, new_tokens, cached) in chunks {
                    let request = &mut self.requests[request_idx];
                    request.prefill_started.get_or_insert(self.now);
                    extends.push(ExtendRequest {
                        new_tokens,
                        cached_tokens: request.prefilled.max(cached),
                    });
                }
                for &request_idx in mixed {
                    extends.push(ExtendRequest {
                        new_tokens: 1,
                        cached_tokens: self.requests[request_idx].kv_tokens - 1,
                    });
                }
            }
        }
        let batches: Vec<RankBatch<'_>> = works
            .iter()
            .enumerate()
            .map(|(rank_idx, work)| match work {
                RankWork::Idle => RankBatch::Idle,
                RankWork::Decode(_) => RankBatch::Decode(&self.contexts[rank_idx]),
                RankWork::Prefill { .. } => RankBatch::Extend(&self.extends[rank_idx]),
            })
            .collect();
        let duration_s = self.timer.step_s(&batches);
        self.step_end = self.now.after_secs(duration_s).max(SimTime(self.now.0 + 1));
        self.current = Some(works);
        Some(duration_s)
    }

    fn next_batches(&mut self) -> Vec<RankWork> {
        let requests = &mut self.requests;
        self.ranks
            .iter_mut()
            .zip(self.contexts.iter_mut())
            .map(|(rank, contexts)| rank.next_batch(requests, contexts))
            .collect()
    }

    /// Applies the running step: advances the clock to its end and returns the chunks to stream.
    pub fn finish_step(&mut self) -> Vec<Chunk> {
        let Some(works) = self.current.take() else { return Vec::new() };
        self.now = self.step_end;
        let mut chunks = Vec::new();
        for (rank_idx, work) in works.into_iter().enumerate() {
            match work {
                RankWork::Idle => {}
                RankWork::Decode(running) => {
                    for request_idx in running {
                        self.advance_decode(rank_idx, request_idx, &mut chunks);
                    }
                }
                RankWork::Prefill { chunks: prefills, mixed } => {
                    for request_idx in mixed {
                        self.advance_decode(rank_idx, request_idx, &mut chunks);
                    }
                    for (request_idx, new_tokens, _) in prefills {
                        if !self.ranks[rank_idx].finish_prefill_chunk(&mut self.requests, request_idx, new_tokens) {
                            continue;
                        }
                        self.requests[request_idx].generated += 1;
                        self.emit(request_idx, 1, &mut chunks);
                        if self.requests[request_idx].generated >= self.requests[request_idx].osl {
                            self.finish(rank_idx, request_idx);
                        } else {
                            self.requests[request_idx].state = RequestState::Running;
                            self.ranks[rank_idx].running.push(request_idx);
                        }
                    }
                }
            }
        }
        self.debug_check();
        self.compact();
        chunks
    }

    fn advance_decode(&mut self, rank_idx: usize, request_idx: usize, chunks: &mut Vec<Chunk>) {
        if self.requests[request_idx].state != RequestState::Running {
            return;
        }
        self.requests[request_idx].generated += 1;
        self.emit(request_idx, 1, chunks);
        if self.requests[request_idx].generated >= self.requests[request_idx].osl {
            self.finish(rank_idx, request_idx);
        }
    }

    /// Streams tokens as `--stream-interval` chunks: the first token alone, then every
    /// `stream_interval` tokens, and whatever is left when the request finishes.
    fn emit(&mut self, request_idx: usize, n_new: u64, chunks: &mut Vec<Chunk>) {
        let interval = self.config.stream_interval;
        let request = &mut self.requests[request_idx];
        let done = request.generated >= request.osl;
        let n_tokens = if request.first_token.is_none() {
            request.first_token = Some(self.now);
            request.unstreamed_tokens = 0;
            request.generated
        } else {
            request.unstreamed_tokens += n_new;
            if request.unstreamed_tokens < interval && !done {
                return;
            }
            std::mem::take(&mut request.unstreamed_tokens)
        };
        request.last_chunk = self.now;
        chunks.push(Chunk {
            request_id: self.request_ids[request_idx],
            n_tokens,
            generated_tokens: request.generated,
            finished: done,
            at: self.now,
        });
    }

    fn finish(&mut self, rank_idx: usize, request_idx: usize) {
        self.ranks[rank_idx].finish_request(&mut self.requests, request_idx);
        self.requests[request_idx].state = RequestState::Finished;
        self.n_finished_in_table += 1;
    }

    /// Drops a request whose client went away, freeing its KV (between steps only; `false` if unknown or finished).
    pub fn abort(&mut self, request_id: u64) -> bool {
        if self.current.is_some() {
            return false;
        }
        let Some(request_idx) =
            (0..self.requests.len()).find(|&i| self.request_ids[i] == request_id && self.requests[i].state != RequestState::Finished)
        else {
            return false;
        };
        let rank_idx = self.requests[request_idx].placement.1;
        let rank = &mut self.ranks[rank_idx];
        rank.waiting.retain(|&i| i != request_idx);
        self.arrived_during_step[rank_idx].retain(|&i| i != request_idx);
        if rank.chunked == Some(request_idx) {
            rank.chunked = None;
        }
        rank.finish_request(&mut self.requests, request_idx);
        self.requests[request_idx].state = RequestState::Finished;
        self.n_finished_in_table += 1;
        true
    }

    /// Requests running and waiting, over all ranks.
    pub fn queue_counts(&self) -> QueueCounts {
        let mut counts = QueueCounts::default();
        for (rank, arrived) in self.ranks.iter().zip(&self.arrived_during_step) {
            counts.running += rank.running.len() as u64 + u64::from(rank.chunked.is_some());
            counts.waiting += (rank.waiting.len() + arrived.len()) as u64;
        }
        counts
    }

    /// KV tokens in use over all ranks.
    pub fn kv_used_tokens(&self) -> u64 {
        self.ranks.iter().map(RankScheduler::kv_used_tokens).sum()
    }

    /// Requests retracted for lack of KV so far.
    pub fn n_retractions(&self) -> u64 {
        self.ranks.iter().map(|r| r.n_retractions).sum()
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) && self.requests.len() <= 2000 {
            for (rank_idx, rank) in self.ranks.iter().enumerate() {
                let owned = (0..self.requests.len()).filter(|&i| {
                    let request = &self.requests[i];
                    request.placement.1 == rank_idx && matches!(request.state, RequestState::Prefilling | RequestState::Running)
                });
                rank.debug_check(&self.requests, owned);
            }
        }
    }

    /// Drops finished requests from the table once there are many, renumbering the queues.
    fn compact(&mut self) {
        if self.n_finished_in_table < COMPACT_AFTER_FINISHED || self.n_finished_in_table * 2 < self.requests.len() {
            return;
        }
        let mut new_index = vec![usize::MAX; self.requests.len()];
        let mut requests = Vec::with_capacity(self.requests.len() - self.n_finished_in_table);
        let mut request_ids = Vec::with_capacity(requests.capacity());
        for (old_idx, request) in self.requests.drain(..).enumerate() {
            if request.state != RequestState::Finished {
                new_index[old_idx] = requests.len();
                requests.push(request);
                request_ids.push(self.request_ids[old_idx]);
            }
        }
        for rank in &mut self.ranks {
            rank.waiting.iter_mut().for_each(|i| *i = new_index[*i]);
            rank.running.iter_mut().for_each(|i| *i = new_index[*i]);
            rank.chunked = rank.chunked.map(|i| new_index[i]);
        }
        for arrived in &mut self.arrived_during_step {
            arrived.iter_mut().for_each(|i| *i = new_index[*i]);
        }
        self.requests = requests;
        self.request_ids = request_ids;
        self.n_finished_in_table = 0;
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
