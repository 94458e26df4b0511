//! What a fit compares: the targets of each measured point, and the model's predictions of them.

use serde::Serialize;

use super::super::error::Result;
use super::super::ingest::{Lengths, Load, MeasuredMetrics, MeasuredPoint, Summary, Workload};
use crate::model::ops::{ExtendRequest, RankBatch};
use crate::model::step::StepModel;
use crate::sim::cluster::{simulate, Deployment, Role, SimOptions};
use crate::sim::deploy::engine_spec;
use crate::sim::workload::{generate_requests, Arrivals, LengthDistribution, WorkloadSpec};

/// Which statistic of a metric a residual compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The mean.
    Mean,
    /// The median.
    P50,
}

/// Which metric a residual compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Time to first token (prefill latency for a static batch), ms.
    TtftMs,
    /// Inter-chunk latency (one decode step for static batches and Dynamo points), ms.
    ItlMs,
    /// Time per output token, ms.
    TpotMs,
    /// End-to-end latency, ms.
    E2eMs,
    /// Output throughput, tokens/s.
    OutputTokPerS,
}

impl MetricName {
    /// The metric's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            MetricName::TtftMs => "ttft_ms",
            MetricName::ItlMs => "itl_ms",
            MetricName::TpotMs => "tpot_ms",
            MetricName::E2eMs => "e2e_ms",
            MetricName::OutputTokPerS => "output_tok_per_s",
        }
    }
}

/// One measured value the fit compares with a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Index of its point among the points given to [`super::fit`].
    pub point: usize,
    /// The metric.
    pub metric: MetricName,
    /// The statistic.
    pub statistic: Statistic,
    /// The measured value.
    pub measured: f64,
}

fn pick(summary: Option<Summary>) -> Option<(Statistic, f64)> {
    let summary = summary?;
    summary
        .p50
        .map(|v| (Statistic::P50, v))
        .or(summary.mean.map(|v| (Statistic::Mean, v)))
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
}

/// Served points with fewer output tokens than this are fitted on TTFT only: a handful of gaps
/// says little about decode and much about how the server flushes its last chunks.
pub const MIN_DECODE_OSL_TOKENS: u64 = 16;

/// The residual targets of one point: TTFT; TPOT (else ITL) unless the outputs are shorter than
/// [`MIN_DECODE_OSL_TOKENS`]; E2E or output throughput only when neither is measured.
pub fn targets_of(index: usize, point: &MeasuredPoint) -> Vec<Target> {
    let measured = &point.measured;
    let mut targets = Vec::new();
    let mut push = |metric, found: Option<(Statistic, f64)>| {
        if let Some((statistic, value)) = found {
            targets.push(Target {
                point: index,
                metric,
                statistic,
                measured: value,
            });
        }
    };
    push(MetricName::TtftMs, pick(measured.ttft_ms));
    let decode = match point.workload {
        Workload::StaticBatch { .. } | Workload::DecodeStep { .. } => pick(measured.itl_ms).map(|f| (MetricName::ItlMs, f)),
        Workload::Served { osl_tokens, .. } if osl_tokens < MIN_DECODE_OSL_TOKENS && measured.ttft_ms.is_some() => None,
        _ => pick(measured.tpot_ms)
            .map(|f| (MetricName::TpotMs, f))
            .or_else(|| pick(measured.itl_ms).map(|f| (MetricName::ItlMs, f))),
    };
    if let Some((metric, found)) = decode {
        push(metric, Some(found));
    }
    if measured.ttft_ms.is_none() && decode.is_none() {
        match pick(measured.e2e_ms) {
            Some(found) => push(MetricName::E2eMs, Some(found)),
            None => push(
                MetricName::OutputTokPerS,
                measured.output_tok_per_s.map(|v| (Statistic::Mean, v)).filter(|(_, v)| *v > 0.0),
            ),
        }
    }
    targets
}

/// Predicts what a point's client would measure with these coefficients.
pub fn predict_point(step: &StepModel, point: &MeasuredPoint, max_sim_requests: u64, seed: u64) -> Result<MeasuredMetrics> {
    let dp = u64::from(step.mapping().dp());
    let exact = |ms: f64| {
        Some(Summary {
            mean: Some(ms),
            p50: Some(ms),
            p90: Some(ms),
            p99: Some(ms),
        })
    };
    Ok(match point.workload {
        Workload::PrefillAlone { isl_tokens } => MeasuredMetrics {
            ttft_ms: exact(step.prefill_s(isl_tokens) * 1e3),
            ..MeasuredMetrics::default()
        },
        Workload::DecodeStep { batch, context_tokens } => MeasuredMetrics {
            itl_ms: exact(step.decode_step_s(batch.div_ceil(dp).max(1), context_tokens).total_s * 1e3),
            ..MeasuredMetrics::default()
        },
        Workload::StaticBatch {
            batch,
            isl_tokens,
            osl_tokens,
        } => {
            let per_rank = batch.div_ceil(dp).max(1);
            let requests = vec![
                ExtendRequest {
                    new_tokens: isl_tokens,
                    cached_tokens: 0,
                };
                per_rank as usize
            ];
            let ranks = vec![RankBatch::Extend(&requests); dp as usize];
            let prefill_ms = step.forward(&ranks).gpu_s * 1e3;
            let decode_ms = step.decode_step_s(per_rank, isl_tokens + osl_tokens / 2).gpu_s * 1e3;
            MeasuredMetrics {
                ttft_ms: exact(prefill_ms),
                itl_ms: exact(decode_ms),
                e2e_ms: exact(prefill_ms + decode_ms * osl_tokens.saturating_sub(1) as f64),
                ..MeasuredMetrics::default()
            }
        }
        Workload::Served {
            isl_tokens,
            osl_tokens,
            lengths,
            load,
            n_requests,
            n_warmup,
        } => {
            let (arrivals, cap) = match load {
                Load::Concurrency(concurrency) => (Arrivals::Closed { concurrency }, 6 * concurrency),
                Load::RequestRatePerS(rate) if rate.is_finite() => (Arrivals::Poisson { rate_per_s: rate }, u64::MAX),
                Load::RequestRatePerS(_) => (Arrivals::AllAtOnce, u64::MAX),
            };
            let n_sim = n_requests.min(cap).min(max_sim_requests).max(1);
            let spec = WorkloadSpec {
                isl: isl_tokens,
                osl: osl_tokens,
                lengths: match lengths {
                    Lengths::Fixed => LengthDistribution::Fixed,
                    Lengths::Uniform { range_ratio } => LengthDistribution::Uniform { range_ratio },
                    Lengths::Normal {
                        isl_std_tokens,
                        osl_std_tokens,
                    } => LengthDistribution::Normal {
                        isl_std: isl_std_tokens,
                        osl_std: osl_std_tokens,
                    },
                },
                arrivals,
                n_requests: n_sim,
                n_warmup: n_warmup.min(8),
                seed,
            };
            let requests = generate_requests(&spec)?;
            let deployment = Deployment {
                engines: vec![engine_spec(step, Role::Aggregated)],
                transfer: None,
            };
            let output = simulate(
                &deployment,
                &requests,
                SimOptions {
                    arrivals,
                    sla: None,
                    record_timeline: false,
                },
            )?;
            let metrics = output.metrics;
            let summary = |d: crate::sim::metrics::Distribution| {
                Some(Summary {
                    mean: Some(d.mean),
                    p50: Some(d.p50),
                    p90: Some(d.p90),
                    p99: Some(d.p99),
                })
            };
            MeasuredMetrics {
                ttft_ms: summary(metrics.ttft_ms),
                itl_ms: summary(metrics.itl_ms),
                tpot_ms: summary(metrics.tpot_ms),
                e2e_ms: summary(metrics.e2e_ms),
                output_tok_per_s: Some(metrics.throughput.output_tok_s),
                input_tok_per_s: Some(metrics.throughput.input_tok_s),
                request_per_s: Some(metrics.throughput.request_s),
            }
        }
    })
}

pub(super) fn predicted_value(predicted: &MeasuredMetrics, target: &Target) -> Option<f64> {
    let summary = match target.metric {
        MetricName::TtftMs => predicted.ttft_ms,
        MetricName::ItlMs => predicted.itl_ms,
        MetricName::TpotMs => predicted.tpot_ms,
        MetricName::E2eMs => predicted.e2e_ms,
        MetricName::OutputTokPerS => return predicted.output_tok_per_s,
    }?;
    match target.statistic {
        Statistic::Mean => summary.mean,
        Statistic::P50 => summary.p50,
    }
}
