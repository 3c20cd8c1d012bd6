//! `torchfit summary`: the model a config builds for its data set, as torchinfo shows one.

use super::{load_params, Ended};
use crate::dataset::{training_data, TrainingData};
use crate::table::aligned;
use std::io::Write;
use std::path::PathBuf;
use tch::Tensor;
use torchfit_engine::config::Params;
use torchfit_engine::{Error, NeuralNet, Result};

/// `torchfit summary`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML config.
    config: PathBuf,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

/// Prints the summary.
pub fn execute(args: Args) -> Result<Ended> {
    let text = model_summary(load_params(&args.config, &args.sets)?)?;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(Ended::Completed)
}

/// `torchfit summary`: the model the config builds for its data set, as torchinfo shows one:
/// each parameter's name, shape and count, the total, and the buffers apart (not counted).
pub fn model_summary(params: Params) -> Result<String> {
    let spec = params.settings().dataset.clone().ok_or_else(|| {
        params.config_error("dataset", "missing: `torchfit summary` sizes the model for a [dataset]".into())
    })?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let TrainingData { reader: mut data, pool, .. } = training_data(&params, &registry, &spec)?;
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    net.initialize_for(data.as_mut(), &pool)?;
    let model = net.model().ok_or(Error::NotInitialized)?;
    let parameters = model.parameters();
    let buffers: Vec<(String, Tensor)> =
        model.state_dict().into_iter().filter(|(n, _)| !parameters.iter().any(|(p, _)| p == n)).collect();
    let rows: Vec<[String; 3]> =
        parameters.iter().map(|(n, t)| [n.clone(), format!("{:?}", t.size()), thousands(t.numel() as u64)]).collect();
    let total: u64 = parameters.iter().map(|(_, t)| t.numel() as u64).sum();
    let mut text = aligned(["parameter", "shape", "count"], &rows, [false, false, true]);
    let (input_shape, n_outputs) = net.shape().ok_or(Error::NotInitialized)?;
    text += &format!("total parameters: {} (input {input_shape:?}, {n_outputs} outputs)\n", thousands(total));
    if !buffers.is_empty() {
        let values: u64 = buffers.iter().map(|(_, t)| t.numel() as u64).sum();
        text += &format!("buffers (not parameters): {} in {} tensors\n", thousands(values), buffers.len());
    }
    Ok(text)
}

/// `233578` as `233,578`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(233578), "233,578");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(0), "0");
    }
}
