//! Stock callbacks `csv_logger` (the history as CSV, per epoch and optionally per batch),
//! `plot_history` (the training curves as PNG and SVG, drawn by `torchfit-plot` as `torchfit
//! plot` draws them) and `tensorboard` (TensorBoard event files, `tensorboard/`). Both rewrite their files from the
//! history, atomically, so a resumed run simply continues the file; in a run of several
//! processes only the main one writes. `csv_logger` writes the epochs that have ended when the
//! next one begins and when training ends, so that its rows hold what every callback recorded
//! in `on_epoch_end`, wherever it stands in the list.
#![deny(missing_docs)]

pub mod csv;
mod tensorboard;

use serde::Deserialize;
use serde_json::{Map, Value};
use torchfit_sdk::host::in_run_dir;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Flow, Host, Result};

/// Every epoch record of the history, without batches.
fn epochs(host: &dyn Host) -> Vec<Map<String, Value>> {
    (0..host.epochs() as isize).filter_map(|e| host.history_epoch(e)).collect()
}

/// The batch records of epoch `epoch`, in order.
fn batches(host: &dyn Host, epoch: isize) -> Vec<Map<String, Value>> {
    match host.history_get(epoch, "batches") {
        Some(Value::Array(b)) => b
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(record) => Some(record),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CsvConfig {
    filename: String,
    batches: Option<String>,
    separator: char,
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig { filename: "history.csv".into(), batches: Default::default(), separator: ',' }
    }
}

/// The logger and the number of epochs whose `on_epoch_end` has run (the rows it writes).
struct CsvLogger(CsvConfig, usize);

fn build_csv(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: CsvConfig = parse_config(config)?;
    if matches!(c.separator, '"' | '\n' | '\r') {
        let message = format!("{:?} cannot separate CSV cells", c.separator);
        return Err(torchfit_sdk::Error::config("separator", message));
    }
    Ok(Box::new(CsvLogger(c, 0)))
}

impl CsvLogger {
    /// Rewrites the files with the ended epochs.
    fn write(&self, host: &dyn Host) -> Result<()> {
        if !host.is_main_process() {
            return Ok(());
        }
        let (ended, sep) = (self.1.min(host.epochs()), self.0.separator);
        let records: Vec<Map<String, Value>> = epochs(host).into_iter().take(ended).collect();
        torchfit_sdk::io::write_atomic(&in_run_dir(host, &self.0.filename), csv::epochs(&records, sep).as_bytes())?;
        if let Some(name) = &self.0.batches {
            let per_epoch: Vec<Vec<Map<String, Value>>> = (0..ended as isize).map(|e| batches(host, e)).collect();
            torchfit_sdk::io::write_atomic(&in_run_dir(host, name), csv::batches(&per_epoch, sep).as_bytes())?;
        }
        Ok(())
    }
}

impl Callback for CsvLogger {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        // A resumed run's history holds its ended epochs.
        self.1 = host.epochs();
        Ok(Flow::Continue)
    }

    fn on_epoch_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.write(host)?;
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.1 = host.epochs();
        Ok(Flow::Continue)
    }

    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        self.write(host)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PlotConfig {
    filename: String,
    keys: Option<Vec<String>>,
    log_loss: bool,
}

impl Default for PlotConfig {
    fn default() -> Self {
        PlotConfig { filename: "training_curves".into(), keys: None, log_loss: false }
    }
}

/// `plot_history`: at every epoch's end, the curves of the history so far as `<stem>.png` and
/// `<stem>.svg` in the run directory.
struct Plot {
    /// The files' path without extension (`filename` without `.png` or `.svg`).
    stem: String,
    options: torchfit_plot::Options,
    /// The epochs read from the host, kept between epochs: each epoch end reads again only the
    /// last two (callbacks after this one may still have written to them) and the new ones.
    kept: Vec<Map<String, Value>>,
    /// The epochs after which training resumed (a fit that began with a history), kept in the
    /// callback's checkpointed state so that later resumptions add to them.
    resumed_after: Vec<usize>,
}

fn build_plot(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: PlotConfig = parse_config(config)?;
    let stem = c.filename.strip_suffix(".svg").or_else(|| c.filename.strip_suffix(".png")).unwrap_or(&c.filename);
    if stem.is_empty() {
        return Err(torchfit_sdk::Error::config(
            "filename",
            "names the files: `training_curves` writes training_curves.png and .svg",
        ));
    }
    let options = torchfit_plot::Options { keys: c.keys, log_loss: c.log_loss };
    Ok(Box::new(Plot { stem: stem.to_owned(), options, kept: Vec::new(), resumed_after: Vec::new() }))
}

impl Plot {
    /// Brings `kept` to every epoch of the history with its batches: the epochs read before
    /// stay, but for the last two, read again with the rest.
    fn refresh(&mut self, host: &dyn Host) {
        let epochs = host.epochs();
        self.kept.truncate(epochs.saturating_sub(2));
        for e in self.kept.len()..epochs {
            let mut record = host.history_epoch(e as isize).unwrap_or_default();
            record
                .insert("batches".into(), host.history_get(e as isize, "batches").unwrap_or(Value::Array(Vec::new())));
            self.kept.push(record);
        }
    }
}

impl Callback for Plot {
    fn initialize(&mut self) -> Result<()> {
        self.kept.clear();
        self.resumed_after.clear();
        Ok(())
    }

    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        let epochs = host.epochs();
        if epochs > 0 && self.resumed_after.last() != Some(&epochs) {
            self.resumed_after.retain(|&e| e < epochs);
            self.resumed_after.push(epochs);
        }
        Ok(Flow::Continue)
    }

    fn state(&self) -> Result<Value> {
        Ok(serde_json::json!({ "resumed_after": self.resumed_after }))
    }

    fn load_state(&mut self, state: Value) -> Result<()> {
        self.resumed_after = serde_json::from_value(state["resumed_after"].clone()).unwrap_or_default();
        Ok(())
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !host.is_main_process() {
            return Ok(Flow::Continue);
        }
        self.refresh(host);
        let epochs = std::mem::take(&mut self.kept);
        let runs = [torchfit_plot::Run { label: String::new(), epochs, resumed_after: self.resumed_after.clone() }];
        let figure = torchfit_plot::figure(&runs, &self.options);
        let [run] = runs;
        self.kept = run.epochs;
        let png = torchfit_plot::png(&figure).map_err(torchfit_sdk::Error::msg)?;
        let svg = torchfit_plot::svg(&figure).map_err(torchfit_sdk::Error::msg)?;
        torchfit_sdk::io::write_atomic(&in_run_dir(host, format!("{}.png", self.stem)), &png)?;
        torchfit_sdk::io::write_atomic(&in_run_dir(host, format!("{}.svg", self.stem)), svg.as_bytes())?;
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-logging",
    components: [
        Callback("csv_logger", build_csv, "writes the history as CSV each epoch (filename = history.csv; batches = a file name for per-batch rows; separator = \",\")"),
        Callback("plot_history", build_plot, "draws the training curves at each epoch's end as PNG and SVG (filename = training_curves; keys; log_loss)"),
        Callback("tensorboard", tensorboard::build, "writes TensorBoard event files: epoch scalars, learning rates and momenta, hyper-parameters (logdir = tensorboard; batches; histograms; bins = 30; hparams; metrics = [valid_loss])"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::testing::FakeHost;
    use torchfit_sdk::Process;

    #[test]
    fn only_the_main_process_writes_its_files() {
        for rank in [0, 1] {
            let dir = std::env::temp_dir().join(format!("torchfit-logging-{rank}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let process = Process { rank, world_size: 2, local_rank: rank };
            let mut host = FakeHost { run_dir: Some(dir.clone()), process, ..FakeHost::default() };
            host.new_epoch();
            let ctx = torchfit_sdk::testing::context("csv");
            let mut csv = build_csv(&serde_json::json!({}), &ctx).unwrap();
            let mut plot = build_plot(&serde_json::json!({}), &ctx).unwrap();
            csv.on_epoch_end(&mut host).unwrap();
            plot.on_epoch_end(&mut host).unwrap();
            csv.on_train_end(&mut host).unwrap();
            let written = std::fs::read_dir(&dir).unwrap().count();
            assert_eq!(
                written,
                if rank == 0 { 3 } else { 0 },
                "rank {rank}: history.csv, training_curves.png and .svg"
            );
        }
    }

    #[test]
    fn a_host_older_than_sdk_1_2_gets_its_files_written() {
        let dir = std::env::temp_dir().join(format!("torchfit-logging-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut host = torchfit_sdk::testing::Sdk10Host(FakeHost { run_dir: Some(dir.clone()), ..FakeHost::default() });
        host.0.new_epoch();
        let mut csv = build_csv(&serde_json::json!({}), &torchfit_sdk::testing::context("csv")).unwrap();
        csv.on_epoch_end(&mut host).unwrap();
        csv.on_train_end(&mut host).unwrap();
        assert!(dir.join("history.csv").exists());
    }

    #[test]
    fn a_row_holds_what_callbacks_after_the_logger_record_and_no_unended_epoch() {
        let dir = std::env::temp_dir().join(format!("torchfit-logging-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut host = FakeHost { run_dir: Some(dir.clone()), ..FakeHost::default() };
        let config = serde_json::json!({"batches": "b.csv", "separator": ";"});
        let mut csv = build_csv(&config, &torchfit_sdk::testing::context("csv")).unwrap();
        csv.on_train_begin(&mut host).unwrap();
        for _ in 1..=2 {
            host.new_epoch();
            csv.on_epoch_begin(&mut host).unwrap();
            host.new_batch();
            host.record_batch("train_batch_size", serde_json::json!(4)).unwrap();
            host.record_batch("lr", serde_json::json!(0.1)).unwrap();
            csv.on_epoch_end(&mut host).unwrap();
            // A callback listed after the logger.
            host.record("event_cp", serde_json::json!(true)).unwrap();
        }
        host.new_epoch();
        csv.on_epoch_begin(&mut host).unwrap();
        csv.on_train_end(&mut host).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("history.csv"), "epoch;event_cp\n1;true\n2;true\n", "epoch 3 never ended");
        assert_eq!(read("b.csv"), "epoch;phase;batch;train_batch_size;lr\n1;train;0;4;0.1\n2;train;0;4;0.1\n");
        let bad = build_csv(&serde_json::json!({"separator": "\""}), &torchfit_sdk::testing::context("csv"));
        assert!(bad.err().unwrap().to_string().contains("separator"));
    }
}
