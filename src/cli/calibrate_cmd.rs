//! `sglsim calibrate`: read measurements (or plan and run a short live sweep), fit coefficients, write a profile.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::calibrate_args::CalibrateArgs;
use super::plan::{load_coefficients, load_model_as, server_args};
use super::run::Outcome;
use sglsim::calibrate::fit::{fit, CoefficientChoice, CoefficientStatus, FitConfig, FitProgress, FitReport, FitStage, LeaveOneOut};
use sglsim::calibrate::ingest::{ingest_path, Ingested, MeasuredPoint, Workload};
use sglsim::calibrate::plan::{CalibrationPlan, PlanPhase};
use sglsim::calibrate::profile::{self, Profile, ProfileProvenance, ProfileSource};
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::mapping::ParallelMapping;
use sglsim::model::model_catalog::find_bundled_spec;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::{EngineConfig, StepModel};

/// Leave-one-out refits at most, and solver iterations per refit.
const LOO_MAX_POINTS: usize = 30;
const LOO_MAX_ITERS: u64 = 120;
/// Most requests simulated per served point in one objective evaluation.
const MAX_SIM_REQUESTS: u64 = 200;
/// Target rows printed in the table (all are in `--json`).
const MAX_TABLE_ROWS: usize = 40;

/// `sglsim calibrate`.
pub fn calibrate(args: &CalibrateArgs) -> Result<Outcome> {
    if let (Some(out), false) = (&args.out, args.dry_run) {
        check_writable(out)?;
    }
    match &args.url {
        Some(url) => super::calibrate_live::calibrate_live(args, url),
        None => calibrate_offline(args),
    }
}

/// Fails, naming `--out`, when the profile could not be written there: found before a sweep or a
/// fit spends minutes, not after. Leaves no file behind.
fn check_writable(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--out {} is a folder: give the profile's file path (e.g. {}/profile.json)",
            out.display(),
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!("--out {}: the folder {} does not exist", out.display(), parent.display());
    }
    let name = out.file_name().map_or("profile".into(), |n| n.to_string_lossy().into_owned());
    let probe = parent.join(format!(".{name}.{}.write-check", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("--out {}: cannot write in {}", out.display(), parent.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("cannot remove {}", probe.display()))?;
    if out.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(out)
            .with_context(|| format!("--out {}: cannot be overwritten", out.display()))?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file beside it and a rename, so that a failed
/// write never leaves a half-written profile in place of a good one.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().map_or("profile".into(), |n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, text).with_context(|| format!("cannot write profile {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write profile {}", path.display()))
}

/// The engine measured: parallel sizes and SGLang flags (from the flags, and with `--url` what the server reports).
pub(super) struct EngineDescription {
    /// `--tp`.
    pub tp: u32,
    /// `--dp`.
    pub dp: u32,
    /// `--ep`.
    pub ep: u32,
    /// SGLang's server flags.
    pub server_args: ServerArgs,
    /// KV capacity the engine reported or the user gave, tokens per rank.
    pub kv_capacity_tokens_per_rank: Option<u64>,
}

impl EngineDescription {
    /// The engine as the flags alone describe it.
    pub fn from_flags(args: &CalibrateArgs) -> Result<EngineDescription> {
        Ok(EngineDescription {
            tp: args.tp.unwrap_or(1),
            dp: args.dp.unwrap_or(1),
            ep: args.ep.unwrap_or(1),
            server_args: server_args(&args.server)?,
            kv_capacity_tokens_per_rank: args.max_total_tokens,
        })
    }
}

/// The engine measured, with the starting coefficients; notes say what was adjusted to match it.
pub(super) fn engine_config(
    args: &CalibrateArgs,
    model_name: &str,
    description: &EngineDescription,
) -> Result<(EngineConfig, Vec<String>)> {
    let model = load_model_as(model_name, args.dtype.as_deref())?;
    let gpu = GpuCatalog::builtin()?.find(&args.gpu)?.clone();
    let mapping = ParallelMapping::new(&model, description.tp, description.dp, description.ep).with_context(|| {
        // Sizes the flags did not give came from the server's /get_server_info: say so.
        let reported: Vec<String> = [
            ("tp", args.tp, description.tp),
            ("dp", args.dp, description.dp),
            ("ep", args.ep, description.ep),
        ]
        .iter()
        .filter(|(_, given, used)| given.is_none() && *used != 1)
        .map(|(name, _, used)| format!("{name}_size {used}"))
        .collect();
        if reported.is_empty() {
            "the engine's --tp/--dp/--ep".to_string()
        } else {
            format!(
                "the server reports {} (/get_server_info); give --tp/--dp/--ep to describe the engine yourself",
                reported.join(", ")
            )
        }
    })?;
    let mut engine = EngineConfig {
        model,
        gpu,
        mapping,
        server_args: description.server_args.clone(),
        coefficients: load_coefficients(args.profile.as_deref())?,
    };
    let mut notes = Vec::new();
    if let Some(tokens) = description.kv_capacity_tokens_per_rank {
        notes.extend(match_kv_capacity(&mut engine, tokens)?);
    }
    Ok((engine, notes))
}

/// KV capacities within this fraction of each other match.
const KV_MATCH_FRACTION: f64 = 0.01;

/// Sets `--mem-fraction-static` so the memory model gives `tokens_per_rank` of KV cache (it grows
/// with the fraction); returns a note when it changed it or cannot reach the capacity.
fn match_kv_capacity(engine: &mut EngineConfig, tokens_per_rank: u64) -> Result<Option<String>> {
    let capacity_at = |engine: &EngineConfig, fraction: Option<f64>| -> Result<(u64, f64)> {
        let mut trial = engine.clone();
        trial.server_args.mem_fraction_static = fraction;
        let step = StepModel::new_unchecked(trial)?;
        Ok((step.memory().kv_capacity_tokens_per_rank, step.memory().mem_fraction_static))
    };
    let target = tokens_per_rank as f64;
    let (current, current_fraction) = capacity_at(engine, engine.server_args.mem_fraction_static)?;
    if (current as f64 / target - 1.0).abs() <= KV_MATCH_FRACTION {
        return Ok(None);
    }
    let (mut low, mut high) = (0.05_f64, 0.99_f64);
    if capacity_at(engine, Some(high))?.0 < tokens_per_rank || capacity_at(engine, Some(low))?.0 > tokens_per_rank {
        return Ok(Some(format!(
            "the engine reports {tokens_per_rank} KV tokens per rank, which no --mem-fraction-static gives in sglsim's memory model \
             (it gives {current} at {current_fraction:.3}); keeping {current_fraction:.3}"
        )));
    }
    for _ in 0..50 {
        let middle = 0.5 * (low + high);
        if capacity_at(engine, Some(middle))?.0 < tokens_per_rank {
            low = middle;
        } else {
            high = middle;
        }
    }
    engine.server_args.mem_fraction_static = Some(high);
    Ok(Some(format!(
        "KV capacity {tokens_per_rank} tokens per rank: --mem-fraction-static {high:.4} in sglsim's memory model \
         (it gives {current} tokens at {current_fraction:.4})"
    )))
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

/// How `calibrate` fits: the flags' choice, prior, iterations and leave-one-out.
pub(super) fn fit_config(args: &CalibrateArgs, engine: EngineConfig) -> FitConfig {
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
    let fitted = model_name(args, &ingested).and_then(|model| {
        let (engine, notes) = engine_config(args, &model, &EngineDescription::from_flags(args)?)?;
        ingested.warnings.extend(notes);
        fit_and_report(args, &model, engine, &ingested, None)
    });
    if fitted.is_err() {
        // Without a report, the reasons files and rows were skipped would be lost with the error.
        for warning in &ingested.warnings {
            eprintln!("warning: {warning}");
        }
    }
    fitted
}

/// Fits, writes the profile to `--out`, and formats the report.
pub(super) fn fit_and_report(
    args: &CalibrateArgs,
    model: &str,
    engine: EngineConfig,
    ingested: &Ingested,
    plan: Option<&CalibrationPlan>,
) -> Result<Outcome> {
    let gpu_name = engine.gpu.name.clone();
    let (tp, dp, ep) = (engine.mapping.tp(), engine.mapping.dp(), engine.mapping.ep());
    let sglang_version = args
        .server
        .sglang_version
        .clone()
        .or_else(|| engine.server_args.sglang_version.map(|v| format!("{}.{}.{}", v.0, v.1, v.2)));
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
            tp,
            dp,
            ep,
            sglang_version,
            date: today(),
            sources: sources.clone(),
            fit: (&report).into(),
        },
    );
    let text = profile::to_json(&profile)?;
    if let Some(out) = &args.out {
        write_atomically(out, &format!("{text}\n"))?;
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
        "  fit: {}, {} iterations, {} evaluations ({}); cost {:.4} -> {:.4}\n\n",
        report.solver,
        report.iterations,
        report.evaluations,
        report.termination.to_lowercase(),
        report.cost_before,
        report.cost_after
    ));
    out.push_str("  coefficient                 start      fitted    change  sensitivity     std err  95% interval          status\n");
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
        let std_err = coefficient.std_err.map_or("-".to_string(), |e| format!("{e:.4}"));
        let interval = coefficient
            .ci95
            .map_or("-".to_string(), |[low, high]| format!("[{low:.4}, {high:.4}]"));
        out.push_str(&format!(
            "  {:<22} {:>10.4} {:>11.4} {:>8.1}% {:>12.3} {:>11}  {:<20}  {status}\n",
            coefficient.name, coefficient.start, coefficient.fitted, coefficient.change_pct, coefficient.sensitivity, std_err, interval
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

/// The plan as a table.
pub(super) fn plan_table(model: &str, step: &StepModel, plan: &CalibrationPlan) -> String {
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
