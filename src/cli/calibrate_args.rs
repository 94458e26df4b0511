//! Flags of `sglsim calibrate` (clap derive): validated values only, nothing read here.

use std::path::PathBuf;

use clap::Args;

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

/// Flags of `calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// GPU the measurements were taken on (see `sglsim gpus`).
    #[arg(long)]
    pub gpu: String,
    /// Model measured: a bundled id, a config.json or a directory holding one (default: the one model the sources name, if bundled).
    #[arg(long)]
    pub model: Option<String>,
    /// `--tp` of the engine measured.
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// `--dp` (DP attention) of the engine measured.
    #[arg(long, default_value_t = 1)]
    pub dp: u32,
    /// `--ep` of the engine measured.
    #[arg(long, default_value_t = 1)]
    pub ep: u32,
    /// Weight format, overriding the checkpoint's: bf16, fp8, fp8-block, fp4, mxfp4.
    #[arg(long)]
    pub dtype: Option<String>,
    /// SGLang release measured (recorded in the profile; selects that release's defaults).
    #[arg(long)]
    pub sglang_version: Option<String>,
    /// Measurement files or folders: AIPerf artifact folders (runs or sweeps), Dynamo profiler
    /// folders or archives, bench_serving / bench_one_batch JSONL, `sglsim bench` records.
    #[arg(long = "from", num_args = 1.., required_unless_present = "url", conflicts_with = "url")]
    pub from: Vec<PathBuf>,
    /// Measure a running SGLang server instead: plan a short sweep, run it with `sglsim bench`, fit.
    #[arg(long)]
    pub url: Option<String>,
    /// Wall-time budget of the live sweep (`90s`, `10m`, `1h30m`).
    #[arg(long, default_value = "10m", value_parser = parse_budget_s)]
    pub budget: f64,
    /// Stop after the plan (`--url`) or after reading the measurements (`--from`).
    #[arg(long)]
    pub dry_run: bool,
    /// Folder for the live sweep's `sglsim bench` records (default: `<out>.records`, or `calibrate-records`).
    #[arg(long)]
    pub records_dir: Option<PathBuf>,
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
    /// Solver iterations of the fit.
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
}

#[cfg(test)]
mod tests {
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

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
    }
}
