//! The event loop: requests arrive, engines step, KV moves between prefill and decode engines.
//!
//! A [`Deployment`] is a list of engines (aggregated, or prefill and decode roles for
//! disaggregated serving), each with one [`RankScheduler`] per DP-attention rank stepping in
//! lockstep, and a [`StepTimer`] that prices its forwards. [`simulate`] runs a workload on it on a
//! logical clock: a binary heap of events ordered by `(time, sequence number)`, so ties resolve the
//! same way on every run. Records of what clients saw are summarised at the end.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use serde::Serialize;

use super::error::{Error, Result};
use super::metrics::{summarise, GapHistogram, RequestRecord, RunMetrics, Sla};
use super::request::{Request, RequestState, RequestTable};
use super::scheduler::{RankScheduler, RankWork, SchedulerConfig, CLIP_MAX_NEW_TOKENS};
use super::time::SimTime;
use super::workload::{Arrivals, RequestSpec};
use crate::model::ops::{ExtendRequest, RankBatch};
use crate::model::server_args::OverlapSchedule;

/// The one way the simulator reaches the cost model: the wall time of one lockstep iteration.
pub trait StepTimer {
    /// Seconds one iteration takes, given each DP rank's batch.
    fn step_s(&self, ranks: &[RankBatch<'_>]) -> f64;

    /// Seconds of a CUDA-graph decode step given each rank's (requests, sum of contexts), when the
    /// step time depends on contexts only through their sum; `None` otherwise (the simulator then
    /// steps one iteration at a time).
    fn decode_by_sum_s(&self, ranks: &[(u64, u64)]) -> Option<f64> {
        let _ = ranks;
        None
    }
}

impl StepTimer for crate::model::step::StepModel {
    fn step_s(&self, ranks: &[RankBatch<'_>]) -> f64 {
        self.forward(ranks).total_s
    }

    fn decode_by_sum_s(&self, ranks: &[(u64, u64)]) -> Option<f64> {
        self.decode_by_context_sum(ranks).map(|cost| cost.total_s)
    }
}

/// What an engine does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Prefill and decode on the same engine.
    Aggregated,
    /// Prefill only; KV goes to a decode engine.
    Prefill,
    /// Decode only; prompts arrive as transferred KV.
    Decode,
}

/// One engine of a deployment.
pub struct EngineSpec<'a> {
    /// Its role.
    pub role: Role,
    /// Prices its forwards.
    pub timer: &'a dyn StepTimer,
    /// Limits of each of its schedulers (one per DP-attention rank).
    pub scheduler: SchedulerConfig,
    /// DP-attention ranks.
    pub dp: usize,
    /// GPUs it occupies.
    pub n_gpus: u32,
    /// `--stream-interval`.
    pub stream_interval: u64,
    /// KV bytes per token that each GPU sends or receives in a disaggregated transfer.
    pub kv_bytes_per_token_per_gpu: f64,
    /// Scheduler CPU time before a transferred request's first token is streamed, seconds.
    pub first_token_overhead_s: f64,
    /// Front-end time per request (HTTP handling, hand-off to the scheduler), seconds; requests pass
    /// through the engine's front end one at a time.
    pub frontend_request_s: f64,
    /// With the overlap scheduler the CPU forms batch k+1 while the GPU runs batch k, so a request
    /// that arrives during a step is first seen when batch k+2 is formed.
    pub overlap_schedule: OverlapSchedule,
}

/// The link KV travels over from prefill to decode engines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransferLink {
    /// Bandwidth per GPU, bytes/s.
    pub bytes_per_s: f64,
    /// Fixed latency of one transfer, seconds.
    pub latency_s: f64,
}

/// Engines and how they connect.
pub struct Deployment<'a> {
    /// Aggregated engines, or prefill and decode engines.
    pub engines: Vec<EngineSpec<'a>>,
    /// KV transfer link for disaggregated serving.
    pub transfer: Option<TransferLink>,
}

/// One iteration of one engine, for `--timeline`.
#[derive(Debug, Clone, Serialize)]
pub struct IterationRecord {
    /// Engine index.
    pub engine: usize,
    /// Start, ms.
    pub start_ms: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// `prefill`, `decode` or `mixed` (prefill on some ranks or with decodes riding along).
    pub kind: &'static str,
    /// Requests in the batch (all ranks).
    pub batch_size: u64,
    /// Tokens computed (all ranks).
    pub tokens: u64,
    /// KV tokens in use after admission (all ranks).
    pub kv_used_tokens: u64,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct SimOutput {
    /// Client-side metrics of the measured requests.
    pub metrics: RunMetrics,
    /// Requests retracted for lack of KV.
    pub n_retractions: u64,
    /// Iterations run.
    pub n_iterations: u64,
    /// Per-iteration records, when asked for.
    #[serde(skip)]
    pub timeline: Vec<IterationRecord>,
    /// Records of the measured requests, in completion order.
    #[serde(skip)]
    pub records: Vec<RequestRecord>,
}

/// Options of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimOptions {
    /// Arrival process (closed loop issues the next request when one completes).
    pub arrivals: Arrivals,
    /// SLA for goodput.
    pub sla: Option<Sla>,
    /// Keep per-iteration records.
    pub record_timeline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A client sends a request.
    Arrival(usize),
    /// The engine's front end hands the request to its scheduler.
    Dispatched(usize),
    StepDone(usize),
    TransferDone(usize),
    /// An idle engine looks at its queues; queued after same-time arrivals so they batch together.
    Wake(usize),
}

struct EngineState {
    ranks: Vec<RankScheduler>,
    busy: bool,
    wake_pending: bool,
    current: Vec<RankWork>,
    step_start: SimTime,
    next_rank: usize,
    prealloc: Vec<VecDeque<usize>>,
    prebuilt: Vec<VecDeque<usize>>,
    /// Requests that arrived while the CPU had already formed the next batch (overlap scheduler).
    arrived_during_step: Vec<Vec<usize>>,
    bound_requests: Vec<u64>,
    contexts: Vec<Vec<u64>>,
    extends: Vec<Vec<ExtendRequest>>,
    /// When the front end finishes the last request handed to it.
    frontend_free: SimTime,
    /// Per DP rank: when its GPUs' KV-transfer links (the NIC, or NVLink within one domain) finish the
    /// bytes already queued on them (disaggregated engines).
    link_free: Vec<SimTime>,
}

struct Simulation<'d, 'a> {
    deployment: &'d Deployment<'a>,
    engines: Vec<EngineState>,
    requests: RequestTable,
    events: BinaryHeap<Reverse<(SimTime, u64, Event)>>,
    sequence: u64,
    next_to_send: usize,
    closed_loop: bool,
    records: Vec<RequestRecord>,
    gaps: GapHistogram,
    timeline: Vec<IterationRecord>,
    record_timeline: bool,
    n_iterations: u64,
    next_frontend: usize,
    next_backend: usize,
    /// Engines new requests go to: the decode engines when disaggregated, else the aggregated ones.
    entry_engines: Vec<usize>,
    /// Prefill engines (disaggregated only).
    prefill_engines: Vec<usize>,
}

/// Runs a workload on a deployment and returns what its clients would measure.
pub fn simulate(deployment: &Deployment<'_>, workload: &[RequestSpec], options: SimOptions) -> Result<SimOutput> {
    validate(deployment, workload)?;
    let disaggregated = deployment.engines.iter().any(|e| e.role == Role::Decode);
    let engines = deployment
        .engines
        .iter()
        .map(|spec| EngineState {
            ranks: (0..spec.dp).map(|_| RankScheduler::new(spec.scheduler.clone())).collect(),
            busy: false,
            wake_pending: false,
            current: Vec::new(),
            step_start: SimTime::ZERO,
            next_rank: 0,
            prealloc: vec![VecDeque::new(); spec.dp],
            prebuilt: vec![VecDeque::new(); spec.dp],
            arrived_during_step: vec![Vec::new(); spec.dp],
            bound_requests: vec![0; spec.dp],
            contexts: vec![Vec::new(); spec.dp],
            extends: vec![Vec::new(); spec.dp],
            frontend_free: SimTime::ZERO,
            link_free: vec![SimTime::ZERO; spec.dp],
        })
        .collect();
    let mut simulation = Simulation {
        deployment,
        engines,
        requests: workload.iter().map(|spec| Request::new(*spec)).collect(),
        events: BinaryHeap::new(),
        sequence: 0,
        next_to_send: 0,
        closed_loop: false,
        records: Vec::with_capacity(workload.len()),
        gaps: GapHistogram::default(),
        timeline: Vec::new(),
        record_timeline: options.record_timeline,
        n_iterations: 0,
        next_frontend: 0,
        next_backend: 0,
        entry_engines: engines_with(deployment, if disaggregated { Role::Decode } else { Role::Aggregated }),
        prefill_engines: engines_with(deployment, Role::Prefill),
    };
    match options.arrivals {
        Arrivals::Closed { concurrency } => {
            simulation.closed_loop = true;
            for _ in 0..concurrency.min(workload.len() as u64) {
                simulation.send_next(SimTime::ZERO);
            }
        }
        _ => {
            for (request_idx, spec) in workload.iter().enumerate() {
                simulation.push(SimTime::from_secs(spec.arrival_s.unwrap_or(0.0)), Event::Arrival(request_idx));
            }
            simulation.next_to_send = workload.len();
        }
    }
    while let Some(Reverse((now, _, event))) = simulation.events.pop() {
        match event {
            Event::Arrival(request_idx) => simulation.on_arrival(now, request_idx),
            Event::Dispatched(request_idx) => simulation.on_dispatched(now, request_idx),
            Event::StepDone(engine_idx) => simulation.on_step_done(now, engine_idx),
            Event::TransferDone(request_idx) => simulation.on_transfer_done(now, request_idx),
            Event::Wake(engine_idx) => {
                simulation.engines[engine_idx].wake_pending = false;
                simulation.start_step(now, engine_idx);
            }
        }
    }
    if let Some(stuck) = simulation.requests.iter().position(|r| r.state != RequestState::Finished) {
        return Err(Error::BadDeployment(format!(
            "request {stuck} (isl {}, osl {}) could never be scheduled: no engine had room for it",
            workload[stuck].isl, workload[stuck].osl
        )));
    }
    let n_gpus: u32 = deployment.engines.iter().map(|e| e.n_gpus).sum();
    let n_retractions = simulation.engines.iter().flat_map(|e| &e.ranks).map(|r| r.n_retractions).sum();
    Ok(SimOutput {
        metrics: summarise(&simulation.records, &simulation.gaps, n_gpus, options.sla),
        n_retractions,
        n_iterations: simulation.n_iterations,
        timeline: simulation.timeline,
        records: simulation.records,
    })
}

/// Indices of the engines with this role, in deployment order.
fn engines_with(deployment: &Deployment<'_>, role: Role) -> Vec<usize> {
    (0..deployment.engines.len())
        .filter(|&i| deployment.engines[i].role == role)
        .collect()
}

fn validate(deployment: &Deployment<'_>, workload: &[RequestSpec]) -> Result<()> {
    let frontends = deployment.engines.iter().filter(|e| e.role != Role::Decode).count();
    let decoders = deployment.engines.iter().filter(|e| e.role == Role::Decode).count();
    let prefillers = deployment.engines.iter().filter(|e| e.role == Role::Prefill).count();
    if frontends == 0 {
        return Err(Error::BadDeployment("no engine takes new requests".into()));
    }
    if (prefillers > 0) != (decoders > 0) || (prefillers > 0 && deployment.transfer.is_none()) {
        return Err(Error::BadDeployment(
            "disaggregated serving needs prefill engines, decode engines and a transfer link".into(),
        ));
    }
    for engine in &deployment.engines {
        let capacity = engine.scheduler.kv_capacity_tokens;
        if let Some(spec) = workload
            .iter()
            .find(|r| r.isl.saturating_add(r.osl.min(CLIP_MAX_NEW_TOKENS)) >= capacity)
        {
            return Err(Error::BadDeployment(format!(
                "a request of {} input + {} output tokens does not fit the KV pool of {capacity} tokens per rank",
                spec.isl, spec.osl
            )));
        }
    }
    Ok(())
}

impl Simulation<'_, '_> {
    fn push(&mut self, time: SimTime, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((time, self.sequence, event)));
    }

    fn send_next(&mut self, now: SimTime) {
        if self.next_to_send < self.requests.len() {
            let request_idx = self.next_to_send;
            self.next_to_send += 1;
            self.push(now, Event::Arrival(request_idx));
        }
    }

    /// A client sends a request: it is placed on an engine and queues for that engine's front end.
    fn on_arrival(&mut self, now: SimTime, request_idx: usize) {
        self.requests[request_idx].sent = now;
        // Round robin over the entry engines (decode engines keep their own counter when disaggregated).
        let counter = if self.prefill_engines.is_empty() {
            &mut self.next_frontend
        } else {
            &mut self.next_backend
        };
        let engine_idx = self.entry_engines[*counter % self.entry_engines.len()];
        *counter += 1;
        let engine = &mut self.engines[engine_idx];
        let rank = engine.next_rank % engine.ranks.len();
        engine.next_rank += 1;
        self.requests[request_idx].placement = (engine_idx, rank);
        let frontend_s = self.deployment.engines[engine_idx].frontend_request_s;
        if frontend_s <= 0.0 {
            self.on_dispatched(now, request_idx);
            return;
        }
        let done = engine.frontend_free.max(now).after_secs(frontend_s);
        engine.frontend_free = done;
        self.push(done, Event::Dispatched(request_idx));
    }

    /// The front end hands a placed request to its engine's scheduler (or, disaggregated, to its
    /// decode engine's pre-allocation queue). SGLang's decode scheduler pops that queue once per
    /// event-loop iteration (`process_decode_queue` → `DecodePreallocQueue.pop_preallocated`,
    /// python/sglang/srt/disaggregation/decode.py), and an iteration lasts one forward: a busy decode
    /// engine pre-allocates, and so releases the request to its prefill engine, at its next
    /// scheduling point ([`Simulation::start_step`]); an idle one at once.
    fn on_dispatched(&mut self, now: SimTime, request_idx: usize) {
        let (engine_idx, rank) = self.requests[request_idx].placement;
        if self.deployment.engines[engine_idx].role == Role::Decode {
            self.engines[engine_idx].prealloc[rank].push_back(request_idx);
            self.requests[request_idx].state = RequestState::AwaitingDecodeSlot;
            if !self.engines[engine_idx].busy {
                self.try_preallocate(now, engine_idx);
            }
        } else {
            self.requests[request_idx].state = RequestState::Waiting;
            self.enqueue(now, engine_idx, rank, request_idx);
        }
    }

    /// Puts a request in a rank's waiting queue, or, when the overlap scheduler has already formed the
    /// next batch of a busy engine, where it will be seen at the following scheduling point.
    fn enqueue(&mut self, now: SimTime, engine_idx: usize, rank: usize, request_idx: usize) {
        let overlapped = self.deployment.engines[engine_idx].overlap_schedule == OverlapSchedule::On;
        let engine = &mut self.engines[engine_idx];
        if engine.busy && overlapped {
            engine.arrived_during_step[rank].push(request_idx);
        } else {
            engine.ranks[rank].waiting.push_back(request_idx);
            self.wake(now, engine_idx);
        }
    }

    /// Makes an idle engine schedule at `now`, after every event already queued for `now`.
    fn wake(&mut self, now: SimTime, engine_idx: usize) {
        let engine = &mut self.engines[engine_idx];
        if !engine.busy && !engine.wake_pending {
            engine.wake_pending = true;
            self.push(now, Event::Wake(engine_idx));
        }
    }

    /// Decode-side KV pre-allocation (`DecodePreallocQueue`): a request is sent to prefill only once
    /// its decode engine has room for its prompt plus SGLang's reserve of 512 decode tokens per request.
    fn try_preallocate(&mut self, now: SimTime, decode_idx: usize) {
        const RESERVED_DECODE_TOKENS: u64 = 512;
        let mut admitted = Vec::new();
        let engine = &mut self.engines[decode_idx];
        for (rank_idx, queue) in engine.prealloc.iter_mut().enumerate() {
            let rank = &mut engine.ranks[rank_idx];
            while let Some(&request_idx) = queue.front() {
                let isl = self.requests[request_idx].spec.isl;
                let reserve = RESERVED_DECODE_TOKENS * (engine.bound_requests[rank_idx] + 1);
                if rank.kv_free_tokens() < isl + reserve && engine.bound_requests[rank_idx] > 0 {
                    break;
                }
                queue.pop_front();
                engine.bound_requests[rank_idx] += 1;
                rank.allocate(isl);
                admitted.push(request_idx);
            }
        }
        for request_idx in admitted {
            let prefill_idx = self.prefill_engines[self.next_frontend % self.prefill_engines.len()];
            self.next_frontend += 1;
            let engine = &mut self.engines[prefill_idx];
            let rank = engine.next_rank % engine.ranks.len();
            engine.next_rank += 1;
            let request = &mut self.requests[request_idx];
            request.prefill_placement = Some((prefill_idx, rank));
            request.state = RequestState::Waiting;
            self.enqueue(now, prefill_idx, rank, request_idx);
        }
    }

    fn start_step(&mut self, now: SimTime, engine_idx: usize) {
        if self.engines[engine_idx].busy {
            return;
        }
        if self.deployment.engines[engine_idx].role == Role::Decode {
            // Requests that reached the pre-allocation queue during the last forward.
            self.try_preallocate(now, engine_idx);
        }
        let spec = &self.deployment.engines[engine_idx];
        let engine = &mut self.engines[engine_idx];
        // Transferred requests join the running batch; their first token streams now.
        let mut streamed_first = Vec::new();
        for rank_idx in 0..engine.ranks.len() {
            while let Some(&request_idx) = engine.prebuilt[rank_idx].front() {
                let rank = &mut engine.ranks[rank_idx];
                if rank.running.len() as u64 >= rank.config().max_running_requests {
                    break;
                }
                engine.prebuilt[rank_idx].pop_front();
                rank.running.push(request_idx);
                self.requests[request_idx].state = RequestState::Running;
                streamed_first.push(request_idx);
            }
        }
        let first_token_time = now.after_secs(spec.first_token_overhead_s);
        let engine = &mut self.engines[engine_idx];
        let mut works: Vec<RankWork> = engine
            .ranks
            .iter_mut()
            .zip(engine.contexts.iter_mut())
            .map(|(rank, contexts)| rank.next_batch(&mut self.requests, contexts))
            .collect();
        // Requests that arrived during the last step become visible now: for the next batch when this
        // one has work (the CPU runs one batch ahead), at once when the engine would otherwise idle.
        let had_arrivals = engine.arrived_during_step.iter().any(|a| !a.is_empty());
        for (rank, arrived) in engine.ranks.iter_mut().zip(engine.arrived_during_step.iter_mut()) {
            rank.waiting.extend(arrived.drain(..));
        }
        if had_arrivals && works.iter().all(|w| *w == RankWork::Idle) {
            works = engine
                .ranks
                .iter_mut()
                .zip(engine.contexts.iter_mut())
                .map(|(rank, contexts)| rank.next_batch(&mut self.requests, contexts))
                .collect();
        }
        for request_idx in streamed_first {
            self.emit_tokens(first_token_time, request_idx, 0);
        }
        let engine = &mut self.engines[engine_idx];
        if works.iter().all(|w| *w == RankWork::Idle) {
            engine.busy = false;
            return;
        }
        let mut batch_size = 0u64;
        let mut tokens = 0u64;
        let mut any_prefill = false;
        let mut any_mixed = false;
        for (rank_idx, work) in works.iter().enumerate() {
            let extends = &mut engine.extends[rank_idx];
            extends.clear();
            match work {
                RankWork::Idle => {}
                RankWork::Decode(running) => {
                    batch_size += running.len() as u64;
                    tokens += running.len() as u64;
                }
                RankWork::Prefill { chunks, mixed } => {
                    any_prefill = true;
                    any_mixed |= !mixed.is_empty();
                    for &(request_idx, new_tokens, cached) in chunks {
                        let request = &mut self.requests[request_idx];
                        request.prefill_started.get_or_insert(now);
                        extends.push(ExtendRequest {
                            new_tokens,
                            cached_tokens: request.prefilled.max(cached),
                        });
                        tokens += new_tokens;
                    }
                    for &request_idx in mixed {
                        extends.push(ExtendRequest {
                            new_tokens: 1,
                            cached_tokens: self.requests[request_idx].kv_tokens - 1,
                        });
                        tokens += 1;
                    }
                    batch_size += (chunks.len() + mixed.len()) as u64;
                }
            }
        }
        let batches: Vec<RankBatch<'_>> = works
            .iter()
            .enumerate()
            .map(|(rank_idx, work)| match work {
                RankWork::Idle => RankBatch::Idle,
                RankWork::Decode(_) => RankBatch::Decode(&engine.contexts[rank_idx]),
                RankWork::Prefill { .. } => RankBatch::Extend(&engine.extends[rank_idx]),
            })
            .collect();
        let duration_s = spec.timer.step_s(&batches);
        let mut end = now.after_secs(duration_s).max(SimTime(now.0 + 1));
        drop(batches);
        if !any_prefill && !self.record_timeline {
            end = self.fast_forward_decode(engine_idx, &works, now, end);
        }
        let engine = &mut self.engines[engine_idx];
        if self.record_timeline {
            let kind = if any_mixed || (any_prefill && works.iter().any(|w| matches!(w, RankWork::Decode(_)))) {
                "mixed"
            } else if any_prefill {
                "prefill"
            } else {
                "decode"
            };
            let kv_used_tokens = engine.ranks.iter().map(|r| r.kv_used_tokens()).sum();
            self.timeline.push(IterationRecord {
                engine: engine_idx,
                start_ms: now.as_ms(),
                duration_ms: end.ms_since(now),
                kind,
                batch_size,
                tokens,
                kv_used_tokens,
            });
        }
        engine.busy = true;
        engine.current = works;
        engine.step_start = now;
        self.n_iterations += 1;
        self.push(end, Event::StepDone(engine_idx));
    }

    /// Runs steady decode steps in bulk. While no request can finish, nothing can arrive, no queue
    /// holds work and KV suffices, consecutive decode steps differ only in context lengths, which grow
    /// by one per request per step; the steps before the last are applied at once (tokens, KV, gaps,
    /// token ratio) and the returned time is the end of the last one, which `on_step_done` completes
    /// as usual. Gives the same timeline as stepping one iteration at a time.
    fn fast_forward_decode(&mut self, engine_idx: usize, works: &[RankWork], now: SimTime, first_end: SimTime) -> SimTime {
        const MAX_STEPS: u64 = 100_000;
        let spec = &self.deployment.engines[engine_idx];
        let engine = &self.engines[engine_idx];
        if spec.stream_interval != 1
            || engine.ranks.iter().any(|r| !r.waiting.is_empty() || r.chunked.is_some())
            || engine.arrived_during_step.iter().any(|a| !a.is_empty())
            || engine.prebuilt.iter().any(|p| !p.is_empty())
            || engine.prealloc.iter().any(|p| !p.is_empty())
        {
            return first_end;
        }
        let mut per_rank: Vec<(u64, u64)> = Vec::with_capacity(works.len());
        let mut steps_until_finish = u64::MAX;
        let mut steps_until_kv = u64::MAX;
        for (rank_idx, work) in works.iter().enumerate() {
            match work {
                RankWork::Decode(running) => {
                    let n = running.len() as u64;
                    let sum: u64 = engine.contexts[rank_idx].iter().sum();
                    per_rank.push((n, sum));
                    for &request_idx in running {
                        let request = &self.requests[request_idx];
                        steps_until_finish = steps_until_finish.min(request.osl.saturating_sub(request.generated));
                    }
                    steps_until_kv = steps_until_kv.min(engine.ranks[rank_idx].kv_free_tokens() / n.max(1));
                }
                RankWork::Idle => per_rank.push((0, 0)),
                RankWork::Prefill { .. } => return first_end,
            }
        }
        // Step 0 is the one already costed; a request finishes at step `steps_until_finish - 1`, which
        // must run normally, so bulk steps are 0 ..= last_bulk with last_bulk + 1 < steps_until_finish.
        let next_event = self.events.peek().map(|Reverse((time, _, _))| *time).unwrap_or(SimTime(u64::MAX));
        let limit = steps_until_finish.saturating_sub(1).min(steps_until_kv).min(MAX_STEPS);
        if limit < 2 || first_end >= next_event {
            return first_end;
        }
        let mut step_ends = vec![first_end];
        let mut durations_ns = vec![first_end.0 - now.0];
        while (step_ends.len() as u64) < limit {
            let j = step_ends.len() as u64;
            let ranks: Vec<(u64, u64)> = per_rank.iter().map(|&(n, sum)| (n, sum + j * n)).collect();
            let Some(duration_s) = spec.timer.decode_by_sum_s(&ranks) else {
                break;
            };
            let start = *step_ends.last().expect("non-empty");
            let end = start.after_secs(duration_s).max(SimTime(start.0 + 1));
            if end >= next_event {
                break;
            }
            step_ends.push(end);
            durations_ns.push(end.0 - start.0);
        }
        // Steps 0 .. bulk are applied here; the last one (index bulk) completes in on_step_done.
        let bulk = step_ends.len() as u64 - 1;
        if bulk == 0 {
            return first_end;
        }
        let engine = &mut self.engines[engine_idx];
        for (rank_idx, work) in works.iter().enumerate() {
            let RankWork::Decode(running) = work else { continue };
            engine.ranks[rank_idx].advance_decode_steps(&mut self.requests, running, bulk);
            let mut n_measured = 0u64;
            for &request_idx in running {
                let request = &mut self.requests[request_idx];
                request.generated += bulk;
                if !request.warmup {
                    self.gaps.record_ns(step_ends[0].0 - request.last_chunk.0, 1);
                    n_measured += 1;
                }
                request.last_chunk = step_ends[bulk as usize - 1];
            }
            for &gap_ns in &durations_ns[1..bulk as usize] {
                self.gaps.record_ns(gap_ns, n_measured);
            }
        }
        self.n_iterations += bulk;
        step_ends[bulk as usize]
    }

    fn on_step_done(&mut self, now: SimTime, engine_idx: usize) {
        let role = self.deployment.engines[engine_idx].role;
        let works = std::mem::take(&mut self.engines[engine_idx].current);
        for (rank_idx, work) in works.into_iter().enumerate() {
            match work {
                RankWork::Idle => {}
                RankWork::Decode(running) => self.advance_decode_batch(now, engine_idx, rank_idx, &running),
                RankWork::Prefill { chunks, mixed } => {
                    let interval = self.deployment.engines[engine_idx].stream_interval;
                    for request_idx in mixed {
                        self.advance_decode(now, engine_idx, rank_idx, request_idx, interval);
                    }
                    for (request_idx, new_tokens, _) in chunks {
                        let complete =
                            self.engines[engine_idx].ranks[rank_idx].finish_prefill_chunk(&mut self.requests, request_idx, new_tokens);
                        if !complete {
                            continue;
                        }
                        match role {
                            Role::Aggregated | Role::Decode => {
                                let request = &mut self.requests[request_idx];
                                request.generated += 1;
                                self.emit_tokens(now, request_idx, 1);
                                if self.requests[request_idx].generated >= self.requests[request_idx].osl {
                                    self.finish(now, engine_idx, rank_idx, request_idx);
                                } else {
                                    self.requests[request_idx].state = RequestState::Running;
                                    self.engines[engine_idx].ranks[rank_idx].running.push(request_idx);
                                }
                            }
                            Role::Prefill => self.start_transfer(now, engine_idx, request_idx),
                        }
                    }
                }
            }
        }
        self.engines[engine_idx].busy = false;
        if cfg!(debug_assertions) && self.requests.len() <= 2000 {
            for (rank_idx, rank) in self.engines[engine_idx].ranks.iter().enumerate() {
                let owned = (0..self.requests.len()).filter(|&i| {
                    let r = &self.requests[i];
                    match role {
                        Role::Prefill => {
                            r.prefill_placement == Some((engine_idx, rank_idx))
                                && matches!(r.state, RequestState::Prefilling | RequestState::Transferring)
                        }
                        _ => r.placement == (engine_idx, rank_idx) && matches!(r.state, RequestState::Prefilling | RequestState::Running),
                    }
                });
                if role != Role::Decode {
                    rank.debug_check(&self.requests, owned);
                }
            }
        }
        self.start_step(now, engine_idx);
    }

    /// One token for every request of a decode batch. With one token per chunk, requests whose
    /// previous chunk came at the same time share a gap, which is recorded once per run of them.
    fn advance_decode_batch(&mut self, now: SimTime, engine_idx: usize, rank_idx: usize, running: &[usize]) {
        let interval = self.deployment.engines[engine_idx].stream_interval;
        if interval != 1 {
            for &request_idx in running {
                self.advance_decode(now, engine_idx, rank_idx, request_idx, interval);
            }
            return;
        }
        let mut pending_gap_ns = 0u64;
        let mut pending_count = 0u64;
        for &request_idx in running {
            let request = &mut self.requests[request_idx];
            if request.state != RequestState::Running {
                continue;
            }
            request.generated += 1;
            if request.first_token.is_none() {
                self.emit_tokens_every(now, request_idx, 1, interval);
            } else {
                if !request.warmup {
                    let gap_ns = now.0 - request.last_chunk.0;
                    if gap_ns != pending_gap_ns {
                        self.gaps.record_ns(pending_gap_ns, pending_count);
                        pending_gap_ns = gap_ns;
                        pending_count = 0;
                    }
                    pending_count += 1;
                }
                request.last_chunk = now;
                request.unstreamed_tokens = 0;
            }
            if self.requests[request_idx].generated >= self.requests[request_idx].osl {
                self.finish(now, engine_idx, rank_idx, request_idx);
            }
        }
        self.gaps.record_ns(pending_gap_ns, pending_count);
    }

    fn advance_decode(&mut self, now: SimTime, engine_idx: usize, rank_idx: usize, request_idx: usize, interval: u64) {
        let request = &mut self.requests[request_idx];
        if request.state != RequestState::Running {
            return;
        }
        request.generated += 1;
        self.emit_tokens_every(now, request_idx, 1, interval);
        if self.requests[request_idx].generated >= self.requests[request_idx].osl {
            self.finish(now, engine_idx, rank_idx, request_idx);
        }
    }

    /// Streams tokens to the client as `--stream-interval` chunks and records the gaps.
    fn emit_tokens(&mut self, now: SimTime, request_idx: usize, n_new: u64) {
        let interval = self.deployment.engines[self.requests[request_idx].placement.0].stream_interval;
        self.emit_tokens_every(now, request_idx, n_new, interval);
    }

    fn emit_tokens_every(&mut self, now: SimTime, request_idx: usize, n_new: u64, interval: u64) {
        let request = &mut self.requests[request_idx];
        if request.first_token.is_none() {
            request.first_token = Some(now);
            request.last_chunk = now;
            request.unstreamed_tokens = 0;
            return;
        }
        request.unstreamed_tokens += n_new;
        let done = request.generated >= request.osl;
        if request.unstreamed_tokens >= interval || (done && request.unstreamed_tokens > 0) {
            if !request.warmup {
                let gap_ns = now.0 - request.last_chunk.0;
                let per_token_ns = if request.unstreamed_tokens == 1 {
                    gap_ns
                } else {
                    gap_ns / request.unstreamed_tokens
                };
                self.gaps.record_ns(per_token_ns, request.unstreamed_tokens);
            }
            request.last_chunk = now;
            request.unstreamed_tokens = 0;
        }
    }

    fn finish(&mut self, now: SimTime, engine_idx: usize, rank_idx: usize, request_idx: usize) {
        self.engines[engine_idx].ranks[rank_idx].finish_request(&mut self.requests, request_idx);
        let request = &mut self.requests[request_idx];
        request.state = RequestState::Finished;
        if !request.spec.warmup {
            self.records.push(RequestRecord {
                sent: request.sent,
                first_token: request.first_token.unwrap_or(now),
                finished: now,
                isl: request.spec.isl,
                osl: request.spec.osl,
            });
        }
        if self.closed_loop {
            self.send_next(now);
        }
        if self.deployment.engines[engine_idx].role == Role::Decode {
            self.engines[engine_idx].bound_requests[rank_idx] -= 1;
            self.try_preallocate(now, engine_idx);
        }
    }

    /// KV leaves a prefill engine chunk by chunk as it is computed (SGLang's `send_kv_chunk` after each
    /// chunk, python/sglang/srt/disaggregation/prefill.py), over the links of the sending rank's GPUs and
    /// into the receiving decode rank's. A link carries one transfer's bytes at a time at its bandwidth,
    /// in the order prompts finish (Mooncake's and NIXL's transfer queues), so requests that finish
    /// prefill together queue on the wire: the prompt's bytes go out from its first chunk or when both
    /// links are free, whichever is later, and its last chunk cannot leave before it is computed. The
    /// request is seen as transferred a fixed latency (handshake, completion polling) after its last byte.
    fn start_transfer(&mut self, now: SimTime, prefill_idx: usize, request_idx: usize) {
        let link = self.deployment.transfer.expect("validated: disaggregated deployments have a link");
        let spec = &self.deployment.engines[prefill_idx];
        let (prefill_rank, (decode_idx, decode_rank)) = {
            let request = &self.requests[request_idx];
            let (_, rank) = request.prefill_placement.expect("prefilled requests have a prefill placement");
            (rank, request.placement)
        };
        let request = &mut self.requests[request_idx];
        request.state = RequestState::Transferring;
        request.generated = request.generated.max(1);
        let bytes_per_token = spec.kv_bytes_per_token_per_gpu;
        let chunk = spec
            .scheduler
            .chunked_prefill_size
            .unwrap_or(request.spec.isl)
            .min(request.spec.isl);
        let last_chunk_wire_s = chunk as f64 * bytes_per_token / link.bytes_per_s;
        let whole_wire_s = request.spec.isl as f64 * bytes_per_token / link.bytes_per_s;
        let started = request.prefill_started.unwrap_or(now);
        let links_free = self.engines[prefill_idx].link_free[prefill_rank].max(self.engines[decode_idx].link_free[decode_rank]);
        let wire_done = started
            .max(links_free)
            .after_secs(whole_wire_s)
            .max(now.after_secs(last_chunk_wire_s));
        self.engines[prefill_idx].link_free[prefill_rank] = wire_done;
        self.engines[decode_idx].link_free[decode_rank] = wire_done;
        self.push(wire_done.after_secs(link.latency_s), Event::TransferDone(request_idx));
    }

    fn on_transfer_done(&mut self, now: SimTime, request_idx: usize) {
        let (prefill_idx, prefill_rank) = self.requests[request_idx]
            .prefill_placement
            .expect("transferred requests were prefilled");
        self.engines[prefill_idx].ranks[prefill_rank].finish_request(&mut self.requests, request_idx);
        self.wake(now, prefill_idx);
        let (decode_idx, decode_rank) = self.requests[request_idx].placement;
        let request = &mut self.requests[request_idx];
        request.kv_tokens = request.spec.isl;
        request.prefilled = request.spec.isl;
        // Its KV now lives on the decode engine, where it waits to join the running batch.
        request.state = RequestState::Waiting;
        if request.generated >= request.osl {
            // A one-token request: the decode engine only streams the token the prefill sampled.
            let first_token = now.after_secs(self.deployment.engines[decode_idx].first_token_overhead_s);
            self.emit_tokens(first_token, request_idx, 0);
            self.finish(first_token, decode_idx, decode_rank, request_idx);
            return;
        }
        self.engines[decode_idx].prebuilt[decode_rank].push_back(request_idx);
        self.wake(now, decode_idx);
    }
}
