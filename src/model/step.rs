//! Forward-pass step times of one engine: ops described, costed and summed, plus framework time.
//!
//! [`StepModel`] owns one configuration (model, GPU, mapping, resolved SGLang flags, coefficients)
//! and answers "how long does this forward take?" for the batches the scheduler forms, one
//! [`RankBatch`] per DP-attention rank. Framework time: a decode batch up to `cuda_graph_max_bs` is
//! padded to the next captured size and replayed as a CUDA graph; anything else launches its
//! kernels eagerly, and the GPU cannot run faster than the CPU launches them. Scheduler CPU time
//! hides behind the GPU with the overlap scheduler and adds to it without.

use super::arch::ModelSpec;
use super::coefficients::Coefficients;
use super::cost::{cost_op, OpCost};
use super::error::{Error, Result};
use super::gpu::GpuSpec;
use super::mapping::ParallelMapping;
use super::memory::MemoryPlan;
use super::ops::{describe_attention, describe_head, describe_mlp, ExtendRequest, MlpTokens, Op, OpKind, RankBatch};
use super::server_args::{OverlapSchedule, ResolvedServerArgs, ServerArgs};

/// The time of one forward pass, seconds, with its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepCost {
    /// Wall time of the iteration as the scheduler sees it.
    pub total_s: f64,
    /// GPU time of the forward (slowest rank's attention plus the shared MLP and head).
    pub gpu_s: f64,
    /// Compute-bound part of the GPU time.
    pub compute_s: f64,
    /// Memory-bound part of the GPU time.
    pub memory_s: f64,
    /// Communication part of the GPU time.
    pub comm_s: f64,
    /// Kernel-floor and launch part of the GPU time.
    pub overhead_s: f64,
    /// Whether the forward replayed a CUDA graph.
    pub cuda_graph: bool,
}

/// Everything needed to time forwards of one engine configuration.
#[derive(Debug, Clone)]
pub struct StepModel {
    model: ModelSpec,
    gpu: GpuSpec,
    mapping: ParallelMapping,
    args: ResolvedServerArgs,
    coefficients: Coefficients,
    memory: MemoryPlan,
    /// Per captured decode batch size: the cost of everything but the attention core (which depends
    /// on each request's context), so that a CUDA-graph decode step costs one op per rank.
    decode_templates: Vec<OpCost>,
}

/// The inputs of a [`StepModel`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The model.
    pub model: ModelSpec,
    /// The GPU.
    pub gpu: GpuSpec,
    /// `--tp`, `--dp`, `--ep`.
    pub mapping: ParallelMapping,
    /// SGLang flags as given.
    pub server_args: ServerArgs,
    /// Cost-model coefficients.
    pub coefficients: Coefficients,
}

impl StepModel {
    /// Resolves flags and memory; fails when the configuration does not fit in GPU memory.
    pub fn new(config: EngineConfig) -> Result<StepModel> {
        let step_model = StepModel::new_unchecked(config)?;
        if let Some(reason) = step_model.memory.shortfall() {
            return Err(Error::DoesNotFit { reason });
        }
        Ok(step_model)
    }

    /// Like [`StepModel::new`] but keeps a configuration that does not fit, so its memory plan can be reported.
    pub fn new_unchecked(config: EngineConfig) -> Result<StepModel> {
        config.coefficients.validate()?;
        let args = config.server_args.resolve(&config.gpu, &config.mapping)?;
        let memory = MemoryPlan::new(&config.model, &config.gpu, &config.mapping, &args, &config.coefficients);
        let mut step_model = StepModel {
            model: config.model,
            gpu: config.gpu,
            mapping: config.mapping,
            args,
            coefficients: config.coefficients,
            memory,
            decode_templates: Vec::new(),
        };
        step_model.decode_templates = step_model
            .args
            .capture_batch_sizes
            .iter()
            .map(|&bs| step_model.decode_template(bs))
            .collect();
        Ok(step_model)
    }

    /// The model.
    pub fn model(&self) -> &ModelSpec {
        &self.model
    }

    /// The GPU.
    pub fn gpu(&self) -> &GpuSpec {
        &self.gpu
    }

    /// The mapping.
    pub fn mapping(&self) -> &ParallelMapping {
        &self.mapping
    }

    /// SGLang flags with defaults filled in.
    pub fn args(&self) -> &ResolvedServerArgs {
        &self.args
    }

    /// The coefficients.
    pub fn coefficients(&self) -> &Coefficients {
        &self.coefficients
    }

    /// Weights, KV capacity and request limits.
    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    /// Cost of a CUDA-graph decode step of padded batch `padded` on every rank, attention core excluded.
    fn decode_template(&self, padded: u64) -> OpCost {
        let mut ops: Vec<Op<'_>> = Vec::with_capacity(32);
        describe_attention(
            &self.model,
            &self.mapping,
            self.memory.kv_bytes_per_token_per_layer,
            self.args.kv_cache_dtype,
            RankBatch::Idle,
            padded,
            &mut ops,
        );
        let global_tokens = padded * u64::from(self.mapping.dp());
        describe_mlp(
            &self.model,
            &self.mapping,
            &self.args,
            MlpTokens {
                global: global_tokens,
                local: padded,
                prefill: false,
            },
            self.coefficients.kernels_per_layer,
            &mut ops,
        );
        describe_head(&self.model, &self.mapping, &self.args, padded, padded, &mut ops);
        let mut total = OpCost::default();
        for op in &ops {
            total.add(&cost_op(op, &self.gpu, &self.coefficients));
        }
        total
    }

    /// The attention-core cost of one rank's decode batch (what the templates leave out).
    fn decode_attention_core<'a>(&self, batch: RankBatch<'a>, padded: u64, ops: &mut Vec<Op<'a>>) -> OpCost {
        ops.clear();
        describe_attention(
            &self.model,
            &self.mapping,
            self.memory.kv_bytes_per_token_per_layer,
            self.args.kv_cache_dtype,
            batch,
            padded,
            ops,
        );
        let mut core = OpCost::default();
        for op in ops.iter().filter(|op| matches!(op.kind, OpKind::AttentionDecode { .. })) {
            core.add(&cost_op(op, &self.gpu, &self.coefficients));
        }
        core
    }

    /// Times one iteration; `ranks` holds one batch per DP-attention rank (one entry without DP attention).
    pub fn forward(&self, ranks: &[RankBatch<'_>]) -> StepCost {
        if let Some(cost) = self.forward_graph_decode(ranks) {
            return cost;
        }
        self.forward_general(ranks)
    }

    /// The fast path of [`StepModel::forward`] for CUDA-graph decode steps: a precomputed template
    /// plus the slowest rank's attention core. Gives the same answer as the general path.
    fn forward_graph_decode(&self, ranks: &[RankBatch<'_>]) -> Option<StepCost> {
        let mut max_batch = 0u64;
        for batch in ranks {
            match batch {
                RankBatch::Decode(_) | RankBatch::DecodeSummed { .. } => max_batch = max_batch.max(batch.n_requests()),
                RankBatch::Idle => {}
                RankBatch::Extend(_) => return None,
            }
        }
        if max_batch == 0 {
            return None;
        }
        let index = self.args.capture_batch_sizes.partition_point(|&size| size < max_batch);
        let padded = *self.args.capture_batch_sizes.get(index)?;
        let mut ops: Vec<Op<'_>> = Vec::with_capacity(8);
        let mut slowest_core = OpCost::default();
        for batch in ranks {
            let core = self.decode_attention_core(*batch, padded, &mut ops);
            if core.total_s() > slowest_core.total_s() {
                slowest_core = core;
            }
        }
        let mut gpu = self.decode_templates[index];
        gpu.add(&slowest_core);
        Some(self.finish_step(gpu, true, false, max_batch))
    }

    /// A CUDA-graph decode step from each rank's (requests, sum of contexts), for models whose decode
    /// cost depends on contexts only through their sum (no sliding windows); `None` otherwise or when
    /// the batch exceeds the captured sizes. Equals [`StepModel::forward`] on the same batches.
    pub fn decode_by_context_sum(&self, ranks: &[(u64, u64)]) -> Option<StepCost> {
        if self.model.sliding_window.is_some() {
            return None;
        }
        let max_batch = ranks.iter().map(|&(n, _)| n).max().filter(|&n| n > 0)?;
        let index = self.args.capture_batch_sizes.partition_point(|&size| size < max_batch);
        let padded = *self.args.capture_batch_sizes.get(index)?;
        let mut slowest_core = OpCost::default();
        for &(n, sum) in ranks {
            if n == 0 {
                continue;
            }
            let batch = RankBatch::DecodeSummed {
                requests: n,
                context_sum: sum,
            };
            let mut ops: Vec<Op<'_>> = Vec::with_capacity(8);
            let core = self.decode_attention_core(batch, padded, &mut ops);
            if core.total_s() > slowest_core.total_s() {
                slowest_core = core;
            }
        }
        let mut gpu = self.decode_templates[index];
        gpu.add(&slowest_core);
        Some(self.finish_step(gpu, true, false, max_batch))
    }

    /// Two-batch overlap (`--enable-two-batch-overlap` with DeepEP): the forward runs as two
    /// micro-batches so that one's dispatch/combine overlaps the other's computation. Each
    /// micro-batch launches the kernels again (kernel floors double, FLOPs do not); in a decode step,
    /// whose memory-bound time is weight streaming, each micro-batch streams the weights again, while
    /// a prefill's memory-bound time is activations, which split. The longer of computation and
    /// communication sets the pace and a share of the shorter stays exposed, because the stages of the
    /// two micro-batches (attention, experts; dispatch, combine) do not pair evenly:
    /// GPU time = max(work, comm) + `tbo_exposed_fraction` × min(work, comm).
    fn two_batch_overlap(&self, gpu: OpCost, decode: bool) -> OpCost {
        if !self.args.two_batch_overlap || gpu.comm_s <= 0.0 {
            return gpu;
        }
        let compute_s = gpu.compute_s;
        let memory_s = if decode { 2.0 * gpu.memory_s } else { gpu.memory_s };
        let floor_s = 2.0 * gpu.floor_s;
        let work_s = compute_s + memory_s + floor_s;
        let exposed_s = self.coefficients.tbo_exposed_fraction * work_s.min(gpu.comm_s);
        let exposed_comm_s = (gpu.comm_s - work_s).max(0.0) + exposed_s;
        OpCost {
            compute_s,
            memory_s,
            comm_s: exposed_comm_s,
            floor_s,
            n_kernels: 2.0 * gpu.n_kernels,
        }
    }

    /// CPU time to launch an extend forward of `tokens` tokens whose attention cores launch `attention_kernels`
    /// kernels, seconds, when SGLang replays piecewise CUDA graphs for it (`PiecewiseCudaGraphRunner`, the
    /// default since [`super::server_args::PIECEWISE_CUDA_GRAPH_DEFAULT_SINCE`]): the graph is split at each
    /// layer's attention, so the pieces between attentions (one per layer plus the last) replay as captured
    /// graphs while the attention kernels still launch eagerly. `None` when the forward runs eagerly: more tokens
    /// than the largest capture, or MLA models: DeepSeek-V3's capture came as an opt-in (PR #12996, November 2025)
    /// but sglang issue #18130 (February 2026, after the default flipped) still lists the DeepSeek family among the
    /// models the default leaves eager or broken, and issue 12's DeepSeek-R1 B200 TTFTs of 0.5.6-0.5.9 (157 ms at
    /// 1k tokens, one client) are above the eager floor, not below it.
    fn piecewise_launch_s(&self, tokens: u64, attention_kernels: f64) -> Option<f64> {
        let max_tokens = self.args.piecewise_cuda_graph_max_tokens?;
        if tokens > max_tokens || matches!(self.model.attention, super::arch::Attention::Mla { .. }) {
            return None;
        }
        let pieces = (self.model.n_layers + 1) as f64;
        Some(attention_kernels * self.coefficients.eager_launch_us * 1e-6 + pieces * self.coefficients.graph_replay_us * 1e-6)
    }

    /// Adds framework time (graph replay or eager launches, prefill fixed cost, scheduler CPU) to GPU op time.
    fn finish_step(&self, gpu: OpCost, cuda_graph: bool, any_extend: bool, n_requests: u64) -> StepCost {
        self.finish_step_launched(gpu, cuda_graph, any_extend, n_requests, None)
    }

    /// [`StepModel::finish_step`] with the CPU launch time of a piecewise-graph prefill in place of one eager
    /// launch per kernel.
    fn finish_step_launched(
        &self,
        gpu: OpCost,
        cuda_graph: bool,
        any_extend: bool,
        n_requests: u64,
        piecewise_launch_s: Option<f64>,
    ) -> StepCost {
        let gpu = self.two_batch_overlap(gpu, !any_extend);
        let mut overhead_s = gpu.floor_s;
        let mut gpu_s = gpu.total_s();
        if cuda_graph {
            let replay_s = self.coefficients.graph_replay_us * 1e-6;
            gpu_s += replay_s;
            overhead_s += replay_s;
        } else {
            let launch_s = piecewise_launch_s.unwrap_or(gpu.n_kernels * self.coefficients.eager_launch_us * 1e-6);
            if launch_s > gpu_s {
                overhead_s += launch_s - gpu_s;
                gpu_s = launch_s;
            }
        }
        if any_extend {
            let fixed_s = self.coefficients.prefill_fixed_ms * 1e-3;
            gpu_s += fixed_s;
            overhead_s += fixed_s;
        }
        let cpu_s = self.coefficients.step_cpu_ms * 1e-3 + n_requests as f64 * self.coefficients.step_cpu_per_req_us * 1e-6;
        let total_s = match self.args.overlap_schedule {
            OverlapSchedule::On => gpu_s.max(cpu_s),
            OverlapSchedule::Off => gpu_s + cpu_s,
        };
        StepCost {
            total_s,
            gpu_s,
            compute_s: gpu.compute_s,
            memory_s: gpu.memory_s,
            comm_s: gpu.comm_s,
            overhead_s,
            cuda_graph,
        }
    }

    /// The general path of [`StepModel::forward`]: every op of every rank described and costed.
    pub fn forward_general(&self, ranks: &[RankBatch<'_>]) -> StepCost {
        let any_extend = ranks.iter().any(|r| matches!(r, RankBatch::Extend(_)));
        let max_decode_batch = ranks
            .iter()
            .map(|r| match r {
                RankBatch::Decode(_) | RankBatch::DecodeSummed { .. } => r.n_requests(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        // DP-attention ranks pad to a common batch so that the CUDA graph has one shape.
        let graph_batch = if any_extend {
            None
        } else {
            self.args.padded_graph_batch(max_decode_batch.max(1))
        };
        let mut ops: Vec<Op<'_>> = Vec::with_capacity(32);
        let mut slowest_attention = OpCost::default();
        let mut attention_core_kernels = 0.0f64;
        let mut global_tokens = 0u64;
        let mut local_tokens = 0u64;
        let mut n_logit_rows = 0u64;
        let mut n_requests = 0u64;
        for batch in ranks {
            let m_tokens = match (batch, graph_batch) {
                (RankBatch::Decode(_) | RankBatch::DecodeSummed { .. } | RankBatch::Idle, Some(padded)) => padded,
                (RankBatch::Idle, None) if self.mapping.dp_attention() => 1,
                _ => batch.n_tokens(),
            };
            ops.clear();
            describe_attention(
                &self.model,
                &self.mapping,
                self.memory.kv_bytes_per_token_per_layer,
                self.args.kv_cache_dtype,
                *batch,
                m_tokens,
                &mut ops,
            );
            let mut attention = OpCost::default();
            let mut core_kernels = 0.0;
            for op in &ops {
                let cost = cost_op(op, &self.gpu, &self.coefficients);
                if matches!(op.kind, OpKind::AttentionPrefill { .. }) {
                    core_kernels += cost.n_kernels;
                }
                attention.add(&cost);
            }
            attention_core_kernels = attention_core_kernels.max(core_kernels);
            if attention.total_s() > slowest_attention.total_s() {
                slowest_attention = attention;
            }
            global_tokens += m_tokens;
            local_tokens = local_tokens.max(m_tokens);
            n_requests = n_requests.max(batch.n_requests());
            n_logit_rows = n_logit_rows.max(match batch {
                RankBatch::Extend(requests) => requests.len() as u64,
                _ => m_tokens,
            });
        }
        if global_tokens == 0 {
            return StepCost::default();
        }
        ops.clear();
        let small_kernels = self.coefficients.kernels_per_layer;
        describe_mlp(
            &self.model,
            &self.mapping,
            &self.args,
            MlpTokens {
                global: global_tokens,
                local: local_tokens,
                prefill: any_extend,
            },
            small_kernels,
            &mut ops,
        );
        describe_head(&self.model, &self.mapping, &self.args, local_tokens, n_logit_rows, &mut ops);
        let mut gpu = slowest_attention;
        for op in &ops {
            gpu.add(&cost_op(op, &self.gpu, &self.coefficients));
        }
        let piecewise_launch_s = if any_extend {
            self.piecewise_launch_s(local_tokens, attention_core_kernels)
        } else {
            None
        };
        self.finish_step_launched(gpu, graph_batch.is_some(), any_extend, n_requests, piecewise_launch_s)
    }

    /// Prefill of one request of `isl` tokens alone, in chunks of `chunked_prefill_size`, seconds.
    pub fn prefill_s(&self, isl: u64) -> f64 {
        let chunk = self.args.chunked_prefill_size.unwrap_or(isl.max(1));
        let mut done = 0;
        let mut total_s = 0.0;
        let idle = vec![RankBatch::Idle; self.mapping.dp() as usize - 1];
        while done < isl {
            let new_tokens = chunk.min(isl - done);
            let requests = [ExtendRequest {
                new_tokens,
                cached_tokens: done,
            }];
            let mut ranks = vec![RankBatch::Extend(&requests)];
            ranks.extend_from_slice(&idle);
            total_s += self.forward(&ranks).total_s;
            done += new_tokens;
        }
        total_s
    }

    /// One decode step of `batch` requests per DP rank, each with `context` tokens in KV, seconds.
    pub fn decode_step_s(&self, batch: u64, context: u64) -> StepCost {
        let contexts = vec![context; batch as usize];
        let ranks = vec![RankBatch::Decode(&contexts); self.mapping.dp() as usize];
        self.forward(&ranks)
    }
}

#[cfg(test)]
mod tests;
