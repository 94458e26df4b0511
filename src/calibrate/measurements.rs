//! Measurement rows and the SGLang setup each describes.
//!
//! Two CSV schemas are read: the published dev set's (`source, date, sglang_version, model, dtype,
//! gpu, num_gpus, tp, ep, dp, mode, isl, osl, concurrency, request_rate, batch_size, metric, value,
//! unit, notes`) and a simpler one (`model, gpu, tp, dp, ep, dtype, mode, isl, osl, concurrency,
//! request_rate, batch, metric, value, unit`, optional `notes`). SGLang flags and benchmark settings
//! that matter are read from `notes` (`--mem-fraction-static`, `--stream-interval`, range ratio,
//! number of prompts, measured mean lengths, ...). A row that cannot be modelled yields a reason.

use std::collections::BTreeMap;

use super::error::{Error, Result};
use crate::model::server_args::SglangVersion;
use crate::sim::limits;
use crate::sim::metrics::RunMetrics;
use crate::sim::workload::{steady_state_warmup, Arrivals, LengthDistribution, WorkloadSpec};

/// One measured value and its setup, as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementRow {
    /// 1-based data row number in the file.
    pub row: usize,
    /// Fields by column name (the simple schema's `batch` is stored as `batch_size`).
    pub fields: BTreeMap<String, String>,
}

impl MeasurementRow {
    /// A field, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(|v| v.trim()).unwrap_or("")
    }
}

/// Reads measurement rows from CSV text; `path` names the file in errors.
pub fn parse_rows(text: &str, path: &str) -> Result<Vec<MeasurementRow>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::BadFile {
            path: path.into(),
            message: e.to_string(),
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for required in ["model", "gpu", "metric", "value"] {
        if !headers.iter().any(|h| h == required) {
            return Err(Error::BadFile {
                path: path.into(),
                message: format!("missing column '{required}'; columns are {}", headers.join(", ")),
            });
        }
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::BadFile {
            path: path.into(),
            message: format!("row {}: {e}", index + 1),
        })?;
        let fields = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (if h == "batch" { "batch_size".to_string() } else { h.clone() }, v.to_string()))
            .collect();
        rows.push(MeasurementRow { row: index + 1, fields });
    }
    Ok(rows)
}

/// Which simulated statistic a measured metric corresponds to, and its family.
#[derive(Debug, Clone, Copy)]
pub struct MetricMapping {
    /// `ttft`, `tpot`, `itl`, `e2e` or `throughput`.
    pub family: &'static str,
    /// Extracts the predicted value in the row's unit from simulated metrics.
    pub extract: fn(&RunMetrics) -> f64,
}

/// Maps a metric name of the dev set to a simulated statistic; `None` for metrics not modelled.
pub fn metric_mapping(metric: &str) -> Option<MetricMapping> {
    fn m(family: &'static str, extract: fn(&RunMetrics) -> f64) -> Option<MetricMapping> {
        Some(MetricMapping { family, extract })
    }
    fn rate(per_ms: f64) -> f64 {
        if per_ms > 0.0 {
            1e3 / per_ms
        } else {
            0.0
        }
    }
    match metric {
        "median_ttft" => m("ttft", |r| r.ttft_ms.p50),
        "mean_ttft" => m("ttft", |r| r.ttft_ms.mean),
        "p99_ttft" => m("ttft", |r| r.ttft_ms.p99),
        "median_itl" => m("itl", |r| r.itl_ms.p50),
        "mean_itl" => m("itl", |r| r.itl_ms.mean),
        "median_tpot" => m("tpot", |r| r.tpot_ms.p50),
        "mean_tpot" => m("tpot", |r| r.tpot_ms.mean),
        "decode_throughput_bs1" => m("tpot", |r| rate(r.tpot_ms.mean)),
        "median_e2e_latency" => m("e2e", |r| r.e2e_ms.p50),
        "mean_e2e_latency" => m("e2e", |r| r.e2e_ms.mean),
        "output_throughput" => m("throughput", |r| r.throughput.output_tok_s),
        // A server log's decode-only steps: batch / step time (the setup is a static batch of that size).
        "server_log_gen_throughput" => m("tpot", |r| r.n_requests as f64 * rate(r.tpot_ms.mean)),
        "input_throughput" => m("throughput", |r| r.throughput.input_tok_s),
        "request_throughput" => m("throughput", |r| r.throughput.request_s),
        _ => None,
    }
}

/// The SGLang setup and workload of a row, as plain values (resolved against catalogs later).
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Model id as written.
    pub model: String,
    /// Catalog GPU name.
    pub gpu: String,
    /// `--tp`, `--dp`, `--ep`.
    pub tp: u32,
    /// DP-attention size.
    pub dp: u32,
    /// Expert-parallel size.
    pub ep: u32,
    /// `--dtype` override (only to narrow a bf16 checkpoint to fp8).
    pub dtype: Option<String>,
    /// `--mem-fraction-static`.
    pub mem_fraction_static: Option<f64>,
    /// `--stream-interval`.
    pub stream_interval: u64,
    /// `--chunked-prefill-size`.
    pub chunked_prefill_size: Option<i64>,
    /// `--max-running-requests`.
    pub max_running_requests: Option<u64>,
    /// `--kv-cache-dtype` fp8.
    pub kv_cache_fp8: bool,
    /// `--disable-cuda-graph`.
    pub disable_cuda_graph: bool,
    /// `--disable-radix-cache` (benchmarks use random prompts, so hits are rare either way).
    pub disable_radix_cache: bool,
    /// The SGLang release of the row (its defaults apply).
    pub sglang_version: Option<SglangVersion>,
    /// The benchmark client's workload.
    pub workload: WorkloadSpec,
    /// A static batch handed to the engine directly (`bench_one_batch`), with no server front end.
    pub offline_batch: bool,
}

impl Setup {
    /// A key identifying rows that share one simulation.
    pub fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// Resolves a row to a setup, or says why it cannot be modelled.
pub fn setup_of(row: &MeasurementRow) -> std::result::Result<Setup, String> {
    let notes = row.get("notes");
    let lower_notes = notes.to_ascii_lowercase();
    let mode = row.get("mode").to_ascii_lowercase();
    if mode.contains("disagg") {
        return Err(format!(
            "disaggregated row ('{}'): per-role mappings and worker counts are not given in the row",
            row.get("mode")
        ));
    }
    let gpu = gpu_name(row.get("gpu")).ok_or_else(|| format!("GPU '{}' is not in the catalog", row.get("gpu")))?;
    let integer = |name: &str, default: u32| -> std::result::Result<u32, String> {
        match row.get(name) {
            "" => Ok(default),
            text => text.parse().map_err(|_| format!("{name} '{text}' is not a number of GPUs")),
        }
    };
    let tp = integer("tp", 1)?;
    let dp = integer("dp", 1)?;
    let ep = integer("ep", 1)?;
    let dtype = match row.get("dtype").to_ascii_lowercase().as_str() {
        "fp8" if lower_notes.contains("--quantization fp8") || !row.get("model").to_ascii_lowercase().contains("deepseek") => {
            Some("fp8".to_string())
        }
        _ => None,
    };
    let number_after = |keys: &[&str]| -> Option<f64> {
        keys.iter().find_map(|key| {
            let at = lower_notes.find(key)? + key.len();
            let rest = lower_notes[at..].trim_start_matches([' ', '=', ':']);
            let token: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-').collect();
            token.trim_end_matches('.').parse().ok()
        })
    };
    let range_ratio = if lower_notes.contains("range_ratio left at default (0.0") {
        Some(0.0)
    } else {
        number_after(&["--random-range-ratio", "random_range_ratio", "range_ratio"])
    };
    let (isl, osl, lengths) = match (row.get("isl").parse::<u64>(), row.get("osl").parse::<u64>()) {
        (Ok(isl), Ok(osl)) => {
            let lengths = match range_ratio {
                Some(ratio) if ratio < 1.0 => LengthDistribution::Uniform { range_ratio: ratio },
                _ => LengthDistribution::Fixed,
            };
            (isl, osl, lengths)
        }
        _ if row.get("isl").eq_ignore_ascii_case("sharegpt") => {
            // ShareGPT lengths: the measured means from the notes (bench_serving's ShareGPT averages
            // about 224 in / 189 out per the DataCrunch runs), drawn uniformly up to twice the mean.
            let mean_in = number_after(&["actual mean input"]).unwrap_or(224.0);
            let mean_out = number_after(&["mean output"]).unwrap_or(189.0);
            (
                (2.0 * mean_in) as u64,
                (2.0 * mean_out) as u64,
                LengthDistribution::Uniform { range_ratio: 0.0 },
            )
        }
        _ if row.get("metric") == "server_log_gen_throughput" => {
            // "#running-req B, #token N": B requests decoding with N KV tokens in all; one decode step.
            let batch = row
                .get("batch_size")
                .parse::<f64>()
                .map_err(|_| "server-log row without a batch size".to_string())?;
            let kv_tokens = number_after(&["#token"]).ok_or_else(|| "server-log row without '#token N' in its notes".to_string())?;
            ((kv_tokens / batch).round().max(1.0) as u64, 2, LengthDistribution::Fixed)
        }
        _ => {
            return Err(format!(
                "input/output lengths '{}'/'{}' are not token counts",
                row.get("isl"),
                row.get("osl")
            ))
        }
    };
    let num_prompts = number_after(&["num_prompts", "--num-prompts", "num-prompts"]).map(|n| n as u64);
    let mut offline_batch = false;
    let (arrivals, n_requests) = if let Ok(concurrency) = row.get("concurrency").parse::<u64>() {
        limits::check_concurrency("concurrency", concurrency).map_err(limits::strip_kind)?;
        (
            Arrivals::Closed { concurrency },
            num_prompts.unwrap_or_else(|| limits::default_closed_loop_requests(concurrency)),
        )
    } else if !row.get("request_rate").is_empty() {
        match row.get("request_rate").to_ascii_lowercase().as_str() {
            "inf" => (Arrivals::AllAtOnce, num_prompts.unwrap_or(1000)),
            text => match text.parse::<f64>() {
                Ok(rate) if rate > 0.0 => (Arrivals::Poisson { rate_per_s: rate }, num_prompts.unwrap_or(1000)),
                _ => return Err(format!("request_rate '{text}' is not a rate")),
            },
        }
    } else if let Ok(batch) = row.get("batch_size").parse::<u64>() {
        offline_batch = true;
        (Arrivals::AllAtOnce, batch)
    } else {
        return Err("no concurrency, request rate or batch size".into());
    };
    limits::total_requests(n_requests.max(1), 0).map_err(limits::strip_kind)?;
    if let Arrivals::Poisson { rate_per_s } = arrivals {
        limits::check_poisson_span(rate_per_s, n_requests).map_err(limits::strip_kind)?;
    }
    Ok(Setup {
        model: row.get("model").to_string(),
        gpu,
        tp,
        dp,
        ep,
        dtype,
        mem_fraction_static: number_after(&["--mem-fraction-static", "--mem-frac", "mem_frac", "mem_fraction_static"])
            .filter(|f| *f > 0.0 && *f < 1.0),
        stream_interval: number_after(&["--stream-interval", "stream_interval"])
            .map(|v| v as u64)
            .filter(|v| *v >= 1)
            .unwrap_or(1),
        chunked_prefill_size: number_after(&["--chunked-prefill-size"]).map(|v| v as i64),
        max_running_requests: number_after(&["--max-running-requests"]).map(|v| v as u64),
        kv_cache_fp8: lower_notes.contains("--kv-cache-dtype fp8"),
        disable_cuda_graph: lower_notes.contains("--disable-cuda-graph"),
        disable_radix_cache: lower_notes.contains("--disable-radix-cache"),
        sglang_version: SglangVersion::parse(row.get("sglang_version")),
        workload: WorkloadSpec {
            isl,
            osl,
            lengths,
            arrivals,
            n_requests: n_requests.max(1),
            n_warmup: steady_state_warmup(arrivals),
            seed: 0,
        },
        offline_batch,
    })
}

/// Maps the GPU spellings of published tables to catalog names.
pub fn gpu_name(text: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("GB200") {
        "gb200"
    } else if upper.starts_with("GB300") {
        "gb300"
    } else if upper.starts_with("B200") {
        "b200"
    } else if upper.starts_with("B300") {
        "b300"
    } else if upper.starts_with("H200") {
        "h200"
    } else if upper.starts_with("H100") && upper.contains("PCIE") {
        "h100-pcie"
    } else if upper.starts_with("H100") && !upper.contains("AMBIGUOUS") {
        "h100-sxm"
    } else if upper.starts_with("H20") {
        "h20"
    } else if upper.starts_with("A100") && upper.contains("40") {
        "a100-40g"
    } else if upper.starts_with("A100") {
        "a100-80g"
    } else if upper.starts_with("L40S") {
        "l40s"
    } else {
        return None;
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_ROWS: &str = "source,date,sglang_version,model,dtype,gpu,num_gpus,tp,ep,dp,mode,isl,osl,concurrency,request_rate,batch_size,metric,value,unit,notes
x,2024-12,0.4.0,meta-llama/Llama-3.3-70B-Instruct,bf16,H200-SXM-141GB,4,4,1,1,agg,1024,1024,,8,,median_itl,70.76,ms,\"num_prompts=2400; random_range_ratio=0.0 => lengths uniform; server --tp-size 4 --disable-radix-cache --mem-fraction-static 0.85 --stream-interval 2\"
x,2025,0.4,deepseek-ai/DeepSeek-V3,fp8,H100-SXM-80GB,96,attn DP32,32,32,disagg,1024,1024,,,,decode_throughput,1,tok/s,
x,2025,0.4,meta-llama/Llama-3.1-8B-Instruct,bf16,DGX Spark (GB10),1,1,1,1,agg,1024,1024,1,,,median_itl,1,ms,
";

    #[test]
    fn dev_rows_resolve_with_flags_from_notes() {
        let rows = parse_rows(DEV_ROWS, "dev.csv").unwrap();
        let setup = setup_of(&rows[0]).unwrap();
        assert_eq!((setup.gpu.as_str(), setup.tp, setup.stream_interval), ("h200", 4, 2));
        assert_eq!(setup.mem_fraction_static, Some(0.85));
        assert!(setup.disable_radix_cache);
        assert_eq!(setup.workload.n_requests, 2400);
        assert_eq!(setup.workload.lengths, LengthDistribution::Uniform { range_ratio: 0.0 });
        assert_eq!(setup.workload.arrivals, Arrivals::Poisson { rate_per_s: 8.0 });
        assert!(setup_of(&rows[1]).unwrap_err().contains("disaggregated"));
        assert!(setup_of(&rows[2]).unwrap_err().contains("not in the catalog"));
    }

    #[test]
    fn simple_schema_and_missing_columns() {
        let rows = parse_rows("model,gpu,tp,dp,ep,dtype,mode,isl,osl,concurrency,request_rate,batch,metric,value,unit\nQwen/Qwen3-8B,h100,1,1,1,bf16,agg,1000,100,,,4,median_tpot,9,ms\n", "mine.csv").unwrap();
        let setup = setup_of(&rows[0]).unwrap();
        assert_eq!(setup.workload.arrivals, Arrivals::AllAtOnce);
        assert_eq!(setup.workload.n_requests, 4);
        let error = parse_rows("model,value\nx,1\n", "bad.csv").unwrap_err().to_string();
        assert!(error.contains("bad.csv") && error.contains("'gpu'"), "{error}");
    }
}
