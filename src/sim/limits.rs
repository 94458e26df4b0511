//! The bounds of a run: how many requests, how long a request, how late an arrival, and SGLang's
//! context-length rule.
//!
//! Callers check their inputs against these at the boundary (the CLI's plans, the search's
//! configuration, the load generator, the serving twin) before anything is allocated, so that a
//! bad value ends in an error naming it rather than in an abort, a wrap-around or a run that
//! never ends. Every check uses checked or saturating arithmetic: inputs may be any `u64`.

use super::error::{Error, Result};
use super::workload::RequestSpec;

/// Requests one run may hold, measured and warm-up together.
///
/// Each request costs about 330 bytes across the workload, the simulator's records and the
/// metrics (measured with the release build: 1,000,000 requests in 0.33 GB and about a second),
/// so a run at the limit stays under 4 GB and a minute.
pub const MAX_REQUESTS: u64 = 10_000_000;

/// Longest request, input plus output, tokens: the 10M-token window of Llama 4 Scout, the largest
/// any published model offers. A prompt longer than this is a typo, not a workload; it bounds the
/// prompt the load generator builds (8 bytes per token id) and the `--context-length` a user may give.
pub const MAX_REQUEST_TOKENS: u64 = 10_000_000;

/// Latest arrival time, seconds (about 31.7 years).
///
/// Simulated time counts nanoseconds in a `u64` (1.8e10 s); arrivals up to 1e9 s leave a factor
/// of 18 for the service that follows the last arrival.
pub const MAX_ARRIVAL_S: f64 = 1e9;

/// Engines one deployment may hold (replicas, or prefill plus decode workers): each is a scheduler
/// the event loop steps, and 10,000 engines of one GPU each is larger than any deployment yet built.
pub const MAX_ENGINES: u64 = 10_000;

/// Engines of one deployment: at least 1 and at most [`MAX_ENGINES`].
pub fn check_engines(field: &str, n_engines: u64) -> Result<()> {
    if !(1..=MAX_ENGINES).contains(&n_engines) {
        return Err(Error::BadWorkload(format!(
            "{field} {n_engines}: between 1 and {MAX_ENGINES} engines"
        )));
    }
    Ok(())
}

/// Measured plus warm-up requests, checked: their sum must not wrap and must stay within [`MAX_REQUESTS`].
pub fn total_requests(n_requests: u64, n_warmup: u64) -> Result<u64> {
    if n_requests == 0 {
        return Err(Error::BadWorkload("--num-requests 0: at least 1 request".into()));
    }
    match n_requests.checked_add(n_warmup) {
        Some(total) if total <= MAX_REQUESTS => Ok(total),
        _ => Err(Error::BadWorkload(format!(
            "--num-requests {n_requests} with --warmup-requests {n_warmup}: sglsim simulates at most {MAX_REQUESTS} requests in one run (about 330 bytes each)"
        ))),
    }
}

/// Closed-loop clients: at least 1 and at most [`MAX_REQUESTS`] (each client holds a request).
pub fn check_concurrency(field: &str, concurrency: u64) -> Result<()> {
    if concurrency == 0 {
        return Err(Error::BadWorkload(format!("{field} 0: at least 1 client")));
    }
    if concurrency > MAX_REQUESTS {
        return Err(Error::BadWorkload(format!(
            "{field} {concurrency}: at most {MAX_REQUESTS} clients (each holds a request in flight)"
        )));
    }
    Ok(())
}

/// The default measured requests of a closed loop: 10 per client, within [`MAX_REQUESTS`].
pub fn default_closed_loop_requests(concurrency: u64) -> u64 {
    concurrency.saturating_mul(10).min(MAX_REQUESTS)
}

/// Poisson arrivals of `n_total` requests at `rate_per_s` must end within [`MAX_ARRIVAL_S`]:
/// a rate so low that its expected last arrival lies beyond it is refused, naming the lowest rate that fits.
pub fn check_poisson_span(rate_per_s: f64, n_total: u64) -> Result<()> {
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return Err(Error::BadWorkload(format!(
            "--request-rate {rate_per_s}: a positive, finite number of requests/s, or inf"
        )));
    }
    let gaps = n_total.saturating_sub(1) as f64;
    let span_s = gaps / rate_per_s;
    if span_s > MAX_ARRIVAL_S {
        let rate = if (1e-3..1e6).contains(&rate_per_s) {
            rate_per_s.to_string()
        } else {
            format!("{rate_per_s:e}")
        };
        return Err(Error::BadWorkload(format!(
            "--request-rate {rate}: {n_total} requests would arrive over about {span_s:.3e} s, beyond the {MAX_ARRIVAL_S:.0e} s (31.7 years) sglsim simulates; give at least {:.3e} requests/s or fewer requests",
            gaps / MAX_ARRIVAL_S
        )));
    }
    Ok(())
}

/// One request's lengths under SGLang's rule (`TokenizerManager._validate_one_request`): the
/// input must be shorter than the context length, and input plus `max_new_tokens` must not exceed it.
/// The messages are SGLang's own.
pub fn check_context(isl: u64, osl: u64, context_tokens: u64) -> Result<()> {
    if isl >= context_tokens {
        return Err(Error::BadWorkload(format!(
            "The input ({isl} tokens) is longer than the model's context length ({context_tokens} tokens)."
        )));
    }
    let total = isl.saturating_add(osl);
    if total > context_tokens {
        return Err(Error::BadWorkload(format!(
            "Requested token count exceeds the model's maximum context length of {context_tokens} tokens. You requested a total of {total} tokens: {isl} tokens from the input messages and {osl} tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit."
        )));
    }
    Ok(())
}

/// Checks every request of a workload: lengths at least 1 and within the context length, arrivals
/// finite and no later than [`MAX_ARRIVAL_S`], and no more than [`MAX_REQUESTS`] of them.
/// `what` names the source in messages (`trace rows.csv`, `the drawn workload`).
pub fn check_requests(what: &str, requests: &[RequestSpec], context_tokens: u64) -> Result<()> {
    if requests.len() as u64 > MAX_REQUESTS {
        return Err(Error::BadWorkload(format!(
            "{what} has {} requests; sglsim simulates at most {MAX_REQUESTS} in one run",
            requests.len()
        )));
    }
    for (index, request) in requests.iter().enumerate() {
        let at = |message: String| Error::BadWorkload(format!("{what}, request {}: {message}", index + 1));
        if request.isl == 0 || request.osl == 0 {
            return Err(at(format!(
                "input and output lengths must be at least 1 token (got {} and {})",
                request.isl, request.osl
            )));
        }
        check_context(request.isl, request.osl, context_tokens).map_err(|e| at(strip_kind(e)))?;
        if let Some(arrival_s) = request.arrival_s {
            if !(arrival_s.is_finite() && (0.0..=MAX_ARRIVAL_S).contains(&arrival_s)) {
                return Err(at(format!(
                    "arrival at {arrival_s:e} s lies outside [0, {MAX_ARRIVAL_S:.0e}] s (31.7 years), the span sglsim simulates"
                )));
            }
        }
    }
    Ok(())
}

/// The message of a workload error without its "invalid workload: " prefix, to nest it in another.
pub fn strip_kind(error: Error) -> String {
    match error {
        Error::BadWorkload(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_that_would_wrap_or_exhaust_memory_are_refused() {
        assert_eq!(total_requests(1000, 10).unwrap(), 1010);
        let wrapped = total_requests(1000, u64::MAX).unwrap_err().to_string();
        assert!(wrapped.contains("--warmup-requests 18446744073709551615"), "{wrapped}");
        assert!(total_requests(MAX_REQUESTS, 1).is_err());
        assert!(total_requests(0, 5).unwrap_err().to_string().contains("--num-requests 0"));
        assert!(check_concurrency("--concurrency", 0)
            .unwrap_err()
            .to_string()
            .contains("--concurrency 0"));
        assert!(check_concurrency("--concurrency", 100_000_000).is_err());
        assert_eq!(default_closed_loop_requests(u64::MAX), MAX_REQUESTS);
        assert_eq!(default_closed_loop_requests(64), 640);
    }

    #[test]
    fn sglang_context_rule_and_its_messages() {
        // Llama-3.1's 131072-token window: an input of 131071 leaves room for one output token.
        assert!(check_context(131_071, 1, 131_072).is_ok());
        let input = check_context(131_072, 1, 131_072).unwrap_err().to_string();
        assert!(
            input.contains("The input (131072 tokens) is longer than the model's context length (131072 tokens)."),
            "{input}"
        );
        let total = check_context(131_000, 100, 131_072).unwrap_err().to_string();
        assert!(total.contains("You requested a total of 131100 tokens"), "{total}");
        assert!(check_context(u64::MAX - 5, 10, 131_072).is_err());
        assert!(check_context(10, u64::MAX, 131_072)
            .unwrap_err()
            .to_string()
            .contains("18446744073709551615"));
    }

    #[test]
    fn rates_whose_arrivals_outlast_simulated_time_are_refused() {
        assert!(check_poisson_span(1.0, 1000).is_ok());
        // One request arrives at t = 0 whatever the rate.
        assert!(check_poisson_span(1e-20, 1).is_ok());
        // 999 gaps at 1e-10 requests/s: about 1e13 s; the lowest rate that fits is 999 / 1e9.
        let slow = check_poisson_span(1e-10, 1000).unwrap_err().to_string();
        assert!(slow.contains("9.990e-7 requests/s"), "{slow}");
        assert!(check_poisson_span(f64::NAN, 10).is_err());
        assert!(check_poisson_span(0.0, 10).is_err());
    }

    #[test]
    fn requests_outside_the_simulated_span_or_context_are_refused() {
        let request = |arrival_s, isl| RequestSpec {
            arrival_s: Some(arrival_s),
            isl,
            osl: 10,
            prefix_group: None,
            shared_prefix_tokens: 0,
            warmup: false,
        };
        assert!(check_requests("t", &[request(0.0, 100), request(5.0, 100)], 4096).is_ok());
        let late = check_requests("t", &[request(1e300, 100)], 4096).unwrap_err().to_string();
        assert!(late.contains("request 1") && late.contains("1e300"), "{late}");
        let long = check_requests("t", &[request(0.0, 100), request(1.0, u64::MAX)], 4096)
            .unwrap_err()
            .to_string();
        assert!(
            long.contains("request 2") && long.contains("longer than the model's context length"),
            "{long}"
        );
        assert!(check_requests("t", &[request(f64::NAN, 1)], 4096).is_err());
    }
}
