//! `sglsim search` and `sglsim profile`: build the search's configuration, call the library, report, write files.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::common_args::MappingFlags;
use super::plan::{
    apply_context_length, check_cuda_graph_max_bs, check_lengths, kv_cache_dtype, load_coefficients, load_model_as, shortfall, step_model,
};
use super::run::Outcome;
use super::search_args::{PercentileFlag, ProfileArgs, SearchArgs, SearchMode};
use sglsim::api::SearchRequest;
use sglsim::model::gpu::GpuCatalog;
use sglsim::model::server_args::ServerArgs;
use sglsim::model::step::StepModel;
use sglsim::search::config::{Load, SearchConfig};
use sglsim::search::dynamo::{self, DynamoProfile};
use sglsim::search::plot::{decode_figure, pareto_figure, prefill_figure, Figure};
use sglsim::search::result::{Point, SearchResult};

/// Builds the library's configuration from the flags (reads the model config and profile).
pub fn search_config(args: &SearchArgs) -> Result<SearchConfig> {
    Ok(search_request(args).config()?)
}

/// `search`'s flags as the library's request.
pub fn search_request(args: &SearchArgs) -> SearchRequest {
    SearchRequest {
        model: args.model.model.clone(),
        dtype: args.model.dtype.clone(),
        gpu: args.gpu.clone(),
        total_gpus: args.total_gpus,
        max_gpus_per_engine: args.max_gpus_per_engine,
        isl: args.isl,
        osl: args.osl,
        range_ratio: args.lengths.range_ratio,
        isl_std: args.lengths.isl_std,
        osl_std: args.lengths.osl_std,
        ttft: args.ttft,
        itl: args.itl,
        percentile: match args.percentile {
            PercentileFlag::Mean => "mean",
            PercentileFlag::P50 => "p50",
            PercentileFlag::P90 => "p90",
            PercentileFlag::P99 => "p99",
        }
        .into(),
        mode: match args.mode {
            SearchMode::Agg => "agg",
            SearchMode::Disagg => "disagg",
            SearchMode::Both => "both",
        }
        .into(),
        request_rate: args.request_rate,
        concurrency: args.concurrency,
        profile: args.profile.clone(),
        top: args.top,
        threads: args.threads,
        max_simulations: args.max_simulations,
        seed: args.seed,
        kv_cache_dtype: args.kv_cache_dtype.clone(),
        moe_a2a_backend: args.moe_a2a_backend.clone(),
        context_length: args.context_length,
    }
}

/// `sglsim search`.
pub fn search(args: &SearchArgs) -> Result<Outcome> {
    let config = search_config(args)?;
    let started = Instant::now();
    let result = sglsim::search::search(&config)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    if args.timing {
        eprintln!(
            "search: {} configurations screened, {} evaluated in the simulator, {:.1} ms wall",
            result.screened, result.evaluated, elapsed_ms
        );
    }
    for skipped in &result.skipped_gpus {
        eprintln!("warning: skipping {}: {}", skipped.gpu, skipped.reason);
    }
    if let Some(dir) = &args.out {
        write_search_files(dir, &config, &result, elapsed_ms)?;
    }
    let text = if args.json {
        let mut value = serde_json::to_value(&result)?;
        value["elapsed_ms"] = serde_json::json!((elapsed_ms * 1000.0).round() / 1000.0);
        serde_json::to_string_pretty(&value)?
    } else {
        search_table(&config, &result)
    };
    Ok(if result.has_feasible() {
        Outcome::Done(text)
    } else {
        Outcome::NoFeasible(text)
    })
}

/// Writes a file atomically: the bytes go to a temporary file beside it, which is then renamed over
/// it, so a reader sees the old file or the new one, never a half-written one.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = parent.join(format!(".{name}.sglsim-{}.tmp", std::process::id()));
    let written = std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// The file naming the configuration to launch; written only by a search that meets the SLA.
const SELECTED_CONFIG: &str = "selected_config.txt";
/// The file naming the nearest configuration when nothing meets the SLA; marked as such.
const NEAREST_CONFIG: &str = "nearest_config.txt";

fn write_search_files(dir: &Path, config: &SearchConfig, result: &SearchResult, elapsed_ms: f64) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "label",
        "mode",
        "gpu",
        "mapping",
        "xpyd",
        "replicas",
        "n_gpus",
        "concurrency",
        "request_rate",
        "ttft_ms",
        "itl_ms",
        "output_tok_s_per_gpu",
        "tok_s_per_user",
        "request_s",
        "feasible",
    ])?;
    for p in &result.pareto {
        csv.write_record([
            p.label.clone(),
            p.mode.to_string(),
            p.gpu.clone(),
            p.mapping.clone(),
            p.xpyd.clone().unwrap_or_default(),
            p.replicas.to_string(),
            p.n_gpus.to_string(),
            p.concurrency.map(|c| c.to_string()).unwrap_or_default(),
            p.request_rate.map(|r| r.to_string()).unwrap_or_default(),
            p.ttft_ms.to_string(),
            p.itl_ms.to_string(),
            p.output_tok_s_per_gpu.to_string(),
            p.tok_s_per_user.to_string(),
            p.request_s.to_string(),
            p.feasible.to_string(),
        ])?;
    }
    write(&dir.join("pareto.csv"), &csv.into_inner()?)?;
    let mut value = serde_json::to_value(result)?;
    value["points"] = serde_json::to_value(&result.points)?;
    value["elapsed_ms"] = serde_json::json!((elapsed_ms * 1000.0).round() / 1000.0);
    write(&dir.join("results.json"), serde_json::to_string_pretty(&value)?.as_bytes())?;
    write_figure(dir, "pareto", &pareto_figure(result, config.workload.isl, config.workload.osl))?;
    if !result.has_feasible() {
        return write_nearest(dir, result);
    }
    if let Some(best) = result.best() {
        if let Some((prefill, decode)) = result.step_models(best) {
            let caption = format!(
                "{} on {}: {} {}; ISL {} / OSL {}",
                result.model, best.gpu, best.mode, best.mapping, config.workload.isl, config.workload.osl
            );
            write_dynamo_folder(dir, &dynamo::profile(prefill, decode), &caption)?;
            write(&dir.join(SELECTED_CONFIG), selected_config(best).as_bytes())?;
            // A nearest configuration of an earlier failed run no longer describes this folder.
            let _ = std::fs::remove_file(dir.join(NEAREST_CONFIG));
        }
    }
    Ok(())
}

/// When nothing meets the SLA: the nearest configuration goes to its own file, marked as missing
/// the SLA; the selection of an earlier successful run (`selected_config.txt` and its Dynamo
/// profile) is left as it was, and a note on stderr says so.
fn write_nearest(dir: &Path, result: &SearchResult) -> Result<()> {
    if let Some(nearest) = result.best() {
        let mut text = String::from("# NO CONFIGURATION MEETS THE SLA: this is the nearest one, which misses it (see results.json)\n");
        text.push_str(&format!(
            "# TTFT {:.1} ms, ITL {:.2} ms against TTFT <= {} ms and ITL <= {} ms at {}\n",
            nearest.ttft_ms, nearest.itl_ms, result.sla.ttft_ms, result.sla.itl_ms, result.sla.percentile
        ));
        text.push_str(&selected_config(nearest));
        write(&dir.join(NEAREST_CONFIG), text.as_bytes())?;
    }
    let kept = dir.join(SELECTED_CONFIG);
    eprintln!(
        "note: nothing meets the SLA, so {} was not written{}; the nearest configuration is in {}",
        kept.display(),
        if kept.exists() {
            " (the file there is an earlier run's, left as it was)"
        } else {
            ""
        },
        dir.join(NEAREST_CONFIG).display()
    );
    Ok(())
}

fn selected_config(point: &Point) -> String {
    let mut text = format!("# {}\n", point.label);
    for engine in &point.engines {
        text.push_str(&format!("# {} × {:?}\n{}\n", engine.count, engine.role, engine.launch));
    }
    text
}

/// Writes a figure as `<name>.svg` and `<name>.png` side by side.
fn write_figure(dir: &Path, name: &str, figure: &Figure) -> Result<()> {
    let svg_name = format!("{name}.svg");
    write(&dir.join(&svg_name), figure.svg(&svg_name)?.as_bytes())?;
    let png_name = format!("{name}.png");
    write(&dir.join(&png_name), &figure.png(&png_name)?)
}

/// Writes the Dynamo profiler's folder: both archives, their JSON twins, the mocker's table and
/// two figures (SVG and PNG) whose titles carry `caption` (model, GPU, mapping, workload).
fn write_dynamo_folder(dir: &Path, profile: &DynamoProfile, caption: &str) -> Result<()> {
    write(&dir.join(dynamo::PREFILL_NPZ_PATH), &profile.prefill_npz()?)?;
    write(&dir.join(dynamo::DECODE_NPZ_PATH), &profile.decode_npz()?)?;
    write(&dir.join(dynamo::MOCKER_NPZ_PATH), &profile.mocker_npz()?)?;
    write(&dir.join("prefill_raw_data.json"), profile.prefill_json().as_bytes())?;
    write(&dir.join("decode_raw_data.json"), profile.decode_json().as_bytes())?;
    write_figure(dir, "prefill_performance", &prefill_figure(profile, caption))?;
    write_figure(dir, "decode_performance", &decode_figure(profile, caption))
}

fn load_column(point: &Point) -> String {
    match (point.concurrency, point.request_rate) {
        (Some(clients), _) => clients.to_string(),
        (None, Some(rate)) => format!("{rate}/s"),
        _ => "-".into(),
    }
}

/// The budget columns of a row: units of the point's unit that fit in `--total-gpus` (idle GPUs in
/// parentheses), their output tokens/s and requests/s.
fn budget_columns(point: &Point) -> (String, String, String) {
    match &point.budget {
        Some(b) => {
            let units = if b.idle_gpus > 0 {
                format!("{} (+{} idle)", b.units, b.idle_gpus)
            } else {
                b.units.to_string()
            };
            (units, format!("{:.1}", b.output_tok_s), format!("{:.2}", b.request_s))
        }
        None => ("-".into(), "-".into(), "-".into()),
    }
}

fn points_table(points: &[Point]) -> String {
    let mut out = format!(
        "  {:>2}  {:<6} {:<8} {:<30} {:>5} {:>9} {:>7} {:>9} {:>8} {:>10} {:>10} {:>8}  {:>13} {:>10} {:>8}\n",
        "#",
        "mode",
        "gpu",
        "mapping",
        "GPUs",
        "replicas",
        "load",
        "TTFT ms",
        "ITL ms",
        "tok/s/GPU",
        "tok/s/user",
        "req/s",
        "budget units",
        "tok/s",
        "req/s"
    );
    for (index, p) in points.iter().enumerate() {
        let replicas = p.xpyd.clone().unwrap_or_else(|| p.replicas.to_string());
        let (units, budget_tok_s, budget_request_s) = budget_columns(p);
        out.push_str(&format!(
            "  {:>2}  {:<6} {:<8} {:<30} {:>5} {:>9} {:>7} {:>9.1} {:>8.2} {:>10.1} {:>10.1} {:>8.2}  {:>13} {:>10} {:>8}\n",
            index + 1,
            p.mode,
            p.gpu,
            p.mapping,
            p.n_gpus,
            replicas,
            load_column(p),
            p.ttft_ms,
            p.itl_ms,
            p.output_tok_s_per_gpu,
            p.tok_s_per_user,
            p.request_s,
            units,
            budget_tok_s,
            budget_request_s
        ));
    }
    out
}

fn launch_commands(points: &[Point]) -> String {
    let mut out = String::new();
    for (index, p) in points.iter().enumerate() {
        out.push_str(&format!("  #{} {} ({} GPUs):\n", index + 1, p.label, p.n_gpus));
        for engine in &p.engines {
            out.push_str(&format!(
                "    {} × {:?}, {} GPUs each:\n      {}\n",
                engine.count, engine.role, engine.gpus_per_engine, engine.launch
            ));
        }
    }
    out
}

/// Why no configuration reached the simulator or came back from it: an open-loop rate that
/// saturates every candidate in the screen, or requests no simulated engine could hold.
fn nothing_simulated(config: &SearchConfig, result: &SearchResult) -> String {
    let limit = config.limits.describe();
    match config.load {
        Some(Load::RequestRate { rate_per_s }) => format!(
            ": none of the {} configurations screened serves {rate_per_s} requests/s: their prefill or decode slots saturate within {limit} (or a request does not fit their KV pool); lower --request-rate or allow more GPUs",
            result.screened
        ),
        _ => format!(
            ": none of the {} configurations screened could run these requests in the simulator (a request of --isl + --osl tokens does not fit their KV pool); allow larger engines or shorter requests",
            result.screened
        ),
    }
}

/// The human report of `search`.
pub fn search_table(config: &SearchConfig, result: &SearchResult) -> String {
    let sla = &result.sla;
    let limit = config.limits.describe();
    let mut out = format!(
        "{} on {} ({limit}): ISL {}, OSL {}; SLA TTFT ≤ {} ms and ITL ≤ {} ms at {}\n",
        result.model,
        result.gpus.join(", "),
        config.workload.isl,
        config.workload.osl,
        sla.ttft_ms,
        sla.itl_ms,
        sla.percentile
    );
    out.push_str(&format!(
        "{} configurations screened, {} simulated, {} meet the SLA\n\n",
        result.screened, result.evaluated, result.feasible
    ));
    if result.has_feasible() {
        out.push_str(&format!("best {} by output tokens/s per GPU within the SLA", result.top.len()));
        if result.top.len() < config.top_k {
            out.push_str(&format!(
                " (only {} distinct GPU, mode and mapping choices meet it; --top {} asked for more)",
                result.top.len(),
                config.top_k
            ));
        }
        out.push_str(":\n");
        out.push_str(&points_table(&result.top));
        if let Some(total) = config.limits.total_gpus {
            out.push_str(&format!(
                "  budget: copies of the row's unit (one engine or one xPyD unit) that fit in --total-gpus {total}, and what they serve together\n"
            ));
        }
        if result.gpus.len() > 1 {
            out.push_str("\nbest within the SLA per GPU type:\n");
            out.push_str(&points_table(&result.best_per_gpu));
        }
        out.push_str("\nlaunch commands:\n");
        out.push_str(&launch_commands(&result.top));
    } else {
        out.push_str("no feasible configuration");
        if result.binding.is_none() && result.evaluated == 0 {
            out.push_str(&nothing_simulated(config, result));
        }
        if let Some(binding) = &result.binding {
            out.push_str(&format!(
                ": {} is the binding limit: the nearest configuration reaches {} {} = {:.1} ms against {} ms (+{:.0}%); the lowest TTFT of any configuration is {:.1} ms and the lowest ITL {:.2} ms",
                binding.constraint,
                binding.constraint,
                sla.percentile,
                binding.value_ms,
                binding.limit_ms,
                binding.excess_percent,
                binding.lowest_ttft_ms,
                binding.lowest_itl_ms
            ));
        }
        out.push_str("\n\nnearest configurations:\n");
        out.push_str(&points_table(&result.nearest));
    }
    out.push_str(&format!(
        "\nPareto front ({} points, tokens/s per user ascending; * meets the SLA):\n",
        result.pareto.len()
    ));
    out.push_str(&format!(
        "  {:>10} {:>10} {:>9} {:>8}   configuration\n",
        "tok/s/user", "tok/s/GPU", "TTFT ms", "ITL ms"
    ));
    for p in &result.pareto {
        out.push_str(&format!(
            "  {:>10.1} {:>10.1} {:>9.1} {:>8.2} {} {}\n",
            p.tok_s_per_user,
            p.output_tok_s_per_gpu,
            p.ttft_ms,
            p.itl_ms,
            if p.feasible { "*" } else { " " },
            p.label
        ));
    }
    out
}

/// `sglsim profile`.
pub fn profile(args: &ProfileArgs) -> Result<Outcome> {
    let mut model = load_model_as(&args.model, args.dtype.as_deref())?;
    apply_context_length(&mut model, args.context_length)?;
    check_lengths(args.isl, args.osl, model.max_context_tokens)?;
    check_cuda_graph_max_bs(args.cuda_graph_max_bs)?;
    let gpu = GpuCatalog::builtin()?.find(&args.gpu)?.clone();
    let coefficients = load_coefficients(args.profile.as_deref())?;
    let mut server = ServerArgs::sglang_defaults();
    server.kv_cache_dtype = kv_cache_dtype(&args.kv_cache_dtype)?;
    server.chunked_prefill_size = args.chunked_prefill_size;
    server.cuda_graph_max_bs = args.cuda_graph_max_bs;
    server.mem_fraction_static = args.mem_fraction_static;
    let checked = |step: StepModel, role: &str| -> Result<StepModel> {
        if let Some(reason) = shortfall(&step) {
            bail!("{role} engine {} does not fit: {reason}", step.mapping());
        }
        Ok(step)
    };
    let sizes = MappingFlags {
        tp: args.tp,
        dp: args.dp,
        ep: args.ep,
    };
    let engine = |sizes| step_model(&model, &gpu, sizes, &server, &coefficients);
    let prefill = checked(engine(sizes)?, "prefill")?;
    let disaggregated = args.decode_tp.is_some() || args.decode_dp.is_some() || args.decode_ep.is_some();
    let decode = if disaggregated {
        let step = engine(sizes.with(args.decode_tp, args.decode_dp, args.decode_ep)).context("decode engine")?;
        Some(checked(step, "decode")?)
    } else {
        None
    };
    let decode_step = decode.as_ref().unwrap_or(&prefill);
    let profile = dynamo::profile(&prefill, decode_step);
    let caption = format!(
        "{} on {}: prefill {} ({}), decode {} ({}); ISL {} / OSL {}",
        model.name,
        gpu.name,
        prefill.mapping(),
        prefill.mapping().kind(),
        decode_step.mapping(),
        decode_step.mapping().kind(),
        args.isl,
        args.osl
    );
    write_dynamo_folder(&args.out, &profile, &caption)?;
    if args.json {
        return Ok(Outcome::Done(serde_json::to_string_pretty(&profile)?));
    }
    let context = args.isl + args.osl / 2;
    let mut out = format!(
        "{} on {}: prefill {} ({}), decode {} ({}); Dynamo profile written to {}\n",
        model.name,
        gpu.name,
        prefill.mapping(),
        prefill.mapping().kind(),
        decode_step.mapping(),
        decode_step.mapping().kind(),
        args.out.display()
    );
    out.push_str(&format!(
        "  prefill of {} tokens alone: {:.2} ms; KV capacity of the decode engine: {} tokens\n",
        args.isl,
        prefill.prefill_s(args.isl) * 1e3,
        decode_step.memory().kv_capacity_tokens
    ));
    out.push_str(&format!("  decode ITL at context {context}:"));
    let dp = u64::from(decode_step.mapping().dp());
    for concurrency in [1u64, 8, 32, 128] {
        let per_rank = concurrency.div_ceil(dp);
        out.push_str(&format!(
            " c{concurrency} {:.2} ms",
            decode_step.decode_step_s(per_rank, context).total_s * 1e3
        ));
    }
    out.push_str(&format!(
        "\n  {} prefill points, {} decode points, mocker grid {} × {}\n",
        profile.prefill.prefill_isl.len(),
        profile.decode.z_itl.len(),
        profile.mocker.decode_active_kv_tokens.len(),
        profile.mocker.decode_context_length.len()
    ));
    Ok(Outcome::Done(out))
}
