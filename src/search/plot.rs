//! Hand-written SVG charts: the Pareto front of a search, and a profile's prefill and decode curves.
//!
//! [`chart`] draws series of points (scatter or polyline) on linear axes with ticks, a legend and an
//! optional vertical marker (the ITL limit as tokens/s per user). No dependency, no IO: it returns text.

use std::fmt::Write;

use super::result::SearchResult;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Dots.
    Scatter,
    /// A line through the points in order, with dots.
    Line,
}

/// One series of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// CSS colour.
    pub colour: &'static str,
    /// How it is drawn.
    pub style: Style,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// A chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// Series, drawn in order.
    pub series: Vec<Series>,
    /// A dashed vertical line at this x, with its label.
    pub marker: Option<(f64, String)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" tick step for a range: 1, 2 or 5 times a power of ten, about five ticks.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(1e-12);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 1000.0 || value == value.round() {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Draws a chart as an SVG document.
pub fn chart(chart: &Chart) -> String {
    let all: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .chain(chart.marker.iter().map(|(x, _)| (*x, 0.0)))
        .collect();
    let max_x = all.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let max_y = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.05;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / max_x * plot_width;
    let sy = |y: f64| TOP + plot_height - y / max_y * plot_height;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + plot_width / 2.0,
        escape(&chart.title)
    );
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="black"/>"#
    );
    let step_x = tick_step(max_x);
    let mut x = 0.0;
    while x <= max_x {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
            sx(x),
            TOP,
            TOP + plot_height,
            TOP + plot_height + 16.0,
            format_tick(x)
        );
        x += step_x;
    }
    let step_y = tick_step(max_y);
    let mut y = 0.0;
    while y <= max_y {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{3:.1}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            sy(y),
            LEFT + plot_width,
            LEFT - 6.0,
            sy(y) + 4.0,
            format_tick(y)
        );
        y += step_y;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 18.0,
        escape(&chart.x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">{1}</text>"#,
        TOP + plot_height / 2.0,
        escape(&chart.y_label)
    );
    if let Some((marker_x, label)) = &chart.marker {
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="crimson" stroke-dasharray="6 4"/><text x="{3:.1}" y="{4}" fill="crimson">{5}</text>"#,
            sx(*marker_x),
            TOP,
            TOP + plot_height,
            sx(*marker_x) + 4.0,
            TOP + 14.0,
            escape(label)
        );
    }
    for (index, series) in chart.series.iter().enumerate() {
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if series.style == Style::Line && points.len() > 1 {
            let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                path.join(" "),
                series.colour
            );
        }
        for &(x, y) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}" fill-opacity="0.8"/>"#,
                sx(x),
                sy(y),
                series.colour
            );
        }
        let legend_y = TOP + 10.0 + index as f64 * 20.0;
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{legend_y:.1}" r="5" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT + 16.0,
            series.colour,
            WIDTH - RIGHT + 26.0,
            legend_y + 4.0,
            escape(&series.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The Pareto chart of a search: every evaluated point, the feasible ones, the front and the ITL limit.
pub fn pareto_chart(result: &SearchResult) -> String {
    let axes = |filter: &dyn Fn(&super::result::Point) -> bool| -> Vec<(f64, f64)> {
        result
            .points
            .iter()
            .filter(|p| filter(p))
            .map(|p| (p.tok_s_per_user, p.output_tok_s_per_gpu))
            .collect()
    };
    let front: Vec<(f64, f64)> = result.pareto.iter().map(|p| (p.tok_s_per_user, p.output_tok_s_per_gpu)).collect();
    chart(&Chart {
        title: format!("{}: output tokens/s per GPU vs per user", result.model),
        x_label: "tokens/s per user (1000 / ITL)".into(),
        y_label: "output tokens/s per GPU".into(),
        series: vec![
            Series {
                name: "outside SLA".into(),
                colour: "#aaaaaa",
                style: Style::Scatter,
                points: axes(&|p| !p.feasible),
            },
            Series {
                name: "meets SLA".into(),
                colour: "seagreen",
                style: Style::Scatter,
                points: axes(&|p| p.feasible),
            },
            Series {
                name: "Pareto front".into(),
                colour: "royalblue",
                style: Style::Line,
                points: front,
            },
        ],
        marker: Some((
            1e3 / result.sla.itl_ms,
            format!("ITL {} ms ({})", result.sla.itl_ms, result.sla.percentile),
        )),
    })
}
