//! The three ways to launch a job give the same run: `torchfit train --nproc 2`, torchrun
//! (`python -m torch.distributed.run --standalone --nproc-per-node 2 --no-python torchfit ...`)
//! and two torchrun agents rendezvousing as two nodes (`--nnodes 2 --rdzv-backend c10d`).

use super::{free_port, history, ok, train, BASE};
use std::process::{Command, Output, Stdio};
use torchfit_tests::{python, root, temp_dir, torchfit_bin};

const BATCH: &str = "iterator_train__batch_size=16";

/// `torchrun_args ... --no-python torchfit train <digits> <BASE> --set BATCH --out out`.
fn torchrun(torchrun_args: &[String], out: &std::path::Path) -> std::process::Child {
    let mut cmd = Command::new(python());
    cmd.args(["-m", "torch.distributed.run"]).args(torchrun_args).arg("--no-python").arg(torchfit_bin());
    cmd.args(["train", "examples/digits/config.toml"]);
    for s in BASE.iter().chain(&[BATCH]) {
        cmd.args(["--set", s]);
    }
    cmd.arg("--out").arg(out).current_dir(root()).env("TORCHFIT_LOG", "warn");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finished(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn nproc_torchrun_and_two_torchrun_nodes_train_the_same_run() {
    let root_dir = temp_dir("dist-launchers");
    let (own, standalone, nodes) = (root_dir.join("nproc"), root_dir.join("torchrun"), root_dir.join("nodes"));
    ok(&train(&[BATCH], &["--nproc", "2", "--out", own.to_str().unwrap()], &[]));
    let single = ["--standalone", "--nproc-per-node", "2"].map(String::from);
    ok(&finished(torchrun(&single, &standalone)));
    let endpoint = format!("127.0.0.1:{}", free_port());
    let agents: Vec<_> = (0..2)
        .map(|_| {
            let args = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "t"]
                .map(String::from)
                .into_iter()
                .chain(["--rdzv-endpoint".into(), endpoint.clone()])
                .collect::<Vec<String>>();
            torchrun(&args, &nodes)
        })
        .collect();
    for agent in agents {
        ok(&finished(agent));
    }
    let expected = history(&own);
    assert_eq!(history(&standalone), expected, "torchrun --standalone");
    assert_eq!(history(&nodes), expected, "two torchrun nodes");
    let model = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(model(&standalone), model(&own));
    assert_eq!(model(&nodes), model(&own));
    // One table and one set of result lines per job: rank 0's.
    let o = train(&[BATCH, "max_epochs=1"], &["--nproc", "2"], &[]);
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("test_accuracy=").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("train_loss").count(), 1, "{stdout}");
}

#[test]
fn nproc_inside_a_launched_job_is_refused() {
    let env = [("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")];
    let o = train(&[], &["--nproc", "2"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("under torchrun"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn threads_that_oversubscribe_the_node_are_warned_about_once() {
    let cores = torchfit_engine::distributed::cores();
    let dir = temp_dir("oversubscribed");
    let (many, few) = (dir.join("many"), dir.join("few"));
    // Each of the two processes asks for every core: twice what the node has.
    let o =
        train(&[&format!("threads={cores}"), "max_epochs=1"], &["--nproc", "2", "--out", many.to_str().unwrap()], &[]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let fair = (cores / 2).max(1);
    assert_eq!(err.matches("intra-op threads in each of the 2 processes").count(), 1, "{err}");
    assert!(err.contains(&format!("set threads = {fair} (--set threads={fair})")), "{err}");
    if cores >= 2 {
        let o = train(&["max_epochs=1"], &["--nproc", "2", "--out", few.to_str().unwrap()], &[]); // threads = 1
        ok(&o);
        assert!(!String::from_utf8_lossy(&o.stderr).contains("intra-op threads"));
    }
}

#[test]
fn a_job_accumulating_two_batches_all_reduces_once_per_group() {
    let out = temp_dir("accumulating").join("run");
    let o = train(
        &["accumulate_grad_batches=2", "max_epochs=1", BATCH],
        &["--nproc", "2", "--out", out.to_str().unwrap()],
        &[("TORCHFIT_LOG", "info")],
    );
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.starts_with("[info] gradient all-reduces: ")).unwrap_or_else(|| panic!("{err}"));
    let counts: Vec<usize> = line
        .trim_start_matches("[info] gradient all-reduces: ")
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (reduced, backwards) = (counts[0], counts[1]);
    assert!(backwards > 20, "{line}");
    assert_eq!(reduced, backwards.div_ceil(2), "{line}: one all-reduce per group of two batches");
    let history = torchfit_tests::read_json(&out.join("history.json"));
    let stepped = history[0]["batches"].as_array().unwrap().iter().filter(|b| b["stepped"] == true).count();
    assert_eq!(stepped, reduced, "the batches that stepped are those that all-reduced");
}
