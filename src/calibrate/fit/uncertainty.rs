//! How well the measurements pin down each fitted coefficient: standard errors and 95% intervals
//! from (JᵀJ)⁻¹σ² at the solution, and the coefficients the data cannot tell apart.
//!
//! J is the Jacobian of all residuals (data and priors) in solver units u at the fit; σ² the data
//! residuals' variance, Σr² / (n − p) over the n data residuals and p fitted coefficients (the
//! usual nonlinear least-squares estimate, e.g. Seber & Wild, *Nonlinear Regression*, §2.1). The
//! prior rows make JᵀJ the posterior precision of a Gaussian prior, so an interval never exceeds
//! what the prior alone allows. In u the interval is u ± t₀.₉₇₅(n − p)·se(u); its ends are mapped
//! through the logistic bound into the coefficient's unit (the coefficient's own range, so the
//! interval is asymmetric near an end), and the standard error in the coefficient's unit is
//! |dc/du|·se(u) (the delta method).
//! Identifiability is judged on the data rows alone: an eigenvalue of the correlation-scaled JᵀJ
//! below [`NEAR_SINGULAR`] is a direction of coefficients the measurements cannot resolve.

use nalgebra::DMatrix;

use super::lm::{jacobian, near_singular_directions, t95};
use super::Objective;
use crate::model::coefficients::COEFFICIENT_INFO;

/// Eigenvalue of the correlation-scaled data JᵀJ below which a direction is unidentified: its
/// variance is inflated 10⁴ times over independent coefficients (standard errors 100 times).
pub const NEAR_SINGULAR: f64 = 1e-4;

/// Standard errors, intervals and identifiability warnings of a fit, per fitted slot.
#[derive(Debug, Clone, Default)]
pub struct Uncertainty {
    /// Standard error in the coefficient's unit.
    pub std_err: Vec<Option<f64>>,
    /// 95% interval in the coefficient's unit.
    pub ci95: Vec<Option<[f64; 2]>>,
    /// σ² of the data residuals (ln units²), when there is a degree of freedom.
    pub residual_variance: Option<f64>,
    /// Coefficients the measurements cannot tell apart, named.
    pub warnings: Vec<String>,
}

/// The uncertainty of the fit at solver parameters `u` (see the module doc).
pub(super) fn uncertainty(objective: &Objective<'_>, u: &[f64]) -> Uncertainty {
    let p = u.len();
    let n_data = objective.n_data();
    let mut residuals = |x: &[f64]| objective.residuals(x);
    let at_fit = residuals(u);
    let j = jacobian(&mut residuals, u, at_fit.len());
    let data_rows = j.rows(0, n_data).into_owned();
    let mut out = Uncertainty {
        std_err: vec![None; p],
        ci95: vec![None; p],
        residual_variance: None,
        warnings: identifiability_warnings(objective, &(data_rows.transpose() * &data_rows)),
    };
    let dof = n_data.saturating_sub(p);
    if dof == 0 {
        return out;
    }
    let variance = at_fit[..n_data].iter().map(|r| r * r).sum::<f64>() / dof as f64;
    out.residual_variance = Some(variance);
    let Some(covariance) = (j.transpose() * &j).try_inverse().map(|inverse| inverse * variance) else {
        return out;
    };
    let t = t95(dof);
    for slot in 0..p {
        let se_u = covariance[(slot, slot)].max(0.0).sqrt();
        if !se_u.is_finite() {
            continue;
        }
        out.std_err[slot] = Some(objective.slope_at(slot, u[slot]).abs() * se_u);
        let (low, high) = (
            objective.value_at(slot, u[slot] - t * se_u),
            objective.value_at(slot, u[slot] + t * se_u),
        );
        out.ci95[slot] = Some([low.min(high), low.max(high)]);
    }
    out
}

/// One warning per unresolved direction of the data's JᵀJ, naming its coefficients.
fn identifiability_warnings(objective: &Objective<'_>, normal: &DMatrix<f64>) -> Vec<String> {
    near_singular_directions(normal, NEAR_SINGULAR)
        .into_iter()
        .map(|slots| {
            let names: Vec<&str> = slots.iter().map(|&slot| COEFFICIENT_INFO[objective.fitted[slot]].name).collect();
            match names.as_slice() {
                [one] => format!(
                    "the measurements cannot identify {one} (near-singular JᵀJ: the points barely move it); its interval is the prior's"
                ),
                [first, rest @ ..] => format!(
                    "the measurements cannot tell {first} apart from {} (near-singular JᵀJ): only a combination of them is fitted, \
                     and their intervals are wide",
                    rest.join(", ")
                ),
                [] => String::new(),
            }
        })
        .filter(|warning| !warning.is_empty())
        .collect()
}
