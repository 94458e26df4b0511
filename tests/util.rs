//! Helpers: run the `sglsim` binary, parse its JSON, temp directories.

use std::process::Command;

/// What one run of the binary produced.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Parses stdout as JSON, with the run's output in the panic message if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// Runs `sglsim` with whitespace-separated arguments.
pub fn sglsim(args: &str) -> Output {
    sglsim_args(&args.split_whitespace().collect::<Vec<_>>())
}

/// Runs `sglsim` with explicit arguments.
pub fn sglsim_args(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_sglsim")).args(args).output().expect("runs sglsim");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Field `key` of a JSON object as f64.
pub fn number(value: &serde_json::Value, path: &str) -> f64 {
    let mut current = value;
    for key in path.split('.') {
        current = &current[key];
    }
    current.as_f64().unwrap_or_else(|| panic!("{path} is not a number in {value}"))
}
