//! Exact resume: 6 epochs straight equal 3 epochs, a checkpoint, and 3 more epochs in a fresh
//! net restored from it, bit for bit on the CPU (Adam, dropout, shuffling).

use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use torchfit::NeuralNet;
use torchfit_sdk::{BuildContext, Callback, Constructor, Flow, Host, Parts, Result};

/// Saves everything on train end (what TrainEndCheckpoint does).
struct SaveAtEnd(PathBuf);

impl Callback for SaveAtEnd {
    fn on_train_end(&mut self, host: &mut dyn Host) -> Result<()> {
        host.save_checkpoint(&self.0, "train_end_", Parts::ALL)
    }
}

/// Restores everything on the first train begin (what LoadInitState does).
struct LoadAtBegin(PathBuf, bool);

impl Callback for LoadAtBegin {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !self.1 {
            self.1 = true;
            host.load_checkpoint(&self.0, "train_end_", Parts::ALL)?;
        }
        Ok(Flow::Continue)
    }
}

fn dir_of(config: &serde_json::Value) -> PathBuf {
    config["dir"].as_str().unwrap().into()
}

fn save_at_end(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(SaveAtEnd(dir_of(config))))
}

fn load_at_begin(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(LoadAtBegin(dir_of(config), false)))
}

fn data() -> (Tensor, Tensor) {
    tch::manual_seed(42);
    let x = Tensor::randn([300, 8], (Kind::Float, Device::Cpu));
    let y = x.narrow(1, 0, 3).argmax(1, false);
    (x, y)
}

fn net(epochs: usize, extra: &[(&str, &str)]) -> NeuralNet {
    let mut net = torchfit::classifier();
    net.registry_mut().add("save_at_end", "0", "test", Constructor::Callback(save_at_end)).unwrap();
    net.registry_mut().add("load_at_begin", "0", "test", Constructor::Callback(load_at_begin)).unwrap();
    net.set_params(&[
        ("seed", "3"),
        ("module__hidden", "[32, 16]"),
        ("module__dropout", "0.3"),
        ("optimizer__name", "adam"),
        ("optimizer__lr", "0.01"),
        ("iterator_train__batch_size", "16"),
        ("callbacks__print_log", "false"),
        ("callbacks__progress_bar", "false"),
    ])
    .unwrap();
    net.set_param("max_epochs", epochs as i64).unwrap();
    for (k, v) in extra {
        net.set_param(k, *v).unwrap();
    }
    net
}

fn losses(net: &NeuralNet) -> Vec<serde_json::Value> {
    let h = net.history();
    (0..h.len() as isize)
        .flat_map(|e| [h.get(e, "train_loss").cloned(), h.get(e, "valid_loss").cloned()])
        .map(Option::unwrap)
        .collect()
}

#[test]
fn three_epochs_a_checkpoint_and_three_more_equal_six_straight() {
    let _serial = torchfit_tests::serial();
    let (x, y) = data();
    let ckpt = torchfit_tests::temp_dir("resume").join("ckpt");
    let ckpt_s = ckpt.to_str().unwrap();

    let mut straight = net(6, &[]);
    straight.fit(&x, &y).unwrap();

    let mut first = net(3, &[("callbacks__save__type", "save_at_end"), ("callbacks__save__dir", ckpt_s)]);
    first.fit(&x, &y).unwrap();
    for f in [
        "train_end_params.safetensors",
        "train_end_optimizer.safetensors",
        "train_end_callbacks.json",
        "train_end_history.json",
    ] {
        assert!(ckpt.join(f).exists(), "{f} missing");
    }
    drop(first);

    let mut second = net(3, &[("callbacks__load__type", "load_at_begin"), ("callbacks__load__dir", ckpt_s)]);
    second.fit(&x, &y).unwrap();

    assert_eq!(second.history().len(), 6, "3 restored epochs and 3 new ones");
    assert_eq!(second.history().column_f64("epoch"), (1..=6).map(f64::from).collect::<Vec<_>>());
    assert_eq!(losses(&second), losses(&straight), "history losses differ");
    let (a, b) = (straight.model().unwrap().state_dict(), second.model().unwrap().state_dict());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "parameter {na} differs");
    }
    let (oa, ob) = (straight.optimizer().unwrap().state_dict(), second.optimizer().unwrap().state_dict());
    assert_eq!(oa.len(), ob.len());
    for ((na, ta), (nb, tb)) in oa.iter().zip(&ob) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "optimizer state {na} differs");
    }
}

#[test]
fn a_missing_checkpoint_is_an_error_naming_the_callback_and_the_file() {
    let _serial = torchfit_tests::serial();
    let (x, y) = data();
    let missing = torchfit_tests::temp_dir("resume-missing").join("nothing-here");
    let mut n =
        net(1, &[("callbacks__load__type", "load_at_begin"), ("callbacks__load__dir", missing.to_str().unwrap())]);
    let err = n.fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("callback `load`") && err.contains("train_end_history.json"), "{err}");
}
