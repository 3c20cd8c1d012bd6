//! Stock checkpoint callbacks with skorch's semantics: `checkpoint`, `train_end_checkpoint` and
//! `load_init_state`. Each hook decides; the engine writes and reads the files
//! ([`Host::save_checkpoint`], [`Host::load_checkpoint`]), atomically per file.
#![deny(missing_docs)]

use serde::Deserialize;
use std::path::PathBuf;
use torchfit_sdk::checkpoint::{partial_state, Files};
use torchfit_sdk::glob::Glob;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Error, Flow, Host, Parts, Result, SdkVersion};

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
                return Err(Error::config(
                    format!("parts[{i}]"),
                    format!("unknown part {other:?}; expected params, optimizer, callbacks or history"),
                ))
            }
        }
    }
    Ok(p)
}

/// Settings of `checkpoint` (and, with other defaults, `train_end_checkpoint`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CheckpointConfig {
    monitor: Monitor,
    dirname: String,
    fn_prefix: Option<String>,
    parts: Vec<String>,
    load_best: bool,
    /// Default: `event_<name>`, the callback's config name (`event_cp` for `[callbacks.cp]`), so
    /// that two checkpoints never record into one key.
    event_name: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            monitor: Monitor::Key("valid_loss_best".into()),
            dirname: Default::default(),
            fn_prefix: Default::default(),
            parts: ["params", "optimizer", "callbacks", "history"].map(String::from).to_vec(),
            load_best: Default::default(),
            event_name: Default::default(),
        }
    }
}

/// `fn_prefix` with its keys replaced for epoch `epoch` (from 1): `{epoch}` (Poutyne's
/// `best_epoch_{epoch}`) and skorch's `{last_epoch[epoch]}`; any other `{...}` is refused.
pub fn expand_prefix(template: &str, epoch: usize) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or_else(|| format!("`{{` without `}}` in {template:?}"))? + open;
        match &rest[open + 1..close] {
            "epoch" | "last_epoch[epoch]" => out.push_str(&epoch.to_string()),
            other => {
                return Err(format!("unknown key {{{other}}} in {template:?}; known: {{epoch}}, {{last_epoch[epoch]}}"))
            }
        }
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`}}` without `{{` in {template:?}"));
    }
    out.push_str(rest);
    Ok(out)
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
    /// The prefix of the last save (its `fn_prefix` expanded), which `load_best` restores.
    saved: Option<String>,
}

fn build_checkpoint(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: CheckpointConfig = parse_config(config)?;
    if let Monitor::Every(true) = c.monitor {
        return Err(Error::config("monitor", "a history key, or false to save every epoch"));
    }
    let prefix = c.fn_prefix.unwrap_or_default();
    expand_prefix(&prefix, 1).map_err(|message| Error::config("fn_prefix", message))?;
    Ok(Box::new(Checkpoint {
        parts: parts_of(&c.parts)?,
        monitor: c.monitor,
        dir: c.dirname.into(),
        prefix,
        load_best: c.load_best,
        event_name: c.event_name.unwrap_or_else(|| format!("event_{}", ctx.name)),
        saved: None,
    }))
}

impl Callback for Checkpoint {
    fn initialize(&mut self) -> Result<()> {
        self.saved = None;
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
            let prefix = expand_prefix(&self.prefix, host.epochs()).map_err(Error::msg)?;
            host.save_checkpoint(&self.dir, &prefix, self.parts)?;
            self.saved = Some(prefix);
        }
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        if !self.load_best {
            return Ok(());
        }
        // The last save, in this fit or (resumed) before it, as the history records it.
        let last = self.saved.clone().or_else(|| {
            (0..host.epochs())
                .rev()
                .find(|&e| host.history_get(e as isize, &self.event_name) == Some(serde_json::Value::Bool(true)))
                .and_then(|e| expand_prefix(&self.prefix, e + 1).ok())
        });
        if let Some(prefix) = last {
            host.load_checkpoint(&self.dir, &prefix, Parts::PARAMS)?;
        }
        Ok(())
    }
}

/// Settings of `train_end_checkpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainEndConfig {
    dirname: String,
    fn_prefix: String,
    parts: Vec<String>,
}

impl Default for TrainEndConfig {
    fn default() -> Self {
        TrainEndConfig {
            dirname: Default::default(),
            fn_prefix: "train_end_".into(),
            parts: ["params", "optimizer", "callbacks", "history"].map(String::from).to_vec(),
        }
    }
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
#[serde(deny_unknown_fields, default)]
struct LoadConfig {
    dirname: String,
    fn_prefix: String,
    parts: Vec<String>,
    missing_ok: bool,
    strict: bool,
    exclude: Vec<String>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            dirname: Default::default(),
            fn_prefix: Default::default(),
            parts: ["params", "optimizer", "callbacks", "history"].map(String::from).to_vec(),
            missing_ok: Default::default(),
            strict: true,
            exclude: Default::default(),
        }
    }
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
    /// `Some` for a partial load of the parameters (`strict = false` or `exclude`): with
    /// `strict`, and the patterns left as initialized.
    partial: Option<(bool, Vec<Glob>)>,
    done: bool,
}

fn build_load(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: LoadConfig = parse_config(config)?;
    let parts = parts_of(&c.parts)?;
    let mut exclude = Vec::with_capacity(c.exclude.len());
    for (i, pattern) in c.exclude.iter().enumerate() {
        exclude.push(Glob::new(pattern).map_err(|message| Error::config(format!("exclude[{i}]"), message))?);
    }
    let partial = (!c.strict || !exclude.is_empty()).then_some((c.strict, exclude));
    if partial.is_some() && parts != Parts::PARAMS {
        let message =
            "a partial load (strict = false or exclude) restores the parameters only: set parts = [\"params\"]";
        return Err(Error::config("parts", message));
    }
    let (dir, prefix, missing_ok) = (c.dirname.into(), c.fn_prefix, c.missing_ok);
    Ok(Box::new(LoadInitState { parts, dir, prefix, missing_ok, partial, done: false }))
}

impl LoadInitState {
    /// Loads the parameters that fit from the checkpoint's params file into the model, leaving
    /// the excluded ones (and, without `strict`, those that differ) as initialized.
    fn load_partially(
        &self,
        host: &mut dyn Host,
        file: &std::path::Path,
        strict: bool,
        exclude: &[Glob],
    ) -> Result<()> {
        let saved = torchfit_sdk::io::load_tensors(file)?;
        let (state, report) = partial_state(&host.state_dict()?, &saved, exclude, strict)
            .map_err(|e| Error::Data(format!("{}: {e}", file.display())))?;
        host.load_state_dict(&state)?;
        torchfit_sdk::log::info!("load_init_state: {}: {}", file.display(), report.summary());
        Ok(())
    }
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

    /// A partial load reads and sets the model's state dict, services of SDK 1.1.
    fn requires_sdk(&self) -> SdkVersion {
        match self.partial {
            Some(_) => SdkVersion::V1_1,
            None => SdkVersion::V1_0,
        }
    }

    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(Flow::Continue);
        }
        let dir = torchfit_sdk::host::in_run_dir(host, &self.dir);
        let files = Files::new(&dir, &self.prefix);
        match on_start(files.exist(self.parts), self.missing_ok) {
            OnStart::Load => match &self.partial {
                None => host.load_checkpoint(&self.dir, &self.prefix, self.parts)?,
                Some((strict, exclude)) => self.load_partially(host, &files.params, *strict, exclude)?,
            },
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
                return Err(Error::config(
                    "dirname",
                    format!(
                        "no checkpoint `{}` in {} (missing: {}); set missing_ok = true to start fresh when there is none",
                        self.prefix,
                        absolute.display(),
                        missing.join(", ")
                    ),
                ));
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
        Callback("load_init_state", build_load, "restores a checkpoint on the first train begin (an error when missing unless missing_ok), or only the parameters that fit (strict = false, exclude); keys: dirname, fn_prefix, parts, missing_ok, strict, exclude"),
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
    fn fn_prefix_takes_the_epoch_as_poutyne_and_skorch_name_it() {
        assert_eq!(expand_prefix("best_epoch_{epoch}_", 7).unwrap(), "best_epoch_7_");
        assert_eq!(expand_prefix("e{last_epoch[epoch]}-", 12).unwrap(), "e12-");
        assert_eq!(expand_prefix("plain_", 3).unwrap(), "plain_");
        assert!(expand_prefix("{batch}", 1).unwrap_err().contains("unknown key {batch}"));
        assert!(expand_prefix("x{epoch", 1).is_err() && expand_prefix("x}", 1).is_err());
        assert!(build_checkpoint(&json!({"fn_prefix": "{step}_"}), &ctx()).is_err(), "refused when built");
        let mut cb =
            build_checkpoint(&json!({"fn_prefix": "best_epoch_{epoch}_", "monitor": false, "load_best": true}), &ctx())
                .unwrap();
        let mut host = FakeHost::default();
        for _ in 0..2 {
            host.new_epoch();
            cb.on_epoch_end(&mut host).unwrap();
        }
        cb.on_train_end(&mut host).unwrap();
        let prefixes: Vec<&str> = host
            .actions
            .iter()
            .map(|a| match a {
                Action::Save { prefix, .. } | Action::Load { prefix, .. } => prefix.as_str(),
            })
            .collect();
        assert_eq!(
            prefixes,
            ["best_epoch_1_", "best_epoch_2_", "best_epoch_2_"],
            "one file set per epoch; the last loaded"
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
