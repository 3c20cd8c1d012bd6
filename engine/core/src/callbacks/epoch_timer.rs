//! `epoch_timer`: records `dur`, the wall time of the epoch in seconds.

use std::time::Instant;
use torchfit_sdk::{parse_config, BuildContext, Callback, Flow, Host, Result};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// The start of the current epoch.
#[derive(Default)]
pub(crate) struct EpochTimer {
    start: Option<Instant>,
}

/// Builds it (no keys).
pub(crate) fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let _: Config = parse_config(config)?;
    Ok(Box::new(EpochTimer::default()))
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.start = Some(Instant::now());
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if let Some(start) = self.start.take() {
            host.record("dur", start.elapsed().as_secs_f64().into())?;
        }
        Ok(Flow::Continue)
    }
}
