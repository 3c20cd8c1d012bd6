//! Test fakes for plugin authors: drive a component's hooks without the engine.

use crate::{BuildContext, Error, Host, Result, Task};
use serde_json::{Map, Value};
use tch::{Device, Kind, Tensor};

/// A [`BuildContext`] for a component configured under `name`, as the engine would give it to a
/// classifier of 3 classes over samples of 2 features on the CPU, with seed 0 and paths relative
/// to the working directory. Change fields with struct update syntax:
/// `BuildContext { n_outputs: 10, ..context("module") }`.
pub fn context(name: &str) -> BuildContext {
    BuildContext {
        name: name.into(),
        input_shape: vec![2],
        n_outputs: 3,
        task: Task::Classification,
        device: Device::Cpu,
        base_dir: ".".into(),
        seed: 0,
    }
}

/// An in-memory [`Host`]: a history, a linear layer `fc` (two parameters with gradients, and a
/// model `x -> x fcᵀ + b` for [`Host::forward`]), one parameter group. It provides every
/// service of the current SDK and records the loop requests it receives.
pub struct FakeHost {
    /// Epoch records (each with a `batches` list), as in `history.json`.
    pub history: Vec<Map<String, Value>>,
    /// Named parameters (`fc.weight` 3x2, `fc.bias` 3), gradients set to ones.
    pub params: Vec<(String, Tensor)>,
    /// Learning rate of each group.
    pub lrs: Vec<f64>,
    /// Whether `request_stop` was called.
    pub stop_requested: bool,
    /// `max_epochs` reported.
    pub max_epochs: usize,
    /// Checkpoint requests made, in order (a fake host does not carry them out).
    pub actions: Vec<crate::checkpoint::Action>,
    /// The run directory reported.
    pub run_dir: Option<std::path::PathBuf>,
    /// Model buffers (none by default), part of the state dict after the parameters.
    pub buffers: Vec<(String, Tensor)>,
    /// Hyper-parameters of each group other than `lr` (`momentum`, `weight_decay`, `betas`).
    pub hypers: Vec<Map<String, Value>>,
    /// Optimizer state reported (none by default).
    pub optimizer_state: Vec<(String, Tensor)>,
    /// Terms added to the loss (`add_to_loss`), in order.
    pub loss_terms: Vec<Tensor>,
    /// How many times `skip_step` was called.
    pub skipped_steps: usize,
    /// The last batch given to `replace_batch`.
    pub replaced_batch: Option<(Tensor, Tensor)>,
    /// How many times `update_batch_norm` was called (the fake runs no pass; it answers
    /// whether `buffers` holds a `running_mean`).
    pub batch_norm_updates: usize,
    /// The process the fake reports ([`crate::Process::SINGLE`] by default).
    pub process: crate::Process,
    /// The gradient scaler the fake reports (none by default: a run in full precision).
    pub grad_scaler: Option<crate::ScalerState>,
}

impl Default for FakeHost {
    fn default() -> Self {
        let param = |shape: &[i64]| {
            let p = Tensor::ones(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true);
            p.sum(Kind::Float).backward();
            p
        };
        FakeHost {
            history: Vec::new(),
            params: vec![("fc.weight".into(), param(&[3, 2])), ("fc.bias".into(), param(&[3]))],
            lrs: vec![0.1],
            stop_requested: false,
            max_epochs: 10,
            actions: Vec::new(),
            run_dir: None,
            buffers: Vec::new(),
            hypers: vec![serde_json::from_value(
                serde_json::json!({"momentum": 0.0, "weight_decay": 0.0, "betas": [0.9, 0.999]}),
            )
            .expect("a JSON object")],
            optimizer_state: Vec::new(),
            loss_terms: Vec::new(),
            skipped_steps: 0,
            replaced_batch: None,
            batch_norm_updates: 0,
            process: crate::Process::SINGLE,
            grad_scaler: None,
        }
    }
}

impl FakeHost {
    /// Opens a new epoch record, as the engine does before `on_epoch_begin`.
    pub fn new_epoch(&mut self) {
        let mut e = Map::new();
        e.insert("batches".into(), Value::Array(Vec::new()));
        e.insert("epoch".into(), Value::from(self.history.len() + 1));
        self.history.push(e);
    }

    /// Opens a new batch record in the current epoch.
    pub fn new_batch(&mut self) {
        if let Some(Value::Array(b)) = self.history.last_mut().and_then(|e| e.get_mut("batches")) {
            b.push(Value::Object(Map::new()));
        }
    }

    fn index(&self, epoch: isize) -> Option<usize> {
        let i = if epoch < 0 { self.history.len() as isize + epoch } else { epoch };
        (0..self.history.len() as isize).contains(&i).then_some(i as usize)
    }
}

impl Host for FakeHost {
    fn epochs(&self) -> usize {
        self.history.len()
    }
    fn history_get(&self, epoch: isize, key: &str) -> Option<Value> {
        self.history.get(self.index(epoch)?)?.get(key).cloned()
    }
    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        let mut m = self.history.get(self.index(epoch)?)?.clone();
        m.shift_remove("batches");
        Some(m)
    }
    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value> {
        match self.index(epoch).and_then(|i| self.history[i].get("batches")) {
            Some(Value::Array(b)) => b.iter().filter_map(|r| r.get(key).cloned()).collect(),
            _ => Vec::new(),
        }
    }
    fn record(&mut self, key: &str, value: Value) -> Result<()> {
        self.history.last_mut().ok_or_else(|| Error::msg("no epoch"))?.insert(key.into(), value);
        Ok(())
    }
    fn record_batch(&mut self, key: &str, value: Value) -> Result<()> {
        match self.history.last_mut().and_then(|e| e.get_mut("batches")) {
            Some(Value::Array(b)) => match b.last_mut() {
                Some(Value::Object(r)) => {
                    r.insert(key.into(), value);
                    Ok(())
                }
                _ => Err(Error::msg("no batch")),
            },
            _ => Err(Error::msg("no epoch")),
        }
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }
    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize> {
        // The engine's rule: Python's fnmatch syntax, `*` crossing dots.
        let glob = crate::glob::Glob::new(pattern).map_err(Error::msg)?;
        let mut n = 0;
        for (name, p) in &self.params {
            if glob.matches(name) {
                let _ = p.set_requires_grad(requires_grad);
                n += 1;
            }
        }
        Ok(n)
    }
    fn param_groups(&self) -> usize {
        self.lrs.len()
    }
    fn lr(&self, group: usize) -> Result<f64> {
        self.lrs.get(group).copied().ok_or_else(|| Error::msg(format!("no group {group}")))
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        *self.lrs.get_mut(group).ok_or_else(|| Error::msg(format!("no group {group}")))? = lr;
        Ok(())
    }
    fn max_epochs(&self) -> usize {
        self.max_epochs
    }
    fn batch_counts(&self) -> (usize, usize) {
        (1, 1)
    }
    fn request_stop(&mut self) {
        self.stop_requested = true;
    }
    fn save_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.actions.push(crate::checkpoint::Action::Save { dir: dir.into(), prefix: prefix.into(), parts });
        Ok(())
    }
    fn load_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.actions.push(crate::checkpoint::Action::Load { dir: dir.into(), prefix: prefix.into(), parts });
        Ok(())
    }
    fn run_dir(&self) -> Option<std::path::PathBuf> {
        self.run_dir.clone()
    }
    fn sdk_version(&self) -> crate::SdkVersion {
        crate::SdkVersion::CURRENT
    }
    fn add_to_loss(&mut self, term: &Tensor) -> Result<()> {
        self.loss_terms.push(term.shallow_clone());
        Ok(())
    }
    fn skip_step(&mut self) -> Result<()> {
        self.skipped_steps += 1;
        Ok(())
    }
    fn replace_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        self.replaced_batch = Some((x.shallow_clone(), y.shallow_clone()));
        Ok(())
    }
    fn group_parameters(&self, group: usize) -> Result<Vec<String>> {
        match group {
            0 => Ok(self.params.iter().map(|(n, _)| n.clone()).collect()),
            _ => Err(Error::msg(format!("no group {group}"))),
        }
    }
    fn hyper(&self, group: usize, name: &str) -> Result<Value> {
        if name == "lr" {
            return self.lr(group).map(Value::from);
        }
        let g = self.hypers.get(group).ok_or_else(|| Error::msg(format!("no group {group}")))?;
        g.get(name).cloned().ok_or_else(|| Error::msg(format!("no hyper-parameter `{name}`")))
    }
    fn set_hyper(&mut self, group: usize, name: &str, value: Value) -> Result<()> {
        if name == "lr" {
            return self.set_lr(group, value.as_f64().ok_or_else(|| Error::msg("`lr` must be a number"))?);
        }
        let g = self.hypers.get_mut(group).ok_or_else(|| Error::msg(format!("no group {group}")))?;
        match g.get_mut(name) {
            Some(v) => {
                *v = value;
                Ok(())
            }
            None => Err(Error::msg(format!("no hyper-parameter `{name}`"))),
        }
    }
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.optimizer_state.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect())
    }
    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.buffers.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect())
    }
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.params.iter().chain(&self.buffers).map(|(n, t)| (n.clone(), t.shallow_clone())).collect())
    }
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, t) in self.params.iter_mut().chain(self.buffers.iter_mut()) {
            let (_, v) =
                state.iter().find(|(n, _)| n == name).ok_or_else(|| Error::msg(format!("`{name}` missing")))?;
            t.f_copy_(v)?;
        }
        Ok(())
    }
    /// `x fc.weightᵀ + fc.bias`.
    fn forward(&mut self, x: &Tensor, mode: crate::Forward) -> Result<Tensor> {
        let run = || Ok(x.f_matmul(&self.params[0].1.f_tr()?)?.f_add(&self.params[1].1)?);
        if mode.grad {
            tch::with_grad(run)
        } else {
            tch::no_grad(run)
        }
    }
    fn update_batch_norm(&mut self) -> Result<bool> {
        self.batch_norm_updates += 1;
        Ok(self.buffers.iter().any(|(n, _)| n.ends_with("running_mean")))
    }
    fn device(&self) -> Result<Device> {
        Ok(Device::Cpu)
    }
    fn process(&self) -> Result<crate::Process> {
        Ok(self.process)
    }
    fn grad_scaler(&self) -> Result<Option<crate::ScalerState>> {
        Ok(self.grad_scaler)
    }
    /// `accuracy`, the one scorer the fake knows, is higher-is-better.
    fn scorer_lower_is_better(&mut self, name: &str) -> Result<Option<bool>> {
        match name {
            "accuracy" => Ok(Some(false)),
            other => Err(Error::msg(format!("FakeHost knows no scorer `{other}`"))),
        }
    }
    /// The fake knows one scorer, `accuracy` ([`crate::metrics::accuracy`]).
    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        match name {
            "accuracy" => crate::metrics::accuracy(y_true, y_pred),
            other => Err(Error::msg(format!("FakeHost knows no scorer `{other}`"))),
        }
    }
}

/// A [`FakeHost`] as a host built against SDK 1.0 serves it: the 1.0 services only, every later
/// one answering [`crate::Error::Unsupported`] (the trait's defaults). A plugin's tests run its
/// callbacks against it to check that they do without what older hosts lack.
pub struct Sdk10Host(pub FakeHost);

impl Host for Sdk10Host {
    fn epochs(&self) -> usize {
        self.0.epochs()
    }
    fn history_get(&self, epoch: isize, key: &str) -> Option<Value> {
        self.0.history_get(epoch, key)
    }
    fn history_epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        self.0.history_epoch(epoch)
    }
    fn history_batch_values(&self, epoch: isize, key: &str) -> Vec<Value> {
        self.0.history_batch_values(epoch, key)
    }
    fn record(&mut self, key: &str, value: Value) -> Result<()> {
        self.0.record(key, value)
    }
    fn record_batch(&mut self, key: &str, value: Value) -> Result<()> {
        self.0.record_batch(key, value)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.0.parameters()
    }
    fn set_requires_grad(&mut self, pattern: &str, requires_grad: bool) -> Result<usize> {
        self.0.set_requires_grad(pattern, requires_grad)
    }
    fn param_groups(&self) -> usize {
        self.0.param_groups()
    }
    fn lr(&self, group: usize) -> Result<f64> {
        self.0.lr(group)
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        self.0.set_lr(group, lr)
    }
    fn max_epochs(&self) -> usize {
        self.0.max_epochs()
    }
    fn batch_counts(&self) -> (usize, usize) {
        self.0.batch_counts()
    }
    fn request_stop(&mut self) {
        self.0.request_stop()
    }
    fn save_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.0.save_checkpoint(dir, prefix, parts)
    }
    fn load_checkpoint(&mut self, dir: &std::path::Path, prefix: &str, parts: crate::Parts) -> Result<()> {
        self.0.load_checkpoint(dir, prefix, parts)
    }
    fn run_dir(&self) -> Option<std::path::PathBuf> {
        self.0.run_dir()
    }
    fn score(&mut self, name: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        self.0.score(name, y_true, y_pred)
    }
}

/// Runs one epoch of every hook of `cb` against `host` (one training and one validation batch,
/// then `train_loss`, `valid_loss` and their `_best` flags recorded as the default callbacks
/// would) and returns the first error; the contract a conformance test checks.
pub fn drive_one_epoch(cb: &mut dyn crate::Callback, host: &mut FakeHost) -> Result<()> {
    let x = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 1]);
    let y_pred = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let loss = Tensor::from(1.0986f32);
    cb.initialize()?;
    cb.on_train_begin(host)?;
    host.new_epoch();
    cb.on_epoch_begin(host)?;
    for (index, training) in [(0, true), (0, false)] {
        host.new_batch();
        let batch = crate::Batch { x: &x, y: &y, training, index };
        cb.on_batch_begin(host, &batch)?;
        if training {
            cb.on_loss_computed(host, &crate::BatchOutput { batch, y_pred: &y_pred, loss: &loss })?;
            cb.on_grad_computed(host, &batch)?;
        }
        cb.on_batch_end(host, &crate::BatchOutput { batch, y_pred: &y_pred, loss: &loss })?;
    }
    // What the engine's default callbacks record before later callbacks see the epoch end.
    let first = host.history.len() == 1;
    for key in ["train_loss", "valid_loss"] {
        host.record(key, Value::from(1.0))?;
        host.record(&format!("{key}_best"), Value::from(first))?;
    }
    cb.on_epoch_end(host)?;
    cb.on_train_end(host)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_the_process_service_counts_as_a_single_main_process() {
        let old = Sdk10Host(FakeHost::default());
        assert!(matches!(old.process(), Err(crate::Error::Unsupported { .. })));
        assert!(old.is_main_process());
        let second =
            FakeHost { process: crate::Process { rank: 1, world_size: 2, local_rank: 1 }, ..Default::default() };
        assert!(!second.is_main_process());
        assert!(FakeHost::default().is_main_process());
    }

    #[test]
    fn one_batch_value_is_read_on_any_host_and_an_old_host_has_no_scaler_to_report() {
        let mut host = FakeHost::default();
        host.new_epoch();
        for stepped in [false, true] {
            host.new_batch();
            host.record_batch("stepped", stepped.into()).unwrap();
        }
        let old = Sdk10Host(host);
        assert_eq!(old.history_batch_value(-1, -1, "stepped"), Some(true.into()));
        assert_eq!(old.history_batch_value(0, 0, "stepped"), Some(false.into()));
        assert_eq!(old.history_batch_value(-1, -3, "stepped"), None);
        assert_eq!(old.history_batch_value(-1, 0, "absent"), None);
        assert!(matches!(old.grad_scaler(), Err(crate::Error::Unsupported { .. })));
        let scaler = crate::ScalerState { scale: 1024.0, growth_tracker: 3 };
        assert_eq!(FakeHost { grad_scaler: Some(scaler), ..old.0 }.grad_scaler().unwrap(), Some(scaler));
    }

    #[test]
    fn a_monitored_key_is_read_as_a_number_or_named_with_its_writer_when_missing() {
        let mut host = FakeHost::default();
        host.new_epoch();
        host.record("valid_loss", serde_json::json!(0.25)).unwrap();
        host.record("note", serde_json::json!("text")).unwrap();
        assert_eq!(host.history_number("valid_loss", "its scorer").unwrap(), 0.25);
        for key in ["valid_acc", "note"] {
            let e = host.history_number(key, "its scorer").unwrap_err();
            assert!(
                matches!(e, crate::Error::MissingHistoryKey { key: ref k, epoch: 1, ref writer } if k == key && writer == "its scorer"),
                "{e:?}"
            );
        }
    }
}
