//! torchfit as a library: `NeuralNet::from_file` on the workload's config (the binary runs the
//! same file), then `fit_with_valid` on the same tensors the raw loop trains on. Default
//! callbacks: epoch_timer, train_loss, valid_loss, valid_acc, print_log.

use anyhow::Result;
use std::time::Instant;
use torchfit_bench::{mnist, report, split, Args, Workload};

fn main() -> Result<()> {
    let args = Args::parse()?;
    // As the raw loop does: the data are converted under the same thread count as the training
    // (the engine sets it again in `fit`; setting it only there leaves OpenMP's team from the
    // conversion behind, which callgrind counts as a spinning thread).
    tch::set_num_threads(args.threads);
    let (x, y) = mnist(&args.data)?;
    // The CNN model takes images (the raw loop's network reshapes inside its forward).
    let x = if args.workload == Workload::Cnn { x.view([-1, 1, 28, 28]) } else { x };
    let ((xt, yt), (xv, yv)) = split(&args, &x, &y);
    // The config is compiled in, so the program runs wherever it is copied (the data comes from
    // the tensors above, not from the config's dataset).
    let (name, text) = match args.workload {
        Workload::Mlp => ("bench/configs/mlp.toml", include_str!("../../configs/mlp.toml")),
        Workload::Cnn => ("bench/configs/cnn.toml", include_str!("../../configs/cnn.toml")),
    };
    let params = torchfit::config::Params::from_str(text, name, env!("CARGO_MANIFEST_DIR").into())?;
    let mut net = torchfit::from_params(params);
    let (batch, threads, epochs) = (args.batch.to_string(), args.threads.to_string(), args.epochs.to_string());
    let device = match args.device {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    };
    net.set_params(&[
        ("iterator_train__batch_size", &batch),
        ("iterator_valid__batch_size", &batch),
        ("threads", &threads),
        ("device", &device),
        ("max_epochs", &epochs),
    ])?;
    let start = Instant::now();
    net.fit_with_valid(&xt, &yt, &xv, &yv)?;
    let seconds = start.elapsed().as_secs_f64();
    let h = net.history();
    let last = |key: &str| h.column_f64(key).last().copied().unwrap_or(f64::NAN);
    report(seconds, &h.column_f64("dur"), last("valid_acc"), last("train_loss"));
    Ok(())
}
