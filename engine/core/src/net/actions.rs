//! Checkpoint requests carried out: a callback decides to save or restore during a hook
//! ([`torchfit_sdk::Host::save_checkpoint`]); the loop acts once the event has reached every
//! callback.

use super::build::Components;
use crate::checkpoint::Writer;
use crate::{Error, History, Result};
use std::path::Path;
use torchfit_sdk::checkpoint::{Action, Files};
use torchfit_sdk::io::{load_json, load_tensors, save_json, save_tensors};

/// Carries out `action` on the run's components and history.
pub(super) fn perform(c: &mut Components, history: &mut History, action: &Action) -> Result<()> {
    match action {
        Action::Save { dir, prefix, parts } => save(c, history, dir, prefix, *parts),
        Action::Load { dir, prefix, parts } => load(c, history, dir, prefix, *parts),
    }
}

fn sdk_error(e: torchfit_sdk::Error) -> Error {
    Error::Data(e.to_string())
}

/// Writes `parts` as one checkpoint set (see [`crate::checkpoint`]).
fn save(c: &Components, history: &History, dir: &Path, prefix: &str, parts: torchfit_sdk::Parts) -> Result<()> {
    let files = Files::new(dir, prefix);
    let mut set: Vec<Writer<'_>> = Vec::new();
    if parts.params {
        let state = c.model.state_dict();
        set.push((files.params, Box::new(move |p: &Path| save_tensors(p, &state).map_err(sdk_error))));
    }
    if parts.optimizer {
        let state = c.optimizer.state_dict();
        set.push((files.optimizer, Box::new(move |p: &Path| save_tensors(p, &state).map_err(sdk_error))));
    }
    if parts.callbacks {
        let (mut states, mut tensors) = (serde_json::Map::new(), Vec::new());
        for (name, cb) in &c.callbacks {
            let name: &str = name;
            let error = |event| move |source| Error::Callback { name: name.to_owned(), event, source };
            states.insert(name.to_owned(), cb.state().map_err(error("state"))?);
            let own = cb.state_tensors().map_err(error("state_tensors"))?;
            tensors.extend(own.into_iter().map(|(t, v)| (format!("{name}/{t}"), v)));
        }
        let states = serde_json::Value::Object(states);
        set.push((files.callbacks, Box::new(move |p: &Path| save_json(p, &states).map_err(sdk_error))));
        set.push((files.callback_tensors, Box::new(move |p: &Path| save_tensors(p, &tensors).map_err(sdk_error))));
    }
    if parts.history {
        set.push((files.history, Box::new(move |p: &Path| history.save(p))));
    }
    crate::checkpoint::save(dir, prefix, set)
}

/// Restores `parts` from checkpoint `prefix` under `dir`, completing an interrupted save first.
fn load(c: &mut Components, history: &mut History, dir: &Path, prefix: &str, parts: torchfit_sdk::Parts) -> Result<()> {
    crate::checkpoint::recover(dir, prefix)?;
    let files = Files::new(dir, prefix);
    if parts.history {
        *history = History::load(&files.history)?;
    }
    if parts.params {
        let state = load_tensors(&files.params).map_err(sdk_error)?;
        c.model.load_state_dict(&state).map_err(|e| Error::Data(format!("{}: {e}", files.params.display())))?;
    }
    if parts.optimizer {
        let state = load_tensors(&files.optimizer).map_err(sdk_error)?;
        c.optimizer.load_state_dict(&state)?;
    }
    if parts.callbacks {
        let states = load_json(&files.callbacks).map_err(sdk_error)?;
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
