use super::*;
use crate::calibrate::ingest::{Load, MeasuredMetrics, Provenance, SourceKind, Summary};
use crate::model::gpu::GpuCatalog;
use crate::model::mapping::ParallelMapping;
use crate::model::model_catalog::find_bundled_spec;
use crate::model::server_args::ServerArgs;

fn engine(coefficients: Coefficients) -> EngineConfig {
    let model = find_bundled_spec("Llama-3.1-8B-Instruct").unwrap().unwrap();
    let mapping = ParallelMapping::new(&model, 1, 1, 1).unwrap();
    EngineConfig {
        model,
        gpu: GpuCatalog::builtin().unwrap().find("h100").unwrap().clone(),
        mapping,
        server_args: ServerArgs::sglang_defaults(),
        coefficients,
    }
}

fn point(workload: Workload, measured: MeasuredMetrics) -> MeasuredPoint {
    MeasuredPoint {
        workload,
        measured,
        provenance: Provenance {
            path: "synthetic".into(),
            kind: SourceKind::DynamoPrefill,
            label: String::new(),
        },
    }
}

/// Dynamo-style points (batch-1 prefill by length, decode by batch and context) measured on a
/// "GPU" whose coefficients are `truth`.
fn synthetic_points(truth: &Coefficients) -> Vec<MeasuredPoint> {
    let step = StepModel::new(engine(truth.clone())).unwrap();
    let mut points = Vec::new();
    for isl in [16, 64, 128, 256, 1000, 2000, 4000, 8000, 16000, 32000] {
        let ms = step.prefill_s(isl) * 1e3;
        points.push(point(
            Workload::PrefillAlone { isl_tokens: isl },
            MeasuredMetrics {
                ttft_ms: Some(Summary::mean_only(ms)),
                ..MeasuredMetrics::default()
            },
        ));
    }
    for batch in [1, 16, 64, 256] {
        for context in [500, 8000, 30000] {
            let ms = step.decode_step_s(batch, context).total_s * 1e3;
            points.push(point(
                Workload::DecodeStep {
                    batch,
                    context_tokens: context,
                },
                MeasuredMetrics {
                    itl_ms: Some(Summary::mean_only(ms)),
                    ..MeasuredMetrics::default()
                },
            ));
        }
    }
    points
}

fn config(start: Coefficients, leave_one_out: LeaveOneOut) -> FitConfig {
    FitConfig {
        engine: engine(start),
        choice: CoefficientChoice::Auto,
        // A weak prior: the recovery test checks the objective and the solver, not the prior's pull.
        prior_weight: 0.01,
        max_iters: 600,
        leave_one_out,
        max_sim_requests: 50,
        seed: 0,
    }
}

#[test]
fn fit_recovers_known_coefficients_from_synthetic_measurements() {
    let start = Coefficients::defaults();
    let mut truth = start.clone();
    truth.gemm_bf16_eff = 0.62;
    truth.attn_prefill_eff = 0.5;
    // Above the GPU time of the shortest prefills, so that they are launch-bound and identify it.
    truth.eager_launch_us = 45.0;
    truth.gemm_mem_eff = 0.72;
    truth.attn_decode_mem_eff = 0.7;
    let points = synthetic_points(&truth);
    let mut n_progress = 0u64;
    let counter = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let seen = std::rc::Rc::clone(&counter);
    let report = fit(
        &points,
        &config(start.clone(), LeaveOneOut::Skip),
        Some(Box::new(move |_progress: &FitProgress| seen.set(seen.get() + 1))),
    )
    .unwrap();
    n_progress += counter.get();
    assert!(n_progress > 10, "the observer heard {n_progress} iterations");
    // Tolerance: coefficients the data identify strongly (sensitivity at least 0.1) within 3% of the
    // truth, weakly identified ones within 10%, and predictions within 1%.
    let truth_values = truth.to_vec();
    let fitted_values = report.coefficients.to_vec();
    for coefficient in &report.fitted {
        let index = COEFFICIENT_INFO.iter().position(|i| i.name == coefficient.name).unwrap();
        if coefficient.status == CoefficientStatus::NotIdentified {
            continue;
        }
        let error = (fitted_values[index] / truth_values[index] - 1.0).abs();
        let tolerance = if coefficient.sensitivity >= 0.1 { 0.03 } else { 0.10 };
        assert!(
            error < tolerance,
            "{}: fitted {} truth {} start {}\n{} after {} iterations, cost {}\n{:#?}",
            coefficient.name,
            fitted_values[index],
            truth_values[index],
            coefficient.start,
            report.termination,
            report.iterations,
            report.cost_after,
            report.fitted
        );
    }
    for name in ["gemm_bf16_eff", "attn_prefill_eff", "gemm_mem_eff", "attn_decode_mem_eff"] {
        let status = report.fitted.iter().find(|c| c.name == name).unwrap().status;
        assert_eq!(status, CoefficientStatus::Moved, "{name}");
    }
    // A BF16 dense model says nothing about FP8 GEMMs or MoE kernels.
    for name in ["gemm_fp8_eff", "moe_mem_eff"] {
        let status = report.fitted.iter().find(|c| c.name == name).unwrap().status;
        assert_eq!(status, CoefficientStatus::NotIdentified, "{name}");
    }
    assert!(report.median_ape_before_pct > 5.0, "{}", report.median_ape_before_pct);
    assert!(report.median_ape_after_pct < 1.0, "{}", report.median_ape_after_pct);
    assert!(report.cost_after < report.cost_before);
}

#[test]
fn leave_one_out_predicts_left_out_points() {
    let start = Coefficients::defaults();
    let mut truth = start.clone();
    truth.gemm_bf16_eff = 0.6;
    truth.gemm_mem_eff = 0.75;
    let points = synthetic_points(&truth);
    let report = fit(
        &points,
        &config(
            start,
            LeaveOneOut::Refit {
                max_iters: 150,
                max_points: 4,
            },
        ),
        None,
    )
    .unwrap();
    assert_eq!(report.n_loo_points, 4);
    let loo = report.loo_median_ape_pct.unwrap();
    assert!(
        loo < 5.0 && loo < report.median_ape_before_pct,
        "{loo} vs {}",
        report.median_ape_before_pct
    );
}

#[test]
fn too_few_points_are_refused_with_the_reason() {
    let points = synthetic_points(&Coefficients::defaults());
    let mut unusable = points[0].clone();
    unusable.measured = MeasuredMetrics::default();
    let few = [points[0].clone(), points[12].clone(), unusable];
    let error = fit(&few, &config(Coefficients::defaults(), LeaveOneOut::Skip), None).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::TooFewPoints {
                n_points: 2,
                needed: 3,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("no TTFT, ITL, TPOT"), "{message}");
}

#[test]
fn served_points_are_predicted_through_the_simulator() {
    let step = StepModel::new(engine(Coefficients::defaults())).unwrap();
    let served = point(
        Workload::Served {
            isl_tokens: 1000,
            osl_tokens: 64,
            lengths: crate::calibrate::ingest::Lengths::Fixed,
            load: Load::Concurrency(4),
            n_requests: 1000,
            n_warmup: 0,
        },
        MeasuredMetrics::default(),
    );
    let predicted = predict_point(&step, &served, 50, 0).unwrap();
    let ttft = predicted.ttft_ms.unwrap().p50.unwrap();
    let tpot = predicted.tpot_ms.unwrap().p50.unwrap();
    let decode_ms = step.decode_step_s(4, 1032).total_s * 1e3;
    assert!(ttft > step.prefill_s(1000) * 1e3 * 0.9, "{ttft}");
    assert!(tpot > decode_ms * 0.9 && tpot < decode_ms * 2.0, "{tpot} vs {decode_ms}");
}

#[test]
fn coefficients_whose_range_starts_at_zero_are_fitted_on_a_linear_scale() {
    let start = Coefficients::defaults();
    let mut truth = start.clone();
    truth.prefill_fixed_ms = 4.0;
    let points = synthetic_points(&truth);
    let mut config = config(start, LeaveOneOut::Skip);
    config.choice = CoefficientChoice::Named(vec!["prefill_fixed_ms".into()]);
    let report = fit(&points, &config, None).unwrap();
    let fitted = report.fitted.iter().find(|c| c.name == "prefill_fixed_ms").unwrap();
    assert!((fitted.fitted / 4.0 - 1.0).abs() < 0.03, "{fitted:?}");
    assert_eq!(fitted.status, CoefficientStatus::Moved);
    assert!(!fitted.at_bound);
}

/// `points` with each measured value scaled by exp(ε), ε drawn from N(0, `sigma`²) with a fixed seed.
fn with_noise(points: &[MeasuredPoint], sigma: f64, seed: u64) -> Vec<MeasuredPoint> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, sigma).unwrap();
    let scale = |summary: &mut Option<Summary>, factor: f64| {
        if let Some(summary) = summary {
            summary.mean = summary.mean.map(|v| v * factor);
        }
    };
    points
        .iter()
        .map(|point| {
            let mut noisy = point.clone();
            scale(&mut noisy.measured.ttft_ms, normal.sample(&mut rng).exp());
            scale(&mut noisy.measured.itl_ms, normal.sample(&mut rng).exp());
            noisy
        })
        .collect()
}

#[test]
fn the_fit_converges_and_its_intervals_cover_the_truth() {
    let start = Coefficients::defaults();
    let mut truth = start.clone();
    truth.gemm_bf16_eff = 0.62;
    truth.attn_prefill_eff = 0.5;
    truth.gemm_mem_eff = 0.72;
    truth.attn_decode_mem_eff = 0.7;
    // 2% measurement noise (log-normal), as repeated benchmark runs scatter.
    let points = with_noise(&synthetic_points(&truth), 0.02, 7);
    let mut config = config(start, LeaveOneOut::Skip);
    config.choice = CoefficientChoice::Named(vec![
        "gemm_bf16_eff".into(),
        "attn_prefill_eff".into(),
        "gemm_mem_eff".into(),
        "attn_decode_mem_eff".into(),
    ]);
    let report = fit(&points, &config, None).unwrap();
    assert_eq!(report.solver, "levenberg-marquardt");
    assert!(report.termination.starts_with("converged"), "{}", report.termination);
    assert!(report.iterations < config.max_iters, "{}", report.iterations);
    // σ² near the noise's 0.02² = 4e-4 (22 targets, 4 coefficients).
    let variance = report.residual_variance.unwrap();
    assert!(variance > 1e-4 && variance < 1e-3, "{variance}");
    let truth_values = truth.to_vec();
    let mut covered = 0;
    for coefficient in &report.fitted {
        let index = COEFFICIENT_INFO.iter().position(|i| i.name == coefficient.name).unwrap();
        let std_err = coefficient.std_err.unwrap();
        let [low, high] = coefficient.ci95.unwrap();
        assert!(
            std_err > 0.0 && low < coefficient.fitted && coefficient.fitted < high,
            "{coefficient:?}"
        );
        // A 95% interval is about ±2 standard errors wide (t with 18 degrees of freedom is 2.10).
        let width_in_se = (high - low) / std_err;
        assert!(width_in_se > 3.5 && width_in_se < 4.8, "{coefficient:?}");
        covered += usize::from(low <= truth_values[index] && truth_values[index] <= high);
    }
    assert!(covered >= 3, "{covered} of 4 intervals hold the truth: {:#?}", report.fitted);
}

#[test]
fn coefficients_repeats_of_one_workload_cannot_separate_are_named() {
    // Four runs of one decode step (batch 64, 8k context): every point moves weight streaming
    // (gemm_mem_eff) and KV streaming (attn_decode_mem_eff) in the same proportion, so only a
    // combination of the two is identified.
    let step = StepModel::new(engine(Coefficients::defaults())).unwrap();
    let ms = step.decode_step_s(64, 8000).total_s * 1e3;
    let points: Vec<MeasuredPoint> = [0.97, 1.0, 1.02, 1.05]
        .iter()
        .map(|factor| {
            point(
                Workload::DecodeStep {
                    batch: 64,
                    context_tokens: 8000,
                },
                MeasuredMetrics {
                    itl_ms: Some(Summary::mean_only(ms * factor)),
                    ..MeasuredMetrics::default()
                },
            )
        })
        .collect();
    let mut config = config(Coefficients::defaults(), LeaveOneOut::Skip);
    config.choice = CoefficientChoice::Named(vec!["gemm_mem_eff".into(), "attn_decode_mem_eff".into()]);
    let report = fit(&points, &config, None).unwrap();
    assert!(
        report.fitted.iter().all(|c| c.status != CoefficientStatus::NotIdentified),
        "{:#?}",
        report.fitted
    );
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("near-singular"))
        .unwrap_or_else(|| panic!("{:?}", report.warnings));
    assert!(
        warning.starts_with("the measurements cannot tell ") && warning.contains("gemm_mem_eff") && warning.contains("attn_decode_mem_eff"),
        "{warning}"
    );
}

#[test]
fn coefficients_pinned_at_their_bounds_are_said_plainly() {
    // A "server" 10 times slower than anything the plausible ranges allow.
    let mut points = synthetic_points(&Coefficients::defaults());
    for point in &mut points {
        for summary in [&mut point.measured.ttft_ms, &mut point.measured.itl_ms].into_iter().flatten() {
            summary.mean = summary.mean.map(|v| v * 10.0);
        }
    }
    let mut config = config(Coefficients::defaults(), LeaveOneOut::Skip);
    config.choice = CoefficientChoice::Named(vec!["gemm_bf16_eff".into(), "gemm_mem_eff".into()]);
    let report = fit(&points, &config, None).unwrap();
    assert!(report.fitted.iter().all(|c| c.at_bound), "{:#?}", report.fitted);
    let warning = report.warnings.iter().find(|w| w.contains("end of their plausible range")).unwrap();
    assert!(
        warning.starts_with("2 of 2 fitted coefficients") && warning.contains("does not describe this server"),
        "{warning}"
    );
}
