//! Repository hygiene: dependency direction between modules, IO only at the edges.

use std::path::Path;

fn rust_files(dir: &Path, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn module_files(module: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module), &mut files);
    assert!(!files.is_empty(), "no files under src/{module}");
    files
}

#[test]
fn dependencies_run_one_way() {
    // cli -> {search, calibrate} -> sim -> model; model imports no other sglsim module.
    let forbidden: &[(&str, &[&str])] = &[
        ("model", &["crate::sim", "crate::cli", "crate::search", "crate::calibrate"]),
        ("sim", &["crate::cli", "crate::search", "crate::calibrate"]),
    ];
    for (module, imports) in forbidden {
        for (path, text) in module_files(module) {
            for import in *imports {
                assert!(!text.contains(import), "{path} uses {import}");
            }
        }
    }
}

#[test]
fn model_and_sim_do_no_io_clock_or_printing() {
    for module in ["model", "sim"] {
        for (path, text) in module_files(module) {
            for needle in [
                "std::fs",
                "println!",
                "eprintln!",
                "Instant::now",
                "SystemTime",
                "std::env",
                "thread_rng",
            ] {
                assert!(!text.contains(needle), "{path} contains {needle}");
            }
        }
    }
}

#[test]
fn no_file_over_1500_lines() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    for (path, text) in files {
        assert!(text.lines().count() <= 1500, "{path} has {} lines", text.lines().count());
    }
}
