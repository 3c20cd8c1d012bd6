//! The `torchfit` command line, one file per subcommand, each with its arguments and `execute`:
//!
//! | file | command |
//! |---|---|
//! | `train.rs` | `torchfit train`: a run directory from a config (`--nproc` launches the workers, [`crate::launch`]) |
//! | `predict.rs` | `torchfit predict`: labels, probabilities or logits of a run's model, CSV or NumPy; `masks.rs`: `--masks`, segmentation masks as PNG files |
//! | `search.rs` | `torchfit search` (and its hidden worker command `search-fold`); its worker pool in `search/pool.rs` |
//! | `summary.rs` | `torchfit summary`: the model a config builds, as torchinfo shows it |
//! | `plugins.rs` | `torchfit plugins`: every component, builtin or found on the search path |
//! | `plot.rs` | `torchfit plot`: training curves of runs from their history, PNG and SVG |
//! | `explain.rs` | `torchfit explain`: saliency and SmoothGrad maps of one input |
//! | `lr_find.rs` | `torchfit lr-find`: the learning-rate finder, its suggestions and curve |
//! | `signals.rs` | SIGINT and SIGTERM: stop after the batch, a second one at once |

pub mod explain;
pub mod lr_find;
pub mod masks;
pub mod plot;
pub mod plugins;
pub mod predict;
pub mod search;
pub mod signals;
pub mod summary;
pub mod train;

use std::path::Path;
use torchfit_engine::config::Params;
use torchfit_engine::Result;

/// A command of the `torchfit` binary.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Train the model a config describes.
    Train(train::Args),
    /// Predict with the model of a run directory.
    Predict(predict::Args),
    /// Search hyper-parameters: cross-validate every candidate (scikit-learn's GridSearchCV,
    /// RandomizedSearchCV, HalvingGridSearchCV), rank them, refit the best on all the samples.
    Search(search::Args),
    /// One fit of a search (run by `torchfit search` in its workers).
    #[command(hide = true)]
    SearchFold(search::FoldArgs),
    /// Show the model a config builds for its data set: each parameter's name, shape and count,
    /// and the total (as torchinfo).
    Summary(summary::Args),
    /// List every component torchfit can use (builtin, and plugins on the search path).
    Plugins(plugins::Args),
    /// Draw the training curves of runs (their history.json) as PNG and SVG; several runs are
    /// overlaid.
    Plot(plot::Args),
    /// Find a learning rate: sweep it exponentially over batches of the config's training data
    /// (fastai's lr_find), print the suggested rates and draw the loss against the rate.
    LrFind(lr_find::Args),
    /// Explain one input: a saliency or SmoothGrad map of the model's output, drawn beside the
    /// input and over it (PNG).
    Explain(explain::Args),
}

/// How a command ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It did what it was asked.
    Completed,
    /// Stopped by this signal (the run directory or the search folder written).
    Interrupted(i32),
    /// The workers of `--nproc` ended; the first that failed exited with this code.
    WorkersFailed(u8),
}

/// Runs `command`.
pub fn execute(command: Command) -> Result<Ended> {
    match command {
        Command::Train(args) => train::execute(args),
        Command::Predict(args) => predict::execute(args),
        Command::Search(args) => search::execute(args),
        Command::SearchFold(args) => search::execute_fold(args),
        Command::Summary(args) => summary::execute(args),
        Command::Plugins(args) => plugins::execute(args),
        Command::Plot(args) => plot::execute(args),
        Command::LrFind(args) => lr_find::execute(args),
        Command::Explain(args) => explain::execute(args),
    }
}

/// Loads a config file and applies `--set` assignments.
pub fn load_params(config: &Path, sets: &[String]) -> Result<Params> {
    let mut params = Params::from_file(config)?;
    for s in sets {
        params.set_assignment(s)?;
    }
    Ok(params)
}

/// Draws `picture` into `path`, atomically: SVG when `svg`, else PNG.
pub fn write_picture(path: &Path, picture: &impl torchfit_plot::Picture, svg: bool) -> Result<()> {
    let bytes = match svg {
        true => torchfit_plot::svg(picture).map(String::into_bytes),
        false => torchfit_plot::png(picture),
    }
    .map_err(|e| torchfit_engine::Error::Data(e.to_string()))?;
    torchfit_sdk::io::write_atomic(path, &bytes).map_err(|e| match e {
        torchfit_sdk::Error::Io { path, source } => torchfit_engine::Error::Io { path: path.into(), source },
        other => torchfit_engine::Error::Data(other.to_string()),
    })
}
