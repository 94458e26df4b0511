//! The `sglsim` binary: parses flags, runs a subcommand, maps the result to an exit code
//! (0 success, 1 nothing feasible, 2 error or a configuration that does not fit).

mod cli;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::run::{self, Outcome};

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Predict(args) => run::predict(args),
        Command::Gpus(args) => run::gpus(args),
        Command::Models(args) => run::models(args),
        Command::Validate(args) => run::validate(args),
        Command::Kernels(args) => run::kernels(args),
        Command::Search(args) => cli::search_cmd::search(args),
        Command::Profile(args) => cli::search_cmd::profile(args),
        Command::Bench(args) => cli::live_cmd::bench(args),
        Command::Serve(args) => cli::live_cmd::serve(args),
        Command::Calibrate(args) => cli::calibrate_cmd::calibrate(args),
    };
    let code = match result {
        Ok(Outcome::Done(text)) => {
            if let Err(error) = run::print(&text) {
                eprintln!("error: {error:#}");
                2
            } else {
                0
            }
        }
        Ok(Outcome::NoFeasible(text)) => {
            let _ = run::print(&text);
            1
        }
        Ok(Outcome::Failed { report, error }) => {
            let _ = run::print(&report);
            eprintln!("error: {error}");
            2
        }
        Ok(Outcome::DoesNotFit(text)) => {
            let _ = run::print(&text);
            2
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            2
        }
    };
    std::process::exit(code);
}
