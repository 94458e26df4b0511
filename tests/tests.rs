//! The integration-test binary: one module per theme.

mod bench;
mod calibrate;
mod calibrate_live;
mod cli;
mod kernel_accuracy;
mod properties;
mod regression;
mod reliability;
mod search;
mod tidy;
mod util;
