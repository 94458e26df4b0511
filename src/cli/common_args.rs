//! Flag groups that several subcommands share (clap derive), each defined once and flattened where taken.
//!
//! A subcommand whose flag differs (another default, requiredness or help wording) keeps its own field;
//! its struct says why.

use clap::Args;

/// The model and its weight format (`predict`, `serve`, `search`).
#[derive(Debug, Args)]
pub struct ModelFlags {
    /// Model: a bundled Hugging Face id (see `sglsim models`), a config.json, or a directory holding one.
    #[arg(long)]
    pub model: String,
    /// Weight format, overriding the checkpoint's: bf16, fp8, fp8-block, fp4 (nvfp4), mxfp4.
    #[arg(long)]
    pub dtype: Option<String>,
}

/// One engine's parallel sizes under SGLang's names (`predict`, `serve`).
#[derive(Debug, Clone, Copy, Args)]
pub struct MappingFlags {
    /// GPUs per engine (`--tp` of SGLang).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// Attention data-parallel size (`--dp` with `--enable-dp-attention`).
    #[arg(long, default_value_t = 1)]
    pub dp: u32,
    /// Expert-parallel size (`--ep`).
    #[arg(long, default_value_t = 1)]
    pub ep: u32,
}

impl MappingFlags {
    /// Another engine's sizes: each one given (`--decode-tp` and the like) replaces this engine's.
    pub fn with(self, tp: Option<u32>, dp: Option<u32>, ep: Option<u32>) -> MappingFlags {
        MappingFlags {
            tp: tp.unwrap_or(self.tp),
            dp: dp.unwrap_or(self.dp),
            ep: ep.unwrap_or(self.ep),
        }
    }
}

/// How request lengths spread around `--isl`/`--osl` (`predict`, `search`).
#[derive(Debug, Args)]
pub struct LengthFlags {
    /// `bench_serving --random-range-ratio`: lengths uniform in [L·r, L].
    #[arg(long, conflicts_with_all = ["isl_std", "osl_std"])]
    pub range_ratio: Option<f64>,
    /// AIPerf-style normal input lengths with this standard deviation, tokens.
    #[arg(long)]
    pub isl_std: Option<f64>,
    /// AIPerf-style normal output lengths with this standard deviation, tokens.
    #[arg(long)]
    pub osl_std: Option<f64>,
}

/// SGLang server flags that change the answer (`predict`, `serve`, `calibrate`), under SGLang's names.
#[derive(Debug, Args)]
pub struct ServerFlags {
    /// KV cache dtype: auto, bf16, fp8 (fp8_e4m3, fp8_e5m2).
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// `--mem-fraction-static` (default: SGLang's rule for the GPU and mapping).
    #[arg(long)]
    pub mem_fraction_static: Option<f64>,
    /// `--chunked-prefill-size` (tokens; -1 disables).
    #[arg(long, allow_hyphen_values = true)]
    pub chunked_prefill_size: Option<i64>,
    /// `--max-prefill-tokens` (default 16384).
    #[arg(long)]
    pub max_prefill_tokens: Option<u64>,
    /// `--max-running-requests`.
    #[arg(long)]
    pub max_running_requests: Option<u64>,
    /// `--cuda-graph-max-bs`.
    #[arg(long)]
    pub cuda_graph_max_bs: Option<u64>,
    /// `--disable-overlap-schedule`.
    #[arg(long)]
    pub disable_overlap_schedule: bool,
    /// `--enable-mixed-chunk`.
    #[arg(long)]
    pub enable_mixed_chunk: bool,
    /// `--disable-radix-cache`.
    #[arg(long)]
    pub disable_radix_cache: bool,
    /// `--page-size`.
    #[arg(long, default_value_t = 1)]
    pub page_size: u64,
    /// `--stream-interval`.
    #[arg(long, default_value_t = 1)]
    pub stream_interval: u64,
    /// `--moe-a2a-backend`: none or deepep.
    #[arg(long, default_value = "none")]
    pub moe_a2a_backend: String,
    /// `--attention-backend` (recorded; fa3, flashinfer, triton, trtllm_mla, ...).
    #[arg(long)]
    pub attention_backend: Option<String>,
    /// The SGLang release whose defaults apply (e.g. 0.4.5); default: the newest release sglsim models (0.5.8).
    #[arg(long)]
    pub sglang_version: Option<String>,
    /// `--moe-dense-tp-size`: 1 runs the dense MLP layers of an MoE model data-parallel under DP
    /// attention (full weights per GPU, no gather); SGLang accepts only 1.
    #[arg(long)]
    pub moe_dense_tp_size: Option<u32>,
    /// `--enable-dp-lm-head`: under DP attention, split the LM head over the attention-TP group only.
    #[arg(long)]
    pub enable_dp_lm_head: bool,
    /// `--enable-two-batch-overlap`: overlap DeepEP's dispatch and combine with the other half of the batch.
    #[arg(long)]
    pub enable_two_batch_overlap: bool,
    /// `--ep-num-redundant-experts`: expert replicas for EPLB, so that routed + redundant experts divide over `--ep`.
    #[arg(long, default_value_t = 0)]
    pub ep_num_redundant_experts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_engine_takes_only_the_sizes_given() {
        let base = MappingFlags { tp: 8, dp: 2, ep: 8 };
        let decode = base.with(Some(4), None, Some(1));
        assert_eq!((decode.tp, decode.dp, decode.ep), (4, 2, 1));
    }
}
