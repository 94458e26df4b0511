//! Charts drawn with `plotters`: the Pareto figure of a search, and a profile's prefill and decode
//! curves, each as SVG text and as PNG bytes (no IO: the CLI writes them).
//!
//! A [`Figure`] is plain data (a title of one or two lines, panels side by side); [`Figure::svg`]
//! and [`Figure::png`] render it with the same drawing code. Text uses DejaVu Sans from the
//! `dejavu` crate, registered with plotters' `ab_glyph` font backend, so rendering needs no system
//! font and no fontconfig.

use std::sync::Once;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};

use super::dynamo::DynamoProfile;
use super::error::{Error, Result};
use super::result::{Point, SearchResult};

/// The font family every text of a figure uses (registered from the `dejavu` crate).
const FONT: &str = "sans-serif";
/// Height of the figure title area, pixels.
const TITLE_HEIGHT_PX: u32 = 56;

/// Grey: points outside the SLA.
pub const GREY: (u8, u8, u8) = (170, 170, 170);
/// Green: points that meet the SLA.
pub const GREEN: (u8, u8, u8) = (46, 139, 87);
/// Blue: the Pareto front and single curves.
pub const BLUE: (u8, u8, u8) = (65, 105, 225);
/// Red: SLA limits.
pub const RED: (u8, u8, u8) = (200, 30, 30);
/// Colours of successive curves.
pub const PALETTE: [(u8, u8, u8); 7] = [
    BLUE,
    GREEN,
    (255, 140, 0),
    (220, 20, 60),
    (128, 0, 128),
    (0, 128, 128),
    (218, 165, 32),
];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Dots.
    Scatter,
    /// A line through the points in order, with dots.
    Line,
    /// A line through the points in order, no dots.
    LineOnly,
}

/// One series of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// RGB colour.
    pub colour: (u8, u8, u8),
    /// How it is drawn.
    pub style: Style,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// A limit line across a panel (dashed, red).
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// A vertical line at this x.
    Vertical {
        /// Where, in x units.
        at: f64,
        /// Legend entry.
        label: String,
    },
    /// A horizontal line at this y.
    Horizontal {
        /// Where, in y units.
        at: f64,
        /// Legend entry.
        label: String,
    },
}

/// One chart of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption above the panel.
    pub caption: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// Logarithmic axes (for values spanning decades, such as TTFT under overload).
    pub log_axes: bool,
    /// Series, drawn in order.
    pub series: Vec<Series>,
    /// Limit lines.
    pub limits: Vec<Limit>,
    /// A marked point (a black ring) and its legend entry.
    pub selected: Option<((f64, f64), String)>,
}

/// A figure: a title and panels side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Title lines (one or two).
    pub title: Vec<String>,
    /// Panels, left to right.
    pub panels: Vec<Panel>,
    /// Size, pixels.
    pub size_px: (u32, u32),
}

fn register_dejavu() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // DejaVu Sans is a valid TrueType font: registering it cannot fail.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn colour((r, g, b): (u8, u8, u8)) -> RGBColor {
    RGBColor(r, g, b)
}

fn plot_error(chart: &str) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Plot {
        chart: chart.into(),
        message,
    }
}

impl Figure {
    /// The figure as an SVG document.
    pub fn svg(&self, name: &str) -> Result<String> {
        register_dejavu();
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, self.size_px).into_drawing_area();
            self.draw(&root).map_err(plot_error(name))?;
            root.present().map_err(|e| plot_error(name)(e.to_string()))?;
        }
        Ok(text)
    }

    /// The figure as a PNG image (8-bit RGB).
    pub fn png(&self, name: &str) -> Result<Vec<u8>> {
        register_dejavu();
        let (width, height) = self.size_px;
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, self.size_px).into_drawing_area();
            self.draw(&root).map_err(plot_error(name))?;
            root.present().map_err(|e| plot_error(name)(e.to_string()))?;
        }
        encode_png(&pixels, width, height).map_err(plot_error(name))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (title_area, body) = root.split_vertically(TITLE_HEIGHT_PX);
        for (index, line) in self.title.iter().enumerate() {
            let size = if index == 0 { 18 } else { 14 };
            title_area
                .draw_text(line, &(FONT, size).into_font().color(&BLACK), (12, 6 + 24 * index as i32))
                .map_err(|e| e.to_string())?;
        }
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for (panel, area) in self.panels.iter().zip(&areas) {
            if panel.log_axes {
                draw_log_panel(area, panel)?;
            } else {
                draw_linear_panel(area, panel)?;
            }
        }
        Ok(())
    }
}

fn encode_png(pixels: &[u8], width: u32, height: u32) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Every finite point of a panel, with the limits and the selected point.
fn extent(panel: &Panel) -> Vec<(f64, f64)> {
    let mut all: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .chain(panel.selected.iter().map(|(p, _)| *p))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    for limit in &panel.limits {
        match limit {
            Limit::Vertical { at, .. } => all.push((*at, f64::NAN)),
            Limit::Horizontal { at, .. } => all.push((f64::NAN, *at)),
        }
    }
    all
}

/// An axis label: whole numbers from 10 up, one decimal from 1, two below; no trailing `.0`.
fn tick_label(value: f64) -> String {
    let text = if value == 0.0 || value.abs() >= 10.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

fn max_of(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max)
}

fn min_positive(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite() && *v > 0.0).fold(f64::INFINITY, f64::min)
}

fn draw_linear_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> std::result::Result<(), String> {
    let all = extent(panel);
    let x_max = max_of(all.iter().map(|p| p.0)).max(1e-9) * 1.08;
    let y_max = max_of(all.iter().map(|p| p.1)).max(1e-9) * 1.08;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 15))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    draw_mesh(&mut chart, panel)?;
    draw_contents(&mut chart, panel, (0.0, x_max), (0.0, y_max))
}

/// The axes, labels and grid of a panel, on linear or log axes alike.
fn draw_mesh<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    panel: &Panel,
) -> std::result::Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .x_labels(8)
        .y_labels(8)
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())
}

fn draw_log_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> std::result::Result<(), String> {
    let all = extent(panel);
    let x_min = min_positive(all.iter().map(|p| p.0)).min(1e12) / 1.3;
    let y_min = min_positive(all.iter().map(|p| p.1)).min(1e12) / 1.3;
    let x_max = max_of(all.iter().map(|p| p.0)).max(x_min * 10.0) * 1.3;
    let y_max = max_of(all.iter().map(|p| p.1)).max(y_min * 10.0) * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 15))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    draw_mesh(&mut chart, panel)?;
    draw_contents(&mut chart, panel, (x_min, x_max), (y_min, y_max))
}

/// Series, limits, the selected point and the legend, on either kind of axes.
fn draw_contents<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    panel: &Panel,
    (x_low, x_high): (f64, f64),
    (y_low, y_high): (f64, f64),
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    for series in &panel.series {
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let c = colour(series.colour);
        if points.is_empty() {
            continue;
        }
        if matches!(series.style, Style::Line | Style::LineOnly) {
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(error)?;
        }
        let dots = !matches!(series.style, Style::LineOnly);
        if dots {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(error)?;
        }
        // One invisible point carries the legend entry.
        let legend = chart
            .draw_series(std::iter::once(Circle::new(points[0], 0, c.filled())))
            .map_err(error)?;
        legend.label(&series.name).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (18, 0)], c.stroke_width(if dots { 0 } else { 2 }))
                + Circle::new((9, 0), if dots { 4 } else { 0 }, c.filled())
        });
    }
    let red = colour(RED);
    for limit in &panel.limits {
        let (line, label) = match limit {
            Limit::Vertical { at, label } => (vec![(*at, y_low), (*at, y_high)], label),
            Limit::Horizontal { at, label } => (vec![(x_low, *at), (x_high, *at)], label),
        };
        chart
            .draw_series(DashedLineSeries::new(line, 8, 5, red.stroke_width(2)))
            .map_err(error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
    }
    if let Some((point, label)) = &panel.selected {
        chart
            .draw_series(std::iter::once(Circle::new(*point, 9, BLACK.stroke_width(3))))
            .map_err(error)?
            .label(label)
            .legend(|(x, y)| Circle::new((x + 9, y), 6, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(error)
}

/// `(x, y)` points of a series.
type Points = Vec<(f64, f64)>;

/// The workload and SLA line of a search's figure title.
fn search_title(result: &SearchResult, isl: u64, osl: u64) -> String {
    format!(
        "{} on {}: ISL {isl} / OSL {osl}; SLA TTFT ≤ {} ms and ITL ≤ {} ms at {}",
        result.model,
        result.gpus.join(", "),
        result.sla.ttft_ms,
        result.sla.itl_ms,
        result.sla.percentile
    )
}

fn describe(point: &Point) -> String {
    format!(
        "{} {} {} ({} GPUs, load {})",
        point.gpu,
        point.mode,
        point
            .xpyd
            .as_deref()
            .map_or(point.mapping.clone(), |xpyd| format!("{} as {xpyd}", point.mapping)),
        point.n_gpus,
        point
            .concurrency
            .map(|c| format!("{c} clients"))
            .or(point.request_rate.map(|r| format!("{r} req/s")))
            .unwrap_or_default()
    )
}

/// The Pareto figure of a search: output tokens/s per GPU against tokens/s per user (every
/// evaluated point, green when it meets the SLA, the front, the ITL limit), and TTFT against ITL
/// (both limits), with the selected configuration ringed in both.
pub fn pareto_figure(result: &SearchResult, isl: u64, osl: u64) -> Figure {
    let selected = result.best();
    let split = |f: &dyn Fn(&Point) -> (f64, f64)| -> (Points, Points) {
        let outside = result.points.iter().filter(|p| !p.feasible).map(f).collect();
        let inside = result.points.iter().filter(|p| p.feasible).map(f).collect();
        (outside, inside)
    };
    let throughput = |p: &Point| (p.tok_s_per_user, p.output_tok_s_per_gpu);
    let latency = |p: &Point| (p.itl_ms, p.ttft_ms);
    let scatter = |(outside, inside): (Points, Points)| {
        vec![
            Series {
                name: format!("outside SLA ({})", outside.len()),
                colour: GREY,
                style: Style::Scatter,
                points: outside,
            },
            Series {
                name: format!("meets SLA ({})", inside.len()),
                colour: GREEN,
                style: Style::Scatter,
                points: inside,
            },
        ]
    };
    let mut trade_off = scatter(split(&throughput));
    trade_off.push(Series {
        name: "Pareto front".into(),
        colour: BLUE,
        style: Style::LineOnly,
        points: result.pareto.iter().map(throughput).collect(),
    });
    let percentile = result.sla.percentile;
    let itl_label = format!("ITL limit {} ms ({percentile})", result.sla.itl_ms);
    let selected_label = |p: &Point| format!("selected: {}", p.label);
    Figure {
        title: vec![
            search_title(result, isl, osl),
            selected.map_or("nothing selected".into(), |p| format!("selected: {}", describe(p))),
        ],
        panels: vec![
            Panel {
                caption: "output tokens/s per GPU vs per user".into(),
                x_label: "tokens/s per user (1000 / ITL)".into(),
                y_label: "output tokens/s per GPU".into(),
                log_axes: false,
                series: trade_off,
                limits: vec![Limit::Vertical {
                    at: 1e3 / result.sla.itl_ms,
                    label: itl_label.clone(),
                }],
                selected: selected.map(|p| (throughput(p), selected_label(p))),
            },
            Panel {
                caption: format!("TTFT vs ITL at {percentile} (log scales)"),
                x_label: format!("ITL {percentile}, ms"),
                y_label: format!("TTFT {percentile}, ms"),
                log_axes: true,
                series: scatter(split(&latency)),
                limits: vec![
                    Limit::Vertical {
                        at: result.sla.itl_ms,
                        label: itl_label,
                    },
                    Limit::Horizontal {
                        at: result.sla.ttft_ms,
                        label: format!("TTFT limit {} ms ({percentile})", result.sla.ttft_ms),
                    },
                ],
                selected: selected.map(|p| (latency(p), selected_label(p))),
            },
        ],
        size_px: (1400, 620),
    }
}

/// The prefill figure of a Dynamo profile: TTFT of one request against its input length.
/// `caption` names the model, GPU, mapping and workload.
pub fn prefill_figure(profile: &DynamoProfile, caption: &str) -> Figure {
    let prefill = &profile.prefill;
    Figure {
        title: vec!["Prefill TTFT, batch 1 (selected_prefill_interpolation)".into(), caption.into()],
        panels: vec![Panel {
            caption: String::new(),
            x_label: "input length, tokens".into(),
            y_label: "TTFT, ms".into(),
            log_axes: false,
            series: vec![Series {
                name: "TTFT".into(),
                colour: BLUE,
                style: Style::Line,
                points: prefill
                    .prefill_isl
                    .iter()
                    .map(|&i| i as f64)
                    .zip(prefill.prefill_ttft.iter().copied())
                    .collect(),
            }],
            limits: Vec::new(),
            selected: None,
        }],
        size_px: (900, 600),
    }
}

/// The decode figure of a Dynamo profile: ITL against KV usage, one curve per context length.
/// `caption` names the model, GPU, mapping and workload.
pub fn decode_figure(profile: &DynamoProfile, caption: &str) -> Figure {
    let decode = &profile.decode;
    let mut contexts: Vec<f64> = decode.y_context_length.clone();
    contexts.dedup();
    let series = contexts
        .iter()
        .enumerate()
        .map(|(index, &context)| Series {
            name: format!("context {context:.0}"),
            colour: PALETTE[index % PALETTE.len()],
            style: Style::Line,
            points: (0..decode.z_itl.len())
                .filter(|&i| decode.y_context_length[i] == context)
                .map(|i| (decode.x_kv_usage[i], decode.z_itl[i]))
                .collect(),
        })
        .collect();
    Figure {
        title: vec!["Decode ITL by KV usage (selected_decode_interpolation)".into(), caption.into()],
        panels: vec![Panel {
            caption: String::new(),
            x_label: format!("KV usage (of {} tokens)", decode.max_kv_tokens),
            y_label: "ITL, ms".into(),
            log_axes: false,
            series,
            limits: Vec::new(),
            selected: None,
        }],
        size_px: (900, 600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_figure() -> Figure {
        Figure {
            title: vec!["title <&>".into(), "second line".into()],
            panels: vec![Panel {
                caption: "caption".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                log_axes: false,
                series: vec![Series {
                    name: "meets SLA (2)".into(),
                    colour: GREEN,
                    style: Style::Scatter,
                    points: vec![(1.0, 2.0), (3.0, 4.0), (f64::NAN, 1.0)],
                }],
                limits: vec![Limit::Horizontal {
                    at: 3.0,
                    label: "limit".into(),
                }],
                selected: Some(((3.0, 4.0), "selected: b".into())),
            }],
            size_px: (400, 300),
        }
    }

    #[test]
    fn svg_holds_the_texts_and_the_green_points() {
        let svg = small_figure().svg("t.svg").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["title &lt;&amp;&gt;", "second line", "meets SLA (2)", "limit", "selected: b"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two green dots (the NaN point is left out) plus the legend's.
        assert!(svg.matches("#2E8B57").count() >= 2 || svg.to_lowercase().matches("#2e8b57").count() >= 2);
    }

    #[test]
    fn png_has_the_size_and_draws_green_pixels() {
        let bytes = small_figure().png("t.png").unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (400, 300));
        let green = pixels.chunks(3).filter(|p| p == &[GREEN.0, GREEN.1, GREEN.2]).count();
        let dark = pixels.chunks(3).filter(|p| p.iter().all(|&c| c < 60)).count();
        assert!(green > 20, "{green} green pixels");
        assert!(dark > 100, "{dark} dark pixels: text and axes are drawn");
    }
}
