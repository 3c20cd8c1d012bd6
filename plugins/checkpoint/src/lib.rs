//! Stock checkpoint callbacks with skorch's semantics: `checkpoint`, `train_end_checkpoint` and
//! `load_init_state`. Each hook decides; the engine writes and reads the files
//! ([`Host::save_checkpoint`], [`Host::load_checkpoint`]), atomically per file.
#![deny(missing_docs)]

use serde::Deserialize;
use std::path::PathBuf;
use torchfit_sdk::checkpoint::Files;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Error, Flow, Host, Parts, Result};

/// `monitor`: a history key whose truth triggers a save, or `false` to save every epoch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Monitor {
    /// Save when this epoch key is true (or a non-zero number).
    Key(String),
    /// `false`: save every epoch (skorch's `monitor=None`).
    Every(bool),
}

/// Parts as configured: a list of `params`, `optimizer`, `callbacks`, `history`.
fn parts_of(list: &[String]) -> Result<Parts> {
    let mut p = Parts::default();
    for (i, name) in list.iter().enumerate() {
        match name.as_str() {
            "params" => p.params = true,
            "optimizer" => p.optimizer = true,
            "callbacks" => p.callbacks = true,
            "history" => p.history = true,
            other => {
                return Err(Error::Config {
                    key: format!("parts[{i}]"),
                    message: format!("unknown part {other:?}; expected params, optimizer, callbacks or history"),
                })
            }
        }
    }
    Ok(p)
}

fn all_parts() -> Vec<String> {
    ["params", "optimizer", "callbacks", "history"].map(String::from).to_vec()
}

/// Settings of `checkpoint` (and, with other defaults, `train_end_checkpoint`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointConfig {
    #[serde(default = "valid_loss_best")]
    monitor: Monitor,
    #[serde(default)]
    dirname: String,
    #[serde(default)]
    fn_prefix: Option<String>,
    #[serde(default = "all_parts")]
    parts: Vec<String>,
    #[serde(default)]
    load_best: bool,
    /// Default: `event_<name>`, the callback's config name (`event_cp` for `[callbacks.cp]`), so
    /// that two checkpoints never record into one key.
    #[serde(default)]
    event_name: Option<String>,
}

fn valid_loss_best() -> Monitor {
    Monitor::Key("valid_loss_best".into())
}

/// The monitored key is not in the epoch's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingKey;

/// Whether epoch `value` of the monitored key asks for a checkpoint (pure decision).
pub fn should_save(monitor: &Monitor, value: Option<&serde_json::Value>) -> std::result::Result<bool, MissingKey> {
    match monitor {
        Monitor::Every(_) => Ok(true),
        Monitor::Key(_) => match value {
            None => Err(MissingKey),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(v) => Ok(v.as_f64().is_some_and(|x| x != 0.0)),
        },
    }
}

/// `checkpoint`: saves on epoch end when `monitor` holds; records `event_<name>`.
pub struct Checkpoint {
    monitor: Monitor,
    dir: PathBuf,
    prefix: String,
    parts: Parts,
    load_best: bool,
    event_name: String,
    saved: bool,
}

fn build_checkpoint(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: CheckpointConfig = parse_config(config)?;
    if let Monitor::Every(true) = c.monitor {
        return Err(Error::Config {
            key: "monitor".into(),
            message: "a history key, or false to save every epoch".into(),
        });
    }
    Ok(Box::new(Checkpoint {
        parts: parts_of(&c.parts)?,
        monitor: c.monitor,
        dir: c.dirname.into(),
        prefix: c.fn_prefix.unwrap_or_default(),
        load_best: c.load_best,
        event_name: c.event_name.unwrap_or_else(|| format!("event_{}", ctx.name)),
        saved: false,
    }))
}

impl Callback for Checkpoint {
    fn initialize(&mut self) -> Result<()> {
        self.saved = false;
        Ok(())
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let value = match &self.monitor {
            Monitor::Key(k) => host.history_get(-1, k),
            Monitor::Every(_) => None,
        };
        let save = should_save(&self.monitor, value.as_ref()).map_err(|MissingKey| Error::MissingHistoryKey {
            key: match &self.monitor {
                Monitor::Key(k) => k.clone(),
                Monitor::Every(_) => String::new(),
            },
            epoch: host.epochs(),
            writer: "the scoring callback of that key (a `*_best` key needs validation data)".into(),
        })?;
        host.record(&self.event_name, save.into())?;
        if save {
            host.save_checkpoint(&self.dir, &self.prefix, self.parts)?;
            self.saved = true;
        }
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        let any_saved = self.saved
            || (0..host.epochs() as isize)
                .any(|e| host.history_get(e, &self.event_name) == Some(serde_json::Value::Bool(true)));
        if self.load_best && any_saved {
            host.load_checkpoint(&self.dir, &self.prefix, Parts::PARAMS)?;
        }
        Ok(())
    }
}

/// Settings of `train_end_checkpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainEndConfig {
    #[serde(default)]
    dirname: String,
    #[serde(default = "train_end_prefix")]
    fn_prefix: String,
    #[serde(default = "all_parts")]
    parts: Vec<String>,
}

fn train_end_prefix() -> String {
    "train_end_".into()
}

/// `train_end_checkpoint`: saves on train end (also after a stop request or an error).
pub struct TrainEndCheckpoint {
    dir: PathBuf,
    prefix: String,
    parts: Parts,
}

fn build_train_end(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: TrainEndConfig = parse_config(config)?;
    Ok(Box::new(TrainEndCheckpoint { parts: parts_of(&c.parts)?, dir: c.dirname.into(), prefix: c.fn_prefix }))
}

impl Callback for TrainEndCheckpoint {
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        host.save_checkpoint(&self.dir, &self.prefix, self.parts)
    }
}

/// Settings of `load_init_state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadConfig {
    #[serde(default)]
    dirname: String,
    #[serde(default)]
    fn_prefix: String,
    #[serde(default = "all_parts")]
    parts: Vec<String>,
    #[serde(default)]
    missing_ok: bool,
}

/// `load_init_state`: on the first `on_train_begin` after initialize, restores a checkpoint
/// (skorch's `LoadInitState`); training goes on from the epoch after the restored one. A missing
/// checkpoint is an error naming where it was looked for, unless `missing_ok` (then training
/// starts fresh, as skorch's does).
pub struct LoadInitState {
    dir: PathBuf,
    prefix: String,
    parts: Parts,
    missing_ok: bool,
    done: bool,
}

fn build_load(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: LoadConfig = parse_config(config)?;
    let parts = parts_of(&c.parts)?;
    Ok(Box::new(LoadInitState {
        parts,
        dir: c.dirname.into(),
        prefix: c.fn_prefix,
        missing_ok: c.missing_ok,
        done: false,
    }))
}

/// What `load_init_state` does when its checkpoint has (`found`) or lacks its files (pure
/// decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStart {
    /// Restore the checkpoint.
    Load,
    /// Start fresh: none is there, and `missing_ok` allows it.
    Fresh,
    /// Refuse: none is there.
    Missing,
}

/// The decision of `load_init_state` at its first train begin.
pub fn on_start(found: bool, missing_ok: bool) -> OnStart {
    match (found, missing_ok) {
        (true, _) => OnStart::Load,
        (false, true) => OnStart::Fresh,
        (false, false) => OnStart::Missing,
    }
}

impl Callback for LoadInitState {
    fn initialize(&mut self) -> Result<()> {
        self.done = false;
        Ok(())
    }

    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(Flow::Continue);
        }
        let dir = torchfit_sdk::host::in_run_dir(host, &self.dir);
        let files = Files::new(&dir, &self.prefix);
        match on_start(files.exist(self.parts), self.missing_ok) {
            OnStart::Load => host.load_checkpoint(&self.dir, &self.prefix, self.parts)?,
            OnStart::Fresh => torchfit_sdk::log::info!(
                "load_init_state: no checkpoint `{}` in {}, starting fresh (missing_ok)",
                self.prefix,
                dir.display()
            ),
            OnStart::Missing => {
                let absolute = std::path::absolute(&dir).unwrap_or(dir);
                let missing: Vec<String> = files
                    .of(self.parts)
                    .into_iter()
                    .filter(|p| !p.exists())
                    .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                    .collect();
                return Err(Error::Config {
                    key: "dirname".into(),
                    message: format!(
                        "no checkpoint `{}` in {} (missing: {}); set missing_ok = true to start fresh when there is none",
                        self.prefix,
                        absolute.display(),
                        missing.join(", ")
                    ),
                });
            }
        }
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-checkpoint",
    components: [
        Callback("checkpoint", build_checkpoint, "saves on epoch end when `monitor` holds (default valid_loss_best); records event_<name>; keys: monitor, dirname, fn_prefix, parts, load_best, event_name"),
        Callback("train_end_checkpoint", build_train_end, "saves on train end with prefix train_end_; keys: dirname, fn_prefix, parts"),
        Callback("load_init_state", build_load, "restores a checkpoint on the first train begin (an error when missing unless missing_ok); keys: dirname, fn_prefix, parts, missing_ok"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;
    use torchfit_sdk::checkpoint::Action;
    use torchfit_sdk::testing::FakeHost;

    fn ctx() -> BuildContext {
        BuildContext { n_outputs: 2, ..torchfit_sdk::testing::context("cp") }
    }

    #[test]
    fn a_monitored_key_decides_and_false_means_every_epoch() {
        let key = Monitor::Key("valid_loss_best".into());
        assert_eq!(should_save(&key, Some(&json!(true))), Ok(true));
        assert_eq!(should_save(&key, Some(&json!(false))), Ok(false));
        assert_eq!(should_save(&key, None), Err(MissingKey));
        assert_eq!(should_save(&Monitor::Every(false), None), Ok(true));
    }

    #[test]
    fn checkpoint_saves_only_on_best_epochs_and_records_event_cp() {
        let mut cb = build_checkpoint(&json!({"dirname": "cps"}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        for best in [true, false, true] {
            host.new_epoch();
            host.record("valid_loss_best", best.into()).unwrap();
            cb.on_epoch_end(&mut host).unwrap();
            assert_eq!(host.history_get(-1, "event_cp"), Some(json!(best)));
        }
        assert_eq!(host.actions.len(), 2);
        assert!(
            matches!(&host.actions[0], Action::Save { dir, prefix, parts } if dir == Path::new("cps") && prefix.is_empty() && *parts == Parts::ALL)
        );
    }

    #[test]
    fn a_missing_monitor_key_names_the_key() {
        let mut cb = build_checkpoint(&json!({}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        host.new_epoch();
        let err = cb.on_epoch_end(&mut host).unwrap_err().to_string();
        assert!(err.contains("valid_loss_best"), "{err}");
    }

    #[test]
    fn load_best_restores_params_at_train_end_only_after_a_save() {
        let mut cb = build_checkpoint(&json!({"load_best": true, "monitor": false}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        cb.on_train_end(&mut host).unwrap();
        assert!(host.actions.is_empty(), "nothing saved, nothing to load");
        host.new_epoch();
        cb.on_epoch_end(&mut host).unwrap();
        cb.on_train_end(&mut host).unwrap();
        assert!(matches!(host.actions.last(), Some(Action::Load { parts, .. }) if *parts == Parts::PARAMS));
    }

    #[test]
    fn train_end_checkpoint_uses_the_train_end_prefix() {
        let mut cb = build_train_end(&json!({"parts": ["params", "history"]}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        cb.on_train_end(&mut host).unwrap();
        assert!(
            matches!(&host.actions[0], Action::Save { prefix, parts, .. } if prefix == "train_end_" && parts.params && parts.history && !parts.optimizer)
        );
    }

    #[test]
    fn two_checkpoints_record_into_keys_of_their_own() {
        let mut host = FakeHost::default();
        host.new_epoch();
        host.record("valid_loss_best", true.into()).unwrap();
        let named = |name: &str| BuildContext { name: name.into(), ..ctx() };
        build_checkpoint(&json!({}), &named("best")).unwrap().on_epoch_end(&mut host).unwrap();
        build_checkpoint(&json!({"monitor": false}), &named("every")).unwrap().on_epoch_end(&mut host).unwrap();
        assert_eq!(
            (host.history_get(-1, "event_best"), host.history_get(-1, "event_every")),
            (Some(json!(true)), Some(json!(true)))
        );
        assert_eq!(host.history_get(-1, "event_cp"), None);
    }

    #[test]
    fn a_missing_checkpoint_is_refused_unless_missing_ok() {
        assert_eq!(on_start(true, false), OnStart::Load);
        assert_eq!(on_start(false, true), OnStart::Fresh);
        assert_eq!(on_start(false, false), OnStart::Missing);
        let mut cb = build_load(&json!({"dirname": "nowhere", "fn_prefix": "best_"}), &ctx()).unwrap();
        let err = cb.on_train_begin(&mut FakeHost::default()).unwrap_err();
        let Error::Config { key, message } = err else { panic!("a config error: {err}") };
        let here = std::path::absolute("nowhere").unwrap();
        assert!(key == "dirname" && message.contains(&here.display().to_string()), "{message}");
        assert!(message.contains("best_params.safetensors") && message.contains("missing_ok"), "{message}");
    }

    #[test]
    fn load_init_state_loads_once_and_only_an_existing_checkpoint() {
        let dir = std::env::temp_dir().join(format!("torchfit-lis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = json!({"dirname": dir.to_str().unwrap(), "parts": ["history"], "missing_ok": true});
        let mut cb = build_load(&config, &ctx()).unwrap();
        let mut host = FakeHost::default();
        cb.on_train_begin(&mut host).unwrap();
        assert!(host.actions.is_empty(), "no checkpoint yet: start fresh");
        std::fs::write(dir.join("history.json"), "[]").unwrap();
        cb.initialize().unwrap();
        cb.on_train_begin(&mut host).unwrap();
        cb.on_train_begin(&mut host).unwrap();
        assert_eq!(host.actions.len(), 1, "once per initialize");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unknown_part_is_refused_by_index() {
        let err = build_train_end(&json!({"parts": ["params", "weights"]}), &ctx()).err().unwrap().to_string();
        assert!(err.contains("parts[1]") && err.contains("weights"), "{err}");
    }
}
