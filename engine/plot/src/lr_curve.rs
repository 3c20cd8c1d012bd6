//! The learning-rate finder's picture: the loss against the learning rate (a log axis), raw
//! (faint) and smoothed, with the suggested rates marked.

use crate::draw::{register_font, tick, FONT, LABEL, PALETTE, TICK, TITLE};
use crate::Picture;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A suggested rate to mark on the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct LrMark {
    /// Its name in the legend (`steepest`, `valley`).
    pub name: String,
    /// The rate.
    pub lr: f64,
    /// The smoothed loss there.
    pub loss: f64,
}

/// A learning-rate sweep: each batch's rate and loss, the smoothed losses, the suggestions.
#[derive(Debug, Clone, PartialEq)]
pub struct LrCurve {
    /// Each batch's learning rate.
    pub lrs: Vec<f64>,
    /// Each batch's loss.
    pub losses: Vec<f64>,
    /// The smoothed losses.
    pub smoothed: Vec<f64>,
    /// The suggested rates.
    pub marks: Vec<LrMark>,
}

impl Picture for LrCurve {
    fn size(&self) -> (u32, u32) {
        (1000, 640)
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        register_font();
        root.fill(&WHITE).map_err(err)?;
        let finite = |v: &&f64| v.is_finite() && **v > 0.0;
        let (x_lo, x_hi) = bounds(self.lrs.iter().filter(finite).copied());
        // The y axis shows the smoothed curve without its last five points, as fastai's plot
        // leaves them out, and half its range again above: the diverging tail would otherwise
        // flatten everything else (values beyond are drawn at the edge).
        let shown = self.smoothed.len().saturating_sub(5).max(self.smoothed.len().min(2));
        let (s_lo, s_hi) = bounds(self.smoothed[..shown].iter().filter(|v| v.is_finite()).copied());
        let raw_lo =
            self.losses[..shown.min(self.losses.len())].iter().filter(|v| v.is_finite()).fold(s_lo, |a, &v| a.min(v));
        let (y_lo, y_hi) = (raw_lo - 0.05 * (s_hi - raw_lo), s_hi + 0.5 * (s_hi - raw_lo));
        let mut chart = ChartBuilder::on(root)
            .caption("learning-rate finder", (FONT, TITLE))
            .margin(16)
            .x_label_area_size(52)
            .y_label_area_size(80)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("learning rate (log)")
            .y_desc("loss")
            .axis_desc_style((FONT, LABEL))
            .label_style((FONT, TICK))
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| tick(*y))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(err)?;
        let points = |values: &[f64]| -> Vec<(f64, f64)> {
            self.lrs
                .iter()
                .zip(values)
                .filter(|(lr, v)| lr.is_finite() && **lr > 0.0 && v.is_finite())
                .map(|(&lr, &v)| (lr, v.clamp(y_lo, y_hi)))
                .collect()
        };
        let colour = PALETTE[0];
        chart
            .draw_series(LineSeries::new(points(&self.losses), colour.mix(0.3).stroke_width(1)))
            .map_err(err)?
            .label("loss (batch)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.mix(0.4).stroke_width(2)));
        chart
            .draw_series(LineSeries::new(points(&self.smoothed), colour.stroke_width(2)))
            .map_err(err)?
            .label("loss (smoothed)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2)));
        for (i, m) in self.marks.iter().enumerate() {
            let c = PALETTE[(i + 1) % PALETTE.len()];
            let label = format!("{}: {}", m.name, tick(m.lr));
            chart
                .draw_series([Circle::new((m.lr, m.loss.clamp(y_lo, y_hi)), 7, c.filled())])
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 12, y), 6, c.filled()));
        }
        // The legend in the upper left: where the sweep starts, the curve is flat and low.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, TICK))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)
    }
}

/// The smallest and largest of `values`, a band when they are equal, (1, 10) when there are
/// none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    match (lo.is_finite(), hi > lo) {
        (true, true) => (lo, hi),
        (true, false) => (lo * 0.9, lo * 1.1 + 1e-12),
        (false, _) => (1.0, 10.0),
    }
}
