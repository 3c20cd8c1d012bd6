//! `tensorboard`: the history as TensorBoard event files, read by TensorBoard itself (and by
//! `tensorboard`'s `EventAccumulator`, `tbparse`). Like `csv_logger`, it writes an epoch once
//! the next one begins (and when training ends), so that the epoch's scalars hold every key any
//! callback recorded, wherever it stands in the list; a resumed run marks its restart so that
//! readers drop what the interrupted run wrote past the resume point.

mod events;

use events::{Event, EventFile, HistogramProto, Kind, ProtoKind, ProtoValue, Summary, What};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use torchfit_sdk::host::in_run_dir;
use torchfit_sdk::tch;
use torchfit_sdk::{parse_config, BuildContext, Callback, Error, Flow, Host, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    logdir: String,
    batches: bool,
    histograms: bool,
    bins: usize,
    hparams: Map<String, Value>,
    metrics: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            logdir: "tensorboard".into(),
            batches: false,
            histograms: false,
            bins: 30,
            hparams: Map::new(),
            metrics: vec!["valid_loss".into()],
        }
    }
}

/// What a checkpoint keeps: the learning rates and momenta the last epoch began with (the
/// scalars of an epoch are written when the next begins, by then with other rates).
#[derive(Default, Serialize, Deserialize)]
struct Rates {
    lr: Vec<f64>,
    momentum: Vec<Option<f64>>,
}

struct TensorBoard {
    config: Config,
    epochs: Option<EventFile>,
    batches: Option<EventFile>,
    /// Epochs whose `on_epoch_end` has run, and epochs written.
    ended: usize,
    written: usize,
    /// Training batches written to the batch run (its step).
    batch_step: i64,
    rates: Rates,
}

pub(crate) fn build(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    if c.bins == 0 || c.bins > 10_000 {
        return Err(Error::config("bins", "must be between 1 and 10000"));
    }
    for (key, value) in &c.hparams {
        if hparam(value).is_none() {
            return Err(Error::config(format!("hparams.{key}"), "must be a number, a string or a boolean"));
        }
    }
    Ok(Box::new(TensorBoard {
        config: c,
        epochs: None,
        batches: None,
        ended: 0,
        written: 0,
        batch_step: 0,
        rates: Rates::default(),
    }))
}

fn hparam(value: &Value) -> Option<ProtoValue> {
    let kind = match value {
        Value::Number(n) => ProtoKind::Number(n.as_f64()?),
        Value::String(s) => ProtoKind::Text(s.clone()),
        Value::Bool(b) => ProtoKind::Bool(*b),
        _ => return None,
    };
    Some(ProtoValue { kind: Some(kind) })
}

fn scalar(tag: impl Into<String>, value: f64) -> events::Value {
    events::Value { tag: tag.into(), metadata: None, kind: Some(Kind::SimpleValue(value as f32)) }
}

fn summary(step: i64, value: Vec<events::Value>) -> Event {
    Event { wall_time: events::now(), step, what: Some(What::Summary(Summary { value })) }
}

/// The numbers of a history record as scalars (booleans and the epoch's own number left out).
fn scalars(record: &Map<String, Value>) -> Vec<events::Value> {
    record
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "epoch" | "batches"))
        .filter_map(|(k, v)| Some(scalar(k.as_str(), torchfit_sdk::values::as_number(v)?)))
        .collect()
}

/// `TensorBoard`'s histogram of `values`: `bins` equal buckets between their least and
/// greatest value.
fn histogram(values: &tch::Tensor, bins: usize) -> Result<HistogramProto> {
    let v = values.f_detach()?.f_to_device(tch::Device::Cpu)?.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?;
    let num = v.numel() as f64;
    if num == 0.0 {
        return Ok(HistogramProto {
            min: 0.0,
            max: 0.0,
            num,
            sum: 0.0,
            sum_squares: 0.0,
            bucket_limit: vec![],
            bucket: vec![],
        });
    }
    let (min, max) = (v.f_min()?.f_double_value(&[])?, v.f_max()?.f_double_value(&[])?);
    let (sum, sum_squares) = (v.f_sum(tch::Kind::Double)?.f_double_value(&[])?, v.f_dot(&v)?.f_double_value(&[])?);
    let (bucket_limit, bucket) = if min == max || !(min.is_finite() && max.is_finite()) {
        (vec![max], vec![num])
    } else {
        let counts = Vec::<f64>::try_from(v.f_histc(bins as i64)?)?;
        let width = (max - min) / bins as f64;
        ((1..=bins).map(|i| if i == bins { max } else { min + width * i as f64 }).collect(), counts)
    };
    Ok(HistogramProto { min, max, num, sum, sum_squares, bucket_limit, bucket })
}

impl TensorBoard {
    /// The learning rate and momentum of every parameter group now (momentum: SGD's and
    /// RMSprop's `momentum`, Adam's first beta, as Lightning's LearningRateMonitor reads it).
    fn read_rates(host: &dyn Host) -> Rates {
        let mut rates = Rates::default();
        for g in 0..host.param_groups() {
            let Ok(lr) = host.lr(g) else { continue };
            rates.lr.push(lr);
            let momentum = match host.hyper(g, "momentum") {
                Ok(v) => v.as_f64(),
                Err(_) => host.hyper(g, "betas").ok().and_then(|b| b.get(0).and_then(Value::as_f64)),
            };
            rates.momentum.push(momentum);
        }
        rates
    }

    /// Writes the ended epochs not yet written, then flushes both files.
    fn write_pending(&mut self, host: &dyn Host) -> Result<()> {
        let Some(file) = self.epochs.as_mut() else { return Ok(()) };
        for e in self.written..self.ended {
            let Some(record) = host.history_epoch(e as isize) else { continue };
            let step = record.get("epoch").and_then(Value::as_i64).unwrap_or(e as i64 + 1);
            let mut values = scalars(&record);
            if e + 1 == self.ended {
                // The rates this epoch began with, and the parameters it ended with.
                for (g, lr) in self.rates.lr.iter().enumerate() {
                    values.push(scalar(format!("lr/group{g}"), *lr));
                }
                for (g, m) in self.rates.momentum.iter().enumerate() {
                    if let Some(m) = m {
                        values.push(scalar(format!("momentum/group{g}"), *m));
                    }
                }
                if self.config.histograms {
                    for (name, t) in host.parameters() {
                        let h = histogram(&t, self.config.bins)?;
                        values.push(events::Value {
                            tag: format!("parameters/{name}"),
                            metadata: None,
                            kind: Some(Kind::Histo(h)),
                        });
                    }
                }
            }
            file.push(&summary(step, values));
            if let Some(batches) = self.batches.as_mut() {
                for b in training_batches(host, e) {
                    self.batch_step += 1;
                    batches.push(&summary(self.batch_step, scalars(&b)));
                }
            }
        }
        self.written = self.written.max(self.ended);
        for file in [self.epochs.as_mut(), self.batches.as_mut()].into_iter().flatten() {
            file.flush().map_err(io(file.path()))?;
        }
        Ok(())
    }

    /// The hparams plugin's experiment (which hyper-parameters and metrics) and this run's
    /// values: the optimizer's first group, `max_epochs` and the configured `hparams`.
    fn hparams_events(&self, host: &dyn Host) -> Vec<Event> {
        let mut values = std::collections::BTreeMap::new();
        for key in ["lr", "weight_decay", "momentum", "dampening", "nesterov", "eps", "alpha", "centered"] {
            if let Some(v) = host.hyper(0, key).ok().as_ref().and_then(hparam) {
                values.insert(format!("optimizer.{key}"), v);
            }
        }
        if let Ok(Value::Array(betas)) = host.hyper(0, "betas") {
            for (i, b) in betas.iter().enumerate() {
                values.extend(hparam(b).map(|v| (format!("optimizer.betas.{i}"), v)));
            }
        }
        values.insert("max_epochs".into(), ProtoValue { kind: Some(ProtoKind::Number(host.max_epochs() as f64)) });
        for (k, v) in &self.config.hparams {
            values.extend(hparam(v).map(|v| (k.clone(), v)));
        }
        let mut names: Vec<&String> = values.keys().collect();
        names.sort();
        let infos = names
            .iter()
            .map(|n| {
                let r#type = match values[*n].kind {
                    Some(ProtoKind::Text(_)) => 1,
                    Some(ProtoKind::Bool(_)) => 2,
                    _ => 3,
                };
                events::HParamInfo { name: n.to_string(), r#type }
            })
            .collect();
        let metrics = self
            .config
            .metrics
            .iter()
            .map(|m| events::MetricInfo { name: Some(events::MetricName { group: String::new(), tag: m.clone() }) })
            .collect();
        let now = events::now();
        let experiment = events::HParamsData::Experiment(events::Experiment {
            time_created_secs: now,
            hparam_infos: infos,
            metric_infos: metrics,
        });
        let start =
            events::HParamsData::SessionStartInfo(events::SessionStartInfo { hparams: values, start_time_secs: now });
        [("_hparams_/experiment", experiment), ("_hparams_/session_start_info", start)]
            .into_iter()
            .map(|(tag, data)| summary(0, vec![hparams_value(tag, data)]))
            .collect()
    }
}

/// A summary value carrying the hparams plugin's data.
fn hparams_value(tag: &str, data: events::HParamsData) -> events::Value {
    use prost::Message;
    let content = events::HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
    let plugin_data = events::PluginData { plugin_name: "hparams".into(), content };
    events::Value {
        tag: tag.into(),
        metadata: Some(events::SummaryMetadata { plugin_data: Some(plugin_data) }),
        kind: None,
    }
}

/// The training batches of epoch `e` (those with a `train_loss`), as history records.
fn training_batches(host: &dyn Host, e: usize) -> Vec<Map<String, Value>> {
    let mut all = crate::batches(host, e as isize);
    all.retain(|r| r.contains_key("train_loss"));
    all
}

/// The error of a file `path` that could not be written.
fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

fn restart(step: i64) -> Event {
    Event {
        wall_time: events::now(),
        step,
        what: Some(What::SessionLog(events::SessionLog { status: events::SESSION_START })),
    }
}

impl Callback for TensorBoard {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !host.is_main_process() {
            return Ok(Flow::Continue);
        }
        let dir = in_run_dir(host, &self.config.logdir);
        let mut epochs = EventFile::create(&dir).map_err(io(&dir))?;
        self.ended = host.epochs();
        if self.ended == 0 {
            for event in self.hparams_events(host) {
                epochs.push(&event);
            }
        } else {
            // A resumed run: readers drop what the interrupted run wrote from the resume
            // point's epoch on, which is written again from the history.
            epochs.push(&restart(self.ended as i64));
            self.written = self.ended - 1;
        }
        if self.config.batches {
            let batch_dir = dir.join("batches");
            let mut batches = EventFile::create(&batch_dir).map_err(io(&batch_dir))?;
            self.batch_step = (0..self.written).map(|e| training_batches(host, e).len() as i64).sum();
            if self.ended > 0 {
                batches.push(&restart(self.batch_step + 1));
            }
            self.batches = Some(batches);
        }
        self.epochs = Some(epochs);
        self.write_pending(host)?;
        Ok(Flow::Continue)
    }

    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.write_pending(host)?;
        self.rates = Self::read_rates(host);
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.ended = host.epochs();
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        self.write_pending(host)?;
        if let Some(file) = self.epochs.as_mut() {
            let end =
                events::HParamsData::SessionEndInfo(events::SessionEndInfo { status: 1, end_time_secs: events::now() });
            file.push(&summary(self.ended as i64, vec![hparams_value("_hparams_/session_end_info", end)]));
            file.flush().map_err(io(file.path()))?;
        }
        self.epochs = None;
        self.batches = None;
        Ok(())
    }

    fn state(&self) -> Result<Value> {
        serde_json::to_value(&self.rates).map_err(|e| Error::Data(e.to_string()))
    }

    fn load_state(&mut self, state: Value) -> Result<()> {
        if !state.is_null() {
            self.rates = serde_json::from_value(state).map_err(|e| Error::Data(format!("tensorboard state: {e}")))?;
        }
        Ok(())
    }
}
