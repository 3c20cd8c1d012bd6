//! Checkpoint requests carried out: a callback decides to save or restore during a hook
//! ([`torchfit_sdk::Host::save_checkpoint`]); the loop acts once the event has reached every
//! callback.

use super::build::Components;
use crate::checkpoint::Writer;
use crate::{Error, History, Result};
use std::borrow::Cow;
use std::path::Path;
use tch::Tensor;
use torchfit_sdk::checkpoint::{Action, Files};
use torchfit_sdk::io::{load_json, load_tensors, save_json, save_tensors};

/// Carries out `action` on the run's components and history.
pub(super) fn perform(c: &mut Components, history: &mut History, action: &Action) -> Result<()> {
    match action {
        // In a distributed job rank 0 writes; the other ranks hold the same run.
        Action::Save { .. } if !c.replicas.writes_files() => Ok(()),
        Action::Save { dir, prefix, parts } => save(c, history, dir, prefix, *parts),
        Action::Load { dir, prefix, parts } => load(c, history, dir, prefix, *parts),
    }
}

fn sdk_error(e: torchfit_sdk::Error) -> Error {
    match e {
        // The kind of an I/O error (a disk full, a permission) decides the exit code.
        torchfit_sdk::Error::Io { path, source } => Error::Io { path: path.into(), source },
        other => Error::Data(other.to_string()),
    }
}

/// Writes `parts` as one checkpoint set (see [`crate::checkpoint`]).
fn save(c: &Components, history: &History, dir: &Path, prefix: &str, parts: torchfit_sdk::Parts) -> Result<()> {
    Snapshot::take(c, history, parts)?.write(dir, prefix, !c.mid_epoch)
}

impl Components {
    /// A checkpoint's optimizer part: the optimizer's state and, under `16-mixed`, the gradient
    /// scaler's (sharing the components' storage).
    pub(super) fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.optimizer.state_dict();
        state.extend(self.scaler.iter().flat_map(|s| s.state_dict()));
        state
    }

    /// Restores what [`Components::optimizer_state`] returned.
    pub(super) fn load_optimizer_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.optimizer.load_state_dict(state)?;
        match &mut self.scaler {
            Some(scaler) => scaler.load_state_dict(state),
            None => Ok(()),
        }
    }
}

/// The parts of a run a checkpoint holds, taken from the components.
pub(super) struct Snapshot<'h> {
    params: Option<Vec<(String, Tensor)>>,
    optimizer: Option<Vec<(String, Tensor)>>,
    callbacks: Option<(serde_json::Value, Vec<(String, Tensor)>)>,
    history: Option<Cow<'h, History>>,
}

impl<'h> Snapshot<'h> {
    /// `parts` of the run as they are now; the tensors share the components' storage.
    pub(super) fn take(c: &Components, history: &'h History, parts: torchfit_sdk::Parts) -> Result<Self> {
        let callbacks = match parts.callbacks {
            false => None,
            true => {
                let (mut states, mut tensors) = (serde_json::Map::new(), Vec::new());
                for (name, cb) in &c.callbacks {
                    let name: &str = name;
                    let error = |event| move |source| Error::Callback { name: name.to_owned(), event, source };
                    states.insert(name.to_owned(), cb.state().map_err(error("state"))?);
                    let own = cb.state_tensors().map_err(error("state_tensors"))?;
                    tensors.extend(own.into_iter().map(|(t, v)| (format!("{name}/{t}"), v)));
                }
                if let Some(world) = Some(c.replicas.process().world_size).filter(|&w| w > 1) {
                    states.insert(JOB_KEY.into(), serde_json::json!({ "world_size": world }));
                }
                Some((serde_json::Value::Object(states), tensors))
            }
        };
        Ok(Snapshot {
            params: parts.params.then(|| c.model.state_dict()),
            optimizer: parts.optimizer.then(|| c.optimizer_state()),
            callbacks,
            history: parts.history.then_some(Cow::Borrowed(history)),
        })
    }

    /// A copy that owns its tensors, in host memory, and its history: it stays as it is while
    /// training goes on.
    pub(super) fn kept(self) -> Result<Snapshot<'static>> {
        let copy = |tensors: Vec<(String, Tensor)>| -> Result<Vec<(String, Tensor)>> {
            tensors.into_iter().map(|(n, t)| Ok((n, t.f_to_device(tch::Device::Cpu)?.f_detach_copy()?))).collect()
        };
        Ok(Snapshot {
            params: self.params.map(copy).transpose()?,
            optimizer: self.optimizer.map(copy).transpose()?,
            callbacks: self.callbacks.map(|(states, tensors)| Ok::<_, Error>((states, copy(tensors)?))).transpose()?,
            history: self.history.map(|h| Cow::Owned(h.into_owned())),
        })
    }

    /// Writes the snapshot as checkpoint `prefix` under `dir`, as one set; `boundary` says
    /// whether it was taken between two epochs (see [`crate::checkpoint::Record`]).
    pub(super) fn write(&self, dir: &Path, prefix: &str, boundary: bool) -> Result<()> {
        let files = Files::new(dir, prefix);
        let mut set: Vec<Writer<'_>> = Vec::new();
        if let Some(state) = &self.params {
            set.push((files.params, Box::new(move |p: &Path| save_tensors(p, state).map_err(sdk_error))));
        }
        if let Some(state) = &self.optimizer {
            set.push((files.optimizer, Box::new(move |p: &Path| save_tensors(p, state).map_err(sdk_error))));
        }
        if let Some((states, tensors)) = &self.callbacks {
            set.push((files.callbacks, Box::new(move |p: &Path| save_json(p, states).map_err(sdk_error))));
            set.push((files.callback_tensors, Box::new(move |p: &Path| save_tensors(p, tensors).map_err(sdk_error))));
        }
        if let Some(history) = &self.history {
            set.push((files.history, Box::new(move |p: &Path| history.save(p))));
        }
        crate::checkpoint::save(dir, prefix, set, boundary)
    }
}

/// The entry of a checkpoint's callback states that records the number of processes of the job
/// that saved it (absent: one). A callback's name cannot hold a dot, so it names no callback.
const JOB_KEY: &str = "torchfit.job";

/// Refuses callback states saved by a job of another number of processes than this one (`world`):
/// each rank's shard of an epoch, and so the run, depends on that number.
fn check_world_size(states: &serde_json::Value, world: usize, path: &Path) -> Result<()> {
    let saved = states.get(JOB_KEY).and_then(|j| j.get("world_size")).and_then(|w| w.as_u64()).unwrap_or(1) as usize;
    if saved == world {
        return Ok(());
    }
    let how = if saved == 1 { "without --nproc".to_owned() } else { format!("with --nproc {saved}") };
    Err(Error::Data(format!(
        "{}: this run was trained by {saved} process{} and is resumed by {world}: resume it {how} (or torchrun with {saved} in all), since each process's share of an epoch depends on their number",
        path.display(),
        if saved == 1 { "" } else { "es" }
    )))
}

/// Restores `parts` from checkpoint `prefix` under `dir`, completing an interrupted save first
/// and checking its files against the set's record before anything is restored.
fn load(c: &mut Components, history: &mut History, dir: &Path, prefix: &str, parts: torchfit_sdk::Parts) -> Result<()> {
    if c.replicas.writes_files() {
        crate::checkpoint::recover(dir, prefix)?; // the other ranks read what rank 0 recovered
    }
    crate::checkpoint::verify(dir, prefix)?;
    let files = Files::new(dir, prefix);
    if parts.history {
        *history = History::load(&files.history)?;
        c.mid_epoch = false;
    }
    if parts.params {
        let state = load_tensors(&files.params).map_err(sdk_error)?;
        c.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", files.params.display())))?;
    }
    if parts.optimizer {
        let state = load_tensors(&files.optimizer).map_err(sdk_error)?;
        c.load_optimizer_state(&state)?;
    }
    if parts.callbacks {
        let states = load_json(&files.callbacks).map_err(sdk_error)?;
        let world = c.replicas.process().world_size;
        check_world_size(&states, world, &files.callbacks)?;
        // A checkpoint from before SDK 1.1 has no tensor state.
        let tensors = match files.callback_tensors.exists() {
            true => load_tensors(&files.callback_tensors).map_err(sdk_error)?,
            false => Vec::new(),
        };
        for (name, cb) in &mut c.callbacks {
            let name: &str = name;
            let error = |event| move |source| Error::Callback { name: name.to_owned(), event, source };
            if let Some(state) = states.get(name) {
                cb.load_state(state.clone()).map_err(error("load_state"))?;
            }
            let prefix = format!("{name}/");
            let own: Vec<(String, tch::Tensor)> = tensors
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_owned(), t.shallow_clone())))
                .collect();
            if !own.is_empty() {
                cb.load_state_tensors(own).map_err(error("load_state_tensors"))?;
            }
        }
    }
    log::info!("restored {:?} from {} (history: {} epochs)", parts, dir.join(prefix).display(), history.len());
    Ok(())
}
