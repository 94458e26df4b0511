//! Builds simulator engines from the cost model's [`StepModel`]s: scheduler limits, stream interval, transfer bytes.

use super::cluster::{EngineSpec, Role, TransferLink};
use super::scheduler::SchedulerConfig;
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;
use crate::model::step::StepModel;

/// `schedule_conservativeness` SGLang uses: 1.0, times 0.3 under DP attention.
pub fn schedule_conservativeness(step_model: &StepModel) -> f64 {
    if step_model.mapping().dp_attention() {
        0.3
    } else {
        1.0
    }
}

/// One simulator engine for a configuration.
pub fn engine_spec(step_model: &StepModel, role: Role) -> EngineSpec<'_> {
    let memory = step_model.memory();
    let args = step_model.args();
    let dp = step_model.mapping().dp() as usize;
    let (init, min, decay) = SchedulerConfig::token_ratios(schedule_conservativeness(step_model));
    EngineSpec {
        role,
        timer: step_model,
        scheduler: SchedulerConfig {
            kv_capacity_tokens: memory.kv_capacity_tokens_per_rank,
            max_running_requests: (memory.max_running_requests / dp as u64).max(1),
            chunked_prefill_size: args.chunked_prefill_size,
            max_prefill_tokens: args.max_prefill_tokens,
            page_size: args.page_size,
            enable_mixed_chunk: args.enable_mixed_chunk,
            radix_cache: !args.disable_radix_cache,
            init_new_token_ratio: init,
            min_new_token_ratio: min,
            new_token_ratio_decay: decay,
        },
        dp,
        n_gpus: step_model.mapping().n_gpus(),
        stream_interval: args.stream_interval,
        kv_bytes_per_token_per_gpu: memory.kv_bytes_per_token_per_rank,
        first_token_overhead_s: step_model.coefficients().step_cpu_ms * 1e-3,
        frontend_request_s: step_model.coefficients().frontend_request_us * 1e-6,
        overlap_schedule: args.overlap_schedule,
    }
}

/// The KV transfer link between a prefill and a decode engine: NVLink when both fit in one NVLink
/// domain (NVL72 racks), else the RDMA NIC of each GPU.
pub fn transfer_link(gpu: &GpuSpec, coefficients: &Coefficients, prefill_gpus: u32, decode_gpus: u32) -> TransferLink {
    let fixed_s = coefficients.kv_transfer_fixed_ms * 1e-3;
    if prefill_gpus + decode_gpus <= gpu.nvlink_domain_size {
        TransferLink {
            bytes_per_s: gpu.nvlink_bytes_per_s,
            latency_s: fixed_s + gpu.nvlink_latency_us * 1e-6,
        }
    } else {
        TransferLink {
            bytes_per_s: gpu.rdma_bytes_per_s,
            latency_s: fixed_s + gpu.rdma_latency_us * 1e-6,
        }
    }
}
