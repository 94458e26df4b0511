//! The command line: flags (`args`; the groups several subcommands share in `common_args`), plans built
//! from them (`plan`), wiring (`run`) and output (`report`).
//!
//! This is the only place that reads arguments, files named on the command line, prints, or picks exit codes.

pub mod args;
pub mod calibrate_aiperf;
pub mod calibrate_args;
pub mod calibrate_cmd;
pub mod calibrate_live;
pub mod common_args;
pub mod live_args;
pub mod live_cmd;
pub mod plan;
pub mod report;
pub mod run;
pub mod search_args;
pub mod search_cmd;

#[cfg(test)]
mod properties;
