//! What the benchmark programs share: the MNIST data (48k/12k, the first 48,000 training images
//! for training and the last 12,000 for validation), the two workloads, the command line and
//! the one-line JSON report the driver (`bench/run.py`) reads.
//!
//! The programs report `fit_seconds`, the time of the fit (`--epochs`, default 1, each 48,000
//! training samples and the validation pass over 12,000) as the library user sees it, without
//! start-up and data loading, and `epoch_seconds`, each epoch's time; the driver adds wall time
//! and peak RSS of the process, and from several epochs the steady state (epochs 2..N).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Training samples (the first ones).
pub const TRAIN: i64 = 48_000;
/// Validation samples (the last ones).
pub const VALID: i64 = 12_000;

/// The two workloads of issue 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 784-256-128-64-10, ReLU.
    Mlp,
    /// Poutyne's MNIST CNN: conv 16 and 32 (3x3, padding 1, ReLU, max-pool 2, dropout 0.25 after
    /// the second), dense 128 (dropout 0.5), 10 outputs.
    Cnn,
}

/// Parsed command line: `--workload mlp|cnn --batch N --data DIR [--device cpu|cuda] [--threads N]
/// [--epochs N] [--train N] [--valid N]`.
///
/// `--train` and `--valid` shorten the epoch for profilers (under callgrind a full MLP epoch ran
/// for more than 25 minutes): the first `train` of the 48,000 training samples and the first
/// `valid` of the 12,000 validation samples. `bench/instructions.py` passes them; `run.py` never.
#[derive(Debug, Clone)]
pub struct Args {
    /// Which network.
    pub workload: Workload,
    /// Batch size, training and validation.
    pub batch: i64,
    /// Folder of the MNIST `.gz` files.
    pub data: PathBuf,
    /// Device.
    pub device: Device,
    /// Intra-op threads.
    pub threads: i32,
    /// Epochs of the fit.
    pub epochs: i64,
    /// Training samples, at most [`TRAIN`].
    pub train: i64,
    /// Validation samples, at most [`VALID`].
    pub valid: i64,
    /// How training forward and loss run (`--precision 32 | bf16-mixed`).
    pub precision: torchfit::amp::Precision,
}

impl Args {
    /// From `std::env::args`.
    pub fn parse() -> Result<Self> {
        let mut args = Args {
            workload: Workload::Mlp,
            batch: 32,
            data: PathBuf::from("../shared/data/mnist"),
            device: Device::Cpu,
            threads: 2,
            epochs: 1,
            train: TRAIN,
            valid: VALID,
            precision: torchfit::amp::Precision::Full,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--workload" => {
                    args.workload = match value.as_str() {
                        "mlp" => Workload::Mlp,
                        "cnn" => Workload::Cnn,
                        w => bail!("unknown workload {w}"),
                    }
                }
                "--batch" => args.batch = value.parse()?,
                "--data" => args.data = value.into(),
                "--device" => {
                    args.device = match torchfit::device::parse(&value).map_err(anyhow::Error::msg)? {
                        torchfit::device::DeviceSpec::Cpu => Device::Cpu,
                        // The engine's resolution loads libtorch_cuda, which the linker dropped.
                        // A first allocation makes the CUDA context, part of the start-up that no
                        // program's fit time counts (the raw loop's VarStore made it before its
                        // timer; the library's fit would make it inside its own).
                        spec => {
                            let device = torchfit::device::resolve(spec)
                                .map_err(|e| anyhow::anyhow!("--device {value}: {e}"))?;
                            let _context = Tensor::f_zeros([1], (Kind::Float, device))?;
                            device
                        }
                    }
                }
                "--threads" => args.threads = value.parse()?,
                "--epochs" => args.epochs = value.parse()?,
                "--train" => args.train = value.parse()?,
                "--valid" => args.valid = value.parse()?,
                "--precision" => {
                    args.precision = serde_json::from_value(serde_json::Value::String(value.clone()))
                        .map_err(|e| anyhow::anyhow!("--precision {value}: {e}"))?
                }
                f => bail!("unknown flag {f}"),
            }
        }
        if !(1..=TRAIN).contains(&args.train) || !(1..=VALID).contains(&args.valid) {
            bail!("--train must be in 1..={TRAIN} and --valid in 1..={VALID}");
        }
        if !(1..=1000).contains(&args.epochs) {
            bail!("--epochs must be in 1..=1000");
        }
        Ok(args)
    }
}

fn idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).with_context(|| path.display().to_string())?)
        .read_to_end(&mut bytes)?;
    let header =
        torchfit_plugin_readers::idx::parse_header(&bytes).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    Ok((header.dims, bytes[header.len..].to_vec()))
}

/// MNIST's 60,000 training images as `[60000, 784]` floats in [0, 1] and their labels.
pub fn mnist(dir: &Path) -> Result<(Tensor, Tensor)> {
    let (dims, pixels) = idx(&dir.join("train-images.idx3-ubyte.gz"))?;
    let (_, labels) = idx(&dir.join("train-labels.idx1-ubyte.gz"))?;
    let x = Tensor::from_slice(&pixels).to_kind(Kind::Float).view([dims[0] as i64, 784]) / 255.0;
    let y = Tensor::from_slice(&labels).to_kind(Kind::Int64);
    Ok((x, y))
}

/// The training samples (the first `args.train`) and the validation samples (the first
/// `args.valid` after the 48,000 training ones) of `mnist`'s tensors.
pub fn split(args: &Args, x: &Tensor, y: &Tensor) -> ((Tensor, Tensor), (Tensor, Tensor)) {
    (
        (x.narrow(0, 0, args.train), y.narrow(0, 0, args.train)),
        (x.narrow(0, TRAIN, args.valid), y.narrow(0, TRAIN, args.valid)),
    )
}

/// Prints the report line: the fit's seconds, each epoch's, and the last epoch's validation
/// accuracy and training loss.
pub fn report(fit_seconds: f64, epoch_seconds: &[f64], valid_acc: f64, train_loss: f64) {
    println!(
        "{}",
        serde_json::json!({ "fit_seconds": fit_seconds, "epoch_seconds": epoch_seconds, "valid_acc": valid_acc, "train_loss": train_loss })
    );
}
