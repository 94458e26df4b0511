//! `sglsim bench` per-request records, grouped into points.

use super::*;

pub use crate::calibrate::loadgen::BenchRecord;
use crate::calibrate::loadgen::RecordStatus;

/// Distinct input lengths above which a group's lengths count as drawn, not swept.
const MAX_DISTINCT_SWEPT_ISLS: usize = 8;

/// Groups `sglsim bench` records into points by (load, requested output length, input length) and
/// computes the metrics `bench_serving` reports: TTFT = first chunk − send; ITL = gaps between
/// chunks; TPOT = (E2E − TTFT) / (output tokens − 1); throughput over first send to last chunk.
pub fn parse_bench_records(text: &str, path: &str) -> Result<(Vec<MeasuredPoint>, Vec<String>)> {
    let mut warnings = Vec::new();
    // (concurrency, rate bits, osl) -> records
    let mut groups: BTreeMap<(Option<u64>, Option<u64>, u64), Vec<BenchRecord>> = BTreeMap::new();
    let mut n_errors: BTreeMap<(Option<u64>, Option<u64>, u64), usize> = BTreeMap::new();
    for (line, line_text) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record: BenchRecord = match serde_json::from_str(line_text) {
            Ok(record) => record,
            Err(error) => {
                warnings.push(format!("{path}: line {}: not a bench record: {error}", line + 1));
                continue;
            }
        };
        if record.schema_version != 1 {
            warnings.push(format!(
                "{path}: line {}: schema_version {} (this build reads 1)",
                line + 1,
                record.schema_version
            ));
            continue;
        }
        let key = (record.concurrency, record.request_rate.map(f64::to_bits), record.osl_requested);
        if record.warmup {
            continue;
        }
        if record.status != RecordStatus::Ok || record.first_chunk_s.is_none() {
            *n_errors.entry(key).or_default() += 1;
            continue;
        }
        groups.entry(key).or_default().push(record);
    }
    for ((concurrency, rate, osl), n) in &n_errors {
        let load = match (concurrency, rate.map(f64::from_bits)) {
            (Some(clients), _) => format!("concurrency {clients}"),
            (None, Some(rate_per_s)) => format!("request rate {rate_per_s}/s"),
            (None, None) => "request rate inf".to_string(),
        };
        warnings.push(format!("{path}: {n} failed requests at {load}, osl {osl}, left out"));
    }
    let mut points = Vec::new();
    for ((concurrency, rate_bits, osl_requested), records) in groups {
        let load = match (concurrency, rate_bits.map(f64::from_bits)) {
            (Some(c), _) if c > 0 => Load::Concurrency(c),
            (_, Some(rate)) if rate > 0.0 => Load::RequestRatePerS(rate),
            // `sglsim bench --request-rate inf` records neither: every request was sent at once.
            (None, None) => Load::RequestRatePerS(f64::INFINITY),
            _ => {
                warnings.push(format!(
                    "{path}: {} records with neither concurrency nor request_rate left out",
                    records.len()
                ));
                continue;
            }
        };
        let mut distinct: Vec<u64> = records.iter().map(|r| r.isl).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= MAX_DISTINCT_SWEPT_ISLS {
            for isl in distinct {
                let subset: Vec<&BenchRecord> = records.iter().filter(|r| r.isl == isl).collect();
                points.push(bench_point(&subset, isl, osl_requested, Lengths::Fixed, load, path));
            }
        } else {
            let max_isl = *distinct.last().unwrap_or(&1);
            let min_isl = *distinct.first().unwrap_or(&1);
            let lengths = Lengths::Uniform {
                range_ratio: min_isl as f64 / max_isl as f64,
            };
            let all: Vec<&BenchRecord> = records.iter().collect();
            points.push(bench_point(&all, max_isl, osl_requested, lengths, load, path));
        }
    }
    if points.is_empty() {
        return Err(Error::BadSource {
            path: path.into(),
            message: format!("no successful measured requests ({})", warnings.join("; ")),
        });
    }
    Ok((points, warnings))
}

fn distribution(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let d = crate::sim::metrics::Distribution::of(samples);
    Some(Summary {
        mean: Some(d.mean),
        p50: Some(d.p50),
        p90: Some(d.p90),
        p99: Some(d.p99),
    })
}

fn bench_point(records: &[&BenchRecord], isl_tokens: u64, osl_tokens: u64, lengths: Lengths, load: Load, path: &str) -> MeasuredPoint {
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut e2e = Vec::new();
    let mut gaps = Vec::new();
    let mut start_s = f64::INFINITY;
    let mut end_s = f64::NEG_INFINITY;
    let (mut input_tokens, mut output_tokens) = (0u64, 0u64);
    for record in records {
        let first_s = record.first_chunk_s.unwrap_or(record.sent_s);
        let mut chunks: Vec<f64> = record.chunk_times_s.clone();
        if chunks.first().is_none_or(|&t| (t - first_s).abs() > 1e-6) {
            chunks.insert(0, first_s);
        }
        let last_s = chunks.iter().copied().fold(first_s, f64::max);
        ttft.push((first_s - record.sent_s) * 1e3);
        e2e.push((last_s - record.sent_s) * 1e3);
        if record.output_tokens > 1 {
            tpot.push((last_s - first_s) * 1e3 / (record.output_tokens - 1) as f64);
        }
        gaps.extend(chunks.windows(2).map(|w| (w[1] - w[0]) * 1e3));
        start_s = start_s.min(record.sent_s);
        end_s = end_s.max(last_s);
        input_tokens += record.isl;
        output_tokens += record.output_tokens;
    }
    let duration_s = end_s - start_s;
    let rate = |amount: f64| (duration_s > 0.0).then(|| amount / duration_s);
    MeasuredPoint {
        workload: Workload::Served {
            isl_tokens,
            osl_tokens,
            lengths,
            load,
            n_requests: records.len() as u64,
            n_warmup: 0,
        },
        measured: MeasuredMetrics {
            ttft_ms: distribution(&mut ttft),
            itl_ms: distribution(&mut gaps),
            tpot_ms: distribution(&mut tpot),
            e2e_ms: distribution(&mut e2e),
            output_tok_per_s: rate(output_tokens as f64),
            input_tok_per_s: rate(input_tokens as f64),
            request_per_s: rate(records.len() as f64),
        },
        provenance: Provenance {
            path: path.into(),
            kind: SourceKind::SglsimBench,
            label: format!("{} isl={isl_tokens} osl={osl_tokens}", load_label(load)),
        },
    }
}
