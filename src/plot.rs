//! Report figures (plotters), each written as SVG and PNG. Text in PNGs is drawn with the bundled
//! DejaVu Sans (`assets/fonts`, its licence beside it), so figures look the same on any machine;
//! SVGs name the `sans-serif` family and leave the font to the viewer.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const SIZE: (u32, u32) = (900, 600);
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is bundled, so this cannot fail at run time; a broken asset shows in the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One marked point: an LLM or an oracle.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPoint {
    pub label: String,
    pub cost: f64,
    pub quality: f64,
    pub kind: PointKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Llm,
    /// An LLM on the Pareto front.
    ParetoLlm,
    Oracle,
    /// The trained router.
    Router,
}

/// The cost–quality figure of one table: every LLM, the oracles, and the non-decreasing convex
/// hull (the zero router), written as `<base>.svg` and `<base>.png`.
pub fn cost_quality(
    title: &str,
    points: &[LabelledPoint],
    hull: &[(f64, f64)],
    curves: &[(String, Vec<(f64, f64)>)],
    base: &Path,
) -> Result<Vec<PathBuf>> {
    write_both(
        base,
        SIZE,
        |area| draw_cost_quality(area, title, points, hull, curves),
        |area| draw_cost_quality(area, title, points, hull, curves),
    )
}

/// Draw with an SVG backend into a string and with a bitmap backend into a buffer, then write
/// both files atomically.
fn write_both<F, G>(base: &Path, size: (u32, u32), svg: F, png: G) -> Result<Vec<PathBuf>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String>,
    G: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
{
    register_font();
    let fail =
        |path: &Path, message: String| Error::input(format!("drawing `{}` failed: {message}", path.display()), "");
    let svg_path = base.with_extension("svg");
    let mut text = String::new();
    svg(SVGBackend::with_string(&mut text, size).into_drawing_area()).map_err(|m| fail(&svg_path, m))?;
    crate::io::write_text(&text, &svg_path)?;

    let png_path = base.with_extension("png");
    let mut pixels = vec![255u8; (size.0 * size.1 * 3) as usize];
    png(BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area()).map_err(|m| fail(&png_path, m))?;
    crate::io::write_atomic(&png_path, |out| {
        let mut encoder = png::Encoder::new(out, size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(&png_path, e.to_string()))?;
        writer.write_image_data(&pixels).map_err(|e| fail(&png_path, e.to_string()))?;
        writer.finish().map_err(|e| fail(&png_path, e.to_string()))
    })?;
    Ok(vec![svg_path, png_path])
}

fn padded_range(values: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() || !high.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((high - low) * 0.08).max(high.abs() * 0.02).max(1e-9);
    (low - pad)..(high + pad)
}

fn draw_cost_quality<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    title: &str,
    points: &[LabelledPoint],
    hull: &[(f64, f64)],
    curves: &[(String, Vec<(f64, f64)>)],
) -> std::result::Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(error)?;
    let curve_points = curves.iter().flat_map(|(_, curve)| curve.iter());
    let x = padded_range(
        points.iter().map(|p| p.cost).chain(hull.iter().map(|p| p.0)).chain(curve_points.clone().map(|p| p.0)),
    );
    // Room on the right for the labels of the costliest points.
    let x = x.start..x.end + (x.end - x.start) * 0.2;
    let y =
        padded_range(points.iter().map(|p| p.quality).chain(hull.iter().map(|p| p.1)).chain(curve_points.map(|p| p.1)));
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("mean cost per query ($)")
        .y_desc("mean quality")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(error)?;
    let hull_color = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(hull.iter().copied(), hull_color.stroke_width(2)))
        .map_err(error)?
        .label("zero router (non-decreasing hull)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], hull_color.stroke_width(2)));
    // Each router's λ sweep: a thin line through small markers, in colours after the hull's.
    for (index, (name, curve)) in curves.iter().enumerate() {
        let color = PALETTE[(index + 1) % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(curve.iter().copied(), color.stroke_width(1)))
            .map_err(error)?
            .label(format!("{name} (cost penalty λ swept)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(curve.iter().map(|&p| Circle::new(p, 2, color.filled()))).map_err(error)?;
    }
    for (kind, color, name) in [
        (PointKind::Llm, RGBColor(127, 127, 127), "LLM"),
        (PointKind::ParetoLlm, RGBColor(44, 160, 44), "LLM on the Pareto front"),
        (PointKind::Oracle, RGBColor(214, 39, 40), "oracle"),
        (PointKind::Router, RGBColor(148, 103, 189), "trained router (λ = 0)"),
    ] {
        let chosen: Vec<&LabelledPoint> = points.iter().filter(|p| p.kind == kind).collect();
        if chosen.is_empty() {
            continue;
        }
        chart
            .draw_series(chosen.iter().map(|p| Circle::new((p.cost, p.quality), 5, color.filled())))
            .map_err(error)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        chart
            .draw_series(
                chosen.iter().map(|p| {
                    Text::new(p.label.clone(), (p.cost, p.quality), ("sans-serif", 12).into_font().color(&BLACK))
                }),
            )
            .map_err(error)?;
    }
    legend(&mut chart)?;
    area.present().map_err(error)
}

/// The series labels in the lower right corner.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())
}

/// matplotlib's tab10, then the light halves of tab20: 20 series before a colour repeats.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

/// One series of a bar chart: a value (or none) per category.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    pub label: String,
    pub values: Vec<Option<f64>>,
    /// An interval per category drawn as an error bar over the bar (empty: none).
    pub intervals: Vec<Option<(f64, f64)>>,
}

/// Horizontal grouped bars: one group per category (top to bottom), one bar per series, with
/// the value written at the end of each bar (after its error bar, when it has one). Written as
/// `<base>.svg` and `<base>.png`.
pub fn grouped_bars(
    title: &str,
    value_label: &str,
    categories: &[String],
    series: &[BarSeries],
    base: &Path,
) -> Result<Vec<PathBuf>> {
    let rows = categories.len().max(1) as u32;
    let per_group = series.len().max(1) as u32 * 14 + 14;
    let size = (1000, (150 + rows * per_group).max(400));
    write_both(
        base,
        size,
        |area| draw_grouped_bars(area, title, value_label, categories, series),
        |area| draw_grouped_bars(area, title, value_label, categories, series),
    )
}

fn draw_grouped_bars<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    title: &str,
    value_label: &str,
    categories: &[String],
    series: &[BarSeries],
) -> std::result::Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(error)?;
    let high = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, &b| a.max(b));
    let x_max = if high <= 100.0 { 100.0 } else { high * 1.1 };
    let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(4) as u32;
    let legend_width = series.iter().map(|s| s.label.chars().count()).max().unwrap_or(4) as u32 * 8 + 50;
    let n = categories.len() as f64;
    let root = area.clone();
    let area = area.titled(title, ("sans-serif", 22)).map_err(error)?;
    let width = area.dim_in_pixel().0;
    let (plot, legend) = area.split_horizontally(width.saturating_sub(legend_width.min(400)));
    for (index, one) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let y = 30 + index as i32 * 22;
        legend.draw(&Rectangle::new([(4, y - 6), (18, y + 6)], color.filled())).map_err(error)?;
        legend
            .draw(&Text::new(
                one.label.clone(),
                (24, y),
                ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(error)?;
    }
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(longest * 8 + 16)
        .build_cartesian_2d(0.0..x_max * 1.12, 0.0..n)
        .map_err(error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(value_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(error)?;
    let slot = 0.85 / series.len().max(1) as f64;
    for (index, one) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let bars = one.values.iter().enumerate().filter_map(|(category, value)| {
            let value = (*value)?;
            // Category 0 at the top.
            let top = n - category as f64 - 0.075 - slot * index as f64;
            Some(Rectangle::new([(0.0, top - slot * 0.9), (value, top)], color.filled()))
        });
        chart.draw_series(bars).map_err(error)?;
        // Error bars: a line from low to high through the bar's middle, with end ticks.
        for (category, interval) in one.intervals.iter().enumerate() {
            let Some((low, high)) = *interval else { continue };
            let middle = n - category as f64 - 0.075 - slot * index as f64 - slot * 0.45;
            let tick = slot * 0.3;
            let lines = [
                vec![(low, middle), (high, middle)],
                vec![(low, middle - tick), (low, middle + tick)],
                vec![(high, middle - tick), (high, middle + tick)],
            ];
            chart
                .draw_series(lines.into_iter().map(|points| PathElement::new(points, BLACK.stroke_width(1))))
                .map_err(error)?;
        }
        let numbers = one.values.iter().enumerate().filter_map(|(category, value)| {
            let value = (*value)?;
            let middle = n - category as f64 - 0.075 - slot * index as f64 - slot * 0.45;
            let end = one.intervals.get(category).copied().flatten().map_or(value, |(_, high)| high.max(value));
            Some(Text::new(
                format!("{value:.1}"),
                (end + x_max * 0.005, middle),
                ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
        });
        chart.draw_series(numbers).map_err(error)?;
    }
    for (category, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, n - category as f64 - 0.5));
        root.draw(&Text::new(
            name.clone(),
            (x - 8, y),
            ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(error)?;
    }
    root.present().map_err(error)
}

/// Training curves: the loss per step (top) and evaluation scores per step (bottom, one line
/// per series). Written as `<base>.svg` and `<base>.png`.
pub fn training_curves(
    title: &str,
    loss: &[(f64, f64)],
    scores: &[(String, Vec<(f64, f64)>)],
    base: &Path,
) -> Result<Vec<PathBuf>> {
    write_both(
        base,
        (900, 800),
        |area| draw_training_curves(area, title, loss, scores),
        |area| draw_training_curves(area, title, loss, scores),
    )
}

fn draw_training_curves<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    title: &str,
    loss: &[(f64, f64)],
    scores: &[(String, Vec<(f64, f64)>)],
) -> std::result::Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(error)?;
    let area = area.titled(title, ("sans-serif", 22)).map_err(error)?;
    let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2);
    let steps = padded_range(loss.iter().map(|p| p.0).chain(scores.iter().flat_map(|s| s.1.iter().map(|p| p.0))));
    let steps = steps.start.max(0.0)..steps.end;

    let mut chart = ChartBuilder::on(&top)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(steps.clone(), padded_range(loss.iter().map(|p| p.1)))
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("training loss")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(error)?;
    chart.draw_series(LineSeries::new(loss.iter().copied(), PALETTE[0].stroke_width(1))).map_err(error)?;

    let mut chart = ChartBuilder::on(&bottom)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(steps, padded_range(scores.iter().flat_map(|s| s.1.iter().map(|p| p.1))))
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("acc_predict (%)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(error)?;
    for (index, (label, points)) in scores.iter().enumerate() {
        let color = PALETTE[(index + 1) % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(error)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(error)?;
    }
    if !scores.is_empty() {
        legend(&mut chart)?;
    }
    area.present().map_err(error)
}
