//! SWA's `update_bn` gives the averaged weights the batch-norm statistics that
//! `torch.optim.swa_utils.update_bn` computes from the same weights and the same batches: an MLP
//! with batch norm trained on the digits with the `swa` callback (loaded as a plugin), whose final
//! weights the venv's PyTorch loads into the same network and passes the training inputs through.
//! On CPU the statistics are bit for bit PyTorch's.

use std::process::Command;
use tch::Tensor;
use torchfit::plugins::Library;
use torchfit_tests::{digits, plugin_library, python, serial, temp_dir};

const BATCH: i64 = 64;

const PYTHON: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
state = load_file(sys.argv[1])
x = state.pop("x")
class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.ModuleList([torch.nn.Linear(64, 32)])
        self.bn = torch.nn.ModuleList([torch.nn.BatchNorm1d(32)])
        self.output = torch.nn.Linear(32, 10)
    def forward(self, x):
        return self.output(torch.relu(self.bn[0](self.hidden[0](x))))
model = Mlp()
model.load_state_dict(state, strict=False)
torch.optim.swa_utils.update_bn(torch.utils.data.DataLoader(x, batch_size=int(sys.argv[3])), model)
save_file({k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("bn.0.running")}, sys.argv[2])
"#;

/// The model's state after 3 epochs with `swa` (`update_bn` as given) on the first 1000 digits,
/// with those inputs under `x`.
fn train(update_bn: bool) -> Vec<(String, Tensor)> {
    let (x, y) = digits();
    let mut net = torchfit::classifier();
    let lib = Library::load(&plugin_library("torchfit-plugin-weight-averaging", "torchfit_plugin_weight_averaging"));
    net.registry_mut().add_library(&lib.unwrap()).unwrap();
    let swa = format!("{{type = \"swa\", swa_start = 2, update_bn = {update_bn}}}");
    let batch = BATCH.to_string();
    net.set_params(&[
        ("module__hidden", "[32]"),
        ("module__batch_norm", "true"),
        ("optimizer__lr", "0.1"),
        ("iterator_train__batch_size", batch.as_str()),
        ("callbacks__print_log", "false"),
        ("callbacks__progress_bar", "false"),
        ("callbacks__swa", swa.as_str()),
        ("max_epochs", "3"),
    ])
    .unwrap();
    let (x_train, y_train) = (x.narrow(0, 0, 1000), y.narrow(0, 0, 1000));
    net.fit_with_valid(&x_train, &y_train, &x.narrow(0, 1000, 797), &y.narrow(0, 1000, 797)).unwrap();
    let mut state: Vec<(String, Tensor)> =
        net.model().unwrap().state_dict().into_iter().map(|(n, t)| (n, t.copy())).collect();
    state.push(("x".into(), x_train.copy()));
    state
}

/// PyTorch's statistics for the weights in `state`.
fn torchs(state: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let dir = temp_dir("update-bn");
    let (input, output) = (dir.join("state.safetensors"), dir.join("stats.safetensors"));
    Tensor::write_safetensors(state, &input).unwrap();
    let args = [input.to_str().unwrap(), output.to_str().unwrap(), &BATCH.to_string()];
    let out = Command::new(python()).arg("-c").arg(PYTHON).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Tensor::read_safetensors(&output).unwrap()
}

fn get<'a>(v: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &v.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
}

#[test]
fn update_bn_recomputes_the_statistics_of_the_average_as_pytorch_does() {
    let _serial = serial();
    let (updated, kept) = (train(true), train(false));
    for name in ["hidden.0.weight", "bn.0.weight", "output.bias"] {
        assert!(get(&updated, name).equal(get(&kept, name)), "{name}: the same average either way");
    }
    let theirs = torchs(&updated);
    for name in ["bn.0.running_mean", "bn.0.running_var"] {
        let (ours, torch) = (get(&updated, name), get(&theirs, name));
        let diff = (ours - torch).abs().max().double_value(&[]);
        assert!(ours.equal(torch), "{name}: differs from PyTorch's by up to {diff}");
        assert!(!get(&kept, name).allclose(torch, 1e-3, 1e-3, false), "{name}: without update_bn they are the model's");
    }
}
