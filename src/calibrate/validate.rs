//! Compares predictions with measurements: per-row error and per-group median/p90 absolute % error.
//!
//! Each distinct setup is simulated once; every row of that setup reads its metric from the run.
//! Rows that cannot be modelled are listed with the reason, never dropped silently.

use std::collections::BTreeMap;

use serde::Serialize;

use super::measurements::{metric_mapping, setup_of, MeasurementRow, Setup};
use super::saturated::{is_saturated_metric, saturated_setup, saturated_step, saturated_throughput};
use crate::model::arch::{ModelSpec, WeightFormats};
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuCatalog;
use crate::model::mapping::ParallelMapping;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::quant::{KvDtype, WeightDtype};
use crate::model::server_args::ServerArgs;
use crate::model::step::{EngineConfig, StepModel};
use crate::sim::cluster::{simulate, Deployment, Role, SimOptions};
use crate::sim::deploy::engine_spec;
use crate::sim::metrics::RunMetrics;
use crate::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};

/// One compared row.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// Row number in the file.
    pub row: usize,
    /// Source column (empty in the simple schema).
    pub source: String,
    /// Model.
    pub model: String,
    /// Catalog GPU.
    pub gpu: String,
    /// `agg`, `one_batch`, ...
    pub mode: String,
    /// Metric name as in the file.
    pub metric: String,
    /// `ttft`, `tpot`, `itl`, `e2e` or `throughput`.
    pub family: String,
    /// Measured value.
    pub measured: f64,
    /// Predicted value.
    pub predicted: f64,
    /// |predicted / measured − 1| × 100.
    pub ape: f64,
    /// (predicted / measured − 1) × 100.
    pub signed: f64,
}

/// Error statistics of one metric family within one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupResult {
    /// Group label (`all` without grouping).
    pub group: String,
    /// Metric family.
    pub metric: String,
    /// Rows.
    pub n: usize,
    /// Median absolute % error.
    pub median_ape: f64,
    /// 90th-percentile absolute % error.
    pub p90_ape: f64,
    /// Median signed % error (bias).
    pub median_signed: f64,
}

/// A row left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unmodelled {
    /// Row number in the file.
    pub row: usize,
    /// Why it cannot be modelled.
    pub reason: String,
}

/// The result of a validation.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Statistics per group and metric family.
    pub groups: Vec<GroupResult>,
    /// Every compared row.
    pub rows: Vec<RowResult>,
    /// Rows that could not be modelled.
    pub unmodelled: Vec<Unmodelled>,
}

/// Validates rows with the given coefficients; `group_by` names columns among `gpu`, `model`, `mode`, `source`, `metric`.
pub fn validate(rows: &[MeasurementRow], coefficients: &Coefficients, group_by: &[String]) -> super::Result<Validation> {
    let catalog = GpuCatalog::builtin()?;
    let mut runs: BTreeMap<String, std::result::Result<(RunMetrics, bool), String>> = BTreeMap::new();
    let mut results = Vec::new();
    let mut unmodelled = Vec::new();
    for row in rows {
        let metric = row.get("metric").to_string();
        if is_saturated_metric(&metric) {
            match saturated_row(row, &catalog, coefficients) {
                Ok(result) => results.push(result),
                Err(reason) => unmodelled.push(Unmodelled { row: row.row, reason }),
            }
            continue;
        }
        let Some(mapping) = metric_mapping(&metric) else {
            unmodelled.push(Unmodelled {
                row: row.row,
                reason: format!("metric '{metric}' is not one sglsim predicts"),
            });
            continue;
        };
        let measured = match measured_value(row) {
            Ok(value) => value,
            Err(reason) => {
                unmodelled.push(Unmodelled { row: row.row, reason });
                continue;
            }
        };
        let setup = match setup_of(row) {
            Ok(setup) => setup,
            Err(reason) => {
                unmodelled.push(Unmodelled { row: row.row, reason });
                continue;
            }
        };
        let key = format!(
            "{}{}",
            setup.key(),
            if metric == "server_log_gen_throughput" {
                " decode step"
            } else {
                ""
            }
        );
        let run = runs.entry(key).or_insert_with(|| {
            if metric == "server_log_gen_throughput" {
                decode_step_metrics(&setup, &catalog, coefficients).map(|metrics| (metrics, false))
            } else {
                run_setup(&setup, &catalog, coefficients)
            }
        });
        match run {
            Ok((metrics, overloaded)) => {
                let predicted = (mapping.extract)(metrics);
                let family = if *overloaded && mapping.family == "ttft" {
                    OVERLOAD_TTFT_FAMILY
                } else {
                    mapping.family
                };
                results.push(RowResult::new(row, &setup.model, &setup.gpu, family, measured, predicted));
            }
            Err(reason) => unmodelled.push(Unmodelled {
                row: row.row,
                reason: reason.clone(),
            }),
        }
    }
    let groups = summarise_groups(&results, group_by);
    Ok(Validation {
        groups,
        rows: results,
        unmodelled,
    })
}

/// A saturated-engine row (prefill-only or decode-only capacity, [`super::saturated`]) priced as one forward.
fn saturated_row(row: &MeasurementRow, catalog: &GpuCatalog, coefficients: &Coefficients) -> std::result::Result<RowResult, String> {
    let measured = measured_value(row)?;
    let setup = saturated_setup(row)?;
    let gpu = catalog.find(&setup.gpu).map_err(|e| e.to_string())?.clone();
    let step = saturated_step(&setup, bundled_model(&setup.model)?, gpu, coefficients)?;
    let predicted = saturated_throughput(&setup, &step);
    Ok(RowResult::new(row, &setup.model, &setup.gpu, "throughput", measured, predicted))
}

/// The row's measured value, which must be a positive number.
fn measured_value(row: &MeasurementRow) -> std::result::Result<f64, String> {
    match row.get("value").parse() {
        Ok(value) if value > 0.0 => Ok(value),
        _ => Err(format!("value '{}' is not a positive number", row.get("value"))),
    }
}

fn bundled_model(name: &str) -> std::result::Result<ModelSpec, String> {
    find_bundled_spec(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("model '{name}' is not bundled"))
}

impl RowResult {
    fn new(row: &MeasurementRow, model: &str, gpu: &str, family: &str, measured: f64, predicted: f64) -> RowResult {
        let signed = (predicted / measured - 1.0) * 100.0;
        RowResult {
            row: row.row,
            source: row.get("source").to_string(),
            model: model.to_string(),
            gpu: gpu.to_string(),
            mode: row.get("mode").to_string(),
            metric: row.get("metric").to_string(),
            family: family.to_string(),
            measured,
            predicted,
            ape: signed.abs(),
            signed,
        }
    }
}

/// A server log's decode-only step: `n_requests` = the batch, TPOT = one decode step at the context.
fn decode_step_metrics(setup: &Setup, catalog: &GpuCatalog, coefficients: &Coefficients) -> std::result::Result<RunMetrics, String> {
    let step = build_step(setup, catalog, coefficients)?;
    let batch = setup.workload.n_requests;
    let per_rank = batch.div_ceil(u64::from(step.mapping().dp()));
    let step_ms = step.decode_step_s(per_rank, setup.workload.isl).total_s * 1e3;
    let mut metrics = crate::sim::metrics::summarise(&[], &Default::default(), 1, None);
    metrics.n_requests = batch;
    metrics.tpot_ms = crate::sim::metrics::Distribution {
        mean: step_ms,
        p50: step_ms,
        p90: step_ms,
        p99: step_ms,
    };
    Ok(metrics)
}

/// The family of TTFT rows measured under open-loop overload.
pub const OVERLOAD_TTFT_FAMILY: &str = "ttft_overload";

/// Whether an open loop offers more prompt tokens per second than the engine can prefill at all
/// (the mean prompt prefilled alone, chunked as the server chunks it, on every DP rank): TTFT then
/// measures a queue that grows for the whole run, so its value is set by the run's length (the
/// number of prompts) more than by the server. `--request-rate inf` always is.
pub fn open_loop_overloaded(workload: &WorkloadSpec, step: &StepModel) -> bool {
    let rate_per_s = match workload.arrivals {
        Arrivals::Poisson { rate_per_s } => rate_per_s,
        Arrivals::AllAtOnce => return true,
        Arrivals::Closed { .. } | Arrivals::Trace => return false,
    };
    let mean_isl = match workload.lengths {
        LengthDistribution::Uniform { range_ratio } => workload.isl as f64 * (1.0 + range_ratio) / 2.0,
        LengthDistribution::Fixed | LengthDistribution::Normal { .. } => workload.isl as f64,
    }
    .max(1.0);
    let prefill_s = step.prefill_s(mean_isl.round() as u64);
    let capacity_tokens_per_s = mean_isl / prefill_s * f64::from(step.mapping().dp());
    rate_per_s * mean_isl > capacity_tokens_per_s
}

/// Simulates a row's setup; also says whether it is an open-loop overload ([`open_loop_overloaded`]).
fn run_setup(setup: &Setup, catalog: &GpuCatalog, coefficients: &Coefficients) -> std::result::Result<(RunMetrics, bool), String> {
    let step = build_step(setup, catalog, coefficients)?;
    let (isl, osl) = (setup.workload.isl, setup.workload.osl);
    crate::sim::limits::check_context(isl, osl, step.model().max_context_tokens).map_err(crate::sim::limits::strip_kind)?;
    let overloaded = open_loop_overloaded(&setup.workload, &step);
    let requests = generate_requests(&setup.workload).map_err(|e| e.to_string())?;
    let mut spec = engine_spec(&step, Role::Aggregated);
    if setup.offline_batch {
        spec.frontend_request_s = 0.0;
    }
    let deployment = Deployment {
        engines: vec![spec],
        transfer: None,
    };
    let options = SimOptions {
        arrivals: setup.workload.arrivals,
        sla: None,
        record_timeline: false,
    };
    simulate(&deployment, &requests, options)
        .map(|output| (output.metrics, overloaded))
        .map_err(|e| e.to_string())
}

fn build_step(setup: &Setup, catalog: &GpuCatalog, coefficients: &Coefficients) -> std::result::Result<StepModel, String> {
    let mut model = bundled_model(&setup.model)?;
    if let Some(dtype) = &setup.dtype {
        let dtype = WeightDtype::parse_flag(dtype).map_err(|e| e.to_string())?;
        if model.weights.headline() == WeightDtype::Bf16 {
            model.weights = WeightFormats::uniform(dtype);
        }
    }
    let gpu = catalog.find(&setup.gpu).map_err(|e| e.to_string())?.clone();
    let mapping = ParallelMapping::new(&model, setup.tp, setup.dp, setup.ep).map_err(|e| e.to_string())?;
    let mut server_args = ServerArgs::sglang_defaults();
    server_args.mem_fraction_static = setup.mem_fraction_static;
    server_args.stream_interval = setup.stream_interval;
    server_args.chunked_prefill_size = setup.chunked_prefill_size;
    server_args.max_running_requests = setup.max_running_requests;
    server_args.disable_radix_cache = setup.disable_radix_cache;
    server_args.sglang_version = setup.sglang_version;
    if setup.kv_cache_fp8 {
        server_args.kv_cache_dtype = Some(KvDtype::Fp8);
    }
    if setup.disable_cuda_graph {
        server_args.cuda_graph_max_bs = Some(0);
    }
    let step = StepModel::new(EngineConfig {
        model,
        gpu,
        mapping,
        server_args,
        coefficients: coefficients.clone(),
    })
    .map_err(|e| e.to_string())?;
    Ok(step)
}

fn summarise_groups(results: &[RowResult], group_by: &[String]) -> Vec<GroupResult> {
    let mut buckets: BTreeMap<(String, String), Vec<&RowResult>> = BTreeMap::new();
    for result in results {
        let label = if group_by.is_empty() {
            "all".to_string()
        } else {
            group_by
                .iter()
                .map(|column| {
                    let value = match column.as_str() {
                        "gpu" => result.gpu.as_str(),
                        "model" => result.model.as_str(),
                        "mode" => result.mode.as_str(),
                        "source" => result.source.as_str(),
                        "metric" => result.metric.as_str(),
                        _ => "?",
                    };
                    format!("{column}={value}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        buckets.entry((label, result.family.clone())).or_default().push(result);
    }
    buckets
        .into_iter()
        .map(|((group, metric), rows)| {
            let mut ape: Vec<f64> = rows.iter().map(|r| r.ape).collect();
            let mut signed: Vec<f64> = rows.iter().map(|r| r.signed).collect();
            GroupResult {
                group,
                metric,
                n: rows.len(),
                median_ape: quantile(&mut ape, 0.5),
                p90_ape: quantile(&mut ape, 0.9),
                median_signed: quantile(&mut signed, 0.5),
            }
        })
        .collect()
}

/// The `q`-quantile with linear interpolation (NumPy's default).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let position = q * (values.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    values[low] + (values[high] - values[low]) * (position - low as f64)
}

/// The accepted `--group-by` columns.
pub const GROUP_COLUMNS: &[&str] = &["gpu", "model", "mode", "source", "metric"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::measurements::parse_rows;

    #[test]
    fn rows_share_runs_and_errors_are_computed() {
        let text = "model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,512,,,1,decode_throughput_bs1,158.34,tok/s
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,512,,,1,median_tpot,6.3155,ms
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,512,,,1,energy_per_token,1,J
unknown/Model,h100,1,1,1,bf16,agg,1024,512,,,1,median_tpot,6,ms
";
        let rows = parse_rows(text, "t.csv").unwrap();
        let validation = validate(&rows, &Coefficients::defaults(), &[]).unwrap();
        assert_eq!(validation.rows.len(), 2);
        assert_eq!(validation.unmodelled.len(), 2);
        assert!(validation.unmodelled.iter().any(|u| u.reason.contains("not bundled")));
        // 1/TPOT and TPOT of the same run have reciprocal errors.
        let throughput = &validation.rows[0];
        let tpot = &validation.rows[1];
        assert!(((1.0 + throughput.signed / 100.0) * (1.0 + tpot.signed / 100.0) - 1.0).abs() < 0.01);
        assert_eq!(validation.groups.len(), 1);
        assert_eq!(validation.groups[0].n, 2);
    }

    #[test]
    fn open_loop_ttft_beyond_prefill_capacity_is_its_own_family() {
        // Llama-3.1-8B on one H100 prefills a 1024-token prompt in tens of ms: 1 req/s is far below
        // its prefill capacity, 200 req/s (about 200k prompt tokens/s) far above, `inf` always above.
        let text = "model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,64,,1,,median_ttft,60,ms
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,64,,200,,median_ttft,60,ms
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,64,,inf,,median_ttft,60,ms
meta-llama/Llama-3.1-8B-Instruct,h100,1,1,1,bf16,agg,1024,64,4,,,median_ttft,60,ms
";
        let rows = parse_rows(text, "t.csv").unwrap();
        let validation = validate(&rows, &Coefficients::defaults(), &[]).unwrap();
        let families: Vec<&str> = validation.rows.iter().map(|r| r.family.as_str()).collect();
        assert_eq!(families, ["ttft", OVERLOAD_TTFT_FAMILY, OVERLOAD_TTFT_FAMILY, "ttft"]);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert!((quantile(&mut [1.0, 2.0, 3.0, 4.0], 0.9) - 3.7).abs() < 1e-12);
    }
}
