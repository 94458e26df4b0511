//! `search`: the SLA search in-process, from the flags of `sglsim search`.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checks::apply_context_length;
use super::error::{invalid, Result};
use super::load::{kv_cache_dtype, load_coefficients, load_model_as};
use super::predict::length_distribution;
use crate::model::gpu::{GpuCatalog, GpuSpec};
use crate::model::server_args::{MoeA2aBackend, ServerArgs};
use crate::search::config::{GpuLimits, Load, ModeChoice, SearchConfig, SlaTarget, WorkloadShape};
use crate::search::result::SearchResult;
use crate::sim::metrics::Percentile;

/// Everything `sglsim search` takes, under its flag names (underscores for dashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRequest {
    /// Bundled model id, or a path to a Hugging Face config.json (or its folder).
    pub model: String,
    /// Weight format replacing the checkpoint's.
    pub dtype: Option<String>,
    /// GPU types to try (see `sglsim gpus`).
    pub gpu: Vec<String>,
    /// GPUs of the whole deployment; replicas fill them.
    pub total_gpus: Option<u32>,
    /// Largest engine, GPUs.
    pub max_gpus_per_engine: Option<u32>,
    /// Input length, tokens.
    pub isl: u64,
    /// Output length, tokens.
    pub osl: u64,
    /// `bench_serving --random-range-ratio`.
    pub range_ratio: Option<f64>,
    /// AIPerf-style input-length standard deviation, tokens.
    pub isl_std: Option<f64>,
    /// AIPerf-style output-length standard deviation, tokens.
    pub osl_std: Option<f64>,
    /// TTFT limit, ms.
    pub ttft: f64,
    /// ITL limit (the per-request TPOT), ms.
    pub itl: f64,
    /// The statistic both limits apply to: mean, p50, p90, p99.
    pub percentile: String,
    /// Serving modes to search: agg, disagg or both.
    pub mode: String,
    /// Open loop: Poisson arrivals at this total rate, requests/s.
    pub request_rate: Option<f64>,
    /// Closed loop: this many clients in total.
    pub concurrency: Option<u64>,
    /// Coefficient profile instead of the defaults.
    pub profile: Option<PathBuf>,
    /// Recommendations to return.
    pub top: usize,
    /// Worker threads (default: one per core).
    pub threads: Option<usize>,
    /// Candidates the serving simulator evaluates after the analytic screen.
    pub max_simulations: usize,
    /// RNG seed of the simulated workloads.
    pub seed: u64,
    /// KV cache dtype of every candidate.
    pub kv_cache_dtype: String,
    /// `--moe-a2a-backend` of every candidate.
    pub moe_a2a_backend: String,
    /// SGLang's `--context-length`, tokens (default the model's window).
    pub context_length: Option<u64>,
}

impl Default for SearchRequest {
    fn default() -> SearchRequest {
        SearchRequest {
            model: String::new(),
            dtype: None,
            gpu: Vec::new(),
            total_gpus: None,
            max_gpus_per_engine: None,
            isl: 0,
            osl: 0,
            range_ratio: None,
            isl_std: None,
            osl_std: None,
            ttft: 0.0,
            itl: 0.0,
            percentile: "p90".into(),
            mode: "both".into(),
            request_rate: None,
            concurrency: None,
            profile: None,
            top: 5,
            threads: None,
            max_simulations: 96,
            seed: 0,
            kv_cache_dtype: "auto".into(),
            moe_a2a_backend: "none".into(),
            context_length: None,
        }
    }
}

impl SearchRequest {
    /// Reads a request from a JSON object of flag names, refusing names `search` does not take.
    pub fn from_json(text: &str) -> Result<SearchRequest> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        super::predict::refuse_unknown_keys(&value, &serde_json::to_value(SearchRequest::default())?, "search")?;
        Ok(serde_json::from_value(value)?)
    }

    /// The search's configuration: reads the model config and profile, checks the flags.
    pub fn config(&self) -> Result<SearchConfig> {
        let mut model = load_model_as(&self.model, self.dtype.as_deref())?;
        apply_context_length(&mut model, self.context_length)?;
        let catalog = GpuCatalog::builtin()?;
        let mut gpus: Vec<GpuSpec> = Vec::new();
        for name in &self.gpu {
            // `all`: every GPU type of the catalog, in its order.
            let named = if name.eq_ignore_ascii_case("all") {
                catalog.all().to_vec()
            } else {
                vec![catalog.find(name)?.clone()]
            };
            for gpu in named {
                if !gpus.iter().any(|g| g.name == gpu.name) {
                    gpus.push(gpu);
                }
            }
        }
        let mut server_args = ServerArgs::sglang_defaults();
        server_args.kv_cache_dtype = kv_cache_dtype(&self.kv_cache_dtype)?;
        server_args.moe_a2a_backend = MoeA2aBackend::parse_flag(&self.moe_a2a_backend)?;
        if let Some(range_ratio) = self.range_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
            return Err(invalid!("invalid --range-ratio {range_ratio}: a fraction in [0, 1]"));
        }
        let load = match (self.concurrency, self.request_rate) {
            (Some(_), Some(_)) => return Err(invalid!("give --concurrency or --request-rate, not both")),
            (Some(n_clients), None) => Some(Load::Concurrency { n_clients }),
            (None, Some(rate_per_s)) => Some(Load::RequestRate { rate_per_s }),
            (None, None) => None,
        };
        let mut model_flags = format!("--model {}", self.model);
        if let Some(dtype) = &self.dtype {
            model_flags.push_str(&format!(" --dtype {dtype}"));
        }
        if let Some(profile) = &self.profile {
            model_flags.push_str(&format!(" --profile {}", profile.display()));
        }
        Ok(SearchConfig {
            model,
            model_flags,
            gpus,
            coefficients: load_coefficients(self.profile.as_deref())?.0,
            server_args,
            limits: GpuLimits {
                total_gpus: self.total_gpus,
                max_gpus_per_engine: self.max_gpus_per_engine,
            },
            workload: WorkloadShape {
                isl: self.isl,
                osl: self.osl,
                lengths: length_distribution(self.range_ratio, self.isl_std, self.osl_std),
                seed: self.seed,
            },
            sla: SlaTarget {
                ttft_ms: self.ttft,
                itl_ms: self.itl,
                percentile: match self.percentile.to_ascii_lowercase().as_str() {
                    "mean" => Percentile::Mean,
                    "p50" => Percentile::P50,
                    "p90" => Percentile::P90,
                    "p99" => Percentile::P99,
                    other => return Err(invalid!("invalid --percentile '{other}': mean, p50, p90 or p99")),
                },
            },
            modes: match self.mode.to_ascii_lowercase().as_str() {
                "agg" => ModeChoice::Agg,
                "disagg" => ModeChoice::Disagg,
                "both" => ModeChoice::Both,
                other => return Err(invalid!("invalid --mode '{other}': agg, disagg or both")),
            },
            load,
            top_k: self.top,
            max_simulations: self.max_simulations,
            n_threads: self.threads,
        })
    }
}

/// What [`search`] returns: the result and the wall time it took.
#[derive(Debug)]
pub struct SearchReport {
    /// The configuration searched.
    pub config: SearchConfig,
    /// What the search found.
    pub result: SearchResult,
    /// Wall time of the search itself, ms.
    pub elapsed_ms: f64,
}

impl SearchReport {
    /// The JSON of `sglsim search --json`: the result's keys plus `elapsed_ms`.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut value = serde_json::to_value(&self.result)?;
        value["elapsed_ms"] = serde_json::json!((self.elapsed_ms * 1000.0).round() / 1000.0);
        Ok(value)
    }
}

/// Runs the SLA search of a request: what `sglsim search` prints.
pub fn search(request: &SearchRequest) -> Result<SearchReport> {
    let config = request.config()?;
    let started = Instant::now();
    let result = crate::search::search(&config)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(SearchReport {
        config,
        result,
        elapsed_ms,
    })
}
