//! Per-request records and their summaries, computed as benchmark clients compute them.
//!
//! The simulator records for each measured request its send time, first-token time, finish time
//! and token counts ([`RequestRecord`]); inter-token gaps go into a [`GapHistogram`] (exact mean,
//! percentiles to within 0.5%), because a run of 10,000 × 1,000 tokens has ten million gaps.
//! [`summarise`] turns records into the metrics of `sglang.bench_serving` and AIPerf.

use serde::Serialize;

use super::time::SimTime;

/// What happened to one measured request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRecord {
    /// When the client sent it.
    pub sent: SimTime,
    /// When the first output chunk arrived.
    pub first_token: SimTime,
    /// When the last output chunk arrived.
    pub finished: SimTime,
    /// Input tokens.
    pub isl: u64,
    /// Output tokens.
    pub osl: u64,
}

impl RequestRecord {
    /// Time to first token, ms.
    pub fn ttft_ms(&self) -> f64 {
        self.first_token.ms_since(self.sent)
    }

    /// End-to-end latency, ms.
    pub fn e2e_ms(&self) -> f64 {
        self.finished.ms_since(self.sent)
    }

    /// Time per output token after the first, ms (`bench_serving`: (E2E − TTFT) / (osl − 1)).
    pub fn tpot_ms(&self) -> Option<f64> {
        (self.osl > 1).then(|| self.finished.ms_since(self.first_token) / (self.osl - 1) as f64)
    }
}

/// Log-bucketed histogram of inter-token gaps: exact count and mean, percentiles within 0.5%.
///
/// Gaps are recorded in integer nanoseconds; every request of a decode batch sees the same gap,
/// so the last bucket is reused without recomputing a logarithm.
#[derive(Debug, Clone, PartialEq)]
pub struct GapHistogram {
    counts: Vec<u64>,
    n_gaps: u64,
    sum_ns: u128,
    last_gap_ns: u64,
    last_bucket: usize,
}

const BUCKETS_PER_DOUBLING: f64 = 140.0;
const MIN_GAP_NS: f64 = 1e3;

impl Default for GapHistogram {
    fn default() -> Self {
        GapHistogram {
            counts: vec![0; 4096],
            n_gaps: 0,
            sum_ns: 0,
            last_gap_ns: u64::MAX,
            last_bucket: 0,
        }
    }
}

impl GapHistogram {
    /// Records `count` gaps of `gap_ns` nanoseconds each.
    pub fn record_ns(&mut self, gap_ns: u64, count: u64) {
        if count == 0 {
            return;
        }
        let bucket = if gap_ns == self.last_gap_ns {
            self.last_bucket
        } else {
            let bucket = (((gap_ns as f64).max(MIN_GAP_NS) / MIN_GAP_NS).log2() * BUCKETS_PER_DOUBLING) as usize;
            let bucket = bucket.min(self.counts.len() - 1);
            self.last_gap_ns = gap_ns;
            self.last_bucket = bucket;
            bucket
        };
        self.counts[bucket] += count;
        self.n_gaps += count;
        self.sum_ns += u128::from(gap_ns) * u128::from(count);
    }

    /// Records `count` gaps of `gap_ms` milliseconds each.
    pub fn record(&mut self, gap_ms: f64, count: u64) {
        self.record_ns((gap_ms * 1e6).round().max(0.0) as u64, count);
    }

    /// Gaps recorded.
    pub fn len(&self) -> u64 {
        self.n_gaps
    }

    /// Whether no gap was recorded.
    pub fn is_empty(&self) -> bool {
        self.n_gaps == 0
    }

    /// Mean gap, ms.
    pub fn mean_ms(&self) -> f64 {
        if self.n_gaps == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.n_gaps as f64 * 1e-6
        }
    }

    /// The `q`-quantile (0..=1), ms, at the centre of its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.n_gaps == 0 {
            return 0.0;
        }
        let rank = ((q * self.n_gaps as f64).ceil() as u64).clamp(1, self.n_gaps);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return MIN_GAP_NS * ((bucket as f64 + 0.5) / BUCKETS_PER_DOUBLING).exp2() * 1e-6;
            }
        }
        self.mean_ms()
    }
}

/// Mean and percentiles of one metric, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Distribution {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Distribution {
    /// Summarises samples (linear interpolation between order statistics, as NumPy does).
    pub fn of(samples: &mut [f64]) -> Distribution {
        if samples.is_empty() {
            return Distribution::default();
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        Distribution {
            mean,
            p50: percentile(samples, 0.5),
            p90: percentile(samples, 0.9),
            p99: percentile(samples, 0.99),
        }
    }

    /// Summarises a gap histogram.
    pub fn of_histogram(histogram: &GapHistogram) -> Distribution {
        Distribution {
            mean: histogram.mean_ms(),
            p50: histogram.quantile_ms(0.5),
            p90: histogram.quantile_ms(0.9),
            p99: histogram.quantile_ms(0.99),
        }
    }

    /// The value at a named percentile.
    pub fn at(&self, percentile: Percentile) -> f64 {
        match percentile {
            Percentile::Mean => self.mean,
            Percentile::P50 => self.p50,
            Percentile::P90 => self.p90,
            Percentile::P99 => self.p99,
        }
    }
}

/// Which statistic an SLA is checked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// The mean.
    Mean,
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
    /// The 99th percentile.
    P99,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Throughput of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Throughput {
    /// Generated tokens per second over the whole run.
    pub output_tok_s: f64,
    /// Input tokens per second over the whole run.
    pub input_tok_s: f64,
    /// Output tokens per second per GPU.
    pub output_tok_s_per_gpu: f64,
    /// Input plus output tokens per second per GPU.
    pub total_tok_s_per_gpu: f64,
    /// Completed requests per second.
    pub request_s: f64,
}

/// An SLA on TTFT and ITL, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sla {
    /// Largest acceptable TTFT, ms.
    pub ttft_ms: Option<f64>,
    /// Largest acceptable inter-token latency (the request's TPOT), ms.
    pub itl_ms: Option<f64>,
}

/// Requests meeting an SLA.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goodput {
    /// Share of measured requests that met both limits, in [0, 1].
    pub fraction_meeting_sla: f64,
    /// Requests per second that met the SLA.
    pub request_s: f64,
    /// Output tokens per second of requests that met the SLA.
    pub output_tok_s: f64,
}

/// The metrics of a run, as benchmark clients report them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMetrics {
    /// Measured requests.
    pub n_requests: u64,
    /// First send to last completion of measured requests, seconds.
    pub duration_s: f64,
    /// Time to first token.
    pub ttft_ms: Distribution,
    /// Inter-token latency (gaps between streamed chunks, per token).
    pub itl_ms: Distribution,
    /// Time per output token per request.
    pub tpot_ms: Distribution,
    /// End-to-end latency.
    pub e2e_ms: Distribution,
    /// Throughput.
    pub throughput: Throughput,
    /// Goodput, when an SLA was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
}

/// Summarises the records of measured requests; `n_gpus` normalises per-GPU throughput.
pub fn summarise(records: &[RequestRecord], gaps: &GapHistogram, n_gpus: u32, sla: Option<Sla>) -> RunMetrics {
    let start = records.iter().map(|r| r.sent).min().unwrap_or_default();
    let end = records.iter().map(|r| r.finished).max().unwrap_or_default();
    let duration_s = end.ms_since(start) / 1e3;
    let rate = |amount: f64| if duration_s > 0.0 { amount / duration_s } else { 0.0 };
    let output_tokens: u64 = records.iter().map(|r| r.osl).sum();
    let input_tokens: u64 = records.iter().map(|r| r.isl).sum();
    let gpus = f64::from(n_gpus.max(1));
    let throughput = Throughput {
        output_tok_s: rate(output_tokens as f64),
        input_tok_s: rate(input_tokens as f64),
        output_tok_s_per_gpu: rate(output_tokens as f64) / gpus,
        total_tok_s_per_gpu: rate((input_tokens + output_tokens) as f64) / gpus,
        request_s: rate(records.len() as f64),
    };
    let goodput = sla.map(|sla| {
        let meeting: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| {
                sla.ttft_ms.is_none_or(|limit| r.ttft_ms() <= limit) && sla.itl_ms.is_none_or(|limit| r.tpot_ms().unwrap_or(0.0) <= limit)
            })
            .collect();
        Goodput {
            fraction_meeting_sla: if records.is_empty() {
                0.0
            } else {
                meeting.len() as f64 / records.len() as f64
            },
            request_s: rate(meeting.len() as f64),
            output_tok_s: rate(meeting.iter().map(|r| r.osl).sum::<u64>() as f64),
        }
    });
    RunMetrics {
        n_requests: records.len() as u64,
        duration_s,
        ttft_ms: Distribution::of(&mut records.iter().map(RequestRecord::ttft_ms).collect::<Vec<_>>()),
        itl_ms: Distribution::of_histogram(gaps),
        tpot_ms: Distribution::of(&mut records.iter().filter_map(RequestRecord::tpot_ms).collect::<Vec<_>>()),
        e2e_ms: Distribution::of(&mut records.iter().map(RequestRecord::e2e_ms).collect::<Vec<_>>()),
        throughput,
        goodput,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close_and_mean_exact() {
        let mut histogram = GapHistogram::default();
        for i in 1..=1000 {
            histogram.record(i as f64 * 0.1, 1);
        }
        assert!((histogram.mean_ms() - 50.05).abs() < 1e-6);
        let p50 = histogram.quantile_ms(0.5);
        assert!((p50 / 50.0 - 1.0).abs() < 0.006, "{p50}");
        let p99 = histogram.quantile_ms(0.99);
        assert!((p99 / 99.0 - 1.0).abs() < 0.006, "{p99}");
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let d = Distribution::of(&mut [4.0, 1.0, 3.0, 2.0]);
        assert_eq!((d.mean, d.p50), (2.5, 2.5));
        assert!((d.p90 - 3.7).abs() < 1e-12);
    }

    #[test]
    fn goodput_counts_requests_within_both_limits() {
        let record = |ttft: u64, finish: u64| RequestRecord {
            sent: SimTime(0),
            first_token: SimTime(ttft * 1_000_000),
            finished: SimTime(finish * 1_000_000),
            isl: 10,
            osl: 11,
        };
        let records = [record(100, 200), record(600, 700), record(100, 1100)];
        let metrics = summarise(
            &records,
            &GapHistogram::default(),
            1,
            Some(Sla {
                ttft_ms: Some(500.0),
                itl_ms: Some(20.0),
            }),
        );
        let goodput = metrics.goodput.unwrap();
        assert!((goodput.fraction_meeting_sla - 1.0 / 3.0).abs() < 1e-12);
        assert!((metrics.duration_s - 1.1).abs() < 1e-12);
    }
}
