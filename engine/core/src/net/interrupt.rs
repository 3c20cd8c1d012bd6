//! Stopping a fit from outside the loop, as Ctrl-C and SIGTERM do in `torchfit train`.
//!
//! A [`StopFlag`] handed to [`super::NeuralNet::set_stop_flag`] is checked after every batch:
//! once raised, the pass ends after the batch that is running, as if a callback had returned
//! [`torchfit_sdk::Flow::StopAfterBatch`] (no validation, no `on_epoch_end` for the cut epoch),
//! `on_train_end` runs on every callback, and the fit returns normally with an [`Interruption`].
//!
//! An epoch cut short cannot be continued exactly (the random streams and the callbacks'
//! per-epoch accumulators are mid-way), so with [`Keep::Boundary`] the loop keeps a copy of the
//! whole run (parameters, optimizer, callbacks, history) at every epoch boundary, in host
//! memory, and [`super::NeuralNet::save_resume_checkpoint`] writes that copy: a run resumed from
//! it replays the cut epoch from its start and ends bit-identical to an uninterrupted run.

use super::actions::Snapshot;
use super::build::Components;
use crate::History;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that stops a fit after the current batch once raised (from any thread, or from a
/// signal handler through [`StopFlag::shared`]).
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the fit to stop after the current batch.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The atomic itself, for `signal_hook::flag::register` and the like.
    pub fn shared(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// What the loop keeps so that an interrupted run can be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: the interrupted state is all there is.
    Nothing,
    /// A copy of the run at the last epoch boundary (host memory: the parameters, the
    /// optimizer's state and the callbacks' tensors once more).
    Boundary,
}

/// Where a fit stopped when its [`StopFlag`] was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    /// Complete epochs in the history when the flag was seen: the epoch boundary kept.
    pub epochs: usize,
    /// Batches of the next epoch that ran before the fit stopped (0: it stopped at the
    /// boundary).
    pub batches: usize,
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.batches {
            0 => write!(f, "after epoch {}", self.epochs),
            b => write!(f, "in epoch {} after batch {b}", self.epochs + 1),
        }
    }
}

/// The loop's side of a [`StopFlag`]: the flag, the copy at the last boundary, and where the
/// fit stopped.
pub(super) struct Watch {
    flag: StopFlag,
    keep: Keep,
    pub boundary: Option<Snapshot<'static>>,
    /// Whether a copy failed: no boundary is kept from then on.
    pub lost_boundary: bool,
    pub interrupted: Option<Interruption>,
}

impl Watch {
    pub(super) fn new(flag: StopFlag, keep: Keep) -> Self {
        Watch { flag, keep, boundary: None, lost_boundary: false, interrupted: None }
    }

    pub(super) fn raised(&self) -> bool {
        self.flag.is_raised()
    }

    /// Raises the flag from inside the loop: another rank of a distributed job was interrupted.
    pub(super) fn raise(&self) {
        self.flag.raise();
    }

    pub(super) fn keeps_boundary(&self) -> bool {
        self.keep == Keep::Boundary
    }
}

/// Copies the run as it is now, between two epochs, when the stop flag's owner asked for that
/// ([`super::interrupt`]).
pub(super) fn keep_boundary(c: &mut Components, history: &History) {
    if !c.watch.as_ref().is_some_and(|w| w.keeps_boundary() && !w.lost_boundary) {
        return;
    }
    // A callback whose state cannot be taken makes the run not resumable from an interruption;
    // it does not stop the run (its checkpoints report the error where they are asked for).
    let copy = Snapshot::take(c, history, torchfit_sdk::Parts::ALL).and_then(Snapshot::kept);
    if let Some(w) = &mut c.watch {
        match copy {
            Ok(copy) => w.boundary = Some(copy),
            Err(e) => {
                log::warn!("no epoch boundary is kept for an interruption: {e}");
                (w.boundary, w.lost_boundary) = (None, true);
            }
        }
    }
}

/// Whether the stop flag was raised; if so, records where the run stopped.
pub(super) fn interrupted(c: &mut Components, history: &History, in_epoch: bool) -> bool {
    let Some(w) = c.watch.as_mut().filter(|w| w.raised()) else { return false };
    let (epochs, batches) = match in_epoch {
        true => (history.len() - 1, history.batches(-1).len()),
        false => (history.len(), 0),
    };
    let i = Interruption { epochs, batches };
    log::debug!("stopping {i}: interrupted");
    w.interrupted = Some(i);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interruption_says_where_the_run_stopped() {
        assert_eq!(Interruption { epochs: 2, batches: 0 }.to_string(), "after epoch 2");
        assert_eq!(Interruption { epochs: 2, batches: 7 }.to_string(), "in epoch 3 after batch 7");
    }

    #[test]
    fn a_raised_flag_is_seen_through_every_clone() {
        let flag = StopFlag::new();
        let watch = Watch::new(flag.clone(), Keep::Nothing);
        assert!(!watch.raised());
        flag.shared().store(true, Ordering::SeqCst);
        assert!(watch.raised() && flag.is_raised());
    }
}
