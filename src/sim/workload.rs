//! Workloads as benchmark clients produce them: closed loop, Poisson or all-at-once arrivals, and
//! fixed, uniform (`bench_serving --random-range-ratio`), normal (AIPerf `--isl-stddev`) or traced lengths.
//!
//! [`generate_requests`] turns a [`WorkloadSpec`] into a list of [`RequestSpec`]s with a seeded
//! ChaCha RNG, so that a seed fixes the run. Reading trace files is the CLI's job; a trace arrives
//! here as a list of [`RequestSpec`]s.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Normal};

use super::error::{Error, Result};

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// `concurrency` clients, each sending its next request when the previous one completes;
    /// the first `concurrency` requests start together at t = 0.
    Closed {
        /// Clients.
        concurrency: u64,
    },
    /// Poisson arrivals at a mean rate, requests per second.
    Poisson {
        /// Mean arrival rate, requests/s.
        rate_per_s: f64,
    },
    /// Every request at t = 0 (`--request-rate inf`).
    AllAtOnce,
    /// Arrival times taken from the requests themselves (a trace).
    Trace,
}

/// How input and output lengths are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDistribution {
    /// Exactly `isl` and `osl`.
    Fixed,
    /// `bench_serving --random-range-ratio r`: uniform integers in `[max(L·r, 1), L]`.
    Uniform {
        /// The range ratio `r` in [0, 1].
        range_ratio: f64,
    },
    /// AIPerf: normal around the mean with these standard deviations, rounded, at least 1.
    Normal {
        /// Input-length standard deviation, tokens.
        isl_std: f64,
        /// Output-length standard deviation, tokens.
        osl_std: f64,
    },
}

/// What the benchmark client does.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Mean (or maximum, for uniform) input length, tokens.
    pub isl: u64,
    /// Mean (or maximum, for uniform) output length, tokens.
    pub osl: u64,
    /// Length distribution.
    pub lengths: LengthDistribution,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Measured requests.
    pub n_requests: u64,
    /// Warm-up requests sent first and left out of the metrics. In a closed loop their output
    /// lengths are staggered over one request lifetime ([`stagger_warmup`]), so the measured requests
    /// see the steady state of a long-running service rather than the synchronised first wave.
    pub n_warmup: u64,
    /// RNG seed.
    pub seed: u64,
}

/// One request of a workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSpec {
    /// Arrival time in seconds for open-loop and traced workloads; `None` in closed loop.
    pub arrival_s: Option<f64>,
    /// Input tokens.
    pub isl: u64,
    /// Output tokens to generate (`ignore_eos`).
    pub osl: u64,
    /// Requests with the same group share a prefix of `shared_prefix_tokens` (radix-cache hits).
    pub prefix_group: Option<u64>,
    /// Tokens of the shared prefix.
    pub shared_prefix_tokens: u64,
    /// Whether the request is a warm-up, excluded from metrics.
    pub warmup: bool,
}

/// Draws the requests of a workload (warm-up ones first).
pub fn generate_requests(spec: &WorkloadSpec) -> Result<Vec<RequestSpec>> {
    if spec.isl == 0 || spec.osl == 0 {
        return Err(Error::BadWorkload(format!(
            "--isl and --osl must be at least 1 (got {} and {})",
            spec.isl, spec.osl
        )));
    }
    if spec.n_requests == 0 {
        return Err(Error::BadWorkload("--num-requests must be at least 1".into()));
    }
    match spec.lengths {
        LengthDistribution::Uniform { range_ratio } if !(0.0..=1.0).contains(&range_ratio) => {
            return Err(Error::BadWorkload(format!("--range-ratio {range_ratio} must lie in [0, 1]")));
        }
        LengthDistribution::Normal { isl_std, osl_std } if !(isl_std >= 0.0 && osl_std >= 0.0) => {
            return Err(Error::BadWorkload(format!(
                "--isl-std {isl_std} and --osl-std {osl_std} must be at least 0"
            )));
        }
        _ => {}
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let total = spec.n_requests + spec.n_warmup;
    let interarrival = match spec.arrivals {
        Arrivals::Poisson { rate_per_s } if rate_per_s > 0.0 && rate_per_s.is_finite() => {
            Some(Exp::new(rate_per_s).map_err(|e| Error::BadWorkload(format!("--request-rate {rate_per_s}: {e}")))?)
        }
        Arrivals::Poisson { rate_per_s } => {
            return Err(Error::BadWorkload(format!("--request-rate {rate_per_s} must be positive (or inf)")))
        }
        Arrivals::Closed { concurrency: 0 } => return Err(Error::BadWorkload("--concurrency must be at least 1".into())),
        _ => None,
    };
    let mut clock_s = 0.0;
    let mut requests = Vec::with_capacity(total as usize);
    for index in 0..total {
        let (isl, osl) = draw_lengths(spec, &mut rng)?;
        let arrival_s = match (spec.arrivals, &interarrival) {
            (Arrivals::Closed { .. }, _) => None,
            (_, Some(exp)) => {
                if index > 0 {
                    clock_s += exp.sample(&mut rng);
                }
                Some(clock_s)
            }
            _ => Some(0.0),
        };
        requests.push(RequestSpec {
            arrival_s,
            isl,
            osl,
            prefix_group: None,
            shared_prefix_tokens: 0,
            warmup: index < spec.n_warmup,
        });
    }
    // One client has no phase to lose: its warm-up keeps the asked lengths.
    if matches!(spec.arrivals, Arrivals::Closed { concurrency } if concurrency > 1) {
        stagger_warmup(&mut requests);
    }
    Ok(requests)
}

/// Warm-up requests that bring a workload to its steady state: one wave of clients in a closed loop
/// (their lengths staggered by [`stagger_warmup`]), none for open loops and traces, whose arrivals
/// are already spread. `predict`, `validate` and `search` all use it, so they agree.
pub fn steady_state_warmup(arrivals: Arrivals) -> u64 {
    match arrivals {
        Arrivals::Closed { concurrency } => concurrency,
        _ => 0,
    }
}

/// Spreads the warm-up requests' output lengths over `(osl, 2·osl]`, so that a closed loop's clients
/// fall out of phase before the measured requests start.
///
/// Clients that start together stay in phase when lengths are fixed: SGLang runs prefill before
/// decode whenever requests wait (`Scheduler::get_next_batch_to_run`), so a wave that arrives
/// together is prefilled together, decodes together and finishes in the same step, and its clients'
/// next requests again arrive together. A service that has run for a while has clients at every
/// phase of their request: each arrival is prefilled while the others decode. Warm-up request `i`
/// of `n` generates `osl + ⌈osl·(i+1)/n⌉` tokens, so the warm-up wave finishes spread over one
/// request's decode and the measured requests arrive as they would in that steady state. Benchmarks
/// discard their warm-up requests the same way (AIPerf `--warmup-request-count`, `bench_serving
/// --warmup-requests`); `sglsim bench` sends these same lengths, so a real server sees the same
/// desynchronising wave.
pub fn stagger_warmup(workload: &mut [RequestSpec]) {
    let n_warmup = workload.iter().filter(|r| r.warmup).count() as u64;
    for (index, request) in workload.iter_mut().filter(|r| r.warmup).enumerate() {
        request.osl = request
            .osl
            .saturating_add((request.osl.saturating_mul(index as u64 + 1)).div_ceil(n_warmup));
    }
}

fn draw_lengths(spec: &WorkloadSpec, rng: &mut ChaCha8Rng) -> Result<(u64, u64)> {
    Ok(match spec.lengths {
        LengthDistribution::Fixed => (spec.isl, spec.osl),
        LengthDistribution::Uniform { range_ratio } => {
            let isl_low = ((spec.isl as f64 * range_ratio) as u64).max(1);
            let osl_low = ((spec.osl as f64 * range_ratio) as u64).max(1);
            (rng.gen_range(isl_low..=spec.isl), rng.gen_range(osl_low..=spec.osl))
        }
        LengthDistribution::Normal { isl_std, osl_std } => {
            let mut draw = |mean: u64, std: f64| -> Result<u64> {
                if std == 0.0 {
                    return Ok(mean);
                }
                let normal = Normal::new(mean as f64, std).map_err(|e| Error::BadWorkload(e.to_string()))?;
                Ok(normal.sample(rng).round().max(1.0) as u64)
            };
            (draw(spec.isl, isl_std)?, draw(spec.osl, osl_std)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lengths: LengthDistribution, arrivals: Arrivals) -> WorkloadSpec {
        WorkloadSpec {
            isl: 1000,
            osl: 200,
            lengths,
            arrivals,
            n_requests: 2000,
            n_warmup: 2,
            seed: 7,
        }
    }

    #[test]
    fn uniform_lengths_span_bench_serving_range() {
        let requests = generate_requests(&spec(LengthDistribution::Uniform { range_ratio: 0.5 }, Arrivals::AllAtOnce)).unwrap();
        assert_eq!(requests.len(), 2002);
        assert!(requests[0].warmup && requests[1].warmup && !requests[2].warmup);
        assert!(requests
            .iter()
            .all(|r| (500..=1000).contains(&r.isl) && (100..=200).contains(&r.osl)));
        let mean = requests.iter().map(|r| r.isl as f64).sum::<f64>() / requests.len() as f64;
        assert!((mean - 750.0).abs() < 15.0, "{mean}");
    }

    #[test]
    fn poisson_arrivals_have_the_asked_rate_and_seed_fixes_them() {
        let workload = spec(LengthDistribution::Fixed, Arrivals::Poisson { rate_per_s: 10.0 });
        let requests = generate_requests(&workload).unwrap();
        let last = requests.last().unwrap().arrival_s.unwrap();
        let rate = (requests.len() - 1) as f64 / last;
        assert!((rate - 10.0).abs() < 0.7, "{rate}");
        assert_eq!(requests, generate_requests(&workload).unwrap());
    }

    #[test]
    fn normal_lengths_have_the_asked_spread() {
        let requests = generate_requests(&spec(
            LengthDistribution::Normal {
                isl_std: 100.0,
                osl_std: 0.0,
            },
            Arrivals::Closed { concurrency: 4 },
        ))
        .unwrap();
        let mean = requests.iter().map(|r| r.isl as f64).sum::<f64>() / requests.len() as f64;
        let var = requests.iter().map(|r| (r.isl as f64 - mean).powi(2)).sum::<f64>() / requests.len() as f64;
        assert!(
            (mean - 1000.0).abs() < 10.0 && (var.sqrt() - 100.0).abs() < 8.0,
            "{mean} {}",
            var.sqrt()
        );
        assert!(requests.iter().all(|r| r.arrival_s.is_none()));
        assert!(requests.iter().filter(|r| !r.warmup).all(|r| r.osl == 200));
        // The closed loop's two warm-up requests are staggered to 200 + ⌈200·1/2⌉ and 200 + 200.
        let warmup_osl: Vec<u64> = requests.iter().filter(|r| r.warmup).map(|r| r.osl).collect();
        assert_eq!(warmup_osl, [300, 400]);
    }

    #[test]
    fn bad_workloads_are_refused() {
        let mut bad = spec(LengthDistribution::Uniform { range_ratio: 1.5 }, Arrivals::AllAtOnce);
        assert!(generate_requests(&bad).unwrap_err().to_string().contains("--range-ratio 1.5"));
        bad.lengths = LengthDistribution::Fixed;
        bad.arrivals = Arrivals::Poisson { rate_per_s: -1.0 };
        assert!(generate_requests(&bad).unwrap_err().to_string().contains("--request-rate"));
    }
}
