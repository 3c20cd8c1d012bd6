//! Training curves as SVG (pure): losses on the left panel, other scores on the right.

use serde_json::{Map, Value};

const W: f64 = 360.0;
const H: f64 = 240.0;
const PAD: f64 = 40.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/// The numeric series to draw: keys with a number in some epoch, except `epoch`, `dur` and
/// flags; split into losses (`*loss*`) and scores.
pub fn series(records: &[Map<String, Value>]) -> (Vec<String>, Vec<String>) {
    let mut keys: Vec<String> = Vec::new();
    for r in records {
        for (k, v) in r {
            if v.is_number() && !matches!(k.as_str(), "epoch" | "dur") && !k.starts_with("event_") && !keys.contains(k)
            {
                keys.push(k.clone());
            }
        }
    }
    keys.into_iter().partition(|k| k.contains("loss"))
}

fn panel(records: &[Map<String, Value>], keys: &[String], x0: f64, title: &str) -> String {
    let points: Vec<Vec<(f64, f64)>> = keys
        .iter()
        .map(|k| {
            records
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.get(k).and_then(Value::as_f64).map(|v| ((i + 1) as f64, v)))
                .collect()
        })
        .collect();
    let all: Vec<f64> = points.iter().flatten().map(|p| p.1).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let n = records.len().max(2) as f64;
    let x = |e: f64| x0 + PAD + (e - 1.0) / (n - 1.0) * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - (v - lo) / (hi - lo) * (H - 2.0 * PAD);
    let mut s = format!(
        "<g><text x=\"{:.0}\" y=\"20\" font-size=\"14\">{title}</text><rect x=\"{:.0}\" y=\"{PAD}\" width=\"{:.0}\" height=\"{:.0}\" fill=\"none\" stroke=\"#999\"/>",
        x0 + PAD,
        x0 + PAD,
        W - 2.0 * PAD,
        H - 2.0 * PAD
    );
    s += &format!("<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\">{hi:.4}</text><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\">{lo:.4}</text>", x0 + 2.0, PAD + 4.0, x0 + 2.0, H - PAD);
    s += &format!(
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\">epoch 1..{}</text>",
        x0 + PAD,
        H - PAD + 14.0,
        records.len()
    );
    for (i, (k, pts)) in keys.iter().zip(&points).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts.iter().map(|&(e, v)| format!("{:.1},{:.1}", x(e), y(v))).collect();
        s += &format!("<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{k}</title></polyline>", path.join(" "));
        s += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"{colour}\">{k}</text>",
            x0 + W - PAD - 90.0,
            PAD + 14.0 * (i + 1) as f64
        );
    }
    s + "</g>"
}

/// The whole picture.
pub fn plot(records: &[Map<String, Value>]) -> String {
    let (losses, scores) = series(records);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{H:.0}\" font-family=\"sans-serif\">{}{}</svg>\n",
        2.0 * W,
        panel(records, &losses, 0.0, "loss"),
        panel(records, &scores, W, "scores")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records() -> Vec<Map<String, Value>> {
        (1..=4).map(|e| json!({"epoch": e, "train_loss": 1.0 / e as f64, "valid_loss": 1.2 / e as f64, "valid_acc": 0.5 + 0.1 * e as f64, "valid_acc_best": true, "dur": 0.1}).as_object().unwrap().clone()).collect()
    }

    #[test]
    fn losses_and_scores_are_drawn_apart_without_epoch_or_time() {
        let (losses, scores) = series(&records());
        assert_eq!(losses, ["train_loss", "valid_loss"]);
        assert_eq!(scores, ["valid_acc"]);
    }

    #[test]
    fn every_series_is_a_polyline_with_a_point_per_epoch() {
        let svg = plot(&records());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        let first = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(first.split(' ').count(), 4);
    }
}
