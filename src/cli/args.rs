//! Command-line flags (clap derive): validated values only, nothing read here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::common_args::{LengthFlags, MappingFlags, ModelFlags, ServerFlags};

/// Predicts SGLang serving performance (TTFT, ITL, throughput) from a cost model and a scheduler twin.
#[derive(Debug, Parser)]
#[command(name = "sglsim", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Predict one configuration: a static batch, or a served workload (--concurrency / --request-rate).
    Predict(Box<PredictArgs>),
    /// List the GPU catalog.
    Gpus(ListArgs),
    /// List the bundled models.
    Models(ListArgs),
    /// Compare predictions with measured rows (CSV) and report errors per metric and group.
    Validate(ValidateArgs),
    /// Compare the cost model with measured kernel timings (tools/measure_kernels.py CSVs); optionally fit.
    Kernels(KernelsArgs),
    /// Search GPUs, mappings, xPyD splits and scheduler knobs for the best throughput within a TTFT/ITL SLA.
    Search(Box<super::search_args::SearchArgs>),
    /// Write the Dynamo SLA-planner profile (prefill and decode tables, mocker data) of one configuration.
    Profile(Box<super::search_args::ProfileArgs>),
    /// Load-test an OpenAI-compatible server (SGLang, Dynamo, `sglsim serve`) and record every request.
    Bench(Box<super::live_args::BenchArgs>),
    /// Run an OpenAI-compatible server whose token timing follows the scheduler twin in real time.
    Serve(Box<super::live_args::ServeArgs>),
    /// Fit cost-model coefficients to measurements (AIPerf, Dynamo profiler, bench_serving, `sglsim bench`) and write a profile.
    Calibrate(Box<super::calibrate_args::CalibrateArgs>),
}

/// Flags of `kernels`.
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// GPU the measurements were taken on.
    #[arg(long)]
    pub gpu: String,
    /// `<gpu>_kernels.csv` files (GEMM, attention).
    #[arg(long)]
    pub kernels: Vec<PathBuf>,
    /// `<gpu>_collectives.csv` files (NCCL all-reduce, all-gather, reduce-scatter, all-to-all).
    #[arg(long)]
    pub collectives: Vec<PathBuf>,
    /// Coefficient profile to start from instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Fit the coefficients each family identifies (and each MoE shape's efficiency factors) and report errors after the fit.
    #[arg(long)]
    pub fit: bool,
    /// Write the fitted MoE shape factors as a `data/moe_shapes.csv` table (rows for this GPU only).
    #[arg(long, value_name = "FILE")]
    pub moe_shapes_out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Measurement rows: the dev-set schema, or model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit.
    #[arg(long)]
    pub data: PathBuf,
    /// Group statistics by these columns (comma-separated): gpu, model, mode, source, metric.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Coefficient profile instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Print one JSON object: groups, rows, unmodelled.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `gpus` and `models`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Serving mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Prefill and decode on the same engines.
    Agg,
    /// Prefill and decode engines, KV transferred between them.
    Disagg,
}

/// Flags of `predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model and weight format.
    #[command(flatten)]
    pub model: ModelFlags,
    /// GPU type (see `sglsim gpus`); AIConfigurator spellings such as h200_sxm work too.
    #[arg(long)]
    pub gpu: String,
    /// Parallel sizes of every engine (the prefill and decode flags below override them).
    #[command(flatten)]
    pub mapping: MappingFlags,
    /// Input length, tokens (the maximum with --range-ratio, the mean with --isl-std).
    #[arg(long)]
    pub isl: Option<u64>,
    /// Output length, tokens.
    #[arg(long)]
    pub osl: Option<u64>,
    /// Static batch size (all requests at once, as `sglang.bench_one_batch`), when no load is given.
    #[arg(long)]
    pub batch: Option<u64>,
    /// Coefficient profile (TOML or JSON, as `sglsim calibrate` writes) instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Closed loop: this many clients, each sending its next request when the last completes.
    #[arg(long, conflicts_with_all = ["request_rate", "batch"])]
    pub concurrency: Option<u64>,
    /// Open loop: Poisson arrivals at this rate (requests/s), or `inf` to send all at t = 0.
    #[arg(long, conflicts_with = "batch", allow_hyphen_values = true)]
    pub request_rate: Option<String>,
    /// Measured requests (default 10 × concurrency, or 1000 with a request rate).
    #[arg(long)]
    pub num_requests: Option<u64>,
    /// Warm-up requests sent first and left out of the metrics (default: one wave of `--concurrency`
    /// requests in a closed loop, whose output lengths are staggered so that clients fall out of phase
    /// as in a long-running service; 0 otherwise). `--warmup-requests 0` starts every client at once.
    #[arg(long)]
    pub warmup_requests: Option<u64>,
    /// Spread of request lengths.
    #[command(flatten)]
    pub lengths: LengthFlags,
    /// A trace (CSV or JSONL): arrival time, input length, output length, optional prefix group.
    /// The trace sets the load and the lengths, so the flags that would set them are refused beside it.
    #[arg(long, conflicts_with_all = [
        "concurrency", "request_rate", "batch", "isl", "osl", "num_requests", "warmup_requests",
        "range_ratio", "isl_std", "osl_std", "seed",
    ])]
    pub trace: Option<PathBuf>,
    /// RNG seed of lengths and arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// TTFT SLA, ms (adds goodput).
    #[arg(long, allow_negative_numbers = true)]
    pub ttft: Option<f64>,
    /// ITL (per-request TPOT) SLA, ms (adds goodput).
    #[arg(long, allow_negative_numbers = true)]
    pub itl: Option<f64>,
    /// Write per-iteration records (time, kind, batch size, tokens, KV used) to this CSV file.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// SGLang's `--context-length`: the longest request (input + output), tokens; default the
    /// model's `max_position_embeddings`. Requests beyond it are refused, as SGLang answers 400.
    #[arg(long)]
    pub context_length: Option<u64>,

    /// Aggregated or disaggregated serving.
    #[arg(long, value_enum, default_value_t = Mode::Agg)]
    pub mode: Mode,
    /// Aggregated engines (replicas) behind the router.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Prefill engines' `--tp` (disagg; default --tp).
    #[arg(long)]
    pub prefill_tp: Option<u32>,
    /// Prefill engines' `--dp`.
    #[arg(long)]
    pub prefill_dp: Option<u32>,
    /// Prefill engines' `--ep`.
    #[arg(long)]
    pub prefill_ep: Option<u32>,
    /// Prefill engines.
    #[arg(long, default_value_t = 1)]
    pub prefill_workers: u32,
    /// Decode engines' `--tp` (disagg; default --tp).
    #[arg(long)]
    pub decode_tp: Option<u32>,
    /// Decode engines' `--dp`.
    #[arg(long)]
    pub decode_dp: Option<u32>,
    /// Decode engines' `--ep`.
    #[arg(long)]
    pub decode_ep: Option<u32>,
    /// Decode engines.
    #[arg(long, default_value_t = 1)]
    pub decode_workers: u32,
    /// `--chunked-prefill-size` of the decode engines when it differs from the prefill engines'
    /// (decode engines never prefill, but SGLang sizes their `--mem-fraction-static` reserve by it).
    #[arg(long, allow_hyphen_values = true)]
    pub decode_chunked_prefill_size: Option<i64>,
    /// `--cuda-graph-max-bs` of the decode engines when it differs from the prefill engines'.
    #[arg(long)]
    pub decode_cuda_graph_max_bs: Option<u64>,
    /// `--mem-fraction-static` of the decode engines when it differs from the prefill engines'.
    #[arg(long)]
    pub decode_mem_fraction_static: Option<f64>,

    /// SGLang server flags, under SGLang's names.
    #[command(flatten)]
    pub server: ServerFlags,
}

/// Parses a command line split at whitespace, as the tests of each subcommand's flags do.
#[cfg(test)]
pub(crate) fn parse(line: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(line.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_takes_sglang_flag_names() {
        let cli = parse("sglsim predict --model m --gpu h100 --tp 8 --dp 8 --ep 8 --isl 1024 --osl 128 --chunked-prefill-size -1 --disable-overlap-schedule --mem-fraction-static 0.8").unwrap();
        let Command::Predict(args) = cli.command else {
            panic!("not predict")
        };
        assert_eq!((args.mapping.tp, args.mapping.dp, args.mapping.ep), (8, 8, 8));
        assert_eq!(args.server.chunked_prefill_size, Some(-1));
        assert!(args.server.disable_overlap_schedule);
    }

    #[test]
    fn conflicting_load_flags_are_refused() {
        assert!(parse("sglsim predict --model m --gpu h100 --isl 1 --osl 1 --concurrency 4 --request-rate 2").is_err());
        assert!(parse("sglsim predict --model m --gpu h100 --isl 1 --osl 1 --batch 4 --concurrency 2").is_err());
        assert!(parse("sglsim predict --model m --gpu h100 --isl 1 --osl 1 --range-ratio 0.5 --isl-std 3").is_err());
    }

    #[test]
    fn a_trace_refuses_the_flags_it_replaces() {
        assert!(parse("sglsim predict --model m --gpu h100 --trace t.csv").is_ok());
        for flag in [
            "--concurrency 4",
            "--request-rate 2",
            "--batch 8",
            "--isl 100",
            "--osl 10",
            "--num-requests 5",
            "--warmup-requests 1",
            "--range-ratio 0.5",
            "--isl-std 3",
            "--seed 2",
        ] {
            let error = parse(&format!("sglsim predict --model m --gpu h100 --trace t.csv {flag}")).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{flag}");
        }
    }
}
