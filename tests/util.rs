//! Helpers: run the `sglsim` binary, parse its JSON, temp directories, an in-process serving twin.

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

/// The serving twin of Qwen/Qwen3-8B on one H100 with these coefficients, on a free loopback port,
/// running `time_scale` × faster than real time.
pub fn qwen3_8b_twin(coefficients: sglsim::model::coefficients::Coefficients, time_scale: f64) -> sglsim::serve::ServeHandle {
    use sglsim::model::gpu::GpuCatalog;
    use sglsim::model::mapping::ParallelMapping;
    use sglsim::model::model_catalog::find_bundled_spec;
    use sglsim::model::server_args::ServerArgs;
    use sglsim::model::step::{EngineConfig, StepModel};
    const MODEL: &str = "Qwen/Qwen3-8B";
    let model = find_bundled_spec(MODEL).unwrap().unwrap();
    let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
    let step_model = StepModel::new(EngineConfig {
        model,
        gpu: GpuCatalog::builtin().unwrap().find("h100").unwrap().clone(),
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients,
    })
    .unwrap();
    sglsim::serve::spawn(sglsim::serve::ServeConfig {
        step_model,
        model_path: MODEL.into(),
        host: "127.0.0.1".into(),
        port: 0,
        time_scale,
    })
    .unwrap()
}
