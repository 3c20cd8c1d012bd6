//! A model scripted in PyTorch (`torch.jit.save`) is trained by torchfit: its loss falls, and its
//! parameters keep their PyTorch names in the saved model and for Freezer; its buffers (batch
//! norm's running statistics) are trained, resumed and exported, and PyTorch loading the export
//! predicts what `torchfit predict` does.

use torchfit_tests::{python, read_json, root, temp_dir, torchfit_env};

const SCRIPT: &str = r#"
import sys, torch
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 10)
    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))
torch.manual_seed(0)
torch.jit.script(Net()).save(sys.argv[1])
"#;

const SCRIPT_BN: &str = r#"
import sys, torch
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 10)
    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x.flatten(1)))))
torch.manual_seed(0)
torch.jit.script(Net()).save(sys.argv[1])
"#;

/// PyTorch's predictions for the digits from `net.pt` (argv 1) with the state dict of
/// `model.safetensors` (argv 2) loaded strictly, in evaluation mode: a JSON list of classes.
const PREDICT: &str = r#"
import gzip, json, sys, torch
from safetensors.torch import load_file
net = torch.jit.load(sys.argv[1])
net.load_state_dict(load_file(sys.argv[2]), strict=True)
net.eval()
rows = [[float(v) for v in line.split(",")] for line in gzip.open(sys.argv[3], "rt") if line.strip()]
x = torch.tensor([r[:-1] for r in rows]) / 16.0
with torch.no_grad():
    print(json.dumps(net(x).argmax(1).tolist()))
"#;

/// Writes `net.pt` into `dir` (TorchScript compiles from source, so the script is a file).
fn script(dir: &std::path::Path) {
    script_of(dir, SCRIPT);
}

fn script_of(dir: &std::path::Path, source: &str) {
    std::fs::write(dir.join("make_net.py"), source).unwrap();
    let o = std::process::Command::new(python()).arg(dir.join("make_net.py")).arg(dir.join("net.pt")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let digits = root().join("examples/digits/digits.csv.gz");
    let text = format!(
        "seed = 0\nmax_epochs = 5\n[dataset]\nname = \"csv\"\npath = {:?}\nscale = 16.0\n[module]\nname = \"torchscript\"\npath = \"net.pt\"\n[optimizer]\nname = \"sgd\"\nlr = 0.1\nmomentum = 0.9\n[iterator_train]\nbatch_size = 32\n{extra}",
        digits.display().to_string()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_scripted_pytorch_model_trains_and_keeps_its_names() {
    let dir = temp_dir("torchscript");
    script(&dir);
    let out = dir.join("run");
    let o = torchfit_env(&["train", config(&dir, "").to_str().unwrap(), "--out", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = read_json(&out.join("history.json"));
    let losses: Vec<f64> = h.as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect();
    assert!(losses[4] < 0.5 * losses[0], "the loss falls: {losses:?}");
    assert!(h[4]["valid_acc"].as_f64().unwrap() > 0.9);
    let mut names: Vec<String> =
        tch::Tensor::read_safetensors(out.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]);
}

#[test]
fn freezer_patterns_see_the_pytorch_names() {
    torchfit_tests::plugin_library("torchfit-plugin-freezer", "torchfit_plugin_freezer");
    let dir = temp_dir("torchscript-freeze");
    script(&dir);
    let (init, trained) = (dir.join("init"), dir.join("trained"));
    let cfg = config(&dir, "");
    let o =
        torchfit_env(&["train", cfg.to_str().unwrap(), "--set", "max_epochs=0", "--out", init.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = torchfit_env(
        &[
            "train",
            cfg.to_str().unwrap(),
            "--set",
            "max_epochs=2",
            "--set",
            "callbacks__fr__type=freezer",
            "--set",
            "callbacks__fr__patterns=[\"fc1.*\"]",
            "--out",
            trained.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let load = |d: &std::path::Path| tch::Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
    let (a, b) = (load(&init), load(&trained));
    let get = |v: &[(String, tch::Tensor)], n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    assert!(get(&a, "fc1.weight").equal(&get(&b, "fc1.weight")), "frozen by its PyTorch name");
    assert!(!get(&a, "fc2.weight").equal(&get(&b, "fc2.weight")));
}

#[test]
fn batch_norm_statistics_are_trained_resumed_and_exported_as_pytorch_reads_them() {
    let dir = temp_dir("torchscript-bn");
    script_of(&dir, SCRIPT_BN);
    let cfg = config(&dir, "");
    let train = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["train", cfg.to_str().unwrap(), "--set", "max_epochs=4", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = torchfit_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    train(&straight, &[]);
    let state = tch::Tensor::read_safetensors(straight.join("model.safetensors")).unwrap();
    let get = |n: &str| state.iter().find(|(k, _)| k == n).unwrap_or_else(|| panic!("no {n}")).1.shallow_clone();
    assert!(get("bn.running_mean").abs().sum(tch::Kind::Float).double_value(&[]) > 0.0, "trained statistics");
    assert!(get("bn.num_batches_tracked").int64_value(&[]) > 0);
    train(&resumed, &["--set", "max_epochs=2"]);
    train(&resumed, &["--resume"]);
    assert!(
        std::fs::read(resumed.join("model.safetensors")).unwrap()
            == std::fs::read(straight.join("model.safetensors")).unwrap(),
        "a resumed run restores the statistics and ends as the uninterrupted one"
    );
    std::fs::write(dir.join("predict.py"), PREDICT).unwrap();
    let digits = root().join("examples/digits/digits.csv.gz");
    let o = std::process::Command::new(python())
        .arg(dir.join("predict.py"))
        .arg(dir.join("net.pt"))
        .arg(straight.join("model.safetensors"))
        .arg(&digits)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pytorch: Vec<i64> = serde_json::from_slice(&o.stdout).unwrap();
    let o = torchfit_env(&["predict", straight.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours: Vec<i64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ours.len(), 1797);
    let differ = ours.iter().zip(&pytorch).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "PyTorch with the exported state predicts as torchfit does");
}
