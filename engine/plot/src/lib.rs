//! # torchfit-plot
//!
//! Training curves from torchfit histories (skorch's `history.json` shape), drawn with
//! plotters as SVG and PNG: the per-batch training loss (faint) with its moving average, the
//! epoch losses, the validation loss at each epoch's end, every score (its `*_best` epochs
//! filled), and, when the run recorded them (`event_lr`, `event_momentum`), the learning rate
//! and momentum per step, with a dashed line where a checkpoint was saved (`event_cp`) and a
//! solid one where training resumed.
//! Several runs overlay in one picture, each named in the legends.
//!
//! [`figure`] decides what is drawn (pure: panels, series, markers); [`svg`] and [`png`] draw
//! it. The `plot_history` callback and `torchfit plot` both use this crate, and `torchfit
//! lr-find` draws its loss-against-rate curve ([`LrCurve`]) with it.

mod draw;
mod figure;
mod lr_curve;

pub use figure::{figure, moving_average, Figure, Marker, MarkerKind, Options, Panel, Run, Series, Style};
pub use lr_curve::{LrCurve, LrMark};

use plotters::prelude::*;

/// A picture that could not be drawn or encoded.
#[derive(Debug, thiserror::Error)]
#[error("drawing the training curves: {0}")]
pub struct Error(pub String);

/// A picture this crate draws: the training curves ([`Figure`]) or a learning-rate sweep
/// ([`LrCurve`]).
pub trait Picture {
    /// Its size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws it on `root` (of [`Picture::size`]).
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), String>;
}

impl Picture for Figure {
    fn size(&self) -> (u32, u32) {
        draw::size(self)
    }
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), String> {
        draw::draw(self, root)
    }
}

/// `picture` as an SVG document.
pub fn svg(picture: &impl Picture) -> Result<String, Error> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, picture.size()).into_drawing_area();
        picture.draw_on(&root).map_err(Error)?;
    }
    Ok(out)
}

/// `picture` as a PNG image.
pub fn png(picture: &impl Picture) -> Result<Vec<u8>, Error> {
    let (w, h) = picture.size();
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        picture.draw_on(&root).map_err(Error)?;
    }
    let mut out = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut out),
        &rgb,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// A history of `epochs` epochs of 10 training and 2 validation batches, with a per-batch
    /// rate, validation accuracy and a checkpoint after epoch 2.
    fn history(epochs: usize) -> Vec<Map<String, Value>> {
        (1..=epochs)
            .map(|e| {
                let mut batches: Vec<Value> = (0..10)
                    .map(|b| json!({"train_batch_size": 32, "train_loss": 2.0 / (e as f64 + b as f64 / 10.0), "event_lr": 0.1 / e as f64}))
                    .collect();
                batches.extend((0..2).map(|_| json!({"valid_batch_size": 32, "valid_loss": 1.5 / e as f64})));
                let record = json!({
                    "epoch": e, "batches": batches, "train_loss": 2.0 / e as f64, "train_loss_best": true,
                    "valid_loss": 1.5 / e as f64, "valid_loss_best": true, "valid_acc": 1.0 - 0.5 / e as f64,
                    "valid_acc_best": e != 3, "event_cp": e == 2, "dur": 0.5,
                });
                record.as_object().unwrap().clone()
            })
            .collect()
    }

    fn run(label: &str, epochs: Vec<Map<String, Value>>) -> Run {
        Run { label: label.into(), epochs, resumed_after: Vec::new() }
    }

    fn find<'a>(f: &'a Figure, label: &str) -> &'a Series {
        f.panels.iter().flat_map(|p| &p.series).find(|s| s.label == label).unwrap_or_else(|| panic!("no {label}"))
    }

    #[test]
    fn the_series_have_the_historys_lengths() {
        let f = figure(&[run("", history(4))], &Options::default());
        let titles: Vec<&str> = f.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["loss", "scores", "learning rate"], "no momentum recorded, no momentum panel");
        assert_eq!(find(&f, "train_loss (batch)").points.len(), 40);
        assert_eq!(find(&f, "train_loss (moving average)").points.len(), 40);
        assert_eq!(find(&f, "train_loss").points.len(), 4);
        assert_eq!(find(&f, "valid_loss").style, Style::Points);
        assert_eq!(find(&f, "valid_acc").best.len(), 3, "epoch 3 was not the best");
        assert_eq!(find(&f, "lr").points.len(), 40);
        assert_eq!(find(&f, "train_loss (batch)").points[9].0, 1.0, "an epoch's last batch sits at its end");
        assert_eq!(f.markers, [Marker { run: 0, x: 2.0, kind: MarkerKind::Checkpoint("event_cp".into()) }]);
        let resumed = Run { resumed_after: vec![3], ..run("", history(4)) };
        let f = figure(&[resumed], &Options::default());
        assert_eq!(f.markers.last(), Some(&Marker { run: 0, x: 3.0, kind: MarkerKind::Resumed }));
        assert!(svg(&f).unwrap().contains("training resumed"));
        assert!(f.panels.iter().flat_map(|p| &p.series).all(|s| !s.label.contains("dur")));
    }

    #[test]
    fn keys_choose_the_curves_and_runs_overlay_with_their_names() {
        let keys = Options { keys: Some(vec!["valid_acc".into()]), log_loss: false };
        let f = figure(&[run("a", history(3)), run("b", history(5))], &keys);
        let labels: Vec<&str> = f.panels.iter().flat_map(|p| &p.series).map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["a: valid_acc", "b: valid_acc"]);
        assert_eq!(f.epochs, 5);
    }

    #[test]
    fn the_moving_average_is_a_trailing_mean() {
        let points: Vec<(f64, f64)> = [1.0, 3.0, 5.0, 7.0].iter().enumerate().map(|(i, v)| (i as f64, *v)).collect();
        let means: Vec<f64> = moving_average(&points, 2).iter().map(|p| p.1).collect();
        assert_eq!(means, [1.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn nan_values_and_a_single_epoch_still_draw_as_svg_and_png() {
        let mut h = history(1);
        h[0].insert("valid_loss".into(), json!("NaN"));
        h[0]["batches"].as_array_mut().unwrap()[3]["train_loss"] = json!("Infinity");
        for options in [Options::default(), Options { keys: None, log_loss: true }] {
            let f = figure(&[run("", h.clone())], &options);
            assert_eq!(find(&f, "train_loss (batch)").points.len(), 9, "the infinity leaves a gap");
            assert!(f.panels.iter().flat_map(|p| &p.series).all(|s| s.label != "valid_loss"), "a NaN draws nothing");
            let text = svg(&f).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{}", &text[..80]);
            let bytes = png(&f).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), draw::size(&f));
        }
    }

    #[test]
    fn an_empty_history_draws_a_note_instead_of_failing() {
        let f = figure(&[run("", Vec::new())], &Options::default());
        assert!(f.panels.is_empty());
        assert!(svg(&f).unwrap().contains("nothing recorded"));
        assert!(png(&f).is_ok());
    }
}
