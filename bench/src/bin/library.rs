//! torchfit as a library: `NeuralNet::from_file` on the workload's config (the binary runs the
//! same file), then `fit_with_valid` on the same tensors the raw loop trains on. Default
//! callbacks: epoch_timer, train_loss, valid_loss, valid_acc, print_log.

use anyhow::Result;
use std::time::Instant;
use torchfit_bench::{mnist, report, Args, Workload, TRAIN, VALID};
use torchfit_engine::NeuralNet;

fn main() -> Result<()> {
    let args = Args::parse()?;
    let (x, y) = mnist(&args.data)?;
    // The CNN model takes images (the raw loop's network reshapes inside its forward).
    let x = if args.workload == Workload::Cnn { x.view([-1, 1, 28, 28]) } else { x };
    let (xt, yt) = (x.narrow(0, 0, TRAIN), y.narrow(0, 0, TRAIN));
    let (xv, yv) = (x.narrow(0, TRAIN, VALID), y.narrow(0, TRAIN, VALID));
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(match args.workload {
        Workload::Mlp => "configs/mlp.toml",
        Workload::Cnn => "configs/cnn.toml",
    });
    let mut net = NeuralNet::from_file(&config)?;
    let (batch, threads) = (args.batch.to_string(), args.threads.to_string());
    let device = if args.device == tch::Device::Cpu { "cpu" } else { "cuda" };
    net.set_params(&[("iterator_train__batch_size", &batch), ("iterator_valid__batch_size", &batch), ("threads", &threads), ("device", device)])?;
    let start = Instant::now();
    net.fit_with_valid(&xt, &yt, &xv, &yv)?;
    let seconds = start.elapsed().as_secs_f64();
    let h = net.history();
    report(seconds, h.column_f64("valid_acc")[0], h.column_f64("train_loss")[0]);
    Ok(())
}
