//! Rows that measure one engine role run at capacity: prefill-only or decode-only throughput per
//! node, per GPU, per rank or for a cluster, as the large-scale expert-parallel reports give them
//! (SGLang's DeepSeek-V3 on 96 H100s, GB200 NVL72, Kimi-K2, a decode log's throughput).
//!
//! Such a row is priced as one forward of the step model, not as a served workload: a prefill forward
//! with every DP rank holding the reported tokens (16384, SGLang's `--max-prefill-tokens` default,
//! unless the row says otherwise) in prompts of the row's length, or a decode step with the reported
//! requests per rank at the reported KV length. Large-scale EP rows (DP attention with expert
//! parallelism) take the deployment those reports describe: DeepEP, DeepGEMM, data-parallel dense
//! layers and LM head, two-batch overlap where the row names it, and EPLB's redundant experts where
//! the experts do not divide over the ranks.

use crate::model::arch::ModelSpec;
use crate::model::coefficients::Coefficients;
use crate::model::gpu::GpuSpec;
use crate::model::mapping::ParallelMapping;
use crate::model::ops::{ExtendRequest, RankBatch};
use crate::model::quant::WeightDtype;
use crate::model::server_args::ServerArgs;
use crate::model::step::{EngineConfig, StepModel};

use super::measurements::{gpu_name, MeasurementRow};

/// Prompt tokens per DP rank in one prefill forward when a row does not say (`--max-prefill-tokens`).
pub const DEFAULT_PREFILL_TOKENS_PER_RANK: u64 = 16_384;

/// Which role ran at capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Prefill forwards, each rank holding `tokens_per_rank` prompt tokens in prompts of `isl`.
    Prefill {
        /// Prompt length, tokens.
        isl: u64,
        /// Prompt tokens per DP rank in one forward.
        tokens_per_rank: u64,
    },
    /// Decode steps with `batch_per_rank` requests per DP rank at `context` KV tokens each.
    Decode {
        /// Requests per DP rank.
        batch_per_rank: u64,
        /// KV tokens per request.
        context: u64,
    },
}

/// A saturated-engine row resolved to an engine and what its value counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SaturatedSetup {
    /// Bundled model id.
    pub model: String,
    /// Catalog GPU name.
    pub gpu: String,
    /// GPUs of the engine (`--tp`).
    pub tp: u32,
    /// DP-attention ranks.
    pub dp: u32,
    /// Expert-parallel ranks.
    pub ep: u32,
    /// Routed-expert weight format when the row overrides the checkpoint's (NVFP4 MoE).
    pub experts_dtype: Option<WeightDtype>,
    /// Two-batch overlap named by the row.
    pub two_batch_overlap: bool,
    /// The row simulates perfect expert load balance (EPLB's upper bound): no rank holds more than its share.
    pub perfect_balance: bool,
    /// The role and its load.
    pub phase: Phase,
    /// GPUs the value counts: 1 per GPU or rank, a node's GPUs, or the cluster's.
    pub gpus_counted: u32,
}

/// Whether a metric is one this module prices.
pub fn is_saturated_metric(metric: &str) -> bool {
    metric.starts_with("prefill_input_throughput_")
        || metric.starts_with("decode_output_throughput_")
        || metric == "output_throughput_per_rank"
        || metric == "decode_throughput"
}

/// Resolves a saturated-engine row, or says why it cannot be modelled.
pub fn saturated_setup(row: &MeasurementRow) -> Result<SaturatedSetup, String> {
    let metric = row.get("metric");
    let text = format!(
        "{} {} {} {}",
        row.get("sglang_version"),
        row.get("dtype"),
        row.get("notes"),
        row.get("batch_size")
    )
    .to_ascii_lowercase();
    if text.contains("mtp") && !text.contains("no mtp") || text.contains("not a plain measurement") {
        return Err("speculative decoding (MTP) or a simulated measurement: not modelled".into());
    }
    let model = row.get("model").trim_end_matches("/R1").to_string();
    let gpu = gpu_name(row.get("gpu")).ok_or_else(|| format!("GPU '{}' is not in the catalog", row.get("gpu")))?;
    let leading = |name: &str| -> Option<u32> {
        let digits: String = row
            .get(name)
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let (num_gpus, tp, dp, ep) = (leading("num_gpus"), leading("tp"), leading("dp"), leading("ep"));
    let engine = [num_gpus, tp, dp, ep].into_iter().flatten().max().filter(|n| *n > 0);
    let Some(engine) = engine else {
        return Err("no GPU count or mapping in the row".into());
    };
    let dp_attention = row.get("tp").to_ascii_lowercase().contains("attn dp") || dp.is_some_and(|d| d > 1);
    if !dp_attention && tp.is_none() && ep.is_none() && metric != "decode_throughput" {
        return Err(format!(
            "the engine mapping of '{}' GPUs is not given (tp, dp, ep empty)",
            row.get("num_gpus")
        ));
    }
    let tp = if dp_attention { engine } else { tp.unwrap_or(engine) };
    let dp = if dp_attention { dp.unwrap_or(tp) } else { 1 };
    let ep = ep.unwrap_or(1);
    let batch = row.get("batch_size");
    if batch.to_ascii_uppercase().contains("AMBIGUOUS") {
        return Err(format!("batch '{batch}' is ambiguous"));
    }
    let batch_number = || -> Option<u64> {
        let digits: String = batch
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let isl: u64 = row
        .get("isl")
        .parse()
        .map_err(|_| format!("input length '{}' is not a token count", row.get("isl")))?;
    let phase = if metric.starts_with("prefill_input_throughput_") {
        let tokens_per_rank = if batch.contains("tokens") {
            batch_number().ok_or_else(|| format!("batch '{batch}' has no token count"))?
        } else {
            DEFAULT_PREFILL_TOKENS_PER_RANK
        };
        Phase::Prefill { isl, tokens_per_rank }
    } else {
        let batch_per_rank = match metric {
            "decode_throughput" => batch_number().or_else(|| row.get("concurrency").parse().ok()),
            _ if batch.contains("per gpu") || batch.contains("per GPU") || batch.contains("per rank") => batch_number(),
            _ => None,
        }
        .ok_or_else(|| format!("decode batch per rank not given (batch '{batch}')"))?;
        // A decode log over a long output: the mean context is the prompt plus half the output.
        let context = match metric {
            "decode_throughput" => isl + row.get("osl").parse::<u64>().unwrap_or(0) / 2,
            _ => isl,
        };
        Phase::Decode { batch_per_rank, context }
    };
    let gpus_counted = if metric.ends_with("_per_node") {
        let unit = row.get("unit");
        let in_unit = unit.find('(').and_then(|at| unit[at + 1..].split_whitespace().next()?.parse().ok());
        match in_unit {
            Some(n) => n,
            None => {
                crate::model::gpu::GpuCatalog::builtin()
                    .map_err(|e| e.to_string())?
                    .find(&gpu)
                    .map_err(|e| e.to_string())?
                    .gpus_per_node
            }
        }
    } else if metric.ends_with("_cluster") || metric == "decode_throughput" {
        engine
    } else {
        1
    };
    Ok(SaturatedSetup {
        model,
        gpu,
        tp,
        dp,
        ep,
        experts_dtype: if text.contains("nvfp4 moe") {
            Some(WeightDtype::Nvfp4)
        } else {
            None
        },
        two_batch_overlap: text.contains("tbo") || text.contains("two-batch overlap"),
        perfect_balance: text.contains("perfect eplb"),
        phase,
        gpus_counted,
    })
}

/// The engine of a saturated setup: large-scale EP (DP attention with EP) runs SGLang's DeepEP layout;
/// a row that simulates perfect EPLB has no expert-load imbalance.
pub fn saturated_step(
    setup: &SaturatedSetup,
    mut model: ModelSpec,
    gpu: GpuSpec,
    coefficients: &Coefficients,
) -> Result<StepModel, String> {
    if let Some(dtype) = setup.experts_dtype {
        model.weights.experts = dtype;
    }
    let redundant = match &model.moe {
        Some(moe) if setup.ep > 1 => {
            let ep = u64::from(setup.ep);
            ((ep - moe.n_experts % ep) % ep) as u32
        }
        _ => 0,
    };
    let mapping = ParallelMapping::with_redundant_experts(&model, setup.tp, setup.dp, setup.ep, redundant).map_err(|e| e.to_string())?;
    let mut args = ServerArgs::sglang_defaults();
    args.mem_fraction_static = Some(0.8);
    if mapping.dp_attention() && mapping.ep() > 1 {
        args.use_large_ep_layout(setup.two_batch_overlap);
        args.ep_num_redundant_experts = redundant;
    }
    if let Phase::Decode { batch_per_rank, .. } = setup.phase {
        args.cuda_graph_max_bs = Some(batch_per_rank.max(1));
    }
    let mut coefficients = coefficients.clone();
    if setup.perfect_balance {
        coefficients.moe_ep_imbalance = 1.0;
    }
    // The row ran, so its engine fit (reports raise --mem-fraction-static to fit weight-heavy prefill
    // instances); one forward's time does not depend on the KV pool.
    StepModel::new_unchecked(EngineConfig {
        model,
        gpu,
        mapping,
        server_args: args,
        coefficients,
    })
    .map_err(|e| e.to_string())
}

/// The predicted value of a saturated row (tokens/s over `gpus_counted` GPUs).
pub fn saturated_throughput(setup: &SaturatedSetup, step: &StepModel) -> f64 {
    let dp = step.mapping().dp() as usize;
    let per_engine_tok_s = match setup.phase {
        Phase::Prefill { isl, tokens_per_rank } => {
            let n = (tokens_per_rank / isl.max(1)).max(1);
            let requests: Vec<ExtendRequest> = (0..n)
                .map(|_| ExtendRequest {
                    new_tokens: isl,
                    cached_tokens: 0,
                })
                .collect();
            let ranks = vec![RankBatch::Extend(&requests); dp];
            (n * isl) as f64 * dp as f64 / step.forward(&ranks).total_s
        }
        Phase::Decode { batch_per_rank, context } => {
            batch_per_rank as f64 * dp as f64 / step.decode_step_s(batch_per_rank, context).total_s
        }
    };
    per_engine_tok_s / f64::from(step.mapping().n_gpus()) * f64::from(setup.gpus_counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::measurements::parse_rows;

    const ROWS: &str = "source,date,sglang_version,model,dtype,gpu,num_gpus,tp,ep,dp,mode,isl,osl,concurrency,request_rate,batch_size,metric,value,unit,notes
blog,2025,main (PD + DeepEP + TBO),deepseek-ai/DeepSeek-V3,fp8,H100-SXM-80GB,32,attn DP32,32,32,disagg,1000,,,,,prefill_input_throughput_per_node,57674,tok/s/node (8 GPUs),prefill-only
blog,2025,main (PD + DeepEP + TBO),deepseek-ai/DeepSeek-V3,fp8,H100-SXM-80GB,72,attn DP72,72,72,disagg,2000,,,,256 per GPU,decode_output_throughput_per_node,22282,tok/s/node (8 GPUs),decode-only
blog,2025,main,deepseek-ai/DeepSeek-V3/R1,fp8,GB200 (NVL72),48,attn DP,48,48,disagg,2000,,,,\"1408 (AMBIGUOUS: per rank)\",decode_output_throughput_per_gpu,13386,tok/s/GPU,x
blog,2025,main (PD + DeepEP + TBO),deepseek-ai/DeepSeek-V3,fp8,H100-SXM-80GB,72,attn DP72,72,72,disagg,4000,,,,128 per GPU,decode_output_throughput_per_node,17373,tok/s/node (8 GPUs),simulated MTP: NOT a plain measurement
";

    #[test]
    fn rows_resolve_to_engines_and_counted_gpus() {
        let rows = parse_rows(ROWS, "dev.csv").unwrap();
        let prefill = saturated_setup(&rows[0]).unwrap();
        assert_eq!((prefill.tp, prefill.dp, prefill.ep, prefill.gpus_counted), (32, 32, 32, 8));
        assert!(prefill.two_batch_overlap);
        assert_eq!(
            prefill.phase,
            Phase::Prefill {
                isl: 1000,
                tokens_per_rank: DEFAULT_PREFILL_TOKENS_PER_RANK
            }
        );
        let decode = saturated_setup(&rows[1]).unwrap();
        assert_eq!(
            decode.phase,
            Phase::Decode {
                batch_per_rank: 256,
                context: 2000
            }
        );
        assert!(saturated_setup(&rows[2]).unwrap_err().contains("ambiguous"));
        assert!(saturated_setup(&rows[3]).unwrap_err().contains("MTP"));
    }

    #[test]
    fn per_node_throughput_counts_a_nodes_gpus_and_ep72_gets_redundant_experts() {
        let rows = parse_rows(ROWS, "dev.csv").unwrap();
        let setup = saturated_setup(&rows[1]).unwrap();
        let model = crate::model::model_catalog::find_bundled_spec(&setup.model).unwrap().unwrap();
        let gpu = crate::model::gpu::GpuCatalog::builtin().unwrap().find("h100").unwrap().clone();
        let step = saturated_step(&setup, model, gpu, &Coefficients::defaults()).unwrap();
        // 256 experts over 72 ranks need 32 replicas (EPLB), as the deployment ran them.
        assert_eq!(step.mapping().redundant_experts(), 32);
        let per_node = saturated_throughput(&setup, &step);
        let per_gpu = 256.0 / step.decode_step_s(256, 2000).total_s;
        assert!((per_node / (8.0 * per_gpu) - 1.0).abs() < 1e-9, "{per_node} {per_gpu}");
    }
}
