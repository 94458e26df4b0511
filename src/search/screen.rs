//! The analytic screen: a closed-form estimate of each candidate from a few step times.
//!
//! Aggregated engines alternate prefill and decode: with `c` requests decoding and a prefill cost
//! `τ` per request (batched as the chunk allows), each request's TPOT is the decode step plus its
//! share of the prefills, `t_d + c·τ/(osl−1)`, and the engine completes `c / (TTFT + (osl−1)·TPOT)`
//! requests per second. Disaggregated units decode without interruption and are limited by the
//! smaller of prefill capacity and decode slots; KV transfer adds to TTFT. Open-loop loads solve
//! Little's law for the decode batch by fixed-point iteration. Queueing for prefill uses M/D/1.
//! The screen only ranks: the serving simulator decides.

use super::config::SearchConfig;
use super::space::{Candidate, EngineChoice, Layout, UnitLoad};
use crate::sim::deploy::transfer_link;

/// TTFT of a candidate that cannot keep up with its load, ms: effectively infinite.
pub const SATURATED_MS: f64 = 1e9;

/// What the screen predicts for one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Mean TTFT, ms.
    pub ttft_ms: f64,
    /// Mean TPOT, ms.
    pub itl_ms: f64,
    /// Output tokens/s per GPU.
    pub tok_s_per_gpu: f64,
    /// Output tokens/s per user (1000 / TPOT).
    pub tok_s_per_user: f64,
}

impl Estimate {
    fn saturated(itl_ms: f64) -> Estimate {
        Estimate {
            ttft_ms: SATURATED_MS,
            itl_ms,
            tok_s_per_gpu: 0.0,
            tok_s_per_user: 1e3 / itl_ms.max(1e-9),
        }
    }

    /// How far the estimate is outside the SLA: the larger ratio of value to limit (≤ 1 inside).
    pub fn violation(&self, ttft_limit_ms: f64, itl_limit_ms: f64) -> f64 {
        (self.ttft_ms / ttft_limit_ms).max(self.itl_ms / itl_limit_ms)
    }
}

/// M/D/1 mean wait for a server with utilisation `rho` and service time `service_s`, seconds.
fn queue_wait_s(rho: f64, service_s: f64) -> f64 {
    if rho >= 1.0 {
        f64::INFINITY
    } else {
        rho * service_s / (2.0 * (1.0 - rho))
    }
}

/// Estimates one candidate.
pub fn estimate(candidate: &Candidate, engines: &[EngineChoice], config: &SearchConfig) -> Estimate {
    let (isl_mean, osl_mean) = config.workload.mean_lengths_tokens();
    let decode_steps = (osl_mean - 1.0).max(1.0);
    match candidate.layout {
        Layout::Agg { engine } => {
            let engine = &engines[engine];
            let slots = slot_limit(engine, engine.max_batch_per_rank_agg, candidate.max_running_cap);
            let tau = engine.prefill_per_request_s;
            let first_token_s = engine.prefill_one_s;
            let gpus = f64::from(engine.n_gpus());
            match candidate.unit_load {
                UnitLoad::Concurrency(clients) => {
                    let running = clients.min(slots);
                    let step_s = engine.decode_s(running.div_ceil(engine.dp()));
                    let tpot_s = step_s + running as f64 * tau / decode_steps;
                    let cycle_s = first_token_s + step_s + decode_steps * tpot_s;
                    let rate = running as f64 / cycle_s;
                    let rho = (rate * tau).min(0.99);
                    let mut ttft_s = first_token_s + step_s + queue_wait_s(rho, first_token_s);
                    if clients > running {
                        ttft_s = ttft_s.max(clients as f64 / rate - decode_steps * tpot_s);
                    }
                    finish(ttft_s, tpot_s, rate, osl_mean, gpus)
                }
                UnitLoad::Rate(rate) => {
                    let rho = rate * tau;
                    if rho >= 0.98 {
                        return Estimate::saturated(engine.decode_s(1) * 1e3);
                    }
                    let mut tpot_s = engine.decode_s(1) / (1.0 - rho);
                    for _ in 0..12 {
                        let running = (rate * decode_steps * tpot_s).ceil().max(1.0) as u64;
                        if running > slots {
                            return Estimate::saturated(tpot_s * 1e3);
                        }
                        tpot_s = engine.decode_s(running.div_ceil(engine.dp())) / (1.0 - rho);
                    }
                    let ttft_s = first_token_s + engine.decode_s(1) + queue_wait_s(rho, first_token_s);
                    finish(ttft_s, tpot_s, rate, osl_mean, gpus)
                }
            }
        }
        Layout::Disagg {
            prefill,
            decode,
            n_prefill,
            n_decode,
        } => {
            let prefill = &engines[prefill];
            let decode = &engines[decode];
            let gpu = &config.gpus[prefill.gpu_idx];
            let link = transfer_link(gpu, &config.coefficients, n_prefill * prefill.n_gpus(), n_decode * decode.n_gpus());
            let transfer_s = link.latency_s + isl_mean * prefill.step.memory().kv_bytes_per_token_per_rank / link.bytes_per_s;
            let first_token_s = prefill.prefill_one_s + transfer_s + config.coefficients.step_cpu_ms * 1e-3;
            let prefill_capacity = f64::from(n_prefill) / prefill.prefill_per_request_s;
            let slots = slot_limit(decode, decode.max_batch_per_rank_decode, candidate.max_running_cap);
            let gpus = f64::from(n_prefill * prefill.n_gpus() + n_decode * decode.n_gpus());
            let n_decode = u64::from(n_decode);
            match candidate.unit_load {
                UnitLoad::Concurrency(clients) => {
                    let running = clients.div_ceil(n_decode).min(slots);
                    let tpot_s = decode.decode_s(running.div_ceil(decode.dp()));
                    let decode_capacity = (running * n_decode) as f64 / (decode_steps * tpot_s);
                    let rate = (clients as f64 / (first_token_s + decode_steps * tpot_s))
                        .min(prefill_capacity * 0.999)
                        .min(decode_capacity);
                    let rho = rate / prefill_capacity;
                    let mut ttft_s = first_token_s + queue_wait_s(rho, prefill.prefill_one_s);
                    ttft_s = ttft_s.max(clients as f64 / rate - decode_steps * tpot_s);
                    finish(ttft_s, tpot_s, rate, osl_mean, gpus)
                }
                UnitLoad::Rate(rate) => {
                    let rho = rate / prefill_capacity;
                    let mut tpot_s = decode.decode_s(1);
                    if rho >= 0.98 {
                        return Estimate::saturated(tpot_s * 1e3);
                    }
                    for _ in 0..12 {
                        let running = (rate / n_decode as f64 * decode_steps * tpot_s).ceil().max(1.0) as u64;
                        if running > slots {
                            return Estimate::saturated(tpot_s * 1e3);
                        }
                        tpot_s = decode.decode_s(running.div_ceil(decode.dp()));
                    }
                    let ttft_s = first_token_s + queue_wait_s(rho, prefill.prefill_one_s);
                    finish(ttft_s, tpot_s, rate, osl_mean, gpus)
                }
            }
        }
    }
}

/// Requests one engine runs at once: its KV and request limits, and the search's cap.
fn slot_limit(engine: &EngineChoice, max_batch_per_rank: u64, cap: Option<u64>) -> u64 {
    let slots = max_batch_per_rank * engine.dp();
    match cap {
        Some(cap) => slots.min((cap / engine.dp()).max(1) * engine.dp()),
        None => slots,
    }
}

fn finish(ttft_s: f64, tpot_s: f64, rate_per_s: f64, osl_mean: f64, gpus: f64) -> Estimate {
    if !ttft_s.is_finite() || rate_per_s <= 0.0 {
        return Estimate::saturated(tpot_s * 1e3);
    }
    Estimate {
        ttft_ms: (ttft_s * 1e3).min(SATURATED_MS),
        itl_ms: tpot_s * 1e3,
        tok_s_per_gpu: rate_per_s * osl_mean / gpus,
        tok_s_per_user: 1.0 / tpot_s,
    }
}
