//! `sglsim calibrate`: read measurements (or plan and run a short live sweep), fit coefficients, write a profile.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::calibrate_args::CalibrateArgs;
use super::plan::{load_coefficients, load_model};
use super::run::Outcome;
use sglsim::calibrate::fit::{fit, CoefficientChoice, CoefficientStatus, FitConfig, FitProgress, FitReport, FitStage, LeaveOneOut};
use sglsim::calibrate::ingest::{ingest_path, Ingested, MeasuredPoint, Workload};
use sglsim::calibrate::loadgen::{run_bench_observed, BenchConfig, Endpoint};
use sglsim::calibrate::plan::{plan, workload_of, CalibrationPlan, PlanConfig, PlanPhase};
use sglsim::calibrate::profile::{self, Profile, ProfileProvenance, ProfileSource};
use sglsim::model::arch::WeightFormats;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::model_catalog::find_bundled_spec;
use sglsim::model::quant::WeightDtype;
use sglsim::model::server_args::{ServerArgs, SglangVersion};
use sglsim::model::step::{EngineConfig, StepModel};

/// Leave-one-out refits at most, and solver iterations per refit.
const LOO_MAX_POINTS: usize = 30;
const LOO_MAX_ITERS: u64 = 120;
/// Most requests simulated per served point in one objective evaluation.
const MAX_SIM_REQUESTS: u64 = 200;
/// Fixed cost of one live benchmark run, seconds (connection, warm-up, drain).
const PER_POINT_OVERHEAD_S: f64 = 2.0;
/// Limit on one live request, seconds.
const LIVE_TIMEOUT_S: f64 = 600.0;
/// Target rows printed in the table (all are in `--json`).
const MAX_TABLE_ROWS: usize = 40;

/// `sglsim calibrate`.
pub fn calibrate(args: &CalibrateArgs) -> Result<Outcome> {
    match &args.url {
        Some(url) => calibrate_live(args, url),
        None => calibrate_offline(args),
    }
}

/// The engine measured, with the starting coefficients.
fn engine_config(args: &CalibrateArgs, model_name: &str) -> Result<EngineConfig> {
    let mut model = load_model(model_name)?;
    if let Some(dtype) = &args.dtype {
        model.weights = WeightFormats::uniform(WeightDtype::parse_flag(dtype)?);
    }
    let gpu = GpuCatalog::builtin()?.find(&args.gpu)?.clone();
    let mapping = ParallelMapping::new(&model, args.tp, args.dp, args.ep)?;
    let mut server_args = ServerArgs::sglang_defaults();
    if let Some(text) = &args.sglang_version {
        server_args.sglang_version = Some(
            SglangVersion::parse(text)
                .with_context(|| format!("invalid --sglang-version '{text}': expected a release such as 0.4.5 or 0.5.5"))?,
        );
    }
    Ok(EngineConfig {
        model,
        gpu,
        mapping,
        server_args,
        coefficients: load_coefficients(args.profile.as_deref())?,
    })
}

/// `--model`, or the one bundled model the sources name.
fn model_name(args: &CalibrateArgs, ingested: &Ingested) -> Result<String> {
    if let Some(model) = &args.model {
        return Ok(model.clone());
    }
    let bundled: Vec<&String> = ingested
        .model_hints
        .iter()
        .filter(|name| find_bundled_spec(name).ok().flatten().is_some())
        .collect();
    match bundled.as_slice() {
        [one] => Ok((*one).clone()),
        _ => bail!(
            "--model is needed: the sources name {} (see `sglsim models`, or give a config.json)",
            if ingested.model_hints.is_empty() {
                "no model".to_string()
            } else {
                ingested.model_hints.join(", ")
            }
        ),
    }
}

fn fit_config(args: &CalibrateArgs, engine: EngineConfig) -> FitConfig {
    FitConfig {
        engine,
        choice: if args.coefficients.is_empty() {
            CoefficientChoice::Auto
        } else {
            CoefficientChoice::Named(args.coefficients.clone())
        },
        prior_weight: args.prior_weight,
        max_iters: args.max_iters,
        leave_one_out: if args.no_loo {
            LeaveOneOut::Skip
        } else {
            LeaveOneOut::Refit {
                max_iters: LOO_MAX_ITERS,
                max_points: LOO_MAX_POINTS,
            }
        },
        max_sim_requests: MAX_SIM_REQUESTS,
        seed: args.seed,
    }
}

/// Progress on stderr when it is a terminal: one line per stage, updated in place.
fn progress() -> Option<sglsim::calibrate::fit::ProgressFn> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Box::new(|progress: &FitProgress| {
        if !progress.iteration.is_multiple_of(10) {
            return;
        }
        let stage = match progress.stage {
            FitStage::Fit => "fit".to_string(),
            FitStage::LeaveOneOut { done, total, .. } => format!("leave-one-out {}/{total}", done + 1),
        };
        eprint!(
            "\r{stage}: iteration {}, cost {:.5}          ",
            progress.iteration, progress.best_cost
        );
    }))
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What `--json` prints after a fit.
#[derive(Serialize)]
struct CalibrateReport<'a> {
    profile: &'a Profile,
    fit: &'a FitReport,
    sources: Vec<ProfileSource>,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a CalibrationPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<String>,
}

/// What `--json` prints for `--from ... --dry-run`.
#[derive(Serialize)]
struct IngestReport<'a> {
    points: &'a [MeasuredPoint],
    sources: Vec<ProfileSource>,
    warnings: &'a [String],
}

fn calibrate_offline(args: &CalibrateArgs) -> Result<Outcome> {
    let mut ingested = Ingested::default();
    for path in &args.from {
        ingest_path(path, &mut ingested)?;
    }
    if args.dry_run {
        let sources: Vec<ProfileSource> = ingested.sources.iter().map(ProfileSource::from).collect();
        return Ok(Outcome::Done(if args.json {
            serde_json::to_string_pretty(&IngestReport {
                points: &ingested.points,
                sources,
                warnings: &ingested.warnings,
            })?
        } else {
            ingest_table(&ingested)
        }));
    }
    let model = model_name(args, &ingested)?;
    let engine = engine_config(args, &model)?;
    fit_and_report(args, &model, engine, &ingested, None)
}

fn fit_and_report(
    args: &CalibrateArgs,
    model: &str,
    engine: EngineConfig,
    ingested: &Ingested,
    plan: Option<&CalibrationPlan>,
) -> Result<Outcome> {
    let gpu_name = engine.gpu.name.clone();
    let config = fit_config(args, engine);
    let progress = progress();
    let interactive = progress.is_some();
    let report = fit(&ingested.points, &config, progress);
    if interactive {
        eprintln!();
    }
    let report = report?;
    let sources: Vec<ProfileSource> = ingested.sources.iter().map(ProfileSource::from).collect();
    let profile = Profile::new(
        &report,
        ProfileProvenance {
            gpu: gpu_name,
            model: model.to_string(),
            tp: args.tp,
            dp: args.dp,
            ep: args.ep,
            sglang_version: args.sglang_version.clone(),
            date: today(),
            sources: sources.clone(),
            fit: (&report).into(),
        },
    );
    let text = profile::to_json(&profile)?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{text}\n")).with_context(|| format!("cannot write profile {}", out.display()))?;
    }
    let mut warnings = ingested.warnings.clone();
    warnings.extend(report.warnings.iter().cloned());
    Ok(Outcome::Done(if args.json {
        serde_json::to_string_pretty(&CalibrateReport {
            profile: &profile,
            fit: &report,
            sources,
            warnings: &warnings,
            plan,
            written: args.out.as_ref().map(|p| p.display().to_string()),
        })?
    } else {
        fit_table(&profile, &report, ingested, &warnings, args.out.as_deref())
    }))
}

fn describe(workload: &Workload) -> String {
    match workload {
        Workload::Served {
            isl_tokens,
            osl_tokens,
            load,
            ..
        } => {
            let load = match load {
                sglsim::calibrate::ingest::Load::Concurrency(c) => format!("c={c}"),
                sglsim::calibrate::ingest::Load::RequestRatePerS(r) => format!("rate={r}"),
            };
            format!("served {load} {isl_tokens}/{osl_tokens}")
        }
        Workload::StaticBatch {
            batch,
            isl_tokens,
            osl_tokens,
        } => format!("batch {batch} {isl_tokens}/{osl_tokens}"),
        Workload::PrefillAlone { isl_tokens } => format!("prefill isl={isl_tokens}"),
        Workload::DecodeStep { batch, context_tokens } => format!("decode b={batch} ctx={context_tokens}"),
    }
}

fn ingest_table(ingested: &Ingested) -> String {
    let mut out = format!("read {} points from {} files\n", ingested.points.len(), ingested.sources.len());
    for source in &ingested.sources {
        out.push_str(&format!(
            "  {:<16} {:>3} points  {}\n",
            source.kind.name(),
            source.n_points,
            source.path
        ));
    }
    for warning in &ingested.warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    out.push_str("\n  workload                      ttft ms      tpot ms       itl ms\n");
    for point in &ingested.points {
        let central =
            |s: Option<sglsim::calibrate::ingest::Summary>| s.and_then(|s| s.central()).map_or("-".to_string(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "  {:<28} {:>8} {:>12} {:>12}\n",
            describe(&point.workload),
            central(point.measured.ttft_ms),
            central(point.measured.tpot_ms),
            central(point.measured.itl_ms)
        ));
    }
    out
}

fn fit_table(profile: &Profile, report: &FitReport, ingested: &Ingested, warnings: &[String], out_path: Option<&Path>) -> String {
    let provenance = &profile.provenance;
    let mut out = format!(
        "{} on {} (tp{} dp{} ep{}): {} points from {} files, {} targets\n",
        provenance.model,
        provenance.gpu,
        provenance.tp,
        provenance.dp,
        provenance.ep,
        report.n_points,
        ingested.sources.len(),
        report.targets.len()
    );
    out.push_str(&format!(
        "  fit: {} iterations, {} evaluations ({}); cost {:.4} -> {:.4}\n\n",
        report.iterations,
        report.evaluations,
        report.termination.to_lowercase(),
        report.cost_before,
        report.cost_after
    ));
    out.push_str("  coefficient                 start      fitted    change  sensitivity  status\n");
    for coefficient in &report.fitted {
        let status = match coefficient.status {
            CoefficientStatus::Moved => "moved",
            CoefficientStatus::Held => "held",
            CoefficientStatus::NotIdentified => "not identified",
        };
        let status = if coefficient.at_bound {
            format!("{status}, at its range's end")
        } else {
            status.to_string()
        };
        out.push_str(&format!(
            "  {:<22} {:>10.4} {:>11.4} {:>8.1}% {:>12.3}  {status}\n",
            coefficient.name, coefficient.start, coefficient.fitted, coefficient.change_pct, coefficient.sensitivity
        ));
    }
    out.push_str("\n  point                          metric         measured     before      after    LOO\n");
    for target in report.targets.iter().take(MAX_TABLE_ROWS) {
        let point = &ingested.points[target.target.point];
        let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let statistic = match target.target.statistic {
            sglsim::calibrate::fit::Statistic::Mean => "mean",
            sglsim::calibrate::fit::Statistic::P50 => "p50",
        };
        out.push_str(&format!(
            "  {:<30} {:<14} {:>9.2} {:>10} {:>10} {:>6}\n",
            describe(&point.workload),
            format!("{} {statistic}", target.target.metric.name()),
            target.target.measured,
            value(target.before),
            value(target.after),
            target.ape_leave_one_out_pct.map_or("-".to_string(), |v| format!("{v:.0}%"))
        ));
    }
    if report.targets.len() > MAX_TABLE_ROWS {
        out.push_str(&format!(
            "  ... {} more (--json lists all)\n",
            report.targets.len() - MAX_TABLE_ROWS
        ));
    }
    out.push_str(&format!(
        "\n  median |error|: before {:.1}%, after {:.1}%",
        report.median_ape_before_pct, report.median_ape_after_pct
    ));
    match report.loo_median_ape_pct {
        Some(loo) => out.push_str(&format!(", leave-one-out {loo:.1}% ({} refits)\n", report.n_loo_points)),
        None => out.push('\n'),
    }
    for warning in warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    if let Some(path) = out_path {
        out.push_str(&format!("  wrote {}\n", path.display()));
    }
    out
}

fn plan_table(model: &str, step: &StepModel, plan: &CalibrationPlan) -> String {
    let mut out = format!(
        "calibration plan for {model} on {} ({}): {} runs, about {:.0} s of a {:.0} s budget\n",
        step.gpu().name,
        step.mapping(),
        plan.points.len(),
        plan.estimated_s,
        plan.budget_s
    );
    out.push_str("  phase     isl    osl  concurrency  requests  est. s\n");
    for point in &plan.points {
        let phase = match point.phase {
            PlanPhase::Prefill => "prefill",
            PlanPhase::Decode => "decode",
            PlanPhase::Mixed => "mixed",
        };
        out.push_str(&format!(
            "  {phase:<8} {:>5} {:>6} {:>12} {:>9} {:>7.1}\n",
            point.isl_tokens, point.osl_tokens, point.concurrency, point.n_requests, point.estimated_s
        ));
    }
    if !plan.left_out.is_empty() {
        let left: f64 = plan.left_out.iter().map(|p| p.estimated_s).sum();
        out.push_str(&format!(
            "  {} more runs (about {left:.0} s) left out for the budget\n",
            plan.left_out.len()
        ));
    }
    out
}

fn calibrate_live(args: &CalibrateArgs, url: &str) -> Result<Outcome> {
    let Some(model) = &args.model else {
        bail!("--model is needed with --url: the model the server runs (a bundled id or a config.json)");
    };
    let engine = engine_config(args, model)?;
    let step = StepModel::new(engine.clone())?;
    let plan = plan(
        &step,
        &PlanConfig {
            budget_s: args.budget,
            per_point_overhead_s: PER_POINT_OVERHEAD_S,
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
    eprint!("{}", plan_table(model, &step, &plan));
    let records_dir = args.records_dir.clone().unwrap_or_else(|| match &args.out {
        Some(out) => PathBuf::from(format!("{}.records", out.display())),
        None => PathBuf::from("calibrate-records"),
    });
    std::fs::create_dir_all(&records_dir).with_context(|| format!("cannot create {}", records_dir.display()))?;
    // Records of an earlier plan in the same folder would be fitted too: remove them.
    for entry in std::fs::read_dir(&records_dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("point_") && name.ends_with(".jsonl") {
            std::fs::remove_file(entry.path()).with_context(|| format!("cannot replace {}", entry.path().display()))?;
        }
    }
    for (index, point) in plan.points.iter().enumerate() {
        let records_path = records_dir.join(format!("point_{index:02}.jsonl"));
        let config = BenchConfig {
            url: url.to_string(),
            model: None,
            endpoint: Endpoint::Completions,
            workload: workload_of(point, args.seed),
            timeout_s: LIVE_TIMEOUT_S,
            records_path: Some(records_path.clone()),
            max_tries: 3,
            initial_backoff_s: 0.5,
        };
        eprintln!(
            "run {}/{}: isl {} osl {} concurrency {} ({} requests)",
            index + 1,
            plan.points.len(),
            point.isl_tokens,
            point.osl_tokens,
            point.concurrency,
            point.n_requests
        );
        let outcome = run_bench_observed(&config, &mut |_, _| {}).with_context(|| format!("live run {} of the plan", index + 1))?;
        if !outcome.errors.is_empty() {
            eprintln!("  failed requests: {:?}", outcome.errors);
        }
    }
    let mut ingested = Ingested::default();
    ingest_path(&records_dir, &mut ingested)?;
    fit_and_report(args, model, engine, &ingested, Some(&plan))
}
