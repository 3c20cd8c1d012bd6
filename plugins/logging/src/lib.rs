//! Stock callbacks `csv_logger` (the history as CSV, per epoch and optionally per batch) and
//! `plot_history` (loss and score curves per epoch as SVG). Both rewrite their file from the
//! history at every epoch end, atomically, so a resumed run simply continues the file; in a
//! run of several processes only the main one writes.
#![deny(missing_docs)]

pub mod csv;
pub mod svg;

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use torchfit_sdk::{export_plugin, parse_config, BuildContext, Callback, Flow, Host, Result};

/// Every epoch record of the history, without batches.
fn epochs(host: &dyn Host) -> Vec<Map<String, Value>> {
    (0..host.epochs() as isize).filter_map(|e| host.history_epoch(e)).collect()
}

fn in_run_dir(host: &dyn Host, path: &str) -> PathBuf {
    torchfit_sdk::host::in_run_dir(host, std::path::Path::new(path))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvConfig {
    #[serde(default = "history_csv")]
    filename: String,
    #[serde(default)]
    batches: Option<String>,
}

fn history_csv() -> String {
    "history.csv".into()
}

struct CsvLogger(CsvConfig);

fn build_csv(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(CsvLogger(parse_config(config)?)))
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !host.is_main_process() {
            return Ok(Flow::Continue);
        }
        torchfit_sdk::io::write_atomic(&in_run_dir(host, &self.0.filename), csv::epochs(&epochs(host)).as_bytes())?;
        if let Some(name) = &self.0.batches {
            let per_epoch: Vec<csv::BatchColumns> = (0..host.epochs() as isize)
                .map(|e| csv::BatchColumns {
                    train_loss: host.history_batch_values(e, "train_loss"),
                    train_size: host.history_batch_values(e, "train_batch_size"),
                    valid_loss: host.history_batch_values(e, "valid_loss"),
                    valid_size: host.history_batch_values(e, "valid_batch_size"),
                })
                .collect();
            torchfit_sdk::io::write_atomic(&in_run_dir(host, name), csv::batches(&per_epoch).as_bytes())?;
        }
        Ok(Flow::Continue)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlotConfig {
    #[serde(default = "curves_svg")]
    filename: String,
}

fn curves_svg() -> String {
    "training_curves.svg".into()
}

struct Plot(PlotConfig);

fn build_plot(config: &Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: PlotConfig = parse_config(config)?;
    if !c.filename.ends_with(".svg") {
        return Err(torchfit_sdk::Error::Config {
            key: "filename".into(),
            message: "the plot is SVG: the name must end in .svg".into(),
        });
    }
    Ok(Box::new(Plot(c)))
}

impl Callback for Plot {
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !host.is_main_process() {
            return Ok(Flow::Continue);
        }
        torchfit_sdk::io::write_atomic(&in_run_dir(host, &self.0.filename), svg::plot(&epochs(host)).as_bytes())?;
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-logging",
    components: [
        Callback("csv_logger", build_csv, "writes the history as CSV each epoch (filename = history.csv; batches = a file name for per-batch rows)"),
        Callback("plot_history", build_plot, "draws loss and score curves per epoch as SVG (filename = training_curves.svg)"),
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
            let written = std::fs::read_dir(&dir).unwrap().count();
            assert_eq!(written, if rank == 0 { 2 } else { 0 }, "rank {rank}");
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
        assert!(dir.join("history.csv").exists());
    }
}
