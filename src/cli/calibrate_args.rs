//! Flags of `sglsim calibrate` (clap derive): validated values only, nothing read here.

use std::path::PathBuf;

use clap::Args;

use super::common_args::ServerFlags;
use super::live_args::EndpointFlag;

/// Parses `--budget` (`90s`, `10m`, `1h30m`, or seconds) into seconds.
fn parse_budget_s(text: &str) -> Result<f64, String> {
    sglsim::calibrate::plan::parse_duration_s(text).map_err(|e| e.to_string())
}

/// Parses `--prior-weight`: a finite number at least 0.
fn parse_prior_weight(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("'{text}' is not a number at least 0")),
    }
}

/// Parses `--max-total-tokens`: a KV capacity of at least one token per rank.
fn parse_kv_tokens(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("the KV cache capacity (SGLang's max_total_num_tokens) must be at least 1 token per rank".into()),
        Ok(tokens) => Ok(tokens),
        Err(_) => Err(format!("'{text}' is not a whole number of tokens per rank")),
    }
}

/// Flags of `calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// GPU the measurements were taken on (see `sglsim gpus`).
    #[arg(long)]
    pub gpu: String,
    // Not `ModelFlags`/`MappingFlags`: --model and the sizes are optional here (the sources or the
    // server at --url can supply them), so their defaults and help differ.
    /// Model measured: a bundled id, a config.json or a directory holding one (default: the one model the sources name, if bundled).
    #[arg(long)]
    pub model: Option<String>,
    /// `--tp` of the engine measured (default 1, or what the server at --url reports).
    #[arg(long)]
    pub tp: Option<u32>,
    /// `--dp` (DP attention) of the engine measured (default 1, or what the server reports).
    #[arg(long)]
    pub dp: Option<u32>,
    /// `--ep` of the engine measured (default 1, or what the server reports).
    #[arg(long)]
    pub ep: Option<u32>,
    /// Weight format, overriding the checkpoint's: bf16, fp8, fp8-block, fp4, mxfp4.
    #[arg(long)]
    pub dtype: Option<String>,
    /// KV cache capacity of the engine measured, tokens per rank (SGLang's `max_total_num_tokens`,
    /// `--max-total-tokens`): `--mem-fraction-static` is solved so the memory model gives it.
    #[arg(long, value_parser = parse_kv_tokens)]
    pub max_total_tokens: Option<u64>,
    /// Measurement files or folders: AIPerf artifact folders (runs or sweeps), Dynamo profiler
    /// folders or archives, bench_serving / bench_one_batch JSONL, `sglsim bench` records.
    #[arg(long = "from", num_args = 1.., required_unless_present = "url", conflicts_with = "url")]
    pub from: Vec<PathBuf>,
    /// Measure a running server instead (SGLang, or any OpenAI-compatible one): plan a short sweep
    /// within --budget, run it with the built-in load generator (or AIPerf with --aiperf), fit.
    #[arg(long)]
    pub url: Option<String>,
    /// Wall-time budget of the live sweep (`90s`, `10m`, `1h30m`).
    #[arg(long, default_value = "10m", value_parser = parse_budget_s)]
    pub budget: f64,
    /// Stop after the plan (`--url`) or after reading the measurements (`--from`).
    #[arg(long)]
    pub dry_run: bool,
    /// Run each point of the live sweep with `aiperf profile` instead of the built-in load generator.
    #[arg(long, conflicts_with = "from")]
    pub aiperf: bool,
    /// Local Hugging Face tokenizer folder for AIPerf (needed with --aiperf: AIPerf cannot download one
    /// offline); the served model's own, or for `sglsim serve` one from tools/make_word_tokenizer.py.
    #[arg(long, requires = "aiperf")]
    pub tokenizer: Option<PathBuf>,
    /// The `model` field of requests, when the server serves the model under another name than --model.
    #[arg(long, conflicts_with = "from")]
    pub served_model: Option<String>,
    /// Endpoint the live sweep sends to.
    #[arg(long, value_enum, default_value_t = EndpointFlag::Completions)]
    pub endpoint: EndpointFlag,
    /// Folder for the live sweep's per-point records (`sglsim bench` JSONL or AIPerf artifact folders)
    /// and plan (default: beside --out, `<out>.calibrate/`, or `calibrate-work/`).
    #[arg(long, alias = "records-dir", conflicts_with = "from")]
    pub work_dir: Option<PathBuf>,
    /// Continue an interrupted live calibration: keep the points whose records in --work-dir are
    /// complete and run only the rest.
    #[arg(long, conflicts_with = "from")]
    pub resume: bool,
    /// Write the fitted profile (JSON) here; `sglsim predict --profile` reads it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Coefficient profile to start from (and to pull toward) instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Fit exactly these coefficients (comma-separated) instead of those the data identify.
    #[arg(long, value_delimiter = ',')]
    pub coefficients: Vec<String>,
    /// Weight of the prior pulling each coefficient toward its start (0: none).
    #[arg(long, default_value_t = 0.3, value_parser = parse_prior_weight)]
    pub prior_weight: f64,
    /// Most solver iterations of the fit (Levenberg–Marquardt stops at convergence, well before).
    #[arg(long, default_value_t = 400)]
    pub max_iters: u64,
    /// Skip the leave-one-out refits.
    #[arg(long)]
    pub no_loo: bool,
    /// Seed of simulated (and, live, sent) workloads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object: profile, fit report, sources and warnings (or the plan).
    #[arg(long)]
    pub json: bool,
    /// SGLang server flags of the engine measured, under SGLang's names (with --url, what the
    /// server's `/get_server_info` reports fills those not given).
    #[command(flatten)]
    pub server: ServerFlags,
}

#[cfg(test)]
mod tests {
    use crate::cli::args::{parse, Command};

    #[test]
    fn calibrate_takes_sources_or_a_url_with_a_budget() {
        let cli = parse("sglsim calibrate --gpu h100 --from a b --out p.json").unwrap();
        let Command::Calibrate(args) = cli.command else {
            panic!("not calibrate")
        };
        assert_eq!(args.from.len(), 2);
        assert_eq!(args.budget, 600.0);
        let cli = parse("sglsim calibrate --gpu h100 --model m --url http://x:1 --budget 90s --dry-run").unwrap();
        let Command::Calibrate(args) = cli.command else {
            panic!("not calibrate")
        };
        assert_eq!((args.budget, args.dry_run), (90.0, true));
        assert!(parse("sglsim calibrate --gpu h100").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --from a --url http://x:1").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --url http://x:1 --budget 10x").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --from a --prior-weight -1").is_err());
        // Issue 13: a zero KV capacity is refused by its own flag, not as a memory-fraction puzzle.
        let zero = parse("sglsim calibrate --gpu h100 --from a --max-total-tokens 0")
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("--max-total-tokens") && zero.contains("must be at least 1 token per rank"),
            "{zero}"
        );
        let cli = parse("sglsim calibrate --gpu h100 --model m --url http://x:1 --aiperf --tokenizer /t --resume --work-dir w --tp 2 --max-total-tokens 9000 --max-running-requests 64").unwrap();
        let Command::Calibrate(args) = cli.command else {
            panic!("not calibrate")
        };
        assert!(args.aiperf && args.resume);
        assert_eq!((args.tp, args.dp, args.max_total_tokens), (Some(2), None, Some(9000)));
        assert_eq!(args.server.max_running_requests, Some(64));
        assert_eq!(args.work_dir.as_deref(), Some(std::path::Path::new("w")));
        // AIPerf, resuming and the work folder belong to live calibration; a tokenizer to AIPerf.
        assert!(parse("sglsim calibrate --gpu h100 --from a --aiperf").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --from a --resume").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --model m --url http://x:1 --tokenizer /t").is_err());
        assert!(parse("sglsim calibrate --gpu h100 --model m --url http://x:1 --records-dir r").is_ok());
    }
}
