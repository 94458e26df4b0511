//! Calibrated profiles: fitted coefficients with where they came from, as JSON.
//!
//! A [`Profile`] is `{"schema_version": 1, "coefficients": {...}, "provenance": {...}}`; the fit
//! summary in the provenance carries each fitted coefficient's `std_err` and `ci95` under
//! `uncertainty` (an optional key, so profiles written before it still read). The
//! coefficient table has the schema of `data/coefficients.toml`, so
//! [`Coefficients::from_json`](crate::model::coefficients::Coefficients::from_json) reads a profile
//! as it is (it ignores `provenance`) and `sglsim predict --profile fitted.json` uses it.
//! [`to_json`] and [`from_json`] convert text; reading and writing files is the caller's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::fit::FitReport;
use super::ingest::SourceSummary;
use crate::model::coefficients::Coefficients;

/// The schema version this build writes and reads.
pub const PROFILE_SCHEMA_VERSION: u32 = 1;

/// A source of measurements named in a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSource {
    /// The file.
    pub path: String,
    /// Its format (`aiperf-run`, `dynamo-prefill`, ...).
    pub kind: String,
    /// Points read from it.
    pub n_points: usize,
}

impl From<&SourceSummary> for ProfileSource {
    fn from(source: &SourceSummary) -> ProfileSource {
        ProfileSource {
            path: source.path.clone(),
            kind: source.kind.name().to_string(),
            n_points: source.n_points,
        }
    }
}

/// How well the fit matched the measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Measured points used.
    pub n_points: usize,
    /// Median absolute % error with the starting coefficients.
    pub median_ape_before: f64,
    /// Median absolute % error with the fitted coefficients.
    pub median_ape_after: f64,
    /// Median absolute % error of points predicted by fits that left them out (absent when not computed).
    pub loo_median_ape: Option<f64>,
    /// Standard error and 95% interval of each fitted coefficient, in its unit, by name (absent
    /// from profiles written before intervals were reported, and for coefficients without one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uncertainty: BTreeMap<String, CoefficientUncertainty>,
}

/// How well a fit pinned down one coefficient, in the coefficient's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientUncertainty {
    /// Standard error.
    pub std_err: f64,
    /// 95% interval `[low, high]`.
    pub ci95: [f64; 2],
}

impl From<&FitReport> for FitSummary {
    fn from(report: &FitReport) -> FitSummary {
        FitSummary {
            n_points: report.n_points,
            median_ape_before: report.median_ape_before_pct,
            median_ape_after: report.median_ape_after_pct,
            loo_median_ape: report.loo_median_ape_pct,
            uncertainty: report
                .fitted
                .iter()
                .filter_map(|c| {
                    let (std_err, ci95) = (c.std_err?, c.ci95?);
                    let finite = std_err.is_finite() && ci95.iter().all(|v| v.is_finite());
                    finite.then(|| (c.name.to_string(), CoefficientUncertainty { std_err, ci95 }))
                })
                .collect(),
        }
    }
}

/// What a profile was fitted for and from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileProvenance {
    /// Catalog GPU name.
    pub gpu: String,
    /// Model measured.
    pub model: String,
    /// `--tp` of the engine measured.
    pub tp: u32,
    /// `--dp` of the engine measured.
    pub dp: u32,
    /// `--ep` of the engine measured.
    pub ep: u32,
    /// SGLang release measured, when known.
    pub sglang_version: Option<String>,
    /// Date of the fit (`YYYY-MM-DD`).
    pub date: String,
    /// Measurement files.
    pub sources: Vec<ProfileSource>,
    /// Fit quality.
    pub fit: FitSummary,
}

/// A calibrated coefficient profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`PROFILE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The coefficients.
    pub coefficients: Coefficients,
    /// Where they came from.
    pub provenance: ProfileProvenance,
}

impl Profile {
    /// A profile of a fit's coefficients.
    pub fn new(report: &FitReport, provenance: ProfileProvenance) -> Profile {
        Profile {
            schema_version: PROFILE_SCHEMA_VERSION,
            coefficients: report.coefficients.clone(),
            provenance,
        }
    }
}

/// The profile as pretty JSON; non-finite fit errors are written as `null`.
pub fn to_json(profile: &Profile) -> Result<String> {
    let mut profile = profile.clone();
    profile.coefficients.validate()?;
    let fit = &mut profile.provenance.fit;
    if !fit.median_ape_before.is_finite() || !fit.median_ape_after.is_finite() {
        return Err(Error::BadProfile {
            path: "<memory>".into(),
            message: "fit errors are not finite numbers".into(),
        });
    }
    fit.loo_median_ape = fit.loo_median_ape.filter(|v| v.is_finite());
    serde_json::to_string_pretty(&profile).map_err(|e| Error::BadProfile {
        path: "<memory>".into(),
        message: e.to_string(),
    })
}

/// Reads a profile; `path` names it in errors.
pub fn from_json(text: &str, path: &str) -> Result<Profile> {
    let profile: Profile = serde_json::from_str(text).map_err(|e| Error::BadProfile {
        path: path.into(),
        message: e.to_string(),
    })?;
    if profile.schema_version != PROFILE_SCHEMA_VERSION {
        return Err(Error::BadProfile {
            path: path.into(),
            message: format!(
                "schema_version is {}; this build reads version {PROFILE_SCHEMA_VERSION}",
                profile.schema_version
            ),
        });
    }
    profile.coefficients.validate()?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        let mut coefficients = Coefficients::defaults();
        coefficients.gemm_bf16_eff = 0.61;
        Profile {
            schema_version: PROFILE_SCHEMA_VERSION,
            coefficients,
            provenance: ProfileProvenance {
                gpu: "h100-sxm".into(),
                model: "Qwen/Qwen3-8B".into(),
                tp: 1,
                dp: 1,
                ep: 1,
                sglang_version: Some("0.5.5".into()),
                date: "2026-11-27".into(),
                sources: vec![ProfileSource {
                    path: "runs/c4".into(),
                    kind: "aiperf-run".into(),
                    n_points: 1,
                }],
                fit: FitSummary {
                    n_points: 12,
                    median_ape_before: 20.0,
                    median_ape_after: 3.0,
                    loo_median_ape: Some(4.5),
                    uncertainty: BTreeMap::from([(
                        "gemm_bf16_eff".to_string(),
                        CoefficientUncertainty {
                            std_err: 0.02,
                            ci95: [0.57, 0.65],
                        },
                    )]),
                },
            },
        }
    }

    #[test]
    fn profiles_round_trip_and_predict_reads_them() {
        let profile = sample();
        let text = to_json(&profile).unwrap();
        assert_eq!(from_json(&text, "p.json").unwrap(), profile);
        // `predict --profile` reads profiles through Coefficients::from_json, which ignores provenance.
        assert_eq!(Coefficients::from_json(&text, "p.json").unwrap(), profile.coefficients);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in ["gpu", "model", "tp", "dp", "ep", "sglang_version", "date", "sources", "fit"] {
            assert!(value["provenance"].get(key).is_some(), "{key}");
        }
        for key in ["n_points", "median_ape_before", "median_ape_after", "loo_median_ape"] {
            assert!(value["provenance"]["fit"].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn intervals_are_written_and_profiles_without_them_still_read() {
        let text = to_json(&sample()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let spread = &value["provenance"]["fit"]["uncertainty"]["gemm_bf16_eff"];
        assert_eq!(spread["std_err"], 0.02);
        assert_eq!(spread["ci95"], serde_json::json!([0.57, 0.65]));
        // A profile written before intervals were reported.
        let mut old = sample();
        old.provenance.fit.uncertainty.clear();
        let old_text = to_json(&old).unwrap();
        assert!(!old_text.contains("uncertainty"), "{old_text}");
        assert_eq!(from_json(&old_text, "old.json").unwrap(), old);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let text = to_json(&sample())
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        assert!(from_json(&text, "p.json").unwrap_err().to_string().contains("schema_version is 2"));
        let out_of_range = to_json(&sample()).unwrap().replace("0.61", "1.7");
        assert!(from_json(&out_of_range, "p.json")
            .unwrap_err()
            .to_string()
            .contains("gemm_bf16_eff"));
        assert!(from_json("{", "p.json").unwrap_err().to_string().starts_with("profile p.json"));
    }
}
