//! Perturbed coefficients: a twin that differs from the cost model's defaults in a known, seeded way.
//!
//! [`perturb`] multiplies every coefficient by a factor drawn uniformly from `[1 − F, 1 + F]` with a
//! seeded ChaCha RNG, then clamps it to the coefficient's plausible range from [`COEFFICIENT_INFO`].
//! Calibration can then be tested end to end: fit against a twin whose true profile is hidden.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::ServeError;
use crate::model::coefficients::{Coefficients, COEFFICIENT_INFO};

/// Coefficients each scaled by a seeded factor in `[1 − fraction, 1 + fraction]`, clamped to their ranges.
pub fn perturb(coefficients: &Coefficients, fraction: f64, seed: u64) -> Result<Coefficients, ServeError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(ServeError::BadValue {
            field: "--perturb".into(),
            value: fraction.to_string(),
            expected: "a fraction in [0, 1)".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = COEFFICIENT_INFO
        .iter()
        .zip(coefficients.to_vec())
        .map(|(info, value)| {
            let factor = if fraction > 0.0 {
                rng.gen_range(1.0 - fraction..=1.0 + fraction)
            } else {
                1.0
            };
            (value * factor).clamp(info.min, info.max)
        })
        .collect();
    Ok(Coefficients::from_slice(&values)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_stay_within_the_fraction_and_the_ranges() {
        let defaults = Coefficients::defaults();
        let perturbed = perturb(&defaults, 0.2, 11).unwrap();
        assert_eq!(perturbed, perturb(&defaults, 0.2, 11).unwrap(), "seeded");
        assert_ne!(perturbed, perturb(&defaults, 0.2, 12).unwrap());
        let mut changed = 0;
        for ((info, before), after) in COEFFICIENT_INFO.iter().zip(defaults.to_vec()).zip(perturbed.to_vec()) {
            assert!(after >= info.min && after <= info.max, "{} = {after}", info.name);
            let clamped = after == info.min || after == info.max;
            assert!(clamped || (after / before - 1.0).abs() <= 0.2 + 1e-12, "{}", info.name);
            changed += usize::from(after != before);
        }
        assert!(changed > COEFFICIENT_INFO.len() / 2);
        assert_eq!(perturb(&defaults, 0.0, 5).unwrap(), defaults);
        assert!(perturb(&defaults, 1.5, 5).unwrap_err().to_string().contains("--perturb"));
    }
}
