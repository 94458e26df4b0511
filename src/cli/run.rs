//! Wiring of each subcommand: plan, call the library, report.

use std::io::Write;

use anyhow::{Context, Result};

use super::args::{KernelsArgs, ListArgs, PredictArgs, ValidateArgs};
use super::plan::{load_coefficients, predict_request};
use super::report::predict_table;
use sglsim::api::Prediction;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::model_catalog::{bundled_models, bundled_spec};

/// What a subcommand ended with.
pub enum Outcome {
    /// Success: print this.
    Done(String),
    /// The configuration does not fit: print this and exit 2.
    DoesNotFit(String),
    /// Nothing meets the SLA: print this and exit 1.
    NoFeasible(String),
    /// The run ended but failed its own bar (`bench --max-error-rate`): print the report, then the
    /// error on stderr, and exit 2.
    Failed {
        /// The report, as on success.
        report: String,
        /// Why the run counts as failed.
        error: String,
    },
}

/// `sglsim predict`.
pub fn predict(args: &PredictArgs) -> Result<Outcome> {
    match sglsim::predict(&predict_request(args))? {
        Prediction::DoesNotFit(report) => Ok(Outcome::DoesNotFit(if args.json {
            serde_json::to_string_pretty(&report)?
        } else {
            format!("does not fit: {}", report.reason)
        })),
        Prediction::Served { report, timeline, notes } => {
            for note in notes {
                eprintln!("{note}");
            }
            if let Some(path) = &args.timeline {
                write_timeline(path, &timeline)?;
            }
            Ok(Outcome::Done(if args.json {
                serde_json::to_string_pretty(&report)?
            } else {
                predict_table(&report)
            }))
        }
    }
}

fn write_timeline(path: &std::path::Path, records: &[sglsim::sim::cluster::IterationRecord]) -> Result<()> {
    let mut out = String::from("engine,start_ms,duration_ms,kind,batch_size,tokens,kv_used_tokens\n");
    for r in records {
        out.push_str(&format!(
            "{},{:.4},{:.4},{},{},{},{}\n",
            r.engine, r.start_ms, r.duration_ms, r.kind, r.batch_size, r.tokens, r.kv_used_tokens
        ));
    }
    std::fs::write(path, out).with_context(|| format!("cannot write timeline {}", path.display()))
}

/// `sglsim gpus`.
pub fn gpus(args: &ListArgs) -> Result<Outcome> {
    let catalog = GpuCatalog::builtin()?;
    if args.json {
        let rows: Vec<serde_json::Value> = catalog
            .all()
            .iter()
            .map(|g| {
                serde_json::json!({
                    "name": g.name, "aliases": g.aliases, "display_name": g.display_name,
                    "memory_gib": (g.memory_gib() * 10.0).round() / 10.0, "hbm_tb_s": g.hbm_bytes_per_s / 1e12,
                    "bf16_tflops": g.bf16_flops_per_s / 1e12, "fp8_tflops": g.fp8_flops_per_s.map(|f| f / 1e12),
                    "fp4_tflops": g.fp4_flops_per_s.map(|f| f / 1e12), "nvlink_gb_s": g.nvlink_bytes_per_s / 1e9,
                    "rdma_gb_s": g.rdma_bytes_per_s / 1e9, "gpus_per_node": g.gpus_per_node, "nvlink_domain_size": g.nvlink_domain_size,
                    "sources": g.sources,
                })
            })
            .collect();
        return Ok(Outcome::Done(serde_json::to_string_pretty(&rows)?));
    }
    let mut out = format!(
        "{:<14} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}  aliases\n",
        "gpu", "mem GiB", "HBM TB/s", "BF16 TF", "FP8 TF", "FP4 TF", "NVL GB/s", "RDMA GB/s", "domain"
    );
    let tf = |v: Option<f64>| v.map_or("-".to_string(), |f| format!("{:.0}", f / 1e12));
    for g in catalog.all() {
        out.push_str(&format!(
            "{:<14} {:>8.1} {:>8.2} {:>9.0} {:>9} {:>9} {:>9.0} {:>8.0} {:>6}  {}\n",
            g.name,
            g.memory_gib(),
            g.hbm_bytes_per_s / 1e12,
            g.bf16_flops_per_s / 1e12,
            tf(g.fp8_flops_per_s),
            tf(g.fp4_flops_per_s),
            g.nvlink_bytes_per_s / 1e9,
            g.rdma_bytes_per_s / 1e9,
            g.nvlink_domain_size,
            g.aliases.join(", ")
        ));
    }
    Ok(Outcome::Done(out))
}

/// `sglsim models`.
pub fn models(args: &ListArgs) -> Result<Outcome> {
    let mut rows = Vec::new();
    for model in bundled_models()? {
        let spec = bundled_spec(&model)?;
        let attention = match spec.attention {
            sglsim::model::arch::Attention::Gqa { n_heads, n_kv_heads, .. } => format!("GQA {n_heads}/{n_kv_heads}"),
            sglsim::model::arch::Attention::Mla { n_heads, .. } => format!("MLA {n_heads}"),
        };
        let moe = spec
            .moe
            .map_or("dense".to_string(), |m| format!("MoE {}x top{}", m.n_experts, m.top_k));
        rows.push((model, spec, attention, moe));
    }
    if args.json {
        let values: Vec<serde_json::Value> = rows
            .iter()
            .map(|(model, spec, attention, moe)| {
                serde_json::json!({
                    "id": model.id, "aliases": model.aliases, "architecture": spec.architecture,
                    "params_b": (spec.total_params() / 1e7).round() / 100.0, "active_params_b": (spec.active_params() / 1e7).round() / 100.0,
                    "layers": spec.n_layers, "attention": attention, "ffn": moe, "weights": spec.weights.headline().to_string(),
                    "source": model.source,
                })
            })
            .collect();
        return Ok(Outcome::Done(serde_json::to_string_pretty(&values)?));
    }
    let mut out = format!(
        "{:<38} {:>8} {:>8} {:>6} {:<10} {:<14} {}\n",
        "model", "params B", "active B", "layers", "attention", "ffn", "weights"
    );
    for (model, spec, attention, moe) in &rows {
        out.push_str(&format!(
            "{:<38} {:>8.1} {:>8.1} {:>6} {:<10} {:<14} {}\n",
            model.id,
            spec.total_params() / 1e9,
            spec.active_params() / 1e9,
            spec.n_layers,
            attention,
            moe,
            spec.weights.headline()
        ));
    }
    Ok(Outcome::Done(out))
}

/// Writes to stdout; a closed pipe is success.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `sglsim validate`.
pub fn validate(args: &ValidateArgs) -> Result<Outcome> {
    use sglsim::calibrate::measurements::parse_rows;
    use sglsim::calibrate::validate::{validate, GROUP_COLUMNS};
    for column in &args.group_by {
        if !GROUP_COLUMNS.contains(&column.as_str()) {
            anyhow::bail!("invalid --group-by column '{column}': one of {}", GROUP_COLUMNS.join(", "));
        }
    }
    let text = std::fs::read_to_string(&args.data).with_context(|| format!("cannot read {}", args.data.display()))?;
    let rows = parse_rows(&text, &args.data.display().to_string())?;
    let coefficients = load_coefficients(args.profile.as_deref())?;
    let validation = validate(&rows, &coefficients, &args.group_by)?;
    if args.json {
        return Ok(Outcome::Done(serde_json::to_string_pretty(&validation)?));
    }
    let mut out = format!(
        "{:<60} {:<10} {:>4} {:>10} {:>9} {:>13}\n",
        "group", "metric", "n", "median APE", "p90 APE", "median signed"
    );
    for g in &validation.groups {
        out.push_str(&format!(
            "{:<60} {:<10} {:>4} {:>9.1}% {:>8.1}% {:>12.1}%\n",
            g.group, g.metric, g.n, g.median_ape, g.p90_ape, g.median_signed
        ));
    }
    out.push_str(&format!(
        "\n{} rows compared, {} not modelled\n\n",
        validation.rows.len(),
        validation.unmodelled.len()
    ));
    out.push_str(&format!(
        "{:>4} {:<34} {:<9} {:<22} {:>12} {:>12} {:>8}\n",
        "row", "model", "gpu", "metric", "measured", "predicted", "error"
    ));
    for r in &validation.rows {
        let model = r.model.rsplit('/').next().unwrap_or(&r.model);
        out.push_str(&format!(
            "{:>4} {:<34} {:<9} {:<22} {:>12.2} {:>12.2} {:>+7.1}%\n",
            r.row, model, r.gpu, r.metric, r.measured, r.predicted, r.signed
        ));
    }
    if !validation.unmodelled.is_empty() {
        out.push_str("\nnot modelled:\n");
        for u in &validation.unmodelled {
            out.push_str(&format!("{:>4} {}\n", u.row, u.reason));
        }
    }
    Ok(Outcome::Done(out))
}

/// `sglsim kernels`.
pub fn kernels(args: &KernelsArgs) -> Result<Outcome> {
    use sglsim::calibrate::kernels::{
        family_errors, family_errors_with, fit_families, fit_moe_shapes, parse_collectives, parse_kernels, FIT_ORDER,
    };
    use sglsim::model::moe_shapes::MOE_SHAPES_HEADER;
    let gpu = GpuCatalog::builtin()?.find(&args.gpu)?.clone();
    let mut samples = Vec::new();
    for path in &args.kernels {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        samples.extend(parse_kernels(&text, &path.display().to_string())?);
    }
    for path in &args.collectives {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        samples.extend(parse_collectives(&text, &path.display().to_string())?);
    }
    if samples.is_empty() {
        anyhow::bail!("no usable samples: give --kernels and/or --collectives files written by tools/measure_kernels.py");
    }
    let start = load_coefficients(args.profile.as_deref())?;
    let before = family_errors(&samples, &gpu, &start);
    let fitted = if args.fit {
        Some(fit_families(&samples, &gpu, &start, FIT_ORDER)?)
    } else {
        None
    };
    // Shape factors are fitted on top of the fitted MoE coefficients, or of the starting ones when the
    // caller only wants the table (`--moe-shapes-out` without `--fit`).
    let moe_shapes = (args.fit || args.moe_shapes_out.is_some())
        .then(|| fit_moe_shapes(&samples, &gpu, fitted.as_ref().unwrap_or(&start)))
        .filter(|table| !table.is_empty());
    if let (Some(path), Some(table)) = (&args.moe_shapes_out, &moe_shapes) {
        let mut text = format!("{MOE_SHAPES_HEADER}\n");
        for row in table {
            text.push_str(&row.to_csv_line());
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let after = fitted.as_ref().map(|c| match &moe_shapes {
        Some(table) => family_errors_with(&samples, &gpu, c, table),
        None => family_errors(&samples, &gpu, c),
    });
    if args.json {
        let value = serde_json::json!({"gpu": gpu.name, "before": before, "after": after, "fitted": fitted});
        return Ok(Outcome::Done(serde_json::to_string_pretty(&value)?));
    }
    let mut out = format!(
        "{:<22} {:>4} {:>11} {:>9} {:>14}\n",
        "family", "n", "median APE", "p90 APE", "median signed"
    );
    let table = |out: &mut String, title: &str, rows: &[sglsim::calibrate::kernels::FamilyError]| {
        out.push_str(&format!("{title}\n"));
        for r in rows {
            out.push_str(&format!(
                "{:<22} {:>4} {:>10.1}% {:>8.1}% {:>13.1}%\n",
                r.family, r.n, r.median_ape, r.p90_ape, r.median_signed
            ));
        }
    };
    table(&mut out, "with the starting coefficients:", &before);
    if let (Some(after), Some(fitted)) = (&after, &fitted) {
        table(
            &mut out,
            if moe_shapes.is_some() {
                "after fitting each family's coefficients (and the MoE shape factors):"
            } else {
                "after fitting each family's coefficients:"
            },
            after,
        );
        out.push_str("\nfitted coefficients (TOML):\n");
        out.push_str(&toml::to_string(fitted)?);
    }
    Ok(Outcome::Done(out))
}
