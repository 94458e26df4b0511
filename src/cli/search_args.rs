//! Flags of `search` and `profile` (clap derive): validated values only, nothing read here.

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

use super::common_args::{LengthFlags, ModelFlags};

/// Which serving modes `search` tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchMode {
    /// Aggregated engines only.
    Agg,
    /// Disaggregated prefill/decode only.
    Disagg,
    /// Both.
    Both,
}

/// The statistic an SLA applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PercentileFlag {
    /// Mean.
    Mean,
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
}

/// Flags of `search`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("gpu_limit").required(true).multiple(true).args(["total_gpus", "max_gpus_per_engine"])))]
pub struct SearchArgs {
    /// Model and weight format.
    #[command(flatten)]
    pub model: ModelFlags,
    /// GPU types to try, comma-separated (see `sglsim gpus`), or `all`; each type (and mode) gets
    /// its own --max-simulations.
    #[arg(long, value_delimiter = ',', required = true)]
    pub gpu: Vec<String>,
    /// GPUs of the whole deployment; replicas fill them.
    #[arg(long)]
    pub total_gpus: Option<u32>,
    /// Largest engine, GPUs.
    #[arg(long)]
    pub max_gpus_per_engine: Option<u32>,
    /// Input length, tokens (the maximum with --range-ratio, the mean with --isl-std).
    #[arg(long)]
    pub isl: u64,
    /// Output length, tokens.
    #[arg(long)]
    pub osl: u64,
    /// Spread of request lengths.
    #[command(flatten)]
    pub lengths: LengthFlags,
    /// TTFT limit, ms.
    #[arg(long, allow_negative_numbers = true)]
    pub ttft: f64,
    /// ITL limit (the per-request TPOT), ms.
    #[arg(long, allow_negative_numbers = true)]
    pub itl: f64,
    /// The statistic both limits apply to.
    #[arg(long, value_enum, default_value_t = PercentileFlag::P90)]
    pub percentile: PercentileFlag,
    /// Serving modes to search.
    #[arg(long, value_enum, default_value_t = SearchMode::Both)]
    pub mode: SearchMode,
    /// Open loop: Poisson arrivals at this total rate, requests/s (default: sweep concurrency).
    #[arg(long, conflicts_with = "concurrency")]
    pub request_rate: Option<f64>,
    /// Closed loop: this many clients in total (default: sweep concurrency).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Coefficient profile (TOML or JSON) instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Recommendations to show.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON object: pareto, top, evaluated, elapsed_ms (and more).
    #[arg(long)]
    pub json: bool,
    /// Write pareto.csv, results.json, pareto.svg and the Dynamo profile of the best configuration here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print configurations screened and evaluated and the wall time to stderr.
    #[arg(long)]
    pub timing: bool,
    /// Worker threads (default: one per core); results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Candidates the serving simulator evaluates after the analytic screen, per GPU type and mode.
    #[arg(long, default_value_t = 96)]
    pub max_simulations: usize,
    /// RNG seed of the simulated workloads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    // Not `ServerFlags`: the search chooses the scheduler knobs itself and takes only these two,
    // with help worded for the candidates.
    /// KV cache dtype: auto, bf16, fp8.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// `--moe-a2a-backend` of every candidate: none or deepep.
    #[arg(long, default_value = "none")]
    pub moe_a2a_backend: String,
    /// SGLang's `--context-length` of every candidate, tokens (default: the model's `max_position_embeddings`).
    #[arg(long)]
    pub context_length: Option<u64>,
}

/// Flags of `profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    // Not `ModelFlags`/`MappingFlags`/`ServerFlags`: `profile --help` words these for one prefill
    // and an optional decode engine, and takes only the three server flags that shape the tables.
    /// Model: a bundled Hugging Face id, a config.json, or a directory holding one.
    #[arg(long)]
    pub model: String,
    /// Weight format, overriding the checkpoint's.
    #[arg(long)]
    pub dtype: Option<String>,
    /// GPU type.
    #[arg(long)]
    pub gpu: String,
    /// GPUs per engine (`--tp`).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// Attention data-parallel size (`--dp`).
    #[arg(long, default_value_t = 1)]
    pub dp: u32,
    /// Expert-parallel size (`--ep`).
    #[arg(long, default_value_t = 1)]
    pub ep: u32,
    /// A different decode engine's `--tp` (disaggregated; default --tp).
    #[arg(long)]
    pub decode_tp: Option<u32>,
    /// The decode engine's `--dp`.
    #[arg(long)]
    pub decode_dp: Option<u32>,
    /// The decode engine's `--ep`.
    #[arg(long)]
    pub decode_ep: Option<u32>,
    /// Input length for the summary, tokens.
    #[arg(long)]
    pub isl: u64,
    /// Output length for the summary, tokens.
    #[arg(long)]
    pub osl: u64,
    /// Directory to write the Dynamo profile to.
    #[arg(long)]
    pub out: PathBuf,
    /// Coefficient profile (TOML or JSON) instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// KV cache dtype: auto, bf16, fp8.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// `--chunked-prefill-size` (tokens; -1 disables).
    #[arg(long, allow_hyphen_values = true)]
    pub chunked_prefill_size: Option<i64>,
    /// `--cuda-graph-max-bs`.
    #[arg(long)]
    pub cuda_graph_max_bs: Option<u64>,
    /// `--mem-fraction-static`.
    #[arg(long)]
    pub mem_fraction_static: Option<f64>,
    /// SGLang's `--context-length`, tokens (default: the model's `max_position_embeddings`).
    #[arg(long)]
    pub context_length: Option<u64>,
    /// Print the tables as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Search(SearchArgs),
        Profile(ProfileArgs),
    }

    fn parse(line: &str) -> Result<Sub, clap::Error> {
        Wrapper::try_parse_from(line.split_whitespace()).map(|w| w.command)
    }

    #[test]
    fn search_takes_a_gpu_list_and_needs_a_gpu_limit() {
        let Sub::Search(args) = parse("x search --model m --gpu h200,h100 --total-gpus 8 --isl 1 --osl 2 --ttft 1 --itl 1").unwrap() else {
            panic!("not search")
        };
        assert_eq!(args.gpu, ["h200", "h100"]);
        assert_eq!((args.mode, args.percentile, args.top), (SearchMode::Both, PercentileFlag::P90, 5));
        assert!(parse("x search --model m --gpu h200 --isl 1 --osl 2 --ttft 1 --itl 1").is_err());
        assert!(parse(
            "x search --model m --gpu h200 --max-gpus-per-engine 8 --isl 1 --osl 2 --ttft 1 --itl 1 --concurrency 4 --request-rate 2"
        )
        .is_err());
    }

    #[test]
    fn profile_takes_mappings() {
        let Sub::Profile(args) = parse("x profile --model m --gpu h200 --tp 8 --dp 8 --ep 8 --isl 1 --osl 2 --out d").unwrap() else {
            panic!("not profile")
        };
        assert_eq!((args.tp, args.dp, args.ep, args.decode_tp), (8, 8, 8, None));
    }
}
