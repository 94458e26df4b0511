//! SGLang's server flags as a request carries them, and the typed [`ServerArgs`] they become.

use serde::{Deserialize, Serialize};

use super::checks::{check_cuda_graph_max_bs, sglang_version_flag};
use super::error::{invalid, Result};
use super::load::kv_cache_dtype;
use crate::model::server_args::{MoeA2aBackend, OverlapSchedule, ServerArgs};

/// SGLang server flags that change the answer, under SGLang's names (underscores for dashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOptions {
    /// `--kv-cache-dtype`: auto, bf16, fp8 (fp8_e4m3, fp8_e5m2).
    pub kv_cache_dtype: String,
    /// `--mem-fraction-static` (default: SGLang's rule for the GPU and mapping).
    pub mem_fraction_static: Option<f64>,
    /// `--chunked-prefill-size`, tokens (-1 disables chunking).
    pub chunked_prefill_size: Option<i64>,
    /// `--max-prefill-tokens`, tokens (default 16384).
    pub max_prefill_tokens: Option<u64>,
    /// `--max-running-requests`.
    pub max_running_requests: Option<u64>,
    /// `--cuda-graph-max-bs`.
    pub cuda_graph_max_bs: Option<u64>,
    /// `--disable-overlap-schedule`.
    pub disable_overlap_schedule: bool,
    /// `--enable-mixed-chunk`.
    pub enable_mixed_chunk: bool,
    /// `--disable-radix-cache`.
    pub disable_radix_cache: bool,
    /// `--page-size`, tokens per KV page.
    pub page_size: u64,
    /// `--stream-interval`, tokens per streamed chunk.
    pub stream_interval: u64,
    /// `--moe-a2a-backend`: none or deepep.
    pub moe_a2a_backend: String,
    /// `--attention-backend` (recorded).
    pub attention_backend: Option<String>,
    /// The SGLang release whose defaults apply (e.g. 0.4.5); default: the release sglsim models.
    pub sglang_version: Option<String>,
    /// `--moe-dense-tp-size` (SGLang accepts only 1).
    pub moe_dense_tp_size: Option<u32>,
    /// `--enable-dp-lm-head`.
    pub enable_dp_lm_head: bool,
    /// `--enable-two-batch-overlap`.
    pub enable_two_batch_overlap: bool,
    /// `--ep-num-redundant-experts`.
    pub ep_num_redundant_experts: u32,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            kv_cache_dtype: "auto".into(),
            mem_fraction_static: None,
            chunked_prefill_size: None,
            max_prefill_tokens: None,
            max_running_requests: None,
            cuda_graph_max_bs: None,
            disable_overlap_schedule: false,
            enable_mixed_chunk: false,
            disable_radix_cache: false,
            page_size: 1,
            stream_interval: 1,
            moe_a2a_backend: "none".into(),
            attention_backend: None,
            sglang_version: None,
            moe_dense_tp_size: None,
            enable_dp_lm_head: false,
            enable_two_batch_overlap: false,
            ep_num_redundant_experts: 0,
        }
    }
}

impl ServerOptions {
    /// The typed server arguments, or an error naming the flag.
    pub fn server_args(&self) -> Result<ServerArgs> {
        check_cuda_graph_max_bs(self.cuda_graph_max_bs)?;
        Ok(ServerArgs {
            mem_fraction_static: self.mem_fraction_static,
            chunked_prefill_size: self.chunked_prefill_size,
            max_prefill_tokens: self.max_prefill_tokens,
            max_running_requests: self.max_running_requests,
            cuda_graph_max_bs: self.cuda_graph_max_bs,
            overlap_schedule: if self.disable_overlap_schedule {
                OverlapSchedule::Off
            } else {
                OverlapSchedule::On
            },
            enable_mixed_chunk: self.enable_mixed_chunk,
            disable_radix_cache: self.disable_radix_cache,
            page_size: self.page_size,
            stream_interval: self.stream_interval,
            moe_a2a_backend: MoeA2aBackend::parse_flag(&self.moe_a2a_backend)?,
            attention_backend: self.attention_backend.clone(),
            kv_cache_dtype: kv_cache_dtype(&self.kv_cache_dtype)?,
            sglang_version: match &self.sglang_version {
                Some(text) => Some(sglang_version_flag(text)?),
                None => None,
            },
            overlap_flag_given: self.disable_overlap_schedule,
            moe_dense_tp1: match self.moe_dense_tp_size {
                None => false,
                Some(1) => true,
                Some(other) => {
                    return Err(invalid!(
                        "invalid --moe-dense-tp-size {other}: SGLang accepts only 1 (dense MLP layers data-parallel) or no value"
                    ))
                }
            },
            enable_dp_lm_head: self.enable_dp_lm_head,
            enable_two_batch_overlap: self.enable_two_batch_overlap,
            ep_num_redundant_experts: self.ep_num_redundant_experts,
        })
    }
}
