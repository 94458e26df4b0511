//! Levenberg–Marquardt on a residual vector, with nalgebra for the Jacobian's normal equations.
//!
//! Minimises ½‖r(u)‖² over unbounded parameters u (Marquardt 1963, with his diagonal scaling:
//! each step solves (JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr by Cholesky, λ shrinking after a step that lowers
//! the cost and growing after one that does not). The Jacobian is taken by central differences,
//! since the residuals come from the simulator and step model (no analytic derivatives).
//! It stops when the cost's relative change, the step or the gradient is negligible, or when no
//! damping finds a lower cost (a minimum, or an objective too rough for derivatives: the caller
//! then falls back to Nelder–Mead).

use nalgebra::{DMatrix, DVector};

/// Central-difference step of the Jacobian, in solver (logit) units: about 1% of a coefficient's
/// log range near the middle, large enough to step over the simulator's integer-nanosecond clock.
pub const JACOBIAN_STEP: f64 = 0.02;
/// Solver parameters are kept within ±this (logit units): σ(8) = 0.99966, so a coefficient can come
/// within 0.03% of its range's end, and the logistic curve never flattens to zero slope in floating point.
pub const MAX_ABS_U: f64 = 8.0;
/// Relative cost change of one iteration below which the fit has converged.
const COST_TOLERANCE: f64 = 1e-9;
/// Relative cost change over [`STALL_WINDOW`] iterations below which the fit has converged: the
/// simulator's residuals move in steps (integer-nanosecond clock, discrete batches), so a long run
/// of tiny gains is the solver crawling along a plateau or a range's end, not approaching a minimum.
const STALL_TOLERANCE: f64 = 1e-5;
const STALL_WINDOW: usize = 5;
/// Largest step component (logit units) below which the fit has converged.
const STEP_TOLERANCE: f64 = 1e-7;
/// Damping bounds.
const LAMBDA_START: f64 = 1e-3;
const LAMBDA_MAX: f64 = 1e10;

/// What a Levenberg–Marquardt run ended with.
#[derive(Debug, Clone)]
pub struct LmRun {
    /// The best parameters.
    pub u: Vec<f64>,
    /// ‖r‖² there.
    pub cost: f64,
    /// Iterations (Jacobians taken).
    pub iterations: u64,
    /// Why it stopped.
    pub termination: String,
    /// Steps that lowered the cost (0: it never moved from `u0`).
    pub accepted_steps: u64,
}

/// The Jacobian dr/du by central differences (rows: residuals; columns: parameters), each
/// parameter stepped by [`JACOBIAN_STEP`] within [`MAX_ABS_U`].
pub fn jacobian(residuals: &mut dyn FnMut(&[f64]) -> Vec<f64>, u: &[f64], n_residuals: usize) -> DMatrix<f64> {
    let mut matrix = DMatrix::zeros(n_residuals, u.len());
    for slot in 0..u.len() {
        let mut up = u.to_vec();
        let mut down = u.to_vec();
        up[slot] = (u[slot] + JACOBIAN_STEP).min(MAX_ABS_U);
        down[slot] = (u[slot] - JACOBIAN_STEP).max(-MAX_ABS_U);
        let span = up[slot] - down[slot];
        let (r_up, r_down) = (residuals(&up), residuals(&down));
        for row in 0..n_residuals {
            matrix[(row, slot)] = (r_up[row] - r_down[row]) / span;
        }
    }
    matrix
}

fn sum_of_squares(r: &[f64]) -> f64 {
    r.iter().map(|x| x * x).sum()
}

/// The damped Gauss–Newton step: solves (A + λ·diag(A)) δ = −g, with a floor on the diagonal so a
/// parameter the residuals do not move still gets a finite (small) step.
fn damped_step(normal: &DMatrix<f64>, gradient: &DVector<f64>, lambda: f64) -> Option<DVector<f64>> {
    let mut damped = normal.clone();
    let floor = normal.diagonal().max().max(1e-12) * 1e-9;
    for i in 0..damped.nrows() {
        damped[(i, i)] += lambda * normal[(i, i)].max(floor) + floor;
    }
    damped.cholesky().map(|c| -c.solve(gradient))
}

/// Runs Levenberg–Marquardt from `u0` for at most `max_iters` iterations; `on_iteration` hears
/// (iteration, best cost) after each.
pub fn levenberg_marquardt(
    residuals: &mut dyn FnMut(&[f64]) -> Vec<f64>,
    u0: &[f64],
    max_iters: u64,
    on_iteration: &mut dyn FnMut(u64, f64),
) -> LmRun {
    let mut u: Vec<f64> = u0.iter().map(|x| x.clamp(-MAX_ABS_U, MAX_ABS_U)).collect();
    let mut r = residuals(&u);
    let mut cost = sum_of_squares(&r);
    let mut lambda = LAMBDA_START;
    let mut iterations = 0;
    let mut accepted_steps = 0;
    let mut history: Vec<f64> = Vec::new();
    let stop = |u: Vec<f64>, cost, iterations, why: &str, accepted_steps| LmRun {
        u,
        cost,
        iterations,
        termination: why.to_string(),
        accepted_steps,
    };
    while iterations < max_iters {
        iterations += 1;
        let j = jacobian(residuals, &u, r.len());
        let normal = j.transpose() * &j;
        let gradient = j.transpose() * DVector::from_column_slice(&r);
        if gradient.amax() < 1e-12 {
            on_iteration(iterations, cost);
            return stop(u, cost, iterations, "converged: gradient is zero", accepted_steps);
        }
        let mut accepted = None;
        while lambda <= LAMBDA_MAX {
            let Some(step) = damped_step(&normal, &gradient, lambda) else {
                lambda *= 10.0;
                continue;
            };
            let trial: Vec<f64> = u
                .iter()
                .zip(step.iter())
                .map(|(x, d)| (x + d).clamp(-MAX_ABS_U, MAX_ABS_U))
                .collect();
            let trial_r = residuals(&trial);
            let trial_cost = sum_of_squares(&trial_r);
            if trial_cost.is_finite() && trial_cost < cost {
                lambda = (lambda / 3.0).max(1e-12);
                accepted = Some((trial, trial_r, trial_cost, step.amax()));
                break;
            }
            lambda *= 4.0;
        }
        let Some((trial, trial_r, trial_cost, step_size)) = accepted else {
            on_iteration(iterations, cost);
            return stop(u, cost, iterations, "converged: no damped step lowers the cost", accepted_steps);
        };
        let relative = (cost - trial_cost) / cost.max(f64::MIN_POSITIVE);
        let step_size = trial.iter().zip(&u).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max).min(step_size);
        (u, r, cost) = (trial, trial_r, trial_cost);
        accepted_steps += 1;
        history.push(cost);
        on_iteration(iterations, cost);
        if relative < COST_TOLERANCE {
            return stop(u, cost, iterations, "converged: relative change in cost below 1e-9", accepted_steps);
        }
        if step_size < STEP_TOLERANCE {
            return stop(u, cost, iterations, "converged: step below 1e-7", accepted_steps);
        }
        if history.len() > STALL_WINDOW {
            let earlier = history[history.len() - 1 - STALL_WINDOW];
            if (earlier - cost) / earlier.max(f64::MIN_POSITIVE) < STALL_TOLERANCE {
                return stop(
                    u,
                    cost,
                    iterations,
                    "converged: relative change in cost below 1e-5 over 5 iterations",
                    accepted_steps,
                );
            }
        }
    }
    stop(u, cost, iterations, "iteration cap reached before convergence", accepted_steps)
}

/// Two-sided 95% quantile of Student's t with `dof` degrees of freedom (1.96 beyond 30).
pub fn t95(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::INFINITY,
        1..=30 => TABLE[dof - 1],
        _ => 1.96,
    }
}

/// Directions the data cannot resolve: for each eigenvalue of the correlation-scaled JᵀJ
/// (D^-½ JᵀJ D^-½, D its diagonal) below `threshold`, the slots of its eigenvector's components,
/// largest first (those above 0.3 in magnitude). A slot whose column of J is all zero is one too.
pub fn near_singular_directions(normal: &DMatrix<f64>, threshold: f64) -> Vec<Vec<usize>> {
    let p = normal.nrows();
    let diagonal: Vec<f64> = (0..p).map(|i| normal[(i, i)]).collect();
    let max_diagonal = diagonal.iter().copied().fold(0.0, f64::max);
    let live: Vec<usize> = (0..p).filter(|&i| diagonal[i] > 1e-12 * max_diagonal.max(1e-300)).collect();
    let mut out: Vec<Vec<usize>> = (0..p).filter(|i| !live.contains(i)).map(|i| vec![i]).collect();
    if live.len() < 2 {
        return out;
    }
    let scaled = DMatrix::from_fn(live.len(), live.len(), |a, b| {
        let (i, j) = (live[a], live[b]);
        normal[(i, j)] / (diagonal[i] * diagonal[j]).sqrt()
    });
    let eigen = scaled.symmetric_eigen();
    for (k, &value) in eigen.eigenvalues.iter().enumerate() {
        if value >= threshold {
            continue;
        }
        let vector = eigen.eigenvectors.column(k);
        let mut members: Vec<(usize, f64)> = (0..live.len())
            .filter(|&a| vector[a].abs() > 0.3)
            .map(|a| (live[a], vector[a].abs()))
            .collect();
        members.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.push(members.into_iter().map(|(slot, _)| slot).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// r = (u0 − 1, 10 (u1 − u0²)): Rosenbrock's valley, minimum 0 at (1, 1).
    fn rosenbrock(u: &[f64]) -> Vec<f64> {
        vec![u[0] - 1.0, 10.0 * (u[1] - u[0] * u[0])]
    }

    #[test]
    fn converges_to_rosenbrocks_minimum_before_any_cap() {
        let mut heard = 0;
        let run = levenberg_marquardt(&mut rosenbrock, &[-1.2, 1.0], 200, &mut |_, _| heard += 1);
        assert!(run.termination.starts_with("converged"), "{run:?}");
        assert!(run.iterations < 100, "{run:?}");
        assert_eq!(heard, run.iterations);
        // Central differences are exact for this quadratic-in-u residual, so the minimum is found
        // to the step tolerance.
        assert!((run.u[0] - 1.0).abs() < 1e-4 && (run.u[1] - 1.0).abs() < 1e-4, "{run:?}");
        assert!(run.cost < 1e-10, "{run:?}");
    }

    #[test]
    fn the_jacobian_of_a_linear_map_is_its_matrix() {
        // r = (2 u0 + 3 u1, −u1): J = [[2, 3], [0, −1]] exactly.
        let mut linear = |u: &[f64]| vec![2.0 * u[0] + 3.0 * u[1], -u[1]];
        let j = jacobian(&mut linear, &[0.5, -0.25], 2);
        let expected = [[2.0, 3.0], [0.0, -1.0]];
        for (row, values) in expected.iter().enumerate() {
            for (col, value) in values.iter().enumerate() {
                assert!((j[(row, col)] - value).abs() < 1e-12, "{j}");
            }
        }
    }

    #[test]
    fn an_iteration_cap_is_reported_as_such() {
        let run = levenberg_marquardt(&mut rosenbrock, &[-1.2, 1.0], 1, &mut |_, _| {});
        assert_eq!(run.termination, "iteration cap reached before convergence");
    }

    #[test]
    fn student_t_quantiles_match_the_table() {
        assert_eq!(t95(1), 12.706);
        assert_eq!(t95(10), 2.228);
        assert_eq!(t95(1000), 1.96);
        assert!(t95(0).is_infinite());
    }

    #[test]
    fn confounded_and_dead_parameters_are_named() {
        // Columns 0 and 1 of J equal (only their sum is seen), column 2 independent, column 3 zero.
        let j = DMatrix::from_row_slice(3, 4, &[1.0, 1.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0, 0.5, 0.5, -1.0, 0.0]);
        let normal = j.transpose() * &j;
        let mut directions = near_singular_directions(&normal, 1e-6);
        for members in &mut directions {
            members.sort_unstable();
        }
        directions.sort();
        assert_eq!(directions, vec![vec![0, 1], vec![3]]);
        let identity = DMatrix::<f64>::identity(3, 3);
        assert!(near_singular_directions(&identity, 1e-6).is_empty());
    }
}
