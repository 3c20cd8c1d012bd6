//! Drawing a [`Figure`] with plotters: panels in a grid of two columns (losses and scores side
//! by side, learning rate and momentum underneath), each with axes, ticks, gridlines and its
//! legend in a strip below the chart, where it never covers a curve.

use crate::figure::{Figure, MarkerKind, Panel, Style};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The picture's width, and the height of one row of panels, in pixels: readable on a laptop
/// screen, and in a README scaled to its column.
const WIDTH: u32 = 1400;
const ROW: u32 = 520;
/// Text sizes, in pixels.
pub(crate) const TITLE: u32 = 24;
pub(crate) const LABEL: u32 = 18;
pub(crate) const TICK: u32 = 15;
/// A legend entry's height.
const ENTRY: u32 = 22;
/// matplotlib's "tab10" colours.
pub(crate) const PALETTE: [RGBColor; 10] = [
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
];
pub(crate) const FONT: &str = "sans-serif";
/// The markers' colours: a checkpoint, a resumption.
const CHECKPOINT: RGBColor = RGBColor(90, 90, 90);
const RESUMED: RGBColor = RGBColor(200, 30, 30);

/// A failure to draw (plotters' message).
pub type DrawError = String;

/// The picture's size for `figure`: two panels per row.
pub fn size(figure: &Figure) -> (u32, u32) {
    let rows = figure.panels.len().div_ceil(2).max(1) as u32;
    (WIDTH, rows * ROW)
}

/// DejaVu Sans as plotters' sans-serif, once per process.
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A font the crate embeds always parses; were it not to, text would be missing, not
        // the picture.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws `figure` on `root` (of [`size`]).
pub fn draw<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
    register_font();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    if figure.panels.is_empty() {
        root.draw(&Text::new("nothing recorded to draw", (40, 40), (FONT, TITLE).into_font()))
            .map_err(|e| e.to_string())?;
        return root.present().map_err(|e| e.to_string());
    }
    let rows = figure.panels.len().div_ceil(2);
    let cells = root.split_evenly((rows, 2));
    for (panel, cell) in figure.panels.iter().zip(&cells) {
        draw_panel(figure, panel, cell)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The colour of each series of `panel`: a series drawn per batch and its moving average share
/// one (the same run's same key); every other series takes the next.
fn colours(panel: &Panel) -> Vec<RGBColor> {
    let mut seen: Vec<(usize, String)> = Vec::new();
    panel
        .series
        .iter()
        .map(|s| {
            let key = (s.run, s.label.replace(" (batch)", " (per batch)").replace(" (moving average)", " (per batch)"));
            let i = seen.iter().position(|k| *k == key).unwrap_or_else(|| {
                seen.push(key);
                seen.len() - 1
            });
            PALETTE[i % PALETTE.len()]
        })
        .collect()
}

/// A tick's label: at most four decimals without trailing zeros (`2.5`, `0.0125`, `3`), or
/// in scientific notation when very large or small (`1.0e10`, `2.5e-5`).
pub(crate) fn tick(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) {
        return format!("{v:.1e}");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The y range of `panel`'s values (log10 of them on a log axis), padded by 5 %.
fn y_range(panel: &Panel) -> (f64, f64) {
    let values = panel.series.iter().flat_map(|s| &s.points).map(|p| transform(panel, p.1)).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    match (lo.is_finite(), hi > lo) {
        (true, true) => (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)),
        (true, false) => {
            // One value, or all equal: a band around it.
            let pad = (lo.abs() * 0.1).max(1e-3);
            (lo - pad, lo + pad)
        }
        (false, _) => (0.0, 1.0),
    }
}

/// A value as the y axis places it: log10 on a log axis (non-positive values left out).
fn transform(panel: &Panel, v: f64) -> f64 {
    match panel.log_y {
        true if v > 0.0 => v.log10(),
        true => f64::NAN,
        false => v,
    }
}

fn draw_panel<DB: DrawingBackend>(
    figure: &Figure,
    panel: &Panel,
    cell: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let marker_entries = if panel.title == "loss" { marker_legend(figure).len() as u32 } else { 0 };
    let entries = panel.series.len() as u32 + marker_entries;
    let columns = 2u32;
    let legend_height = entries.div_ceil(columns) * ENTRY + 16;
    let (_, height) = cell.dim_in_pixel();
    let (chart_area, legend_area) = cell.split_vertically(height.saturating_sub(legend_height).max(ROW / 2));
    let (lo, hi) = y_range(panel);
    let x_max = figure.epochs.max(1) as f64;
    let log_y = panel.log_y;
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(&panel.title, (FONT, TITLE))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(if log_y { format!("{} (log)", panel.title) } else { panel.title.clone() })
        .axis_desc_style((FONT, LABEL))
        .label_style((FONT, TICK))
        .x_labels(figure.epochs.clamp(2, 12) + 1)
        .y_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(if log_y { 10f64.powf(*y) } else { *y }))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    for m in &figure.markers {
        let line = [(m.x, lo), (m.x, hi)];
        match m.kind {
            // Dashed and grey: a checkpoint, not a curve.
            MarkerKind::Checkpoint(_) => {
                let style = ShapeStyle::from(&CHECKPOINT.mix(0.8)).stroke_width(1);
                chart.draw_series(DashedLineSeries::new(line, 6, 4, style)).map_err(err)?;
            }
            MarkerKind::Resumed => {
                chart.draw_series(LineSeries::new(line, RESUMED.stroke_width(2))).map_err(err)?;
            }
        }
    }
    let colours = colours(panel);
    for (s, colour) in panel.series.iter().zip(&colours) {
        let points: Vec<(f64, f64)> =
            s.points.iter().map(|&(x, v)| (x, transform(panel, v))).filter(|p| p.1.is_finite()).collect();
        match s.style {
            Style::Faint => {
                chart.draw_series(LineSeries::new(points, colour.mix(0.25).stroke_width(1))).map_err(err)?;
            }
            Style::Line => {
                chart.draw_series(LineSeries::new(points, colour.stroke_width(2))).map_err(err)?;
            }
            Style::Points => {
                let dashed = ShapeStyle::from(colour).stroke_width(1);
                chart.draw_series(DashedLineSeries::new(points.clone(), 5, 4, dashed)).map_err(err)?;
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.stroke_width(2)))).map_err(err)?;
            }
        }
        // An epoch whose `<key>_best` flag is set: a filled marker.
        let best = s.best.iter().map(|&(x, v)| (x, transform(panel, v))).filter(|p| p.1.is_finite());
        chart.draw_series(best.map(|p| Circle::new(p, 6, colour.filled()))).map_err(err)?;
    }
    let markers = if panel.title == "loss" { marker_legend(figure) } else { Vec::new() };
    draw_legend(panel, &colours, &markers, &legend_area)
}

/// The legend entries of the markers (once, under the loss panel): one for the checkpoints
/// (naming their keys), one for the resumptions.
fn marker_legend(figure: &Figure) -> Vec<(String, ShapeStyle)> {
    let mut keys: Vec<&str> = Vec::new();
    for m in &figure.markers {
        if let MarkerKind::Checkpoint(key) = &m.kind {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    let mut entries = Vec::new();
    if !keys.is_empty() {
        entries.push((format!("checkpoint saved ({})", keys.join(", ")), CHECKPOINT.stroke_width(1)));
    }
    if figure.markers.iter().any(|m| m.kind == MarkerKind::Resumed) {
        entries.push(("training resumed".into(), RESUMED.stroke_width(2)));
    }
    entries
}

/// The legend strip: a sample of each series' line and its label, in two columns.
fn draw_legend<DB: DrawingBackend>(
    panel: &Panel,
    colours: &[RGBColor],
    markers: &[(String, ShapeStyle)],
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (width, _) = area.dim_in_pixel();
    let column = (width as i32 - 100) / 2;
    let font = (FONT, TICK).into_font();
    let mut entries: Vec<(String, ShapeStyle)> = panel
        .series
        .iter()
        .zip(colours)
        .map(|(s, c)| {
            let style = match s.style {
                Style::Faint => c.mix(0.35).stroke_width(2),
                _ => c.stroke_width(2),
            };
            let best = if s.best.is_empty() { "" } else { " (filled: best)" };
            (format!("{}{best}", s.label), style)
        })
        .collect();
    entries.extend(markers.iter().cloned());
    for (i, (label, style)) in entries.iter().enumerate() {
        let (x, y) = (92 + (i as i32 % 2) * column, 8 + (i as i32 / 2) * ENTRY as i32);
        area.draw(&PathElement::new(vec![(x, y + 8), (x + 28, y + 8)], *style)).map_err(err)?;
        area.draw(&Text::new(label.clone(), (x + 36, y), font.clone())).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_short_whatever_the_scale() {
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.0125), "0.0125");
        assert_eq!(tick(-0.0), "0");
        assert_eq!(tick(1e10), "1.0e10");
        assert_eq!(tick(0.000025), "2.5e-5");
    }
}
