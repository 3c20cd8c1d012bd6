//! `progress_bar`: a batch progress bar on stderr while an epoch runs, shown only on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use torchfit_sdk::{parse_config, BatchOutput, BuildContext, Callback, Flow, Host, Result};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// The bar of the current pass (none off a terminal).
#[derive(Default)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

/// Builds it (no keys).
pub(crate) fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let _: Config = parse_config(config)?;
    Ok(Box::new(Progress::default()))
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
        }
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, _host: &mut dyn Host, _out: &BatchOutput<'_>) -> Result<Flow> {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, _host: &mut dyn Host) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
