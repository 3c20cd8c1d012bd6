//! The event bus: each event of the loop goes to every callback in order, then the loop carries
//! out what they asked for (checkpoints) and reports whether any asked to stop.

use super::actions::perform;
use super::build::Components;
use super::host::{Requests, RunHost};
use super::update_bn::TrainData;
use crate::{Error, History, Result};
use tch::Tensor;
use torchfit_sdk::{Batch, BatchOutput, Callback, Flow, Hook, Host};

/// An event of the loop, as sent to every callback.
pub(super) enum Event<'a> {
    TrainBegin,
    EpochBegin,
    BatchBegin(&'a Batch<'a>),
    LossComputed(&'a BatchOutput<'a>),
    GradComputed(&'a Batch<'a>),
    BatchEnd(&'a BatchOutput<'a>),
    EpochEnd,
    TrainEnd,
}

impl Event<'_> {
    /// The hook it is sent to.
    pub(super) fn hook(&self) -> Hook {
        match self {
            Event::TrainBegin => Hook::TrainBegin,
            Event::EpochBegin => Hook::EpochBegin,
            Event::BatchBegin(_) => Hook::BatchBegin,
            Event::LossComputed(_) => Hook::LossComputed,
            Event::GradComputed(_) => Hook::GradComputed,
            Event::BatchEnd(_) => Hook::BatchEnd,
            Event::EpochEnd => Hook::EpochEnd,
            Event::TrainEnd => Hook::TrainEnd,
        }
    }

    /// The hook's name.
    pub(super) fn name(&self) -> &'static str {
        self.hook().name()
    }

    fn send(&self, cb: &mut dyn Callback, host: &mut dyn Host) -> torchfit_sdk::Result<Flow> {
        match self {
            Event::TrainBegin => cb.on_train_begin(host),
            Event::EpochBegin => cb.on_epoch_begin(host),
            Event::BatchBegin(b) => cb.on_batch_begin(host, b),
            Event::LossComputed(o) => cb.on_loss_computed(host, o),
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
    /// Every callback still runs and every request is carried out; the first error is returned
    /// and the later ones are logged (`on_train_end`).
    Continue,
}

/// What the callbacks asked of the loop during one event, besides checkpoints (which the bus
/// carries out itself).
#[derive(Default)]
pub(super) struct Asked {
    /// The strongest flow asked for.
    pub flow: Flow,
    /// Terms to add to the loss, in callback order.
    pub loss_terms: Vec<Tensor>,
    /// Whether to skip the optimizer step.
    pub skip_step: bool,
    /// The batch to train on instead (the last callback's that asked).
    pub batch: Option<(Tensor, Tensor)>,
}

/// Sends `event` to every callback; a failing callback aborts the event.
pub(super) fn notify(c: &mut Components, history: &mut History, event: &Event<'_>) -> Result<Flow> {
    dispatch(c, history, event, OnError::Abort, None).map(|asked| asked.flow)
}

/// `on_epoch_end` on every callback, with the training data lent to its services.
pub(super) fn notify_epoch_end(c: &mut Components, history: &mut History, data: TrainData<'_>) -> Result<Flow> {
    dispatch(c, history, &Event::EpochEnd, OnError::Abort, Some(data)).map(|asked| asked.flow)
}

/// [`notify`], returning everything the callbacks asked for.
pub(super) fn ask(c: &mut Components, history: &mut History, event: &Event<'_>) -> Result<Asked> {
    dispatch(c, history, event, OnError::Abort, None)
}

/// `on_train_end` on every callback, even after one fails, with the training data lent to their
/// services, then the checkpoint requests they made; the first error is returned.
pub(super) fn notify_train_end(c: &mut Components, history: &mut History, data: TrainData<'_>) -> Result<()> {
    dispatch(c, history, &Event::TrainEnd, OnError::Continue, Some(data)).map(|_| ())
}

/// Sends `event` to every callback (lending them `data`, if any), then carries out the
/// checkpoint requests they made.
fn dispatch(
    c: &mut Components,
    history: &mut History,
    event: &Event<'_>,
    on_error: OnError,
    mut data: Option<TrainData<'_>>,
) -> Result<Asked> {
    let (mut asked, mut actions, mut first) = (Asked::default(), Vec::new(), None);
    let mut fail = |e: Error| match on_error {
        OnError::Abort => Err(e),
        OnError::Continue => {
            match &first {
                None => first = Some(e),
                Some(_) => log::error!("{e}"),
            }
            Ok(())
        }
    };
    {
        let Components {
            callbacks,
            model,
            optimizer,
            settings,
            run_dir,
            scorers,
            device,
            replicas,
            batch_counts,
            scaler,
            ..
        } = &mut *c;
        let process = replicas.process();
        for (name, cb) in callbacks.iter_mut() {
            let mut requests = Requests::default();
            let mut host = RunHost {
                history: &mut *history,
                model: model.as_mut(),
                optimizer: &mut *optimizer,
                device: *device,
                max_epochs: settings.max_epochs,
                batch_counts: *batch_counts,
                event,
                requests: &mut requests,
                run_dir: run_dir.as_deref(),
                scorers: &mut *scorers,
                train_data: data.as_mut().map(TrainData::reborrow),
                process,
                scaler: scaler.as_ref(),
                accumulate_grad_batches: settings.accumulate_grad_batches,
            };
            match event.send(cb.as_mut(), &mut host) {
                Ok(f) => asked.flow = asked.flow.and(f),
                Err(source) => fail(Error::Callback { name: name.clone(), event: event.name(), source })?,
            }
            if requests.stop {
                asked.flow = asked.flow.and(Flow::Stop);
            }
            asked.loss_terms.append(&mut requests.loss_terms);
            asked.skip_step |= requests.skip_step;
            if let Some(b) = requests.batch {
                asked.batch = Some(b);
            }
            actions.extend(requests.actions.into_iter().map(|a| (name.clone(), a)));
        }
    }
    if matches!(event, Event::EpochEnd) {
        c.mid_epoch = false; // the epoch has ended for every callback: saves now are at its boundary
    }
    for (name, action) in actions {
        if let Err(e) = perform(c, history, &action) {
            fail(Error::Callback { name, event: event.name(), source: e.into_sdk() })?;
        }
    }
    first.map_or(Ok(asked), Err)
}
