//! One SGLang scheduler (one DP rank): waiting queue, running batch, chunked prefill, KV admission and retraction.
//!
//! Reproduces `managers/scheduler.py` (`get_next_batch_to_run`, `get_new_batch_prefill`,
//! `update_running_batch`) and `managers/schedule_policy.py` (`PrefillAdder`) of SGLang v0.5.5:
//! new prompts are prefilled with priority while running decodes wait; a prefill batch is bounded
//! by `chunked_prefill_size` and `max_prefill_tokens` and by free KV minus the reservation for
//! running requests' future tokens (`new_token_ratio`); only one request is chunked at a time;
//! when a decode step finds no KV room the requests with the fewest generated tokens are retracted.
//! The scheduler knows nothing of time or cost: it forms batches and applies their results.

use std::collections::VecDeque;

use super::request::{RequestState, RequestTable};

/// `SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION`: future tokens reserved per request are clipped to this.
pub const CLIP_MAX_NEW_TOKENS: u64 = 4096;
/// `SGLANG_RETRACT_DECODE_STEPS`: tokens per remaining request assumed after a retraction.
pub const RETRACT_DECODE_STEPS: u64 = 20;

/// Limits and flags of one scheduler, resolved from the server arguments and the memory plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// KV pool of this rank, tokens.
    pub kv_capacity_tokens: u64,
    /// Running requests this rank admits.
    pub max_running_requests: u64,
    /// Tokens per prefill chunk (`None`: no chunking).
    pub chunked_prefill_size: Option<u64>,
    /// Tokens per prefill batch.
    pub max_prefill_tokens: u64,
    /// Tokens per KV page.
    pub page_size: u64,
    /// `--enable-mixed-chunk`.
    pub enable_mixed_chunk: bool,
    /// Radix cache on (shared prefixes hit).
    pub radix_cache: bool,
    /// `new_token_ratio` after a reset (0.7 × schedule_conservativeness).
    pub init_new_token_ratio: f64,
    /// Floor of `new_token_ratio`.
    pub min_new_token_ratio: f64,
    /// Decrease of `new_token_ratio` per decode step.
    pub new_token_ratio_decay: f64,
}

impl SchedulerConfig {
    /// SGLang's ratio schedule for a `schedule_conservativeness` (0.3 under DP attention).
    pub fn token_ratios(conservativeness: f64) -> (f64, f64, f64) {
        let init = (0.7 * conservativeness).min(1.0);
        let min = (init * 0.14).min(1.0);
        (init, min, (init - min) / 600.0)
    }
}

/// What one rank runs in an iteration.
#[derive(Debug, Clone, PartialEq)]
pub enum RankWork {
    /// Nothing to do.
    Idle,
    /// A prefill batch: each request with the prompt tokens computed now; `mixed` holds running
    /// requests that decode in the same forward (`--enable-mixed-chunk`).
    Prefill {
        /// (request, new tokens, tokens already cached).
        chunks: Vec<(usize, u64, u64)>,
        /// Running requests decoding along (mixed chunk).
        mixed: Vec<usize>,
    },
    /// A decode batch of running requests.
    Decode(Vec<usize>),
}

/// The state of one scheduler.
#[derive(Debug, Clone)]
pub struct RankScheduler {
    config: SchedulerConfig,
    /// Requests waiting for prefill, in policy order.
    pub waiting: VecDeque<usize>,
    /// Requests decoding.
    pub running: Vec<usize>,
    /// The request whose prompt is part-way through chunked prefill.
    pub chunked: Option<usize>,
    kv_used_tokens: u64,
    new_token_ratio: f64,
    cached_prefix_groups: Vec<u64>,
    /// Retractions so far.
    pub n_retractions: u64,
}

impl RankScheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> RankScheduler {
        let ratio = config.init_new_token_ratio;
        RankScheduler {
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            chunked: None,
            kv_used_tokens: 0,
            new_token_ratio: ratio,
            cached_prefix_groups: Vec::new(),
            n_retractions: 0,
        }
    }

    /// The limits this scheduler runs under.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// KV tokens allocated.
    pub fn kv_used_tokens(&self) -> u64 {
        self.kv_used_tokens
    }

    /// KV tokens free.
    pub fn kv_free_tokens(&self) -> u64 {
        self.config.kv_capacity_tokens - self.kv_used_tokens
    }

    /// The current `new_token_ratio`.
    pub fn new_token_ratio(&self) -> f64 {
        self.new_token_ratio
    }

    /// Whether the rank has nothing queued, chunked or running.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty() && self.chunked.is_none()
    }

    /// Takes KV for a request that arrives with its prompt already cached (disaggregated decode).
    pub fn allocate(&mut self, tokens: u64) {
        self.kv_used_tokens += tokens;
        debug_assert!(self.kv_used_tokens <= self.config.kv_capacity_tokens);
    }

    /// Returns KV tokens to the pool.
    pub fn free(&mut self, tokens: u64) {
        debug_assert!(tokens <= self.kv_used_tokens);
        self.kv_used_tokens -= tokens;
    }

    fn page_ceil(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.config.page_size) * self.config.page_size
    }

    /// `get_next_batch_to_run`: a prefill batch if one can be formed, else a decode step of the running batch.
    ///
    /// For a decode batch, `decode_contexts` receives each request's context (tokens in KV before this step).
    pub fn next_batch(&mut self, requests: &mut RequestTable, decode_contexts: &mut Vec<u64>) -> RankWork {
        if let Some(work) = self.get_new_batch_prefill(requests) {
            return work;
        }
        if self.running.is_empty() {
            // Idle: SGLang resets the ratio when the scheduler has nothing to run.
            self.new_token_ratio = self.config.init_new_token_ratio;
            return RankWork::Idle;
        }
        self.update_running_batch(requests);
        if self.running.is_empty() {
            return RankWork::Idle;
        }
        decode_contexts.clear();
        decode_contexts.extend(self.running.iter().map(|&request_idx| {
            let request = &mut requests[request_idx];
            request.kv_tokens += 1;
            request.kv_tokens - 1
        }));
        self.kv_used_tokens += self.running.len() as u64;
        RankWork::Decode(self.running.clone())
    }

    /// Books `extra_steps` further decode steps of `running` at once (the simulator's fast-forward):
    /// one KV token per request per step and the token ratio's decay per step.
    pub fn advance_decode_steps(&mut self, requests: &mut RequestTable, running: &[usize], extra_steps: u64) {
        for &request_idx in running {
            requests[request_idx].kv_tokens += extra_steps;
        }
        self.kv_used_tokens += running.len() as u64 * extra_steps;
        debug_assert!(
            self.kv_used_tokens <= self.config.kv_capacity_tokens,
            "fast-forward over-allocated KV"
        );
        self.new_token_ratio =
            (self.new_token_ratio - self.config.new_token_ratio_decay * extra_steps as f64).max(self.config.min_new_token_ratio);
    }

    /// `PrefillAdder`: admits waiting requests (the chunked one first) within the token budgets.
    fn get_new_batch_prefill(&mut self, requests: &mut RequestTable) -> Option<RankWork> {
        if self.chunked.is_none() && (self.waiting.is_empty() || self.running.len() as u64 >= self.config.max_running_requests) {
            return None;
        }
        let mixed_tokens = if self.config.enable_mixed_chunk {
            self.running.len() as u64
        } else {
            0
        };
        let available = self.kv_free_tokens() as f64;
        let reserved: f64 = self
            .running
            .iter()
            .map(|&i| (requests[i].osl - requests[i].generated).min(CLIP_MAX_NEW_TOKENS) as f64 * self.new_token_ratio)
            .sum();
        let mut rem_total = available - mixed_tokens as f64 - reserved;
        let mut cur_rem = available - mixed_tokens as f64;
        let mut rem_input = self.config.max_prefill_tokens as i64 - mixed_tokens as i64;
        let mut rem_chunk = self.config.chunked_prefill_size.map(|chunk| chunk as i64 - mixed_tokens as i64);
        let mut chunks: Vec<(usize, u64, u64)> = Vec::new();

        if let Some(request_idx) = self.chunked.take() {
            let request = &requests[request_idx];
            let remaining = request.prompt_tokens() - request.prefilled;
            let budget = rem_chunk.unwrap_or(i64::MAX).min(rem_total as i64).max(0) as u64;
            let take = remaining.min(budget);
            if take == 0 {
                self.chunked = Some(request_idx);
                return None;
            }
            let last = take == remaining;
            let reserve = if last {
                request.spec.osl.saturating_sub(request.generated).min(CLIP_MAX_NEW_TOKENS)
            } else {
                0
            };
            chunks.push((request_idx, take, request.prefilled));
            rem_total -= (take + reserve) as f64;
            cur_rem -= take as f64;
            rem_input -= take as i64;
            if let Some(chunk) = rem_chunk.as_mut() {
                *chunk -= take as i64;
            }
            if !last {
                self.chunked = Some(request_idx);
            }
        }

        while self.chunked.is_none() {
            let Some(&request_idx) = self.waiting.front() else { break };
            if (self.running.len() + chunks.len()) as u64 >= self.config.max_running_requests {
                break;
            }
            if rem_total <= 0.0 || cur_rem <= 0.0 || rem_input <= 0 || rem_chunk.is_some_and(|c| c <= 0) {
                break;
            }
            let request = &requests[request_idx];
            let cached = self.cached_prefix_tokens(request);
            let extend = self.page_ceil(request.prompt_tokens() - cached);
            let future = request.spec.osl.saturating_sub(request.generated).min(CLIP_MAX_NEW_TOKENS);
            if (extend + future) as f64 >= rem_total {
                break;
            }
            if extend as i64 >= rem_input && !chunks.is_empty() {
                break;
            }
            match rem_chunk {
                Some(chunk) if extend as i64 > chunk => {
                    let truncated = (chunk as u64) / self.config.page_size * self.config.page_size;
                    if truncated == 0 {
                        break;
                    }
                    self.waiting.pop_front();
                    chunks.push((request_idx, truncated, cached));
                    self.chunked = Some(request_idx);
                    rem_total -= truncated as f64;
                    cur_rem -= truncated as f64;
                    rem_input -= truncated as i64;
                    rem_chunk = Some(chunk - truncated as i64);
                }
                _ => {
                    self.waiting.pop_front();
                    chunks.push((request_idx, request.prompt_tokens() - cached, cached));
                    rem_total -= (extend + future) as f64;
                    cur_rem -= extend as f64;
                    rem_input -= extend as i64;
                    if let Some(chunk) = rem_chunk.as_mut() {
                        *chunk -= extend as i64;
                    }
                }
            }
        }
        if chunks.is_empty() {
            return None;
        }
        for &(request_idx, new_tokens, cached) in &chunks {
            let request = &mut requests[request_idx];
            if request.prefilled == 0 && cached > 0 {
                // A radix-cache hit: the shared prefix is already in the pool and is not allocated again.
                request.prefilled = cached;
            }
            request.kv_tokens += new_tokens;
            request.state = RequestState::Prefilling;
            self.kv_used_tokens += new_tokens;
        }
        debug_assert!(self.kv_used_tokens <= self.config.kv_capacity_tokens, "prefill over-allocated KV");
        let mixed = if self.config.enable_mixed_chunk && !self.running.is_empty() {
            for &request_idx in &self.running {
                requests[request_idx].kv_tokens += 1;
            }
            self.kv_used_tokens += self.running.len() as u64;
            self.running.clone()
        } else {
            Vec::new()
        };
        Some(RankWork::Prefill { chunks, mixed })
    }

    fn cached_prefix_tokens(&self, request: &super::request::Request) -> u64 {
        match request.spec.prefix_group {
            Some(group) if self.config.radix_cache && request.prefilled == 0 && self.cached_prefix_groups.contains(&group) => {
                request.spec.shared_prefix_tokens.min(request.prompt_tokens().saturating_sub(1))
            }
            _ => 0,
        }
    }

    /// `update_running_batch`: decays the token ratio, or retracts requests when the next step has no KV room.
    fn update_running_batch(&mut self, requests: &mut RequestTable) {
        let needed = self.running.len() as u64;
        if self.kv_free_tokens() >= needed {
            self.new_token_ratio = (self.new_token_ratio - self.config.new_token_ratio_decay).max(self.config.min_new_token_ratio);
            return;
        }
        // retract_decode: fewest generated tokens first (ties: longest prompt first).
        self.running
            .sort_by_key(|&i| (std::cmp::Reverse(requests[i].generated), requests[i].spec.isl));
        while self.kv_free_tokens() < self.running.len() as u64 {
            let Some(victim) = self.running.pop() else { break };
            let request = &mut requests[victim];
            self.kv_used_tokens -= request.kv_tokens;
            request.retract();
            self.waiting.push_back(victim);
            self.n_retractions += 1;
        }
        let generated: u64 = self.running.iter().map(|&i| requests[i].generated).sum();
        let max_new: u64 = self.running.iter().map(|&i| requests[i].osl).sum();
        self.new_token_ratio = ((generated + RETRACT_DECODE_STEPS * self.running.len() as u64) as f64 / (max_new + 1) as f64).min(1.0);
    }

    /// Applies a finished prefill chunk: returns whether the request's prompt is now complete.
    pub fn finish_prefill_chunk(&mut self, requests: &mut RequestTable, request_idx: usize, new_tokens: u64) -> bool {
        let request = &mut requests[request_idx];
        request.prefilled += new_tokens;
        let complete = request.prefilled >= request.prompt_tokens() && self.chunked != Some(request_idx);
        if complete {
            if let Some(group) = request.spec.prefix_group {
                if self.config.radix_cache && !self.cached_prefix_groups.contains(&group) {
                    self.cached_prefix_groups.push(group);
                }
            }
        }
        complete
    }

    /// Removes a finished request from the running batch and frees its KV.
    pub fn finish_request(&mut self, requests: &mut RequestTable, request_idx: usize) {
        if let Some(position) = self.running.iter().position(|&i| i == request_idx) {
            self.running.swap_remove(position);
        }
        let request = &mut requests[request_idx];
        self.kv_used_tokens -= request.kv_tokens;
        request.kv_tokens = 0;
    }

    /// Checks that the KV in use is exactly what the requests hold (debug builds).
    pub fn debug_check(&self, requests: &RequestTable, owned: impl Iterator<Item = usize>) {
        if cfg!(debug_assertions) {
            let held: u64 = owned.map(|i| requests[i].kv_tokens).sum();
            debug_assert_eq!(held, self.kv_used_tokens, "KV accounting drifted");
        }
    }
}
