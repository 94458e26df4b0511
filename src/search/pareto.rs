//! Pareto fronts and the choice of which screened candidates the simulator evaluates.
//!
//! [`pareto_front`] marks the points no other point beats on both axes (output tokens/s per GPU
//! and tokens/s per user), in `O(n log n)`. [`select_survivors`] picks the candidates worth
//! simulating: the best estimated throughputs inside the SLA (with a margin, a few loads per
//! configuration), the nearest ones when none is inside, and the best point of each band of
//! tokens/s per user so that the simulated front spans the whole trade-off.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::screen::{Estimate, SATURATED_MS};

/// Estimated TTFT may exceed the limit by this factor and still be simulated.
const TTFT_MARGIN: f64 = 1.5;
/// Estimated ITL may exceed the limit by this factor and still be simulated.
const ITL_MARGIN: f64 = 1.25;
/// Loads of one configuration simulated for the SLA ranking.
const LOADS_PER_CONFIGURATION: usize = 3;
/// Bands of tokens/s per user (log-spaced) for the front.
const FRONT_BANDS: usize = 24;

/// Marks the non-dominated points: `front[i]` is true when no point has at least the same value on
/// both axes and more on one. Both axes are maximised; equal points are all on the front.
pub fn pareto_front(values: &[(f64, f64)]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        values[b]
            .0
            .total_cmp(&values[a].0)
            .then(values[b].1.total_cmp(&values[a].1))
            .then(a.cmp(&b))
    });
    let mut front = vec![false; values.len()];
    let mut best_second_of_greater_first = f64::NEG_INFINITY;
    let mut start = 0;
    while start < order.len() {
        let first = values[order[start]].0;
        let mut end = start;
        while end < order.len() && values[order[end]].0.total_cmp(&first) == Ordering::Equal {
            end += 1;
        }
        // Within a group of equal first values the second is descending: its head is the group's best.
        let group_best = values[order[start]].1;
        for &index in &order[start..end] {
            let second = values[index].1;
            let dominated_by_greater = best_second_of_greater_first >= second;
            let dominated_in_group = second < group_best;
            front[index] = !(dominated_by_greater || dominated_in_group);
        }
        best_second_of_greater_first = best_second_of_greater_first.max(group_best);
        start = end;
    }
    front
}

/// Picks at most `budget` candidates to simulate, returned in ascending index order.
///
/// `configuration_of[i]` groups candidates that differ only in load and replicas.
pub fn select_survivors(
    estimates: &[Estimate],
    configuration_of: &[usize],
    ttft_limit_ms: f64,
    itl_limit_ms: f64,
    budget: usize,
) -> Vec<usize> {
    let mut picked = vec![false; estimates.len()];
    let mut n_picked = 0;
    let sla_budget = (budget * 5).div_ceil(8);
    let mut per_configuration: BTreeMap<usize, usize> = BTreeMap::new();
    let mut take = |index: usize, picked: &mut Vec<bool>, n_picked: &mut usize, limit: usize| {
        let count = per_configuration.entry(configuration_of[index]).or_insert(0);
        if !picked[index] && *count < LOADS_PER_CONFIGURATION && *n_picked < limit {
            picked[index] = true;
            *count += 1;
            *n_picked += 1;
        }
    };
    // Inside the SLA (with margin), best estimated throughput first.
    let mut inside: Vec<usize> = (0..estimates.len())
        .filter(|&i| estimates[i].ttft_ms <= TTFT_MARGIN * ttft_limit_ms && estimates[i].itl_ms <= ITL_MARGIN * itl_limit_ms)
        .collect();
    inside.sort_by(|&a, &b| estimates[b].tok_s_per_gpu.total_cmp(&estimates[a].tok_s_per_gpu).then(a.cmp(&b)));
    for index in inside {
        take(index, &mut picked, &mut n_picked, sla_budget);
    }
    // Nearest to the SLA, when few or none are inside.
    if n_picked < sla_budget {
        let mut nearest: Vec<usize> = (0..estimates.len()).filter(|&i| estimates[i].ttft_ms < SATURATED_MS).collect();
        let violation = |i: usize| estimates[i].violation(ttft_limit_ms, itl_limit_ms);
        nearest.sort_by(|&a, &b| {
            violation(a)
                .total_cmp(&violation(b))
                .then(estimates[b].tok_s_per_gpu.total_cmp(&estimates[a].tok_s_per_gpu))
                .then(a.cmp(&b))
        });
        for index in nearest {
            take(index, &mut picked, &mut n_picked, sla_budget);
        }
    }
    // The front: in each log band of tokens/s per user, the best estimated throughput per GPU.
    let live: Vec<usize> = (0..estimates.len())
        .filter(|&i| estimates[i].ttft_ms < SATURATED_MS && estimates[i].tok_s_per_gpu > 0.0)
        .collect();
    if let (Some(low), Some(high)) = (
        live.iter().map(|&i| estimates[i].tok_s_per_user).min_by(f64::total_cmp),
        live.iter().map(|&i| estimates[i].tok_s_per_user).max_by(f64::total_cmp),
    ) {
        let span = (high / low).ln().max(1e-9);
        let mut best_in_band: Vec<Option<usize>> = vec![None; FRONT_BANDS];
        for &index in &live {
            let position = (estimates[index].tok_s_per_user / low).ln() / span;
            let band = ((position * FRONT_BANDS as f64) as usize).min(FRONT_BANDS - 1);
            let better = match best_in_band[band] {
                None => true,
                Some(current) => estimates[index].tok_s_per_gpu > estimates[current].tok_s_per_gpu,
            };
            if better {
                best_in_band[band] = Some(index);
            }
        }
        for index in best_in_band.into_iter().flatten().rev() {
            if !picked[index] && n_picked < budget {
                picked[index] = true;
                n_picked += 1;
            }
        }
    }
    (0..estimates.len()).filter(|&i| picked[i]).collect()
}

/// Picks candidates to simulate stratum by stratum (a stratum is one GPU type and mode, see
/// `run.rs`): [`select_survivors`] on each stratum alone with `budget_of(stratum)`, so that the
/// survivors of a GPU type and mode are the same whichever other GPU types are searched beside it.
/// Returned in ascending index order.
pub fn select_stratified(
    estimates: &[Estimate],
    configuration_of: &[usize],
    stratum_of: &[usize],
    ttft_limit_ms: f64,
    itl_limit_ms: f64,
    budget_of: impl Fn(usize) -> usize,
) -> Vec<usize> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, &stratum) in stratum_of.iter().enumerate() {
        members.entry(stratum).or_default().push(index);
    }
    let mut picked: Vec<usize> = Vec::new();
    for (stratum, indices) in members {
        let sub_estimates: Vec<Estimate> = indices.iter().map(|&i| estimates[i]).collect();
        let sub_configurations: Vec<usize> = indices.iter().map(|&i| configuration_of[i]).collect();
        let chosen = select_survivors(&sub_estimates, &sub_configurations, ttft_limit_ms, itl_limit_ms, budget_of(stratum));
        picked.extend(chosen.into_iter().map(|local| indices[local]));
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(values: &[(f64, f64)]) -> Vec<bool> {
        values
            .iter()
            .map(|&(a, b)| !values.iter().any(|&(c, d)| c >= a && d >= b && (c > a || d > b)))
            .collect()
    }

    #[test]
    fn front_matches_brute_force_with_ties() {
        let mut state = 12345u64;
        for _ in 0..200 {
            let values: Vec<(f64, f64)> = (0..30)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (((state >> 33) % 7) as f64, ((state >> 17) % 7) as f64)
                })
                .collect();
            assert_eq!(pareto_front(&values), brute_force(&values), "{values:?}");
        }
    }
}
