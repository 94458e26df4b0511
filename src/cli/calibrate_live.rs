//! `sglsim calibrate --url`: probe a running server, plan a sweep within the budget, run it, fit.
//!
//! The server is probed first (`calibrate::loadgen::probe_server`): an unreachable URL is an error,
//! `/v1/models` must list the model (or `--served-model`), and SGLang's `/get_server_info` fills
//! the parallel sizes, flags and KV capacity the user did not give; a server without it (vLLM,
//! Dynamo, a proxy) is calibrated from the flags alone, with a warning.
//! Each plan point keeps its records in the work folder under a name made from its workload
//! (`decode-isl512-osl256-c8-n16-w1.jsonl` from the built-in load generator, or
//! `….aiperf/` run folders from AIPerf), so `--resume` skips the points whose records are complete
//! and runs the rest; without `--resume` the folder's earlier records are removed first. A point
//! with failed requests is run once more, then set aside (`<point>.failed.jsonl`) with a warning.
//! The first request probes what the server accepts: a server that refuses SGLang's `min_tokens` /
//! `ignore_eos` (HTTP 4xx) is measured with `max_tokens` alone and the lengths it returns, one that
//! refuses token-id prompts with text prompts; when nothing works the run stops with its message.
//! `--budget` bounds the sweep's wall time: before each point its duration is re-estimated from the
//! measured pace of the points before it, and a point that would end past the budget is skipped;
//! time left over goes to the left-out points that best pin down the worst-identified coefficient.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::calibrate_aiperf::{self, AiperfSetup};
use super::calibrate_args::CalibrateArgs;
use super::calibrate_cmd::{engine_config, fit_and_report, plan_table, EngineDescription};
use super::live_args::EndpointFlag;
use super::run::Outcome;
use sglsim::calibrate::ingest::{ingest_path, Ingested, Load, MeasuredPoint, Workload};
use sglsim::calibrate::loadgen::{
    probe_server, run_bench_shaped, BenchConfig, BenchRecord, Endpoint, RecordStatus, RequestShape, ServerProbe,
};
use sglsim::calibrate::plan::{plan, rank_by_sensitivity, workload_of, CalibrationPlan, PlanConfig, PlanPhase, PlanPoint};
use sglsim::model::quant::KvDtype;
use sglsim::model::server_args::{OverlapSchedule, SglangVersion};
use sglsim::model::step::StepModel;
use sglsim::sim::workload::{Arrivals, LengthDistribution, WorkloadSpec};

/// Fixed cost of one built-in benchmark run, seconds (connection, warm-up, drain; about 0.6 s measured).
const BUILTIN_OVERHEAD_S: f64 = 1.0;
/// Fixed cost of one AIPerf run, seconds: its services start and stop for every run of a sweep
/// (about 10 s each on a 2-core machine).
const AIPERF_OVERHEAD_S: f64 = 10.0;
/// Limit on one live request, seconds.
const LIVE_TIMEOUT_S: f64 = 600.0;
/// Attempts to reach the server, and the wait before the second.
const CONNECT_TRIES: u32 = 3;
const CONNECT_BACKOFF_S: f64 = 0.5;

/// `sglsim calibrate --url`.
pub fn calibrate_live(args: &CalibrateArgs, url: &str) -> Result<Outcome> {
    let Some(model) = &args.model else {
        bail!("--model is needed with --url: the model the server runs (a bundled id or a config.json)");
    };
    let aiperf = if args.aiperf && !args.dry_run {
        Some(calibrate_aiperf::prepare(args.tokenizer.as_deref())?)
    } else {
        None
    };
    let mut warnings = Vec::new();
    let server = if args.dry_run {
        None
    } else {
        let probe = probe_server(url, LIVE_TIMEOUT_S, CONNECT_TRIES, CONNECT_BACKOFF_S)?;
        Some(probe)
    };
    let description = match &server {
        Some(probe) => describe_from_server(args, probe, &mut warnings)?,
        None => EngineDescription::from_flags(args)?,
    };
    let served_model = match &server {
        Some(probe) => served_model_name(args, model, probe, &mut warnings)?,
        None => args.served_model.clone().unwrap_or_else(|| model.clone()),
    };
    let time_scale = server
        .as_ref()
        .and_then(|probe| probe.server_info.as_ref())
        .and_then(|info| info["time_scale"].as_f64())
        .filter(|scale| scale.is_finite() && *scale > 0.0)
        .unwrap_or(1.0);
    let (engine, notes) = engine_config(args, model, &description)?;
    let step = StepModel::new(engine.clone())?;
    let plan = plan(
        &step,
        &PlanConfig {
            budget_s: args.budget,
            per_point_overhead_s: if args.aiperf { AIPERF_OVERHEAD_S } else { BUILTIN_OVERHEAD_S },
            seed: args.seed,
        },
    )?;
    if args.dry_run {
        return Ok(Outcome::Done(if args.json {
            serde_json::to_string_pretty(&plan)?
        } else {
            plan_table(model, &step, &plan)
        }));
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    if time_scale != 1.0 {
        eprintln!(
            "note: the server is an sglsim twin running {time_scale}× faster than real time; measured times are scaled back by {time_scale}"
        );
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    eprint!("{}", plan_table(model, &step, &plan));

    let endpoint = match args.endpoint {
        EndpointFlag::Completions => Endpoint::Completions,
        EndpointFlag::Chat => Endpoint::Chat,
    };
    // The first request finds what the server accepts, before anything is written or run.
    let shape = match aiperf {
        None => negotiate_shape(url, &served_model, endpoint, args.seed, &mut warnings)?,
        Some(_) => RequestShape::default(),
    };
    let work_dir = work_dir(args);
    std::fs::create_dir_all(&work_dir).with_context(|| format!("cannot create {}", work_dir.display()))?;
    if !args.resume {
        clear_work_dir(&work_dir)?;
    }
    std::fs::write(work_dir.join("plan.json"), format!("{}\n", serde_json::to_string_pretty(&plan)?))
        .with_context(|| format!("cannot write {}", work_dir.join("plan.json").display()))?;
    let point_paths = match aiperf {
        None => {
            let sweep = LiveSweep {
                args,
                url,
                served_model: &served_model,
                endpoint,
                shape,
                work_dir: &work_dir,
                started: std::time::Instant::now(),
            };
            let mut pace = Pace::default();
            let mut paths = sweep.run_points("run", &plan.points, &mut pace, &mut warnings)?;
            paths.extend(sweep.pin_down_worst(model, &engine, &plan, &paths, time_scale, &mut pace, &mut warnings)?);
            paths
        }
        Some(executable) => {
            let setup = AiperfSetup {
                executable,
                tokenizer: args.tokenizer.clone().unwrap_or_default(),
                url: url.to_string(),
                served_model: served_model.clone(),
                endpoint,
                seed: args.seed,
                request_timeout_s: LIVE_TIMEOUT_S,
            };
            calibrate_aiperf::run_plan(&setup, &plan, &work_dir, args.resume, &mut warnings)?
        }
    };

    let mut ingested = Ingested::default();
    for path in &point_paths {
        ingest_path(path, &mut ingested)?;
    }
    prepare_for_fit(&mut ingested, time_scale);
    ingested.warnings.extend(at_returned_lengths(&mut ingested.points));
    ingested.warnings.splice(0..0, notes.into_iter().chain(warnings));
    fit_and_report(args, model, engine, &ingested, Some(&plan))
}

/// Mean output tokens of a records file's completed, measured requests (None without any).
fn mean_returned_tokens(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let returned: Vec<u64> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<BenchRecord>(line).ok())
        .filter(|r| r.status == RecordStatus::Ok && !r.warmup)
        .map(|r| r.output_tokens)
        .collect();
    (!returned.is_empty()).then(|| returned.iter().sum::<u64>() as f64 / returned.len() as f64)
}

/// Fits served points at the output length the server returned, where it ended requests before
/// the length asked for (a server that ignores or refuses `min_tokens`/`ignore_eos` stops at EOS);
/// returns a note per point changed.
fn at_returned_lengths(points: &mut [MeasuredPoint]) -> Vec<String> {
    let mut notes = Vec::new();
    for point in points.iter_mut() {
        let Workload::Served { osl_tokens, .. } = &mut point.workload else {
            continue;
        };
        let Some(mean) = mean_returned_tokens(&point.provenance.path) else {
            continue;
        };
        let returned = (mean.round() as u64).max(1);
        if returned != *osl_tokens {
            notes.push(format!(
                "{}: the server returned {mean:.1} output tokens on average, not the {} asked for; fitted at {returned}",
                point.provenance.path, osl_tokens
            ));
            *osl_tokens = returned;
        }
    }
    notes
}

/// Measured points as the fit takes them: in simulated time, without closed-loop TTFT above concurrency 1.
fn prepare_for_fit(ingested: &mut Ingested, time_scale: f64) {
    for point in &mut ingested.points {
        if time_scale != 1.0 {
            *point = in_simulated_time(point, time_scale);
        }
        // A closed loop's clients start together; the simulator batches their prefills, while over
        // HTTP they reach the server apart and the first is prefilled alone, so TTFT at concurrency
        // above 1 says more about arrival order than about the coefficients: fit those on TPOT.
        if matches!(point.workload, Workload::Served { load: Load::Concurrency(c), .. } if c > 1) {
            point.measured.ttft_ms = None;
        }
    }
}

/// Limit on the probe request, seconds: 16 tokens in and 4 out take well under a second on any
/// server that works, and a hung one should not hold the run for [`LIVE_TIMEOUT_S`].
const PROBE_TIMEOUT_S: f64 = 60.0;

/// One request of the sweep's shape (16 tokens in, 4 out), to learn what the server accepts.
fn probe_config(url: &str, served_model: &str, endpoint: Endpoint, seed: u64) -> BenchConfig {
    BenchConfig {
        url: url.to_string(),
        model: Some(served_model.to_string()),
        endpoint,
        workload: WorkloadSpec {
            isl: 16,
            osl: 4,
            lengths: LengthDistribution::Fixed,
            arrivals: Arrivals::Closed { concurrency: 1 },
            n_requests: 1,
            n_warmup: 0,
            seed,
        },
        timeout_s: PROBE_TIMEOUT_S,
        records_path: None,
        max_tries: CONNECT_TRIES,
        initial_backoff_s: CONNECT_BACKOFF_S,
    }
}

/// The error of one probe request of this shape, or None when it completed.
fn probe_error(config: &BenchConfig, shape: RequestShape) -> Result<Option<String>> {
    let outcome = run_bench_shaped(config, shape, &mut |_, _| {})?;
    Ok(outcome
        .records
        .iter()
        .find(|r| r.status == RecordStatus::Error)
        .map(|r| r.error.clone().unwrap_or_default()))
}

/// Finds request bodies the server accepts, from the exact (SGLang's extension fields, token ids)
/// to the plainest; says what it gave up; stops with the server's answers when nothing works.
fn negotiate_shape(url: &str, served_model: &str, endpoint: Endpoint, seed: u64, warnings: &mut Vec<String>) -> Result<RequestShape> {
    let config = probe_config(url, served_model, endpoint, seed);
    let mut shapes = vec![
        RequestShape::default(),
        RequestShape {
            length_extensions: false,
            token_id_prompts: true,
        },
    ];
    if endpoint == Endpoint::Completions {
        shapes.push(RequestShape {
            length_extensions: true,
            token_id_prompts: false,
        });
        shapes.push(RequestShape {
            length_extensions: false,
            token_id_prompts: false,
        });
    }
    let mut refusals: Vec<(RequestShape, String)> = Vec::new();
    for shape in shapes {
        let Some(error) = probe_error(&config, shape)? else {
            // The answer to the form that differed from the accepted one only in the field given up.
            let answer_to = |form: RequestShape| refusals.iter().find(|(s, _)| *s == form).map_or("", |(_, e)| e.as_str());
            let n_before = warnings.len();
            if !shape.length_extensions {
                warnings.push(format!(
                    "{url} refused SGLang's min_tokens/ignore_eos ({}): requests bound their length with max_tokens alone, \
                     and each point is fitted at the output length the server actually returned",
                    answer_to(RequestShape {
                        length_extensions: true,
                        ..shape
                    })
                ));
            }
            if !shape.token_id_prompts {
                warnings.push(format!(
                    "{url} refused token-id prompts ({}): sending text prompts of ISL words instead \
                     (input lengths are then approximate: the server's tokenizer decides them)",
                    answer_to(RequestShape {
                        token_id_prompts: true,
                        ..shape
                    })
                ));
            }
            for warning in &warnings[n_before..] {
                eprintln!("warning: {warning}");
            }
            return Ok(shape);
        };
        // Only a refusal of the request's form (HTTP 4xx) is worth another form.
        let refused = error.starts_with("http 4");
        refusals.push((shape, error));
        if !refused {
            break;
        }
    }
    let answers: Vec<&str> = refusals.iter().map(|(_, e)| e.as_str()).collect();
    bail!(
        "{url} answered no calibration request: {} (every request form was tried: with and without min_tokens/ignore_eos{})",
        answers.join("; "),
        if endpoint == Endpoint::Completions {
            ", token ids and text prompts"
        } else {
            ""
        }
    )
}

/// A point measured against a server running `factor` times faster than real time, in simulated time.
fn in_simulated_time(point: &MeasuredPoint, factor: f64) -> MeasuredPoint {
    let mut scaled = point.clone();
    scaled.measured = point.measured.in_simulated_time(factor);
    if let Workload::Served {
        load: Load::RequestRatePerS(rate),
        ..
    } = &mut scaled.workload
    {
        *rate /= factor;
    }
    scaled
}

/// `--work-dir`, or `<out without extension>.calibrate/` beside `--out`, or `calibrate-work/`.
fn work_dir(args: &CalibrateArgs) -> PathBuf {
    match (&args.work_dir, &args.out) {
        (Some(dir), _) => dir.clone(),
        (None, Some(out)) => out.with_extension("calibrate"),
        (None, None) => PathBuf::from("calibrate-work"),
    }
}

/// The name of a point's records in the work folder (without extension), from its workload.
pub(super) fn point_key(point: &PlanPoint) -> String {
    let phase = match point.phase {
        PlanPhase::Prefill => "prefill",
        PlanPhase::Decode => "decode",
        PlanPhase::Mixed => "mixed",
    };
    format!(
        "{phase}-isl{}-osl{}-c{}-n{}-w{}",
        point.isl_tokens, point.osl_tokens, point.concurrency, point.n_requests, point.n_warmup
    )
}

/// Whether a work-folder entry is a record this command writes (and may remove).
fn is_point_record(name: &str) -> bool {
    let point = ["prefill-", "decode-", "mixed-"].iter().any(|p| name.starts_with(p));
    (point && (name.ends_with(".jsonl") || name.ends_with(".aiperf")))
        || (name.starts_with("point_") && name.ends_with(".jsonl"))
        || name.starts_with(calibrate_aiperf::CALL_PREFIX)
}

/// Removes the records of an earlier calibration, so that they are not fitted with this one.
fn clear_work_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_point_record(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove the earlier record {}", path.display()))?;
    }
    Ok(())
}

/// Whether a records file holds every request of a point (warm-up included) for its workload, all completed.
fn builtin_records_complete(path: &Path, point: &PlanPoint) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let mut n_records = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let Ok(record) = serde_json::from_str::<BenchRecord>(line) else {
            return false;
        };
        // Warm-up requests of a closed loop carry staggered output lengths (`stagger_warmup`).
        let osl_matches = record.warmup || record.osl_requested == point.osl_tokens;
        if record.isl != point.isl_tokens || !osl_matches || record.concurrency != Some(point.concurrency) {
            return false;
        }
        // A point cut short (a server crash) is not complete, however many records it has.
        if record.status != RecordStatus::Ok {
            return false;
        }
        n_records += 1;
    }
    n_records == point.n_requests + point.n_warmup
}

/// Measured pace of the sweep: wall seconds spent on points against their plan estimates.
#[derive(Debug, Default)]
struct Pace {
    spent_s: f64,
    estimated_s: f64,
}

impl Pace {
    /// Wall seconds per estimated second so far (1 before any point ran).
    fn ratio(&self) -> f64 {
        if self.estimated_s > 0.0 && self.spent_s > 0.0 {
            self.spent_s / self.estimated_s
        } else {
            1.0
        }
    }
}

/// The built-in load generator's sweep against one server.
struct LiveSweep<'a> {
    args: &'a CalibrateArgs,
    url: &'a str,
    served_model: &'a str,
    endpoint: Endpoint,
    shape: RequestShape,
    work_dir: &'a Path,
    started: std::time::Instant,
}

/// Records of a point run that failed requests, set aside so neither the fit nor `--resume` takes them.
fn set_aside(records_path: &Path) -> PathBuf {
    records_path.with_extension("failed.jsonl")
}

impl LiveSweep<'_> {
    fn records_path(&self, point: &PlanPoint) -> PathBuf {
        self.work_dir.join(format!("{}.jsonl", point_key(point)))
    }

    /// Runs `points` (skipping those `--resume` finds complete, and those that would end past the
    /// budget at the measured pace); returns the records files of the points measured cleanly.
    fn run_points(&self, label: &str, points: &[PlanPoint], pace: &mut Pace, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>> {
        let complete: Vec<bool> = points
            .iter()
            .map(|point| self.args.resume && builtin_records_complete(&self.records_path(point), point))
            .collect();
        if self.args.resume {
            eprintln!(
                "resuming: {} of {} points have complete records in {}",
                complete.iter().filter(|c| **c).count(),
                points.len(),
                self.work_dir.display()
            );
        }
        let mut kept = Vec::new();
        for (index, point) in points.iter().enumerate() {
            let records_path = self.records_path(point);
            if complete[index] {
                kept.push(records_path);
                continue;
            }
            let elapsed_s = self.started.elapsed().as_secs_f64();
            let projected_s = point.estimated_s * pace.ratio();
            if elapsed_s + projected_s > self.args.budget {
                let warning = format!(
                    "{label} {}/{} ({}) skipped: at the measured pace ({:.2} s of wall time per planned second) it would end at {:.0} s, \
                     past the --budget of {:.0} s",
                    index + 1,
                    points.len(),
                    point_key(point),
                    pace.ratio(),
                    elapsed_s + projected_s,
                    self.args.budget
                );
                eprintln!("{warning}");
                warnings.push(warning);
                continue;
            }
            eprintln!(
                "{label} {}/{}: isl {} osl {} concurrency {} ({} requests)",
                index + 1,
                points.len(),
                point.isl_tokens,
                point.osl_tokens,
                point.concurrency,
                point.n_requests
            );
            let run_started = std::time::Instant::now();
            let clean = self.run_point(point, &records_path, index, warnings)?;
            pace.spent_s += run_started.elapsed().as_secs_f64();
            pace.estimated_s += point.estimated_s;
            if clean {
                kept.push(records_path);
            }
        }
        Ok(kept)
    }

    /// Runs one point, once more if requests failed; a point that fails twice is set aside with a
    /// warning (its survivors would bias the fit). Returns whether its records are clean.
    fn run_point(&self, point: &PlanPoint, records_path: &Path, index: usize, warnings: &mut Vec<String>) -> Result<bool> {
        let mut failures = String::new();
        for attempt in 1..=2 {
            for path in [records_path.to_path_buf(), set_aside(records_path)] {
                if path.exists() {
                    std::fs::remove_file(&path).with_context(|| format!("cannot replace {}", path.display()))?;
                }
            }
            let config = BenchConfig {
                url: self.url.to_string(),
                model: Some(self.served_model.to_string()),
                endpoint: self.endpoint,
                workload: workload_of(point, self.args.seed),
                timeout_s: LIVE_TIMEOUT_S,
                records_path: Some(records_path.to_path_buf()),
                max_tries: CONNECT_TRIES,
                initial_backoff_s: CONNECT_BACKOFF_S,
            };
            let outcome = run_bench_shaped(&config, self.shape, &mut |_, _| {}).with_context(|| {
                format!(
                    "live run {} of the plan (the points before it are kept in {}: add --resume to go on from there)",
                    index + 1,
                    self.work_dir.display()
                )
            })?;
            if outcome.errors.is_empty() {
                return Ok(true);
            }
            let n_failed: u64 = outcome.errors.values().sum();
            let kinds: Vec<String> = outcome.errors.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            failures = format!("{n_failed} of {} requests failed ({})", outcome.records.len(), kinds.join(", "));
            eprintln!("  attempt {attempt}: {failures}");
        }
        std::fs::rename(records_path, set_aside(records_path)).with_context(|| format!("cannot set aside {}", records_path.display()))?;
        warnings.push(format!(
            "{} dropped: {failures} twice; its records are kept in {} and left out of the fit",
            point_key(point),
            set_aside(records_path).display()
        ));
        Ok(false)
    }

    /// With budget left after the plan, fits what was measured, finds the fitted coefficient with
    /// the widest relative 95% interval, and runs the left-out points that move it most (while they
    /// fit the budget at the measured pace); returns their records files.
    #[allow(clippy::too_many_arguments)]
    fn pin_down_worst(
        &self,
        model: &str,
        engine: &sglsim::model::step::EngineConfig,
        plan: &CalibrationPlan,
        measured: &[PathBuf],
        time_scale: f64,
        pace: &mut Pace,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<PathBuf>> {
        let left_s = self.args.budget - self.started.elapsed().as_secs_f64();
        let affordable = |p: &PlanPoint| p.estimated_s * pace.ratio() <= left_s;
        if !plan.left_out.iter().any(affordable) {
            return Ok(Vec::new());
        }
        let mut ingested = Ingested::default();
        for path in measured {
            ingest_path(path, &mut ingested)?;
        }
        prepare_for_fit(&mut ingested, time_scale);
        at_returned_lengths(&mut ingested.points);
        let Some((worst, relative_width)) = worst_identified(self.args, engine, &ingested) else {
            return Ok(Vec::new());
        };
        let ranked = rank_by_sensitivity(engine, &plan.left_out, worst, self.args.seed)?;
        let chosen: Vec<PlanPoint> = ranked
            .into_iter()
            .filter(|(_, elasticity)| *elasticity > 0.0)
            .map(|(index, _)| plan.left_out[index].clone())
            .filter(affordable)
            .take(EXTRA_POINTS_MAX)
            .collect();
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        eprintln!(
            "{model}: {worst} is the least well pinned down (95% interval ±{:.0}% of its value); {} more run(s) to narrow it",
            relative_width * 50.0,
            chosen.len()
        );
        self.run_points("extra run", &chosen, pace, warnings)
    }
}

/// Extra points run at most to pin down the worst-identified coefficient.
const EXTRA_POINTS_MAX: usize = 3;

/// The fitted coefficient with the widest 95% interval relative to its value, and that width
/// (as a fraction of the value), from a quick fit (no leave-one-out) of the points measured so far.
fn worst_identified(args: &CalibrateArgs, engine: &sglsim::model::step::EngineConfig, ingested: &Ingested) -> Option<(&'static str, f64)> {
    let mut config = super::calibrate_cmd::fit_config(args, engine.clone());
    config.leave_one_out = sglsim::calibrate::fit::LeaveOneOut::Skip;
    let report = sglsim::calibrate::fit::fit(&ingested.points, &config, None).ok()?;
    report
        .fitted
        .iter()
        .filter_map(|c| {
            let [low, high] = c.ci95?;
            let width = (high - low) / c.fitted.abs().max(f64::MIN_POSITIVE);
            width.is_finite().then_some((c.name, width))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Whether two model names denote the same model: equal ignoring case, or equal last path parts
/// (`/models/Qwen3-8B` serves `Qwen/Qwen3-8B`).
fn same_model(a: &str, b: &str) -> bool {
    let last = |name: &str| name.trim_end_matches('/').rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    a.eq_ignore_ascii_case(b) || last(a) == last(b)
}

/// The `model` field of requests: `--served-model`, or the listed model that `--model` names.
fn served_model_name(args: &CalibrateArgs, model: &str, probe: &ServerProbe, warnings: &mut Vec<String>) -> Result<String> {
    let listed = probe.models.clone().unwrap_or_default();
    if let Some(served) = &args.served_model {
        if !listed.is_empty() && !listed.iter().any(|name| name == served) {
            bail!(
                "--served-model '{served}' is not among the models {} serves ({})",
                probe.base_url,
                listed.join(", ")
            );
        }
        return Ok(served.clone());
    }
    if listed.is_empty() {
        warnings.push(format!(
            "{} lists no models at /v1/models: requests name '{model}' (--served-model sets another name)",
            probe.base_url
        ));
        return Ok(model.to_string());
    }
    // A config.json path names no served model: take the only one served.
    let is_path = Path::new(model).exists() && !model.contains("://");
    match listed.iter().find(|name| same_model(name, model)) {
        Some(name) => Ok(name.clone()),
        None if is_path && listed.len() == 1 => Ok(listed[0].clone()),
        None => bail!(
            "{} serves {}, not '{model}' (--model): calibrate with the model the server runs, \
             or pass --served-model NAME to measure a model it serves under another name",
            probe.base_url,
            listed.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The engine measured: the flags, with what SGLang's `/get_server_info` reports filling the rest.
fn describe_from_server(args: &CalibrateArgs, probe: &ServerProbe, warnings: &mut Vec<String>) -> Result<EngineDescription> {
    let mut description = EngineDescription::from_flags(args)?;
    let Some(info) = &probe.server_info else {
        let given = args.tp.is_some() || args.server.max_running_requests.is_some() || args.max_total_tokens.is_some();
        warnings.push(format!(
            "{} does not answer /get_server_info (not an SGLang server?): the engine is described by the flags alone \
             (tp{} dp{} ep{}, SGLang's defaults for the rest){}",
            probe.base_url,
            description.tp,
            description.dp,
            description.ep,
            if given {
                ""
            } else {
                "; give --tp/--dp/--ep, --max-running-requests and --max-total-tokens (or --mem-fraction-static) to match the server"
            }
        ));
        return Ok(description);
    };
    let unsigned = |key: &str| info[key].as_u64().filter(|v| *v > 0);
    let mut reconcile = |flag: &str, given: Option<u64>, key: &str, target: &mut u32| {
        let Some(reported) = unsigned(key).and_then(|v| u32::try_from(v).ok()) else {
            return;
        };
        match given {
            Some(value) if value != u64::from(reported) => warnings.push(format!(
                "{flag} {value} given, but the server reports {key} {reported}; using {value}"
            )),
            Some(_) => {}
            None => *target = reported,
        }
    };
    reconcile("--tp", args.tp.map(u64::from), "tp_size", &mut description.tp);
    reconcile("--ep", args.ep.map(u64::from), "ep_size", &mut description.ep);
    // SGLang's dp_size without DP attention is replicas behind its router, not sglsim's --dp.
    if info["enable_dp_attention"].as_bool() != Some(false) {
        reconcile("--dp", args.dp.map(u64::from), "dp_size", &mut description.dp);
    } else if unsigned("dp_size").is_some_and(|dp| dp > 1) && args.dp.is_none() {
        warnings.push(format!(
            "the server runs {} data-parallel replicas without DP attention; sglsim calibrates one of them (--dp 1)",
            info["dp_size"]
        ));
    }
    let server = &mut description.server_args;
    let flags = &args.server;
    let mut fill_u64 = |flag: &str, given: Option<u64>, key: &str, target: &mut Option<u64>| match (given, unsigned(key)) {
        (Some(value), Some(reported)) if value != reported => warnings.push(format!(
            "{flag} {value} given, but the server reports {key} {reported}; using {value}"
        )),
        (None, Some(reported)) => *target = Some(reported),
        _ => {}
    };
    fill_u64(
        "--max-running-requests",
        flags.max_running_requests,
        "max_running_requests",
        &mut server.max_running_requests,
    );
    fill_u64(
        "--max-prefill-tokens",
        flags.max_prefill_tokens,
        "max_prefill_tokens",
        &mut server.max_prefill_tokens,
    );
    fill_u64(
        "--cuda-graph-max-bs",
        flags.cuda_graph_max_bs,
        "cuda_graph_max_bs",
        &mut server.cuda_graph_max_bs,
    );
    if flags.chunked_prefill_size.is_none() {
        if let Some(chunk) = info["chunked_prefill_size"].as_i64().filter(|c| *c == -1 || *c > 0) {
            server.chunked_prefill_size = Some(chunk);
        }
    }
    if flags.mem_fraction_static.is_none() {
        if let Some(fraction) = info["mem_fraction_static"].as_f64().filter(|f| *f > 0.0 && *f < 1.0) {
            server.mem_fraction_static = Some(fraction);
        }
    }
    if flags.page_size == 1 {
        if let Some(page) = unsigned("page_size") {
            server.page_size = page;
        }
    }
    if flags.stream_interval == 1 {
        if let Some(interval) = unsigned("stream_interval") {
            server.stream_interval = interval;
        }
    }
    if !flags.disable_overlap_schedule && info["disable_overlap_schedule"].as_bool() == Some(true) {
        server.overlap_schedule = OverlapSchedule::Off;
        server.overlap_flag_given = true;
    }
    server.enable_mixed_chunk |= info["enable_mixed_chunk"].as_bool() == Some(true);
    server.disable_radix_cache |= info["disable_radix_cache"].as_bool() == Some(true);
    if args.server.kv_cache_dtype == "auto" {
        if let Some(dtype) = info["kv_cache_dtype"].as_str().filter(|d| *d != "auto") {
            match KvDtype::parse_flag(dtype) {
                Ok(parsed) => server.kv_cache_dtype = Some(parsed),
                Err(error) => warnings.push(format!("the server's kv_cache_dtype: {error}")),
            }
        }
    }
    if flags.sglang_version.is_none() {
        server.sglang_version = info["version"].as_str().and_then(SglangVersion::parse);
    }
    if args.max_total_tokens.is_none() {
        description.kv_capacity_tokens_per_rank = unsigned("max_total_num_tokens");
    }
    Ok(description)
}
