//! `progress_bar`: a batch progress bar on stderr while an epoch runs, shown only on a terminal,
//! with the running mean loss of the pass (Lightning's and tqdm's habit) and the last value of
//! each batch key the config names.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `keys` | `[]` | batch keys a callback records (`grad_norm`, ...), shown with their last value |
//!
//! The losses are summed on the device as the batches end; the sum is read (one device
//! synchronisation) only when the bar is redrawn, at most five times a second.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use torchfit_sdk::{parse_config, BatchOutput, BuildContext, Callback, Flow, Host, Result};

/// How often the bar's message is refreshed.
pub(crate) const REDRAW: Duration = Duration::from_millis(200);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    keys: Vec<String>,
}

/// The running loss of one pass: the sum of its batch losses, on the device, and their count.
struct Running {
    training: bool,
    sum: Tensor,
    count: usize,
}

/// The bar of the current pass (none off a terminal).
#[derive(Default)]
pub(crate) struct Progress {
    keys: Vec<String>,
    bar: Option<ProgressBar>,
    running: Option<Running>,
    drawn: Option<Instant>,
}

/// Builds it.
pub(crate) fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    Ok(Box::new(Progress { keys: c.keys, ..Progress::default() }))
}

/// The bar's message: the epoch, the running loss of the pass (`train_loss` or `valid_loss`),
/// then each named key with its value.
pub(crate) fn message(epoch: usize, loss: Option<(bool, f64)>, keys: &[(&str, Value)]) -> String {
    let mut text = epoch.to_string();
    if let Some((training, mean)) = loss {
        let name = if training { "train_loss" } else { "valid_loss" };
        text += &format!(" {name}={mean:.4}");
    }
    for (key, value) in keys {
        match value.as_f64() {
            Some(v) => text += &format!(" {key}={v:.4}"),
            None => text += &format!(" {key}={value}"),
        }
    }
    text
}

impl Progress {
    fn redraw(&mut self, host: &dyn Host) -> Result<()> {
        let Some(bar) = &self.bar else { return Ok(()) };
        let loss = match &self.running {
            Some(r) if r.count > 0 => Some((r.training, r.sum.f_double_value(&[])? / r.count as f64)),
            _ => None,
        };
        let keys: Vec<(&str, Value)> =
            self.keys.iter().filter_map(|k| host.history_batch_values(-1, k).pop().map(|v| (k.as_str(), v))).collect();
        bar.set_message(message(host.epochs(), loss, &keys));
        self.drawn = Some(Instant::now());
        Ok(())
    }
}

impl Callback for Progress {
    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if std::io::stderr().is_terminal() && host.is_main_process() {
            let (train, valid) = host.batch_counts();
            let bar = ProgressBar::with_draw_target(Some((train + valid) as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches {elapsed}<{eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(host.epochs().to_string());
            self.bar = Some(bar);
            self.running = None;
        }
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if self.bar.is_none() {
            return Ok(Flow::Continue);
        }
        let training = out.batch.training;
        let loss = out.loss.f_to_kind(Kind::Double)?;
        match &mut self.running {
            Some(r) if r.training == training => {
                r.sum = r.sum.f_add(&loss)?;
                r.count += 1;
            }
            _ => self.running = Some(Running { training, sum: loss, count: 1 }),
        }
        if self.drawn.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.redraw(host)?;
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.running = None;
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, _host: &mut dyn Host) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.running = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_message_shows_the_running_loss_of_the_pass_and_the_named_keys() {
        assert_eq!(message(3, None, &[]), "3");
        assert_eq!(message(3, Some((true, 0.123456)), &[]), "3 train_loss=0.1235");
        assert_eq!(
            message(2, Some((false, 1.0)), &[("grad_norm", json!(2.5)), ("phase", json!("warm"))]),
            "2 valid_loss=1.0000 grad_norm=2.5000 phase=\"warm\""
        );
    }
}
