//! The benchmark's Rust programs run and learn: two epochs of the MLP at batch 256 through the
//! raw tch loop and through the library, each reporting its time, each epoch's, and a validation
//! accuracy above 90 % (skipped, loudly, without ../shared/data/mnist). The timings themselves are the
//! benchmark's business (bash bench/run.sh), not a test's.

use std::path::PathBuf;

fn mnist() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
    if dir.join("train-images.idx3-ubyte.gz").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: MNIST not found in ../shared/data/mnist; the benchmark programs were not run");
        None
    }
}

fn report(exe: &str, workload: &str) -> Option<serde_json::Value> {
    let data = mnist()?;
    let o = std::process::Command::new(exe)
        .args(["--workload", workload, "--batch", "256", "--epochs", "2", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{exe}: {}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8_lossy(&o.stdout).lines().last().unwrap().to_owned();
    Some(serde_json::from_str(&line).unwrap())
}

#[test]
fn the_raw_loop_and_the_library_both_learn_the_mlp_and_time_each_epoch() {
    for exe in [env!("CARGO_BIN_EXE_raw_tch"), env!("CARGO_BIN_EXE_library")] {
        if let Some(r) = report(exe, "mlp") {
            let acc = r["valid_acc"].as_f64().unwrap();
            let fit = r["fit_seconds"].as_f64().unwrap();
            assert!(acc > 0.9 && fit > 0.0, "{exe}: {r}");
            let epochs: Vec<f64> = r["epoch_seconds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(epochs.len(), 2, "{exe}: {r}");
            assert!(epochs.iter().all(|&e| e > 0.0) && epochs.iter().sum::<f64>() <= fit, "{exe}: {r}");
            assert!(r["train_loss"].as_f64().unwrap() < 1.0, "{exe}: {r}");
        }
    }
}

#[test]
fn a_sample_count_outside_the_split_is_refused_before_any_data_is_read() {
    for bad in [["--train", "0"], ["--train", "48001"], ["--valid", "12001"], ["--epochs", "0"]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_raw_tch"))
            .args(bad)
            .args(["--data", "/nonexistent"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{bad:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--train must be in 1..=48000 and --valid in 1..=12000")
                || err.contains("--epochs must be in 1..=1000"),
            "{bad:?}: {err}"
        );
    }
}
