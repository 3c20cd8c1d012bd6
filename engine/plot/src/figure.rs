//! What a picture shows, computed from histories without drawing: its panels, their series and
//! the checkpoint markers. Pure, so tests compare the series with the history they came from.
//!
//! The x axis is the epoch for every panel: a value recorded for epoch `e` sits at `x = e`; a
//! value of batch `b` (from 0) of the `n` training batches of epoch `e` at `x = e - 1 + (b + 1)
//! / n`, so a batch's point lies within its epoch and the last one at the epoch's end.

use serde_json::{Map, Value};

/// `(x, value)` pairs.
type Points = Vec<(f64, f64)>;

/// One run's history: skorch's list of epochs, each with its keys and a `batches` list.
#[derive(Debug, Clone)]
pub struct Run {
    /// How the legend names the run (the run directory's name); empty for a single run.
    pub label: String,
    /// The epochs, as in `history.json`.
    pub epochs: Vec<Map<String, Value>>,
    /// The epochs after which training resumed (`summary.json`'s `resumed_after`).
    pub resumed_after: Vec<usize>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A thin, light line: the raw per-batch training loss.
    Faint,
    /// A line: a moving average, an epoch value, a per-step rate.
    Line,
    /// Markers joined by a dashed line: values measured at epoch ends (validation).
    Points,
}

/// One curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The history key it draws, with its kind (`train_loss (batch)`, `valid_acc`).
    pub label: String,
    /// The run it comes from (an index into the runs drawn).
    pub run: usize,
    /// How it is drawn.
    pub style: Style,
    /// `(x, value)`, finite values only: a NaN or an infinity in the history leaves a gap.
    pub points: Vec<(f64, f64)>,
    /// The points of the epochs whose `<key>_best` flag is true.
    pub best: Vec<(f64, f64)>,
}

/// One panel: a y axis and its curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Its title and y-axis label (`loss`, `scores`, `learning rate`, `momentum`).
    pub title: String,
    /// A logarithmic y axis.
    pub log_y: bool,
    /// The curves, in legend order.
    pub series: Vec<Series>,
}

/// An event at an epoch's end, drawn as a vertical line across every panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// The run it belongs to.
    pub run: usize,
    /// The epoch it happened after.
    pub x: f64,
    /// What happened.
    pub kind: MarkerKind,
}

/// What a [`Marker`] marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerKind {
    /// A checkpoint saved, recorded by its callback as `event_<name>` true (skorch's
    /// `event_cp`); any boolean `event_*` key is read as one. Holds the key.
    Checkpoint(String),
    /// Training resumed from this epoch (`--resume`).
    Resumed,
}

/// A whole picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Top to bottom.
    pub panels: Vec<Panel>,
    /// Checkpoints saved, drawn across every panel.
    pub markers: Vec<Marker>,
    /// The runs' labels, by index.
    pub runs: Vec<String>,
    /// The largest epoch of any run (the x axis ends there; at least 1).
    pub epochs: usize,
}

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these epoch keys (losses and scores); all of them when `None`. The per-batch
    /// training loss is drawn when `train_loss` is drawn; the rates when their keys are named
    /// or no keys are given.
    pub keys: Option<Vec<String>>,
    /// A logarithmic loss axis.
    pub log_loss: bool,
}

/// Keys never drawn as curves: bookkeeping, flags and durations.
fn is_curve_key(key: &str) -> bool {
    !matches!(key, "epoch" | "dur" | "batches" | "skipped_batches" | "averaged")
        && !key.starts_with("event_")
        && !key.ends_with("_best")
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s == "NaN" => Some(f64::NAN),
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        Value::Bool(_) => None,
        other => other.as_f64(),
    }
}

fn wanted(options: &Options, key: &str) -> bool {
    options.keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k == key))
}

/// The epoch keys of `runs` holding numbers, in first-recorded order.
fn epoch_keys(runs: &[Run]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for epoch in runs.iter().flat_map(|r| &r.epochs) {
        for (k, v) in epoch {
            if is_curve_key(k) && number(v).is_some() && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// The per-batch values of `key` in the training batches of `run`, at their x.
fn batch_points(run: &Run, key: &str) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for (e, epoch) in run.epochs.iter().enumerate() {
        let batches = epoch.get("batches").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let training: Vec<&Value> = batches.iter().filter(|b| b.get("train_batch_size").is_some()).collect();
        let n = training.len().max(1) as f64;
        for (b, batch) in training.iter().enumerate() {
            if let Some(v) = batch.get(key).and_then(number).filter(|v| v.is_finite()) {
                points.push((e as f64 + (b + 1) as f64 / n, v));
            }
        }
    }
    points
}

/// The epoch values of `key` in `run`, and those of the epochs flagged `<key>_best`.
fn epoch_points(run: &Run, key: &str) -> (Points, Points) {
    let (mut points, mut best) = (Vec::new(), Vec::new());
    for (e, epoch) in run.epochs.iter().enumerate() {
        if let Some(v) = epoch.get(key).and_then(number).filter(|v| v.is_finite()) {
            let x = (e + 1) as f64;
            points.push((x, v));
            if epoch.get(&format!("{key}_best")).and_then(Value::as_bool) == Some(true) {
                best.push((x, v));
            }
        }
    }
    (points, best)
}

/// The trailing mean of `points` over `window` of them (as many as there are at the start).
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, v))| {
            sum += v;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// The moving average's window for `batches` training batches per epoch: a fifth of an epoch,
/// between 1 and 100 batches.
fn window(batches: usize) -> usize {
    (batches / 5).clamp(1, 100)
}

/// The picture of `runs` (one run, or several overlaid with their labels).
pub fn figure(runs: &[Run], options: &Options) -> Figure {
    let label = |run: &Run, what: String| match run.label.is_empty() {
        true => what,
        false => format!("{}: {what}", run.label),
    };
    let series = |run: usize, label: String, style: Style, points: Vec<(f64, f64)>, best: Vec<(f64, f64)>| Series {
        label,
        run,
        style,
        points,
        best,
    };
    let keys = epoch_keys(runs);
    let (mut losses, mut scores, mut lr, mut momentum) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, run) in runs.iter().enumerate() {
        if wanted(options, "train_loss") {
            let raw = batch_points(run, "train_loss");
            if !raw.is_empty() {
                let per_epoch = raw.len() / run.epochs.len().max(1);
                let smooth = moving_average(&raw, window(per_epoch));
                losses.push(series(i, label(run, "train_loss (batch)".into()), Style::Faint, raw, Vec::new()));
                losses.push(series(
                    i,
                    label(run, "train_loss (moving average)".into()),
                    Style::Line,
                    smooth,
                    Vec::new(),
                ));
            }
        }
        for key in keys.iter().filter(|k| wanted(options, k)) {
            let (points, best) = epoch_points(run, key);
            if points.is_empty() {
                continue;
            }
            let style = if key.starts_with("valid") { Style::Points } else { Style::Line };
            let s = series(i, label(run, key.clone()), style, points, best);
            if key.contains("loss") {
                losses.push(s);
            } else {
                scores.push(s);
            }
        }
        for (key, into) in [("event_lr", &mut lr), ("event_momentum", &mut momentum)] {
            if options.keys.is_some() && !wanted(options, key) {
                continue;
            }
            let per_batch = batch_points(run, key);
            let points = if per_batch.is_empty() { epoch_points(run, key).0 } else { per_batch };
            if !points.is_empty() {
                into.push(series(
                    i,
                    label(run, key.trim_start_matches("event_").into()),
                    Style::Line,
                    points,
                    Vec::new(),
                ));
            }
        }
    }
    let mut markers = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for (e, epoch) in run.epochs.iter().enumerate() {
            for (key, value) in epoch {
                if key.starts_with("event_") && value.as_bool() == Some(true) {
                    markers.push(Marker { run: i, x: (e + 1) as f64, kind: MarkerKind::Checkpoint(key.clone()) });
                }
            }
        }
        let resumed = run.resumed_after.iter().map(|&e| Marker { run: i, x: e as f64, kind: MarkerKind::Resumed });
        markers.extend(resumed);
    }
    let panel = |title: &str, log_y: bool, series: Vec<Series>| Panel { title: title.into(), log_y, series };
    let panels = [
        panel("loss", options.log_loss, losses),
        panel("scores", false, scores),
        panel("learning rate", false, lr),
        panel("momentum", false, momentum),
    ]
    .into_iter()
    .filter(|p| !p.series.is_empty())
    .collect();
    Figure {
        panels,
        markers,
        runs: runs.iter().map(|r| r.label.clone()).collect(),
        epochs: runs.iter().map(|r| r.epochs.len()).max().unwrap_or(0).max(1),
    }
}
