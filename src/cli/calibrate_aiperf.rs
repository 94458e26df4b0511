//! `sglsim calibrate --url --aiperf`: runs the plan's points through `aiperf profile` and collects their run folders.
//!
//! Points that share an output length go into one `aiperf profile` call, as a zip sweep over input
//! length, concurrency and request count (`--isl 128,2048 --concurrency 1,1 --request-count 4,4
//! --sweep-type zip`), with the flags Dynamo's profiler uses: streaming, `ignore_eos`,
//! `max_tokens = min_tokens = OSL`, fixed lengths, a seeded dataset and a warm-up per run.
//! Each call writes into `aiperf-call-N/` of the work folder, its output into `aiperf-call-N.log`;
//! every completed run folder (one with a `profile_export_aiperf.json` that is not cancelled) is
//! matched to its plan point by workload and moved to `<point key>.aiperf/`, so that `--resume`
//! finds it even when the call was interrupted.
//! AIPerf needs a local tokenizer folder offline, and refuses local paths when `HF_HUB_OFFLINE` or
//! `TRANSFORMERS_OFFLINE` is set, so both are removed from its environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::calibrate_live::point_key;
use sglsim::calibrate::ingest::{parse_aiperf_run, Load, Workload};
use sglsim::calibrate::loadgen::Endpoint;
use sglsim::calibrate::plan::{CalibrationPlan, PlanPoint};

/// Name prefix of AIPerf call folders and logs in the work folder.
pub(super) const CALL_PREFIX: &str = "aiperf-call-";
/// AIPerf's summary file in a run folder.
const SUMMARY: &str = "profile_export_aiperf.json";
/// Lines of AIPerf's log shown when a call fails.
const LOG_TAIL_LINES: usize = 15;

/// What every AIPerf call of a calibration shares.
#[derive(Debug, Clone)]
pub(super) struct AiperfSetup {
    /// The `aiperf` executable.
    pub executable: PathBuf,
    /// Local tokenizer folder (`--tokenizer`).
    pub tokenizer: PathBuf,
    /// Server base URL.
    pub url: String,
    /// The `model` field of requests.
    pub served_model: String,
    /// Endpoint requests go to.
    pub endpoint: Endpoint,
    /// `--random-seed`.
    pub seed: u64,
    /// `--request-timeout-seconds`.
    pub request_timeout_s: f64,
}

/// Checks `--tokenizer` and finds `aiperf` on `PATH`; returns the executable.
pub(super) fn prepare(tokenizer: Option<&Path>) -> Result<PathBuf> {
    let Some(tokenizer) = tokenizer else {
        bail!(
            "--aiperf needs --tokenizer PATH: a local Hugging Face tokenizer folder (AIPerf cannot download one offline); \
             give the served model's own, or for `sglsim serve` write one with `python3 tools/make_word_tokenizer.py DIR`"
        );
    };
    if !tokenizer.is_dir() {
        bail!(
            "--tokenizer {}: no such folder (expected a Hugging Face tokenizer folder with tokenizer.json)",
            tokenizer.display()
        );
    }
    find_on_path("aiperf").ok_or_else(|| {
        anyhow::anyhow!(
            "--aiperf: no `aiperf` executable on PATH; install AIPerf (`python3 -m pip install aiperf==0.13.0`) \
             or leave out --aiperf to use the built-in load generator"
        )
    })
}

/// The first executable file called `name` in a `PATH` folder.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Comma-joined values of the points (one value when all are equal).
fn list(points: &[&PlanPoint], value: impl Fn(&PlanPoint) -> u64) -> String {
    let values: Vec<u64> = points.iter().map(|p| value(p)).collect();
    if values.windows(2).all(|w| w[0] == w[1]) {
        values.first().map_or_else(String::new, u64::to_string)
    } else {
        values.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// The arguments of one `aiperf profile` call for points sharing an output length.
pub(super) fn profile_args(setup: &AiperfSetup, points: &[&PlanPoint], artifact_dir: &Path) -> Vec<String> {
    let osl = points.first().map_or(1, |p| p.osl_tokens);
    let warmup = points.iter().map(|p| p.n_warmup).max().unwrap_or(0);
    let endpoint_type = match setup.endpoint {
        Endpoint::Completions => "completions",
        Endpoint::Chat => "chat",
    };
    let mut args: Vec<String> = [
        "profile",
        "--model",
        &setup.served_model,
        "--tokenizer",
        &setup.tokenizer.display().to_string(),
        "--url",
        &setup.url,
        "--endpoint-type",
        endpoint_type,
        "--endpoint",
        setup.endpoint.path(),
        "--streaming",
        "--extra-inputs",
        "ignore_eos:true",
        "--extra-inputs",
        &format!("max_tokens:{osl}"),
        "--extra-inputs",
        &format!("min_tokens:{osl}"),
        "--warmup-request-count",
        &warmup.to_string(),
        "--artifact-dir",
        &artifact_dir.display().to_string(),
        "--random-seed",
        &setup.seed.to_string(),
        "--request-timeout-seconds",
        &format!("{}", setup.request_timeout_s.round()),
        "--synthetic-input-tokens-mean",
        &list(points, |p| p.isl_tokens),
        "--synthetic-input-tokens-stddev",
        "0",
        "--output-tokens-mean",
        &osl.to_string(),
        "--output-tokens-stddev",
        "0",
        "--concurrency",
        &list(points, |p| p.concurrency),
        "--request-count",
        &list(points, |p| p.n_requests),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if points.len() > 1 {
        args.extend(["--sweep-type", "zip"].map(String::from));
    }
    args.extend(["--ui", "none", "--no-gpu-telemetry", "--no-server-metrics"].map(String::from));
    args
}

/// Run folders under `dir` (itself, or up to two levels down), skipping AIPerf's aggregates.
fn run_folders(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if dir.join(SUMMARY).is_file() {
        found.push(dir.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    children.sort();
    for child in children {
        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !matches!(name, "aggregate" | "sweep_aggregate" | "phases" | "logs") {
            run_folders(&child, depth - 1, found);
        }
    }
}

/// Whether an AIPerf run measured a plan point's workload.
fn measures(workload: &Workload, point: &PlanPoint) -> bool {
    matches!(workload, Workload::Served { isl_tokens, osl_tokens, load: Load::Concurrency(c), n_requests, .. }
        if *isl_tokens == point.isl_tokens && *osl_tokens == point.osl_tokens && *c == point.concurrency && *n_requests == point.n_requests)
}

/// Matches the completed run folders under `dir` to plan points not yet done and moves each to
/// `<work_dir>/<point key>.aiperf`.
fn adopt(dir: &Path, work_dir: &Path, plan: &CalibrationPlan, done: &mut BTreeMap<usize, PathBuf>) -> Result<()> {
    let mut found = Vec::new();
    run_folders(dir, 2, &mut found);
    for folder in found {
        let summary = folder.join(SUMMARY);
        let Ok(text) = std::fs::read_to_string(&summary) else { continue };
        // A cancelled or unreadable run is not complete.
        let Ok((measured, _)) = parse_aiperf_run(&text, &summary.display().to_string()) else {
            continue;
        };
        let Some(index) = (0..plan.points.len()).find(|i| !done.contains_key(i) && measures(&measured.workload, &plan.points[*i])) else {
            continue;
        };
        let target = work_dir.join(format!("{}.aiperf", point_key(&plan.points[index])));
        if folder != target {
            if target.exists() {
                std::fs::remove_dir_all(&target).with_context(|| format!("cannot replace {}", target.display()))?;
            }
            std::fs::rename(&folder, &target).with_context(|| format!("cannot move {} to {}", folder.display(), target.display()))?;
        }
        done.insert(index, target);
    }
    Ok(())
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// A call folder name not used yet in the work folder.
fn next_call_dir(work_dir: &Path) -> PathBuf {
    (1..)
        .map(|k| work_dir.join(format!("{CALL_PREFIX}{k}")))
        .find(|dir| !dir.exists() && !dir.with_extension("log").exists())
        .unwrap_or_else(|| work_dir.join(format!("{CALL_PREFIX}0")))
}

/// Runs the points of the plan that have no complete run folder yet; returns each point's run
/// folder in plan order (points AIPerf wrote no summary for are left out, with a warning).
pub(super) fn run_plan(
    setup: &AiperfSetup,
    plan: &CalibrationPlan,
    work_dir: &Path,
    resume: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>> {
    let mut done = BTreeMap::new();
    if resume {
        adopt(work_dir, work_dir, plan, &mut done)?;
        eprintln!(
            "resuming: {} of {} points have complete AIPerf runs in {}",
            done.len(),
            plan.points.len(),
            work_dir.display()
        );
    }
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for index in (0..plan.points.len()).filter(|i| !done.contains_key(i)) {
        groups.entry(plan.points[index].osl_tokens).or_default().push(index);
    }
    for (osl, indices) in groups {
        let points: Vec<&PlanPoint> = indices.iter().map(|&i| &plan.points[i]).collect();
        let call_dir = next_call_dir(work_dir);
        let log_path = call_dir.with_extension("log");
        let args = profile_args(setup, &points, &call_dir);
        eprintln!(
            "aiperf: {} run(s) with {osl} output tokens (about {:.0} s; log in {})",
            points.len(),
            points.iter().map(|p| p.estimated_s).sum::<f64>(),
            log_path.display()
        );
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone().with_context(|| format!("cannot write {}", log_path.display()))?;
        let status = Command::new(&setup.executable)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("TRANSFORMERS_OFFLINE")
            .status()
            .with_context(|| format!("cannot run {}", setup.executable.display()))?;
        adopt(&call_dir, work_dir, plan, &mut done)?;
        if !status.success() {
            bail!(
                "aiperf profile failed ({status}); {} of {} points are done (rerun with --resume to keep them). \
                 The end of {}:\n{}",
                done.len(),
                plan.points.len(),
                log_path.display(),
                log_tail(&log_path)
            );
        }
    }
    for (index, point) in plan.points.iter().enumerate() {
        if !done.contains_key(&index) {
            warnings.push(format!(
                "AIPerf wrote no complete run for isl {} osl {} concurrency {}: left out of the fit",
                point.isl_tokens, point.osl_tokens, point.concurrency
            ));
        }
    }
    Ok(done.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sglsim::calibrate::plan::PlanPhase;

    fn point(isl_tokens: u64, osl_tokens: u64, concurrency: u64, n_requests: u64) -> PlanPoint {
        PlanPoint {
            phase: PlanPhase::Decode,
            isl_tokens,
            osl_tokens,
            concurrency,
            n_requests,
            n_warmup: 1,
            estimated_s: 1.0,
        }
    }

    #[test]
    fn one_call_zips_the_points_that_share_an_output_length() {
        let setup = AiperfSetup {
            executable: "aiperf".into(),
            tokenizer: "/tok".into(),
            url: "http://127.0.0.1:1".into(),
            served_model: "m".into(),
            endpoint: Endpoint::Completions,
            seed: 7,
            request_timeout_s: 600.0,
        };
        let (a, b) = (point(512, 256, 1, 4), point(4096, 256, 8, 16));
        let args = profile_args(&setup, &[&a, &b], Path::new("/w/aiperf-call-1")).join(" ");
        for expected in [
            "profile --model m --tokenizer /tok --url http://127.0.0.1:1 --endpoint-type completions --endpoint /v1/completions --streaming",
            "--extra-inputs ignore_eos:true --extra-inputs max_tokens:256 --extra-inputs min_tokens:256 --warmup-request-count 1",
            "--artifact-dir /w/aiperf-call-1 --random-seed 7 --request-timeout-seconds 600",
            "--synthetic-input-tokens-mean 512,4096 --synthetic-input-tokens-stddev 0 --output-tokens-mean 256 --output-tokens-stddev 0",
            "--concurrency 1,8 --request-count 4,16 --sweep-type zip --ui none",
        ] {
            assert!(args.contains(expected), "{expected}\nin {args}");
        }
        let single = profile_args(&setup, &[&a], Path::new("/w")).join(" ");
        assert!(single.contains("--concurrency 1 --request-count 4 --ui none"), "{single}");
    }

    #[test]
    fn completed_runs_are_matched_to_their_points_and_moved() {
        // A genuine AIPerf run (256 in, 32 out, concurrency 2, 8 requests) left in an interrupted call.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aiperf/run1_dynamo_style_c2_n8");
        let work = tempfile::tempdir().unwrap();
        let run = work
            .path()
            .join(format!("{CALL_PREFIX}1"))
            .join("mean_256__mean_32__concurrency_2__requests_8");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::copy(fixture.join(SUMMARY), run.join(SUMMARY)).unwrap();
        let plan = CalibrationPlan {
            points: vec![point(256, 32, 1, 8), point(256, 32, 2, 8)],
            estimated_s: 2.0,
            budget_s: 10.0,
            left_out: Vec::new(),
        };
        let mut done = BTreeMap::new();
        adopt(work.path(), work.path(), &plan, &mut done).unwrap();
        let target = work.path().join("decode-isl256-osl32-c2-n8-w1.aiperf");
        assert_eq!(done.into_iter().collect::<Vec<_>>(), [(1, target.clone())]);
        assert!(target.join(SUMMARY).is_file() && !run.exists());
        // Found again where it now is, as --resume finds it.
        let mut again = BTreeMap::new();
        adopt(work.path(), work.path(), &plan, &mut again).unwrap();
        assert_eq!(again.len(), 1);
    }
}
