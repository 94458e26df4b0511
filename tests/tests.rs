//! The integration-test binary: one module per theme.

mod cli;
mod regression;
mod tidy;
mod util;
