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
    net.registry_mut().add("scaler_watch", "0", "test", Constructor::Callback(scaler_watch)).unwrap();
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
    net.set_params(extra).unwrap();
    net
}

fn losses(net: &NeuralNet) -> Vec<serde_json::Value> {
    let h = net.history();
    (0..h.len() as isize)
        .flat_map(|e| [h.get(e, "train_loss").cloned(), h.get(e, "valid_loss").cloned()])
        .map(Option::unwrap)
        .collect()
}

/// Records the gradient scaler's state at each epoch's end (`grad_scale`, `growth_tracker`).
struct ScalerWatch;

impl Callback for ScalerWatch {
    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if let Some(s) = host.grad_scaler()? {
            host.record("grad_scale", s.scale.into())?;
            host.record("growth_tracker", s.growth_tracker.into())?;
        }
        Ok(Flow::Continue)
    }
}

fn scaler_watch(_config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(ScalerWatch))
}

#[test]
fn three_epochs_a_checkpoint_and_three_more_equal_six_straight() {
    resume_is_exact("resume", &[]);
}

#[test]
fn resume_is_exact_with_16_mixed_and_accumulation_the_scaler_included() {
    let extra = [
        ("precision", "\"16-mixed\""),
        ("accumulate_grad_batches", "3"),
        ("callbacks__scaler__type", "\"scaler_watch\""),
    ];
    let straight = resume_is_exact("resume-amp", &extra);
    let trackers = straight.history().column_f64("growth_tracker");
    assert_eq!(trackers.len(), 6, "the scaler's state reaches callbacks");
    assert!(trackers.windows(2).all(|w| w[1] > w[0]), "good steps add up across the resume: {trackers:?}");
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// 6 epochs straight against 3, a checkpoint and 3 more in a fresh net, with `extra` settings;
/// returns the straight net.
fn resume_is_exact(name: &str, extra: &[(&str, &str)]) -> NeuralNet {
    let _serial = torchfit_tests::serial();
    let (x, y) = data();
    let ckpt = torchfit_tests::temp_dir(name).join("ckpt");
    let ckpt_s = &format!("{:?}", ckpt.to_str().unwrap());
    let with = |more: &[(&'static str, &str)]| -> Vec<(String, String)> {
        extra.iter().chain(more).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };

    let mut straight = net(6, &pairs(&with(&[])));
    straight.fit(&x, &y).unwrap();

    let mut first =
        net(3, &pairs(&with(&[("callbacks__save__type", "\"save_at_end\""), ("callbacks__save__dir", ckpt_s)])));
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

    let mut second =
        net(3, &pairs(&with(&[("callbacks__load__type", "\"load_at_begin\""), ("callbacks__load__dir", ckpt_s)])));
    second.fit(&x, &y).unwrap();

    assert_eq!(second.history().len(), 6, "3 restored epochs and 3 new ones");
    assert_eq!(second.history().column_f64("epoch"), (1..=6).map(f64::from).collect::<Vec<_>>());
    assert_eq!(losses(&second), losses(&straight), "history losses differ");
    for key in ["grad_scale", "growth_tracker"] {
        assert_eq!(second.history().column_f64(key), straight.history().column_f64(key), "{key}");
    }
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
    straight
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
