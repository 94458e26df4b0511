//! Flags of the live subcommands: `bench` (load generator) and `serve` (the serving twin).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::common_args::{MappingFlags, ModelFlags, ServerFlags};

/// Which OpenAI-compatible endpoint `bench` sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointFlag {
    /// `/v1/completions` with the prompt as token ids (exact input length).
    Completions,
    /// `/v1/chat/completions` with a text prompt of about `--isl` words.
    Chat,
}

/// Flags of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of an OpenAI-compatible server (SGLang, Dynamo, `sglsim serve`), e.g. http://127.0.0.1:30000.
    #[arg(long)]
    pub url: String,
    /// The `model` field of requests (default: the first model `/v1/models` lists).
    #[arg(long)]
    pub model: Option<String>,
    /// Input length, tokens (the maximum with --range-ratio).
    #[arg(long)]
    pub isl: u64,
    /// Output length, tokens (`max_tokens = min_tokens`, `ignore_eos`).
    #[arg(long)]
    pub osl: u64,
    /// Closed loop: this many clients, each sending its next request when the last completes.
    #[arg(long, conflicts_with = "request_rate", required_unless_present = "request_rate")]
    pub concurrency: Option<u64>,
    /// Open loop: Poisson arrivals at this rate (requests/s), or `inf` to send all at once.
    #[arg(long, allow_hyphen_values = true)]
    pub request_rate: Option<String>,
    /// Measured requests (default 10 × concurrency, or 1000 with a request rate), as `predict` counts them.
    #[arg(long)]
    pub num_requests: Option<u64>,
    /// Warm-up requests sent first and left out of the metrics (their records are kept, marked).
    #[arg(long, default_value_t = 0)]
    pub warmup_requests: u64,
    // Not `LengthFlags`: bench sends uniform lengths only (no --isl-std/--osl-std to conflict with).
    /// `bench_serving --random-range-ratio`: lengths uniform in [L·r, L].
    #[arg(long)]
    pub range_ratio: Option<f64>,
    /// Endpoint to send to.
    #[arg(long, value_enum, default_value_t = EndpointFlag::Completions)]
    pub endpoint: EndpointFlag,
    /// Limit on one request from send to last byte, seconds; a stall past it is an error.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
    /// Append one JSON record per request to this JSONL file as each completes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object with `predict --json`'s metric keys.
    #[arg(long)]
    pub json: bool,
    /// RNG seed of lengths, arrivals and prompts (the same seed gives `predict` the same workload).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest share of failed requests (warm-up included) that still counts as a run, in [0, 1];
    /// above it `bench` prints its report, then the error summary, and exits with code 2.
    #[arg(long, default_value_t = 0.0)]
    pub max_error_rate: f64,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model and weight format.
    #[command(flatten)]
    pub model: ModelFlags,
    /// GPU type (see `sglsim gpus`).
    #[arg(long)]
    pub gpu: String,
    /// Parallel sizes of the engine.
    #[command(flatten)]
    pub mapping: MappingFlags,
    /// Coefficient profile (TOML or JSON) instead of the defaults.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Multiply every coefficient by a seeded random factor in [1 − F, 1 + F] (clamped to its range).
    #[arg(long)]
    pub perturb: Option<f64>,
    /// Seed of --perturb.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the perturbed profile (TOML) to stderr.
    #[arg(long, requires = "perturb")]
    pub reveal: bool,
    /// Port to listen on (0 picks a free one; the address is printed to stderr).
    #[arg(long, default_value_t = 30000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Simulated seconds per wall-clock second (1: real time; 10: ten times faster, for tests).
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub time_scale: f64,
    /// SGLang's `--context-length`: the longest request (input + `max_tokens`), tokens; default the
    /// model's `max_position_embeddings`. Longer requests get SGLang's HTTP 400.
    #[arg(long)]
    pub context_length: Option<u64>,
    /// SGLang server flags, under SGLang's names.
    #[command(flatten)]
    pub server: ServerFlags,
}

#[cfg(test)]
mod tests {
    use super::super::args::{parse, Command};

    #[test]
    fn bench_needs_exactly_one_load_flag() {
        let cli = parse("sglsim bench --url http://127.0.0.1:1 --isl 10 --osl 5 --concurrency 4 --endpoint chat").unwrap();
        let Command::Bench(args) = cli.command else { panic!("not bench") };
        assert_eq!((args.concurrency, args.timeout_s), (Some(4), 600.0));
        assert!(parse("sglsim bench --url u --isl 1 --osl 1").is_err());
        assert!(parse("sglsim bench --url u --isl 1 --osl 1 --concurrency 2 --request-rate 3").is_err());
        assert!(parse("sglsim bench --url u --isl 1 --osl 1 --request-rate inf").is_ok());
    }

    #[test]
    fn serve_takes_sglang_flags_and_binds_loopback_by_default() {
        let cli = parse("sglsim serve --model Qwen/Qwen3-8B --gpu h100 --tp 2 --stream-interval 2 --perturb 0.1 --reveal").unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!((args.host.as_str(), args.port, args.mapping.tp), ("127.0.0.1", 30000, 2));
        assert_eq!(args.server.stream_interval, 2);
        assert!(
            parse("sglsim serve --model m --gpu h100 --reveal").is_err(),
            "--reveal needs --perturb"
        );
    }
}
