//! The training loop, as skorch chains it: [`partial_fit`] runs `on_train_begin`, [`fit_loop`]
//! and, always, `on_train_end`; [`fit_loop`] runs epochs; `run_single_epoch` ([`super::pass`])
//! runs the batches of one pass, each through a training or a validation step.
//!
//! A stop asked during an epoch ([`Flow::Stop`]) ends the run after the epoch; a stop after the
//! batch ([`Flow::StopAfterBatch`]) ends the pass after the batch, skips the epoch's validation
//! and `on_epoch_end` (the epoch's record keeps the batches that ran), and ends the run. A raised
//! stop flag ([`super::interrupt`]) does the same, seen after every batch and between epochs.
//!
//! Each epoch the loop first opens the history record (`epoch`), reseeds libtorch's generator
//! from `(seed, epoch)` and draws the batch order from `(seed, epoch)`, so any epoch can be
//! replayed exactly (also the draws of a weighted `iterator_train.sampler`,
//! [`crate::data::sampler`]); then callbacks run in order. Batch losses stay on the device during the
//! epoch and are written to history (`train_loss`, `valid_loss` per batch) in one transfer
//! before `on_epoch_end`.

use super::actions::perform;
use super::build::Components;
use super::events::{notify, notify_epoch_end, notify_train_end, Event};
use super::interrupt::{interrupted, keep_boundary};
use super::pass::{agreed, interrupted_anywhere, record_losses, run_single_epoch, NonFinite, PassEnd};
use super::update_bn::TrainData;
use super::{EpochCount, Valid};
use crate::data::{batches, sampler, SplitMix64, Stream};
use crate::{Error, History, Result};
use std::path::PathBuf;
use torchfit_sdk::checkpoint::Action;
use torchfit_sdk::{DatasetReader, Flow, Stage};

/// The checkpoint a fit resumes from, and the optimizer hyper-parameters set after restoring.
pub(super) struct Resume {
    pub dir: PathBuf,
    pub prefix: String,
    pub hypers: Vec<(String, serde_json::Value)>,
}

/// `on_train_begin`, the epochs, then `on_train_end` on every callback, also after an error.
/// Checkpoint saves in the run directory that a crash interrupted are completed or discarded
/// first, so callbacks find whole checkpoints there. With `resume` (a folder, a prefix and
/// optimizer hyper-parameters to set), everything is first restored from that checkpoint;
/// `count` then decides how many epochs run.
pub(super) fn partial_fit(
    c: &mut Components,
    history: &mut History,
    resume: Option<Resume>,
    count: EpochCount,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    valid: Valid<'_>,
) -> Result<()> {
    if let Some(run_dir) = c.run_dir.as_ref().filter(|_| c.replicas.writes_files()) {
        crate::checkpoint::recover_all(run_dir)?;
    }
    c.replicas.wait_for_main()?;
    if let Some(Resume { dir, prefix, hypers }) = resume {
        perform(c, history, &Action::Load { dir, prefix, parts: torchfit_sdk::Parts::ALL })?;
        for (key, value) in &hypers {
            for group in 0..c.optimizer.groups().len() {
                c.optimizer.set_hyper(group, key, value).map_err(|m| Error::Data(format!("optimizer.{key}: {m}")))?;
            }
            log::info!("optimizer.{key} = {value} on resume (the checkpoint's value replaced)");
        }
        c.replicas.after_resume(c.model.as_ref())?;
    }
    keep_boundary(c, history);
    let epochs = count.epochs_to_run(c.settings.max_epochs, history.len());
    c.batch_counts = (0, 0);
    let mut result = match notify(c, history, &Event::TrainBegin).and_then(|f| agreed(c, f)) {
        Ok(Flow::Continue) => fit_loop(c, history, reader, train, valid, epochs),
        Ok(Flow::Stop | Flow::StopAfterBatch) => Ok(()),
        Err(e) => Err(e),
    };
    if result.is_ok() {
        result = c.replicas.finish(c.model.as_ref());
    }
    c.batch_counts = (0, 0);
    let end = notify_train_end(c, history, train_data(c, reader, train));
    result.and(end)
}

/// The training data, with `iterator_train`'s batching, for the hooks that may pass over it.
fn train_data<'a>(c: &Components, reader: &'a mut dyn DatasetReader, indices: &'a [i64]) -> TrainData<'a> {
    let it = &c.settings.iterator_train;
    TrainData { reader, indices, batch_size: it.batch_size, prefetch: it.prefetch }
}

/// The weights `iterator_train.sampler` gives the training samples `train`; `None` when each
/// epoch takes every sample once.
fn sample_weights(c: &Components, reader: &mut dyn DatasetReader, train: &[i64]) -> Result<Option<Vec<f64>>> {
    let config = &c.settings.iterator_train.sampler;
    let labels = if config.needs_labels() { Some(super::build::class_labels(reader)?) } else { None };
    config.weights(train, reader.len(), labels.as_deref()).map_err(|message| Error::Config {
        origin: String::new(),
        key: "iterator_train.sampler".into(),
        message,
    })
}

/// Runs up to `epochs` epochs: a training pass over `train`, a validation pass, the epoch's end.
fn fit_loop(
    c: &mut Components,
    history: &mut History,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    mut valid: Valid<'_>,
    epochs: usize,
) -> Result<()> {
    let seed = c.settings.seed;
    let weights = sample_weights(c, reader, train)?;
    for _ in 0..epochs {
        // Every rank of a job decides on the same answer, whenever the signal arrives.
        if interrupted_anywhere(c)? && interrupted(c, history, false) {
            break;
        }
        let epoch = history.len() + 1;
        history.new_epoch();
        c.mid_epoch = true;
        history.record("epoch", epoch)?;
        tch::manual_seed((SplitMix64::new(seed, Stream::Torch, epoch as u64).next_u64() >> 1) as i64);
        reader.reset(epoch as u64, seed)?;
        if let Valid::Other(r, _) = &mut valid {
            r.reset(epoch as u64, seed)?;
        }
        let it = &c.settings.iterator_train;
        let drawn = weights.as_ref().map(|w| sampler::draw(train, w, seed, epoch as u64));
        let (epoch_train, shuffle) = match &drawn {
            Some(d) => (d.as_slice(), false),
            None => (train, it.shuffle.unwrap_or(true)),
        };
        let train_batches = c.replicas.train_batches(epoch_train, it.batch_size, shuffle, seed, epoch as u64);
        let iv = &c.settings.iterator_valid;
        let valid_batches = match &valid {
            Valid::None => Vec::new(),
            Valid::Same(idx) | Valid::Other(_, idx) => {
                batches(idx, iv.batch_size, iv.shuffle.unwrap_or(false), seed, epoch as u64)
            }
        };
        c.batch_counts = (train_batches.len(), valid_batches.len());
        let asked = notify(c, history, &Event::EpochBegin)?;
        let mut flow = agreed(c, asked)?;
        let PassEnd { flow: trained, non_finite, losses } =
            run_single_epoch(c, history, reader, &train_batches, Stage::Train)?;
        let mut pending = vec![losses];
        flow = flow.and(trained);
        if let Some(NonFinite { batch, value }) = non_finite {
            record_losses(c, history, pending)?;
            return Err(Error::NonFinite { epoch, batch, value });
        }
        if !valid_batches.is_empty() && flow != Flow::StopAfterBatch {
            let valid_reader: &mut dyn DatasetReader = match &mut valid {
                Valid::Other(r, _) => &mut **r,
                _ => &mut *reader,
            };
            let validated = run_single_epoch(c, history, valid_reader, &valid_batches, Stage::Eval)?;
            flow = flow.and(validated.flow);
            pending.push(validated.losses);
        }
        record_losses(c, history, pending)?;
        if flow == Flow::StopAfterBatch {
            if !interrupted(c, history, true) {
                let batches = history.batches(-1).len();
                log::info!("stopping in epoch {epoch} after batch {batches}: a callback asked to stop after the batch");
            }
            break;
        }
        flow = flow.and(notify_epoch_end(c, history, train_data(c, reader, train))?);
        flow = agreed(c, flow)?; // a stop asked on any rank stops them all here
        keep_boundary(c, history);
        if flow.stops() {
            log::info!("stopping after epoch {epoch}: a callback asked to stop");
            break;
        }
    }
    Ok(())
}
