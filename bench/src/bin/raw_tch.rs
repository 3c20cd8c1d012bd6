//! The floor: MNIST epochs (`--epochs`, default 1) written directly against tch, no framework. Shuffled batches by
//! `index_select`, `nn::Sgd`, batch losses summed on the device and read once at the end (the
//! same single sync per epoch torchfit does), then a validation pass without gradients. With
//! `--precision bf16-mixed` the training forward and loss run under torch's autocast (the floor
//! for torchfit's `precision = "bf16-mixed"`).

use anyhow::Result;
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use torchfit_bench::{mnist, report, split, Args, Workload};

fn mlp(p: &nn::Path<'_>) -> impl ModuleT {
    let dims = [784, 256, 128, 64];
    let mut seq = nn::seq_t();
    for (i, w) in dims.windows(2).enumerate() {
        seq = seq.add(nn::linear(p / i, w[0], w[1], Default::default())).add_fn(Tensor::relu);
    }
    seq.add(nn::linear(p / 3, 64, 10, Default::default()))
}

fn cnn(p: &nn::Path<'_>) -> impl ModuleT {
    let conv = nn::ConvConfig { padding: 1, ..Default::default() };
    nn::seq_t()
        .add_fn(|x| x.view([-1, 1, 28, 28]))
        .add(nn::conv2d(p / "c1", 1, 16, 3, conv))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add(nn::conv2d(p / "c2", 16, 32, 3, conv))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add_fn_t(|x, train| x.dropout(0.25, train).flatten(1, -1))
        .add(nn::linear(p / "d1", 32 * 7 * 7, 128, Default::default()))
        .add_fn_t(|x, train| x.relu().dropout(0.5, train))
        .add(nn::linear(p / "out", 128, 10, Default::default()))
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    anyhow::ensure!(!args.precision.scales_loss(), "the raw loop runs --precision 32 or bf16-mixed");
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let (x, y) = mnist(&args.data)?;
    let ((xt, yt), (xv, yv)) = split(&args, &x, &y);
    let (train, valid) = (args.train, args.valid);
    let vs = nn::VarStore::new(args.device);
    let net: Box<dyn ModuleT> = match args.workload {
        Workload::Mlp => Box::new(mlp(&vs.root())),
        Workload::Cnn => Box::new(cnn(&vs.root())),
    };
    let mut opt = nn::Sgd::default().build(&vs, 0.1)?;
    let dev = args.device;

    let start = Instant::now();
    let mut epoch_seconds = Vec::new();
    let (mut train_loss, mut acc) = (0.0, 0.0);
    for _ in 0..args.epochs {
        let epoch_start = Instant::now();
        let order = Tensor::randperm(train, (Kind::Int64, Device::Cpu));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, dev));
        let batches = (train + args.batch - 1) / args.batch;
        for b in 0..batches {
            let idx = order.narrow(0, b * args.batch, args.batch.min(train - b * args.batch));
            let (bx, by) = (xt.index_select(0, &idx).to_device(dev), yt.index_select(0, &idx).to_device(dev));
            let loss = {
                let _autocast = args.precision.autocast(dev)?;
                net.forward_t(&bx, true).cross_entropy_for_logits(&by)
            };
            opt.backward_step(&loss);
            loss_sum += loss.detach();
        }
        let (mut correct, mut valid_loss) =
            (Tensor::zeros([], (Kind::Int64, dev)), Tensor::zeros([], (Kind::Float, dev)));
        tch::no_grad(|| {
            for start in (0..valid).step_by(args.batch as usize) {
                let len = args.batch.min(valid - start);
                let (bx, by) = (xv.narrow(0, start, len).to_device(dev), yv.narrow(0, start, len).to_device(dev));
                let out = net.forward_t(&bx, false);
                valid_loss += out.cross_entropy_for_logits(&by) * len as f64;
                correct += out.argmax(-1, false).eq_tensor(&by).sum(Kind::Int64);
            }
        });
        train_loss = loss_sum.double_value(&[]) / batches as f64;
        acc = correct.double_value(&[]) / valid as f64;
        let _ = valid_loss.double_value(&[]);
        epoch_seconds.push(epoch_start.elapsed().as_secs_f64());
    }
    report(start.elapsed().as_secs_f64(), &epoch_seconds, acc, train_loss);
    Ok(())
}
