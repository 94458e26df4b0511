//! Prints `predict`'s report as a compact human table (its JSON is the library's `PredictReport`).

use sglsim::api::PredictReport;

/// The human table of `predict`.
pub fn predict_table(report: &PredictReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} on {} × {} ({})\n",
        report.model, report.n_gpus, report.gpu, report.mode
    ));
    for engine in &report.engines {
        out.push_str(&format!(
            "  {:<10} {} × {} ({}): weights {:.1} GB/GPU, KV {} tokens, max running {}, mem_fraction_static {:.3}\n",
            format!("{:?}", engine.role).to_lowercase(),
            engine.count,
            engine.mapping,
            engine.mapping_kind,
            engine.weights_gb_per_gpu,
            engine.kv_capacity_tokens,
            engine.max_running_requests,
            engine.mem_fraction_static
        ));
    }
    out.push_str(&format!(
        "  prefill (1 request alone) {:.2} ms, decode step {:.2} ms\n\n",
        report.prefill_ms, report.decode_step_ms
    ));
    out.push_str(&format!(
        "  {:<10} {:>10} {:>10} {:>10} {:>10}\n",
        "metric", "mean", "p50", "p90", "p99"
    ));
    for (name, d) in [
        ("TTFT ms", report.ttft_ms),
        ("ITL ms", report.itl_ms),
        ("TPOT ms", report.tpot_ms),
        ("E2E ms", report.e2e_ms),
    ] {
        out.push_str(&format!(
            "  {:<10} {:>10.2} {:>10.2} {:>10.2} {:>10.2}\n",
            name, d.mean, d.p50, d.p90, d.p99
        ));
    }
    let t = report.throughput;
    out.push_str(&format!(
        "\n  {} requests in {:.2} s: {:.1} output tok/s ({:.1}/GPU), {:.1} input tok/s, {:.2} req/s",
        report.n_requests, report.duration_s, t.output_tok_s, t.output_tok_s_per_gpu, t.input_tok_s, t.request_s
    ));
    if report.n_retractions > 0 {
        out.push_str(&format!(", {} retractions", report.n_retractions));
    }
    out.push('\n');
    if let Some(goodput) = report.goodput {
        out.push_str(&format!(
            "  SLA met by {:.1}% of requests: goodput {:.2} req/s, {:.1} output tok/s\n",
            goodput.fraction_meeting_sla * 100.0,
            goodput.request_s,
            goodput.output_tok_s
        ));
    }
    out
}
