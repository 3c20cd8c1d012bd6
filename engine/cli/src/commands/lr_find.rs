//! `torchfit lr-find`: the learning-rate finder (fastai's `lr_find`) on a config's training
//! data: a sweep from `--start-lr` to `--end-lr` over `--num-it` batches, stopped when the loss
//! diverges, the model and optimizer put back afterwards; prints the suggested rates and draws
//! the loss against the rate.

use super::{load_params, Ended};
use crate::dataset::{training_data, TrainingData};
use std::path::PathBuf;
use torchfit_engine::net::{LrFindConfig, Suggestion};
use torchfit_engine::{Error, NeuralNet, Result};
use torchfit_plot::{LrCurve, LrMark};

/// `torchfit lr-find`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML config (its dataset, model, criterion and optimizer).
    config: PathBuf,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The first batch's learning rate.
    #[arg(long, default_value_t = 1e-7)]
    start_lr: f64,
    /// The rate the sweep ends at.
    #[arg(long, default_value_t = 10.0)]
    end_lr: f64,
    /// Batches in the sweep.
    #[arg(long, default_value_t = 100)]
    num_it: usize,
    /// The picture of the loss against the rate: FILE.png or FILE.svg.
    #[arg(long, value_name = "FILE", default_value = "lr_find.png")]
    out: PathBuf,
}

/// Sweeps, prints the suggestions, draws the curve.
pub fn execute(args: Args) -> Result<Ended> {
    let Args { config, sets, start_lr, end_lr, num_it, out } = args;
    let svg = match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => true,
        Some("png") => false,
        _ => return Err(Error::Data(format!("{}: --out must end in .png or .svg", out.display()))),
    };
    let sweep =
        LrFindConfig { start_lr, end_lr, num_it, ..LrFindConfig::default() }.validated().map_err(Error::Data)?;
    let params = load_params(&config, &sets)?;
    let spec =
        params.settings().dataset.clone().ok_or_else(|| {
            params.config_error("dataset", "missing: `torchfit lr-find` sweeps over a [dataset]".into())
        })?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let TrainingData { reader: mut data, pool, .. } = training_data(&params, &registry, &spec)?;
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    let found = net.lr_find(data.as_mut(), Some(&pool), sweep)?;
    let mark = |name: &str, s: Option<Suggestion>| s.map(|s| LrMark { name: name.into(), lr: s.lr, loss: s.loss });
    let marks: Vec<LrMark> =
        [mark("steepest", found.steepest), mark("valley", found.valley)].into_iter().flatten().collect();
    println!(
        "swept {} batches, learning rate {:.3e} to {:.3e}",
        found.lrs.len(),
        start_lr,
        found.lrs.last().copied().unwrap_or(start_lr)
    );
    if marks.is_empty() {
        println!("no suggestion: the sweep ended before its curve could be read (more batches, --num-it)");
    }
    for m in &marks {
        println!("{}: lr = {:.3e} (smoothed loss {:.4})", m.name, m.lr, m.loss);
    }
    let curve = LrCurve { lrs: found.lrs, losses: found.losses, smoothed: found.smoothed, marks };
    super::write_picture(&out, &curve, svg)?;
    log::info!("loss against learning rate drawn in {}", out.display());
    Ok(Ended::Completed)
}
