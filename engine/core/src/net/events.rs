//! The event bus: each event of the loop goes to every callback in order, then the loop carries
//! out what they asked for (checkpoints) and reports whether any asked to stop.

use super::actions::perform;
use super::build::Components;
use super::host::RunHost;
use crate::{Error, History, Result};
use torchfit_sdk::{Batch, BatchOutput, Callback, Flow, Host};

/// An event of the loop, as sent to every callback.
pub(super) enum Event<'a> {
    TrainBegin,
    EpochBegin,
    BatchBegin(&'a Batch<'a>),
    GradComputed(&'a Batch<'a>),
    BatchEnd(&'a BatchOutput<'a>),
    EpochEnd,
    TrainEnd,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::TrainBegin => "on_train_begin",
            Event::EpochBegin => "on_epoch_begin",
            Event::BatchBegin(_) => "on_batch_begin",
            Event::GradComputed(_) => "on_grad_computed",
            Event::BatchEnd(_) => "on_batch_end",
            Event::EpochEnd => "on_epoch_end",
            Event::TrainEnd => "on_train_end",
        }
    }

    fn send(&self, cb: &mut dyn Callback, host: &mut dyn Host) -> torchfit_sdk::Result<Flow> {
        match self {
            Event::TrainBegin => cb.on_train_begin(host),
            Event::EpochBegin => cb.on_epoch_begin(host),
            Event::BatchBegin(b) => cb.on_batch_begin(host, b),
            Event::GradComputed(b) => cb.on_grad_computed(host, b),
            Event::BatchEnd(o) => cb.on_batch_end(host, o),
            Event::EpochEnd => cb.on_epoch_end(host),
            Event::TrainEnd => cb.on_train_end(host).map(|()| Flow::Continue),
        }
    }
}

/// What a failing callback does to the rest of an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// The event stops at once and the error is returned (the run aborts).
    Abort,
    /// Every callback still runs and every request is carried out; errors are logged and the
    /// first is returned (`on_train_end`).
    Continue,
}

/// Sends `event` to every callback; a failing callback aborts the event. `counts` are the
/// epoch's training and validation batch counts.
pub(super) fn notify(
    c: &mut Components,
    history: &mut History,
    counts: (usize, usize),
    event: &Event<'_>,
) -> Result<Flow> {
    dispatch(c, history, counts, event, OnError::Abort)
}

/// `on_train_end` on every callback, even after one fails, then the checkpoint requests they
/// made; the first error is returned.
pub(super) fn notify_train_end(c: &mut Components, history: &mut History) -> Result<()> {
    dispatch(c, history, (0, 0), &Event::TrainEnd, OnError::Continue).map(|_| ())
}

/// Sends `event` to every callback, then carries out the checkpoint requests they made.
fn dispatch(
    c: &mut Components,
    history: &mut History,
    counts: (usize, usize),
    event: &Event<'_>,
    on_error: OnError,
) -> Result<Flow> {
    let (mut flow, mut requested, mut first) = (Flow::Continue, Vec::new(), None);
    let mut fail = |e: Error| match on_error {
        OnError::Abort => Err(e),
        OnError::Continue => {
            log::error!("{e}");
            first.get_or_insert(e);
            Ok(())
        }
    };
    {
        let Components { callbacks, model, optimizer, settings, run_dir, scorers, .. } = &mut *c;
        for (name, cb) in callbacks.iter_mut() {
            let (mut stop, mut actions) = (false, Vec::new());
            let mut host = RunHost {
                history: &mut *history,
                model: model.as_ref(),
                optimizer: &mut *optimizer,
                max_epochs: settings.max_epochs,
                batch_counts: counts,
                stop: &mut stop,
                actions: &mut actions,
                run_dir: run_dir.as_deref(),
                scorers: &mut *scorers,
            };
            match event.send(cb.as_mut(), &mut host) {
                Ok(f) => flow = flow.and(f),
                Err(source) => fail(Error::Callback { name: name.clone(), event: event.name(), source })?,
            }
            if stop {
                flow = Flow::Stop;
            }
            requested.extend(actions.into_iter().map(|a| (name.clone(), a)));
        }
    }
    for (name, action) in requested {
        if let Err(e) = perform(c, history, &action) {
            fail(Error::Callback { name, event: event.name(), source: torchfit_sdk::Error::msg(e) })?;
        }
    }
    first.map_or(Ok(flow), Err)
}
