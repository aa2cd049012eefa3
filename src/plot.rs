//! Report figures (plotters), each written as SVG and PNG. Text in PNGs is drawn with the bundled
//! DejaVu Sans (`assets/fonts`, its licence beside it), so figures look the same on any machine;
//! SVGs name the `sans-serif` family and leave the font to the viewer.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

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
}

/// The cost–quality figure of one table: every LLM, the oracles, and the non-decreasing convex
/// hull (the zero router), written as `<base>.svg` and `<base>.png`.
pub fn cost_quality(title: &str, points: &[LabelledPoint], hull: &[(f64, f64)], base: &Path) -> Result<Vec<PathBuf>> {
    write_both(
        base,
        |area| draw_cost_quality(area, title, points, hull),
        |area| draw_cost_quality(area, title, points, hull),
    )
}

/// Draw with an SVG backend into a string and with a bitmap backend into a buffer, then write
/// both files atomically.
fn write_both<F, G>(base: &Path, svg: F, png: G) -> Result<Vec<PathBuf>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String>,
    G: FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
{
    register_font();
    let fail =
        |path: &Path, message: String| Error::input(format!("drawing `{}` failed: {message}", path.display()), "");
    let svg_path = base.with_extension("svg");
    let mut text = String::new();
    svg(SVGBackend::with_string(&mut text, SIZE).into_drawing_area()).map_err(|m| fail(&svg_path, m))?;
    crate::io::write_text(&text, &svg_path)?;

    let png_path = base.with_extension("png");
    let mut pixels = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    png(BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area()).map_err(|m| fail(&png_path, m))?;
    crate::io::write_atomic(&png_path, |out| {
        let mut encoder = png::Encoder::new(out, SIZE.0, SIZE.1);
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
) -> std::result::Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(error)?;
    let x = padded_range(points.iter().map(|p| p.cost).chain(hull.iter().map(|p| p.0)));
    // Room on the right for the labels of the costliest points.
    let x = x.start..x.end + (x.end - x.start) * 0.2;
    let y = padded_range(points.iter().map(|p| p.quality).chain(hull.iter().map(|p| p.1)));
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
    for (kind, color, name) in [
        (PointKind::Llm, RGBColor(127, 127, 127), "LLM"),
        (PointKind::ParetoLlm, RGBColor(44, 160, 44), "LLM on the Pareto front"),
        (PointKind::Oracle, RGBColor(214, 39, 40), "oracle"),
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(error)?;
    area.present().map_err(error)
}
