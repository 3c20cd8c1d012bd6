//! `torchfit plot`: the training curves of runs from their `history.json` (a finished run, or
//! one still training: its history is rewritten at every epoch's end), several overlaid.

use super::Ended;
use std::path::{Path, PathBuf};
use torchfit_engine::{Error, History, Result};
use torchfit_plot::{figure, Options, Run};

/// `torchfit plot`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directories (each with its history.json); several are drawn in one picture, each
    /// named by its folder.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// The picture to write, FILE.png or FILE.svg. Default: training_curves.png and
    /// training_curves.svg in the first run directory.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Only these history keys (losses and scores; `event_lr`, `event_momentum` for the rates),
    /// comma-separated or repeated. Default: every one recorded.
    #[arg(long, value_delimiter = ',', value_name = "KEY")]
    keys: Vec<String>,
    /// A logarithmic loss axis.
    #[arg(long)]
    log_loss: bool,
}

/// The picture's formats, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(Error::Data(format!("{}: --out must end in .png or .svg", path.display()))),
    }
}

/// Draws the runs' curves.
pub fn execute(args: Args) -> Result<Ended> {
    let Args { runs, out, keys, log_loss } = args;
    let targets: Vec<(PathBuf, Format)> = match out {
        Some(path) => vec![(path.clone(), format_of(&path)?)],
        None => {
            let dir = &runs[0];
            vec![(dir.join("training_curves.png"), Format::Png), (dir.join("training_curves.svg"), Format::Svg)]
        }
    };
    let several = runs.len() > 1;
    let loaded = runs
        .iter()
        .map(|dir| {
            let history = History::load(&dir.join("history.json"))?;
            let label = match several {
                true => dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
                false => String::new(),
            };
            Ok(Run { label, epochs: epochs(&history), resumed_after: crate::run_dir::resumed_after(dir) })
        })
        .collect::<Result<Vec<Run>>>()?;
    let options = Options { keys: (!keys.is_empty()).then_some(keys), log_loss };
    let picture = figure(&loaded, &options);
    for (path, format) in targets {
        super::write_picture(&path, &picture, format == Format::Svg)?;
        log::info!("training curves written to {}", path.display());
    }
    Ok(Ended::Completed)
}

/// A history's epochs as JSON objects (`history.json`'s shape).
fn epochs(history: &History) -> Vec<serde_json::Map<String, serde_json::Value>> {
    match history.to_json() {
        serde_json::Value::Array(epochs) => epochs.into_iter().filter_map(|e| e.as_object().cloned()).collect(),
        _ => Vec::new(),
    }
}
