//! The averages of the `weight_averaging` plugin equal PyTorch's on the same sequence of weights:
//! EMA as timm's `ModelEmaV2` updates (every state-dict entry, buffers and the batch-norm counter
//! included), SWA as `torch.optim.swa_utils.AveragedModel` (parameters; and with `use_buffers`,
//! buffers too). The sequence is a small network with batch norm, trained a few steps by the
//! venv's PyTorch.

//!
//! The plugin's own test: a test binary links at most one plugin crate, whose root module it
//! exports.

use std::path::{Path, PathBuf};
use std::process::Command;
use torchfit_plugin_weight_averaging::{ema_update, swa_update};
use torchfit_sdk::tch::Tensor;

/// The venv's Python (with torch and safetensors), installed by `.cargo/setup.sh`.
fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(p.exists(), "{} is missing: run `bash .cargo/setup.sh`", p.display());
    p
}

const PYTHON: &str = r#"
import copy, sys, torch
from safetensors.torch import save_file
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
decay = 0.9
ema = copy.deepcopy(model)
swa = torch.optim.swa_utils.AveragedModel(model)
swa_buffers = torch.optim.swa_utils.AveragedModel(model, use_buffers=True)
out = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
for step in range(6):
    x = torch.randn(8, 3)
    loss = model(x).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    for k, v in model.state_dict().items():
        out[f"step{step}.{k}"] = v.clone()
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            e.copy_(decay * e + (1.0 - decay) * m)
    swa.update_parameters(model)
    swa_buffers.update_parameters(model)
for k, v in ema.state_dict().items():
    out[f"ema.{k}"] = v.clone()
for k, v in swa.module.state_dict().items():
    out[f"swa.{k}"] = v.clone()
for k, v in swa_buffers.module.state_dict().items():
    out[f"swa_buffers.{k}"] = v.clone()
save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[1])
"#;

/// The tensors of `all` under `prefix.`, the prefix removed, in name order.
fn under(all: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = all
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(&format!("{prefix}.")).map(|k| (k.to_owned(), t.copy())))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_same(ours: &[(String, Tensor)], theirs: &[(String, Tensor)], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    for ((n, a), (m, b)) in ours.iter().zip(theirs) {
        assert_eq!(n, m, "{what}");
        assert!(a.equal(b), "{what}: {n} differs: {a:?} against {b:?}");
    }
}

#[test]
fn ema_and_swa_equal_pytorchs_on_the_same_weights() {
    let file = std::env::temp_dir().join(format!("torchfit-weight-averaging-{}.safetensors", std::process::id()));
    let out = Command::new(python()).args(["-c", PYTHON, file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = Tensor::read_safetensors(&file).unwrap();
    let steps: Vec<Vec<(String, Tensor)>> = (0..6).map(|s| under(&all, &format!("step{s}"))).collect();
    let params = |v: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
        v.iter()
            .filter(|(n, _)| n.ends_with("weight") || n.ends_with("bias"))
            .map(|(n, t)| (n.clone(), t.copy()))
            .collect()
    };
    assert!(under(&all, "init").iter().any(|(n, _)| n == "1.num_batches_tracked"), "buffers are in the sequence");

    let mut ema = under(&all, "init");
    let mut swa = params(&under(&all, "init"));
    let mut swa_buffers = under(&all, "init");
    for (n, step) in steps.iter().enumerate() {
        ema_update(&mut ema, step, 0.9).unwrap();
        swa_update(&mut swa, step, n as u64).unwrap();
        swa_update(&mut swa_buffers, step, n as u64).unwrap();
    }
    assert_same(&ema, &under(&all, "ema"), "EMA (ModelEmaV2)");
    assert_same(&swa, &params(&under(&all, "swa")), "SWA (AveragedModel)");
    assert_same(&swa_buffers, &under(&all, "swa_buffers"), "SWA with use_buffers");
    let _ = std::fs::remove_file(file);
}
