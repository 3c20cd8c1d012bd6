//! Same config and seed on the CPU: identical losses, bit for bit, across processes.

use torchfit_tests::{read_json, temp_dir, torchfit};

fn losses(history: &serde_json::Value) -> Vec<String> {
    // Compare the JSON text of every loss: equal text means equal f64 bits (serde_json prints
    // the shortest representation that round-trips).
    let mut out = Vec::new();
    for e in history.as_array().unwrap() {
        for key in ["train_loss", "valid_loss", "valid_acc"] {
            out.push(e[key].to_string());
        }
        for b in e["batches"].as_array().unwrap() {
            for key in ["train_loss", "valid_loss"] {
                if let Some(v) = b.get(key) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out
}

fn run(name: &str, extra: &[&str]) -> (Vec<String>, Vec<(String, tch::Tensor)>) {
    let out = temp_dir(name).join("run");
    let mut args =
        vec!["train", "examples/digits/config.toml", "--set", "max_epochs=4", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = torchfit(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut params = tch::Tensor::read_safetensors(out.join("model.safetensors")).unwrap();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    (losses(&read_json(&out.join("history.json"))), params)
}

#[test]
fn two_runs_with_the_same_seed_are_bit_identical() {
    let (a, pa) = run("repro-a", &[]);
    let (b, pb) = run("repro-b", &[]);
    assert_eq!(a.len(), 4 * 3 + 4 * (36 + 3));
    assert_eq!(a, b);
    for ((na, ta), (nb, tb)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs");
    }
}

#[test]
fn another_seed_gives_another_run() {
    let (a, _) = run("seed-a", &[]);
    let (b, _) = run("seed-b", &["--set", "seed=1"]);
    assert_ne!(a, b);
}
