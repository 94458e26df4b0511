//! SGLang's server flags that change performance, and the defaults SGLang derives for them.
//!
//! Reproduces the default rules of `python/sglang/srt/server_args.py` (v0.5.x): chunked-prefill
//! size and CUDA-graph max batch by GPU memory and TP, and the CUDA-graph capture sizes of
//! `model_executor/cuda_graph_runner.py`.

use super::error::{Error, Result};
use super::gpu::{GpuSpec, GIB};
use super::mapping::ParallelMapping;
use super::quant::KvDtype;

/// How MoE tokens travel between expert-parallel ranks (`--moe-a2a-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeA2aBackend {
    /// No all-to-all: every rank computes its experts for all tokens and results are all-reduced.
    None,
    /// DeepEP dispatch/combine (normal kernels for prefill, low-latency kernels for decode).
    Deepep,
}

impl MoeA2aBackend {
    /// The flag value as SGLang spells it.
    pub fn flag(self) -> &'static str {
        match self {
            MoeA2aBackend::None => "none",
            MoeA2aBackend::Deepep => "deepep",
        }
    }

    /// Parses `--moe-a2a-backend`.
    pub fn parse_flag(value: &str) -> Result<MoeA2aBackend> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Ok(MoeA2aBackend::None),
            "deepep" | "mooncake" | "flashinfer" => Ok(MoeA2aBackend::Deepep),
            _ => Err(Error::BadValue {
                field: "--moe-a2a-backend".into(),
                value: value.into(),
                expected: "none or deepep".into(),
            }),
        }
    }
}

/// An SGLang release, for the defaults that changed between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SglangVersion(pub u32, pub u32, pub u32);

impl SglangVersion {
    /// The release whose defaults sglsim reproduces when no version is given: v0.5.8, the newest release whose
    /// changed defaults sglsim models (piecewise CUDA-graph prefill; see `docs/sglang-facts.md`).
    pub const CURRENT: SglangVersion = SglangVersion(0, 5, 8);

    /// Reads the first `X.Y[.Z]` in a version string such as `0.4.5.post3`, `~0.4.6 (main, May 2025)`
    /// or `v0.3.0`; `None` when there is none (`main`, a docker tag).
    pub fn parse(text: &str) -> Option<SglangVersion> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        let numbers: Vec<u32> = text[start..]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()?
            .split('.')
            .filter(|part| !part.is_empty())
            .take(3)
            .map_while(|part| part.parse().ok())
            .collect();
        match numbers.as_slice() {
            [major, minor] => Some(SglangVersion(*major, *minor, 0)),
            [major, minor, patch, ..] => Some(SglangVersion(*major, *minor, *patch)),
            _ => None,
        }
    }
}

/// Whether the overlap scheduler hides CPU scheduling time behind the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapSchedule {
    /// Default since v0.4: CPU prepares batch N+1 while the GPU runs batch N.
    On,
    /// `--disable-overlap-schedule`.
    Off,
}

/// The server flags a user gave; `None` means SGLang's default.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerArgs {
    /// `--mem-fraction-static`.
    pub mem_fraction_static: Option<f64>,
    /// `--chunked-prefill-size` (tokens; -1 disables chunking).
    pub chunked_prefill_size: Option<i64>,
    /// `--max-prefill-tokens` (tokens, default 16384).
    pub max_prefill_tokens: Option<u64>,
    /// `--max-running-requests`.
    pub max_running_requests: Option<u64>,
    /// `--cuda-graph-max-bs`.
    pub cuda_graph_max_bs: Option<u64>,
    /// Overlap scheduler on or off.
    pub overlap_schedule: OverlapSchedule,
    /// `--enable-mixed-chunk`: decodes ride along with prefill chunks.
    pub enable_mixed_chunk: bool,
    /// `--disable-radix-cache`.
    pub disable_radix_cache: bool,
    /// `--page-size` (tokens per KV page).
    pub page_size: u64,
    /// `--stream-interval` (tokens per streamed chunk).
    pub stream_interval: u64,
    /// `--moe-a2a-backend`.
    pub moe_a2a_backend: MoeA2aBackend,
    /// `--attention-backend`, informational (fa3, flashinfer, triton, trtllm_mla, ...).
    pub attention_backend: Option<String>,
    /// `--kv-cache-dtype`; `None` is `auto` (the model's activation dtype, bf16).
    pub kv_cache_dtype: Option<KvDtype>,
    /// The SGLang release whose defaults apply (`None`: [`SglangVersion::CURRENT`]).
    pub sglang_version: Option<SglangVersion>,
    /// Whether the overlap scheduler was disabled explicitly; otherwise the release's default applies.
    pub overlap_flag_given: bool,
    /// `--moe-dense-tp-size 1`: the dense MLP layers of an MoE model run data-parallel (full weights on
    /// every GPU, each rank on its own tokens) instead of tensor-parallel over the engine.
    pub moe_dense_tp1: bool,
    /// `--enable-dp-lm-head`: under DP attention the LM head is split over the attention-TP group only,
    /// so each rank computes its own rows' logits with no gather over the engine.
    pub enable_dp_lm_head: bool,
    /// `--enable-two-batch-overlap`: each forward is split into two micro-batches so that one's DeepEP
    /// communication overlaps the other's computation.
    pub enable_two_batch_overlap: bool,
    /// `--ep-num-redundant-experts`: expert replicas placed by EPLB (the mapping checks that routed plus
    /// redundant experts divide over the EP ranks).
    pub ep_num_redundant_experts: u32,
}

impl ServerArgs {
    /// SGLang's defaults for every flag.
    pub fn sglang_defaults() -> ServerArgs {
        ServerArgs {
            mem_fraction_static: None,
            chunked_prefill_size: None,
            max_prefill_tokens: None,
            max_running_requests: None,
            cuda_graph_max_bs: None,
            overlap_schedule: OverlapSchedule::On,
            enable_mixed_chunk: false,
            disable_radix_cache: false,
            page_size: 1,
            stream_interval: 1,
            moe_a2a_backend: MoeA2aBackend::None,
            attention_backend: None,
            kv_cache_dtype: None,
            sglang_version: None,
            overlap_flag_given: false,
            moe_dense_tp1: false,
            enable_dp_lm_head: false,
            enable_two_batch_overlap: false,
            ep_num_redundant_experts: 0,
        }
    }

    /// SGLang's large-scale expert-parallel layout for a DEP engine: DeepEP dispatch and combine, dense
    /// MLP layers and LM head data-parallel, and two-batch overlap when asked.
    pub fn use_large_ep_layout(&mut self, two_batch_overlap: bool) {
        self.moe_a2a_backend = MoeA2aBackend::Deepep;
        self.moe_dense_tp1 = true;
        self.enable_dp_lm_head = true;
        self.enable_two_batch_overlap = two_batch_overlap;
    }

    /// Fills SGLang's defaults for a GPU and mapping and checks ranges.
    pub fn resolve(&self, gpu: &GpuSpec, mapping: &ParallelMapping) -> Result<ResolvedServerArgs> {
        let memory_gib = gpu.memory_gib();
        let tp = u64::from(mapping.tp());
        let version = self.sglang_version.unwrap_or(SglangVersion::CURRENT);
        let (default_chunk, default_graph_bs) = default_chunk_and_graph_bs(memory_gib, tp, version);
        let chunked_prefill_size = match self.chunked_prefill_size.unwrap_or(default_chunk) {
            -1 => None,
            size if size > 0 => Some(size as u64),
            size => {
                return Err(Error::BadValue {
                    field: "--chunked-prefill-size".into(),
                    value: size.to_string(),
                    expected: "a positive token count, or -1 to disable chunking".into(),
                })
            }
        };
        // Under DP attention SGLang divides the chunk over the DP ranks (after sizing mem_fraction_static).
        let chunk_for_memory = chunked_prefill_size;
        let chunked_prefill_size = chunked_prefill_size.map(|size| (size / u64::from(mapping.dp())).max(1));
        let cuda_graph_max_bs = self.cuda_graph_max_bs.unwrap_or(default_graph_bs);
        let max_prefill_tokens = self.max_prefill_tokens.unwrap_or(16_384);
        let checks: [(&str, u64); 3] = [
            ("--max-prefill-tokens", max_prefill_tokens),
            ("--page-size", self.page_size),
            ("--stream-interval", self.stream_interval),
        ];
        for (field, value) in checks {
            if value == 0 {
                return Err(Error::BadValue {
                    field: field.into(),
                    value: "0".into(),
                    expected: "at least 1".into(),
                });
            }
        }
        if self.max_running_requests == Some(0) {
            return Err(Error::BadValue {
                field: "--max-running-requests".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        let mem_fraction_static = match self.mem_fraction_static {
            Some(fraction) if fraction > 0.0 && fraction < 1.0 => fraction,
            Some(fraction) => {
                return Err(Error::BadValue {
                    field: "--mem-fraction-static".into(),
                    value: fraction.to_string(),
                    expected: "a fraction in (0, 1)".into(),
                })
            }
            None if version >= SglangVersion(0, 5, 3) => {
                default_mem_fraction_static(gpu, mapping, chunk_for_memory.unwrap_or(max_prefill_tokens), cuda_graph_max_bs)
            }
            None => legacy_mem_fraction_static(gpu, mapping, version),
        };
        if self.enable_two_batch_overlap && !(self.moe_a2a_backend == MoeA2aBackend::Deepep && mapping.ep() > 1) {
            return Err(Error::BadValue {
                field: "--enable-two-batch-overlap".into(),
                value: format!("on (with --moe-a2a-backend {}, --ep {})", self.moe_a2a_backend.flag(), mapping.ep()),
                expected: "only with --moe-a2a-backend deepep and --ep > 1 (it overlaps DeepEP's dispatch and combine with computation)"
                    .into(),
            });
        }
        if self.enable_dp_lm_head && !mapping.dp_attention() {
            return Err(Error::BadValue {
                field: "--enable-dp-lm-head".into(),
                value: format!("on (with --dp {})", mapping.dp()),
                expected: "only with DP attention, --dp > 1 (it splits the LM head over the attention-TP group)".into(),
            });
        }
        // The overlap scheduler became the default in v0.4.0 (off in v0.3).
        let overlap_schedule = if self.overlap_flag_given || version >= SglangVersion(0, 4, 0) {
            self.overlap_schedule
        } else {
            OverlapSchedule::Off
        };
        Ok(ResolvedServerArgs {
            mem_fraction_static,
            chunked_prefill_size,
            max_prefill_tokens,
            max_running_requests: self.max_running_requests,
            cuda_graph_max_bs,
            capture_batch_sizes: capture_batch_sizes(cuda_graph_max_bs),
            overlap_schedule,
            enable_mixed_chunk: self.enable_mixed_chunk,
            disable_radix_cache: self.disable_radix_cache,
            page_size: self.page_size,
            stream_interval: self.stream_interval,
            moe_a2a_backend: self.moe_a2a_backend,
            kv_cache_dtype: self.kv_cache_dtype.unwrap_or(KvDtype::Bf16),
            moe_dense_tp1: self.moe_dense_tp1,
            // Both were checked above against the mapping and the all-to-all backend.
            enable_dp_lm_head: self.enable_dp_lm_head,
            two_batch_overlap: self.enable_two_batch_overlap,
            piecewise_cuda_graph_max_tokens: default_piecewise_cuda_graph_max_tokens(mapping, version),
        })
    }
}

/// The first release that captures piecewise CUDA graphs for prefill by default: sgl-project/sglang PR #16331
/// ("Piecewise Cuda Graph set default", merged 2026-01-03); earlier releases prefill eagerly unless
/// `--enable-piecewise-cuda-graph` is given (PR #10062, which sglsim's flags do not model).
pub const PIECEWISE_CUDA_GRAPH_DEFAULT_SINCE: SglangVersion = SglangVersion(0, 5, 8);

/// Largest extend batch, tokens, that replays a piecewise CUDA graph by default (`--piecewise-cuda-graph-max-tokens`,
/// 8192 in the server_args of releases that enable it; captured sizes 4 ..= 8192), or `None` where prefill runs
/// eagerly: releases before [`PIECEWISE_CUDA_GRAPH_DEFAULT_SINCE`], and DP attention, which the piecewise runner
/// does not support (sglang issue #11490's to-do list; `_disable_tc_piecewise_cudagraph_if_incompatible`).
pub fn default_piecewise_cuda_graph_max_tokens(mapping: &ParallelMapping, version: SglangVersion) -> Option<u64> {
    (version >= PIECEWISE_CUDA_GRAPH_DEFAULT_SINCE && !mapping.dp_attention()).then_some(8192)
}

/// Server flags with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedServerArgs {
    /// Fraction of GPU memory for weights plus KV cache.
    pub mem_fraction_static: f64,
    /// Tokens per prefill chunk; `None` when chunking is off.
    pub chunked_prefill_size: Option<u64>,
    /// Tokens per prefill batch.
    pub max_prefill_tokens: u64,
    /// The user's cap on running requests, if any (the memory model derives the effective one).
    pub max_running_requests: Option<u64>,
    /// Largest decode batch that replays a CUDA graph.
    pub cuda_graph_max_bs: u64,
    /// Captured decode batch sizes, ascending.
    pub capture_batch_sizes: Vec<u64>,
    /// Overlap scheduler.
    pub overlap_schedule: OverlapSchedule,
    /// Mixed prefill+decode batches.
    pub enable_mixed_chunk: bool,
    /// Radix (prefix) cache off.
    pub disable_radix_cache: bool,
    /// Tokens per KV page.
    pub page_size: u64,
    /// Tokens per streamed chunk.
    pub stream_interval: u64,
    /// MoE all-to-all backend.
    pub moe_a2a_backend: MoeA2aBackend,
    /// KV cache element type.
    pub kv_cache_dtype: KvDtype,
    /// Dense MLP layers data-parallel (`--moe-dense-tp-size 1`).
    pub moe_dense_tp1: bool,
    /// LM head within the attention-TP group (`--enable-dp-lm-head`; only accepted under DP attention).
    pub enable_dp_lm_head: bool,
    /// Two-batch overlap (`--enable-two-batch-overlap`; only accepted with DeepEP over more than one EP
    /// rank: SGLang overlaps DeepEP's dispatch and combine, so without DeepEP there is nothing to hide).
    pub two_batch_overlap: bool,
    /// Largest extend batch, tokens, whose layers outside attention replay piecewise CUDA graphs (SGLang's
    /// `PiecewiseCudaGraphRunner`); `None` when every prefill runs eagerly. The model decides whether its
    /// architecture can be captured ([`super::step::StepModel`]).
    pub piecewise_cuda_graph_max_tokens: Option<u64>,
}

impl ResolvedServerArgs {
    /// The captured batch size a decode batch of `batch_size` is padded to, or `None` when it runs eagerly.
    pub fn padded_graph_batch(&self, batch_size: u64) -> Option<u64> {
        let index = self.capture_batch_sizes.partition_point(|&size| size < batch_size);
        self.capture_batch_sizes.get(index).copied()
    }
}

/// Default `chunked_prefill_size` and `cuda_graph_max_bs` by GPU memory (GiB), TP and release
/// (`server_args.py` `_handle_gpu_memory_settings`; releases before 0.5.3 capped graphs at 160, or 256 above 90 GiB).
pub fn default_chunk_and_graph_bs(memory_gib: f64, tp: u64, version: SglangVersion) -> (i64, u64) {
    if version < SglangVersion(0, 5, 3) {
        let chunk = if memory_gib < 35.0 {
            2048
        } else if memory_gib < 160.0 {
            8192
        } else {
            16384
        };
        let graph_bs = if memory_gib < 35.0 {
            if tp < 4 {
                8
            } else {
                80
            }
        } else if memory_gib > 90.0 && version >= SglangVersion(0, 4, 1) {
            256
        } else {
            160
        };
        return (chunk, graph_bs);
    }
    if memory_gib < 20.0 {
        (2048, 8)
    } else if memory_gib < 35.0 {
        (2048, if tp < 4 { 24 } else { 80 })
    } else if memory_gib < 60.0 {
        (4096, if tp < 4 { 32 } else { 160 })
    } else if memory_gib < 160.0 {
        // H100/A100-80G (< 90 GiB) and H20/H200 (< 160 GiB) share the same defaults.
        (8192, if tp < 4 { 256 } else { 512 })
    } else {
        (16384, 512)
    }
}

/// `mem_fraction_static` of releases before 0.5.3: the TP table of v0.3–0.4.0 (0.88 at TP1 down to 0.79
/// at TP16), then a reserve of (9.5 + tp/2) GiB below 90 GiB, (12 + tp/2) GiB below 160 GiB, 32 GiB
/// above (+4 GiB with DP attention).
pub fn legacy_mem_fraction_static(gpu: &GpuSpec, mapping: &ParallelMapping, version: SglangVersion) -> f64 {
    let tp = mapping.tp();
    if version < SglangVersion(0, 4, 1) {
        return match tp {
            16.. => 0.79,
            8..=15 => 0.81,
            4..=7 => 0.85,
            2..=3 => 0.87,
            _ => 0.88,
        };
    }
    let memory_gib = gpu.memory_gib();
    let mut reserved_gib = if memory_gib < 35.0 {
        2.8 + f64::from(tp) / 10.0
    } else if memory_gib < 90.0 {
        9.5 + f64::from(tp) / 2.0
    } else if memory_gib < 160.0 {
        12.0 + f64::from(tp) / 2.0
    } else {
        32.0
    };
    if mapping.dp_attention() {
        reserved_gib += 4.0;
    }
    (((memory_gib - reserved_gib) / memory_gib) * 1000.0).round() / 1000.0
}

/// SGLang's rule for `mem_fraction_static` when the flag is absent (v0.5.3 and later):
/// reserve 512 MiB + max(chunk, 2048) × 1.5 MiB + graph max bs × 2 MiB + tp/8 GiB
/// (+ graph max bs × dp × 3 MiB with DP attention), at least 10 GiB on GPUs above 60 GiB.
pub fn default_mem_fraction_static(gpu: &GpuSpec, mapping: &ParallelMapping, chunk_tokens: u64, cuda_graph_max_bs: u64) -> f64 {
    const MIB: f64 = 1_048_576.0;
    let mut reserved_bytes = 512.0 * MIB
        + chunk_tokens.max(2048) as f64 * 1.5 * MIB
        + cuda_graph_max_bs as f64 * 2.0 * MIB
        + f64::from(mapping.tp()) / 8.0 * GIB;
    if mapping.dp_attention() {
        reserved_bytes += cuda_graph_max_bs as f64 * f64::from(mapping.dp()) * 3.0 * MIB;
    }
    if gpu.memory_gib() > 60.0 {
        reserved_bytes = reserved_bytes.max(10.0 * GIB);
    }
    ((gpu.memory_bytes - reserved_bytes) / gpu.memory_bytes).clamp(0.05, 0.95)
}

/// CUDA-graph capture sizes: `[1, 2, 4, 8, 12] + range(16, 257, 8) + range(272, 512, 16) + range(512, max + 1, 32)`, capped at `max_bs`.
pub fn capture_batch_sizes(max_bs: u64) -> Vec<u64> {
    let mut sizes: Vec<u64> = vec![1, 2, 4, 8, 12];
    sizes.extend((16..=256).step_by(8));
    sizes.extend((272..512).step_by(16));
    sizes.extend((512..=max_bs.max(512)).step_by(32));
    sizes.retain(|&size| size <= max_bs);
    if sizes.last() != Some(&max_bs) && max_bs > 0 {
        sizes.push(max_bs);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_sizes_follow_sglang_schedule() {
        let sizes = capture_batch_sizes(512);
        assert_eq!(&sizes[..7], &[1, 2, 4, 8, 12, 16, 24]);
        assert!(sizes.contains(&256) && sizes.contains(&272) && sizes.contains(&496) && sizes.contains(&512));
        assert!(!sizes.contains(&264));
        assert_eq!(capture_batch_sizes(160).last(), Some(&160));
        assert_eq!(capture_batch_sizes(10), vec![1, 2, 4, 8, 10]);
    }

    #[test]
    fn decode_batches_pad_up_to_the_next_captured_size() {
        let catalog = crate::model::gpu::GpuCatalog::builtin().unwrap();
        let model = crate::model::model_catalog::find_bundled_spec("Qwen3-8B").unwrap().unwrap();
        let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
        let resolved = ServerArgs::sglang_defaults()
            .resolve(catalog.find("h100-sxm").unwrap(), &mapping)
            .unwrap();
        assert_eq!(resolved.cuda_graph_max_bs, 256);
        assert_eq!(resolved.padded_graph_batch(3), Some(4));
        assert_eq!(resolved.padded_graph_batch(17), Some(24));
        assert_eq!(resolved.padded_graph_batch(256), Some(256));
        assert_eq!(resolved.padded_graph_batch(257), None);
        assert!(
            (0.8..0.9).contains(&resolved.mem_fraction_static),
            "{}",
            resolved.mem_fraction_static
        );
    }

    #[test]
    fn versions_parse_and_pick_their_defaults() {
        assert_eq!(SglangVersion::parse("0.4.5.post3"), Some(SglangVersion(0, 4, 5)));
        assert_eq!(SglangVersion::parse("~0.4.6 (main, May 2025)"), Some(SglangVersion(0, 4, 6)));
        assert_eq!(SglangVersion::parse("v0.3.0"), Some(SglangVersion(0, 3, 0)));
        assert_eq!(SglangVersion::parse("lmsysorg/sglang:spark"), None);
        let catalog = crate::model::gpu::GpuCatalog::builtin().unwrap();
        let model = crate::model::model_catalog::find_bundled_spec("Llama-3.1-70B-Instruct")
            .unwrap()
            .unwrap();
        let mapping = ParallelMapping::new(&model, 4, 1, 1).unwrap();
        let mut args = ServerArgs::sglang_defaults();
        args.sglang_version = Some(SglangVersion(0, 3, 0));
        let old = args.resolve(catalog.find("h100").unwrap(), &mapping).unwrap();
        assert_eq!(
            (old.mem_fraction_static, old.cuda_graph_max_bs, old.overlap_schedule),
            (0.85, 160, OverlapSchedule::Off)
        );
        args.sglang_version = Some(SglangVersion(0, 4, 5));
        let middle = args.resolve(catalog.find("h200").unwrap(), &mapping).unwrap();
        assert_eq!(middle.cuda_graph_max_bs, 256);
        assert!((middle.mem_fraction_static - (1.0 - 14.0 / catalog.find("h200").unwrap().memory_gib())).abs() < 0.002);
        args.sglang_version = None;
        assert_eq!(
            args.resolve(catalog.find("h100").unwrap(), &mapping).unwrap().cuda_graph_max_bs,
            512
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let catalog = crate::model::gpu::GpuCatalog::builtin().unwrap();
        let model = crate::model::model_catalog::find_bundled_spec("Qwen3-8B").unwrap().unwrap();
        let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
        let mut args = ServerArgs::sglang_defaults();
        args.mem_fraction_static = Some(1.2);
        let error = args.resolve(catalog.find("h100").unwrap(), &mapping).unwrap_err().to_string();
        assert!(error.contains("--mem-fraction-static") && error.contains("1.2"), "{error}");
    }
}
