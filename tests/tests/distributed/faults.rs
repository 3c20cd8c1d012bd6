//! Faults end in one-line errors within a bounded time, never in a hang.

use super::{free_port, spawn, train, wait_for_row, workers};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use torchfit_tests::temp_dir;

/// A worker of a 2-process job started by hand (rank 0 serves the store on `port`).
fn worker(rank: usize, port: u16, out: &std::path::Path) -> Child {
    let (rank, port) = (rank.to_string(), port.to_string());
    let env = [("RANK", rank.as_str()), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", &port)];
    let sets = ["max_epochs=100000", "iterator_train__batch_size=8", "distributed__timeout=60"];
    spawn(&sets, &["--out", out.to_str().unwrap()], &env)
}

#[test]
fn a_killed_rank_makes_the_survivor_fail_naming_it_within_a_minute() {
    let out = temp_dir("dist-kill").join("run");
    let port = free_port();
    let mut rank0 = worker(0, port, &out);
    let mut rank1 = worker(1, port, &out);
    let rows = wait_for_row(&mut rank0, "2 ");
    rank1.kill().unwrap();
    rank1.wait().unwrap();
    let killed = Instant::now();
    rows.for_each(drop);
    let o = rank0.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(took < Duration::from_secs(60), "the survivor took {took:?}");
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: distributed: lost rank 1"), "{stderr}");
    // The run so far is kept, as for any failed run.
    assert!(out.join("summary.json").exists());
}

#[test]
fn the_launcher_stops_the_job_when_a_worker_dies() {
    let mut launcher = spawn(&["max_epochs=100000", "distributed__timeout=60"], &["--nproc", "2"], &[]);
    let rows = wait_for_row(&mut launcher, "2 ");
    let pids = workers(&launcher);
    assert!(Command::new("kill").args(["-9", &pids[1]]).status().unwrap().success());
    let killed = Instant::now();
    rows.for_each(drop);
    let o = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(killed.elapsed() < Duration::from_secs(60), "took {:?}", killed.elapsed());
    assert_eq!(o.status.code(), Some(1), "a lost rank is a failure of the run: {stderr}");
    assert!(stderr.contains("worker rank 1 was killed by signal 9: the job lost it"), "{stderr}");
    assert!(stderr.contains("error: distributed: lost rank 1"), "the survivor names the lost rank: {stderr}");
}

/// Whether process `pid` still runs (a zombie counts as ended).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn ctrl_c_to_a_launched_job_stops_it_as_one_process_and_resume_equals_an_uninterrupted_job() {
    // A terminal's Ctrl-C reaches every process of the foreground group: here the test makes the
    // launcher the leader of a group and sends SIGINT to that group.
    let dir = temp_dir("dist-ctrl-c");
    let (straight, stopped) = (dir.join("straight"), dir.join("stopped"));
    let sets = ["max_epochs=30", "iterator_train__batch_size=8"];
    super::ok(&train(&sets, &["--nproc", "2", "--out", straight.to_str().unwrap()], &[]));
    let mut cmd = Command::new(torchfit_tests::torchfit_bin());
    cmd.args(["train", "examples/digits/config.toml"]);
    for s in super::BASE.iter().chain(&sets) {
        cmd.args(["--set", s]);
    }
    cmd.args(["--nproc", "2", "--out", stopped.to_str().unwrap()]).current_dir(torchfit_tests::root());
    cmd.env("TORCHFIT_LOG", "warn").env_remove("TORCHFIT_PLUGIN_PATH");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut launcher = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let rows = wait_for_row(&mut launcher, "2 ");
    assert!(Command::new("kill").args(["-INT", "--", &format!("-{}", launcher.id())]).status().unwrap().success());
    rows.for_each(drop);
    let o = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("interrupted by SIGINT") && stderr.contains("--resume"), "{stderr}");
    assert!(stopped.join("summary.json").exists() && stopped.join("train_end_params.safetensors").exists());
    let pending: Vec<_> = std::fs::read_dir(&stopped)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".commit") || n.ends_with(".next"))
        .collect();
    assert!(pending.is_empty(), "{pending:?}");
    super::ok(&train(&sets, &["--nproc", "2", "--out", stopped.to_str().unwrap(), "--resume"], &[]));
    assert_eq!(super::history(&stopped), super::history(&straight));
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(&stopped) == model(&straight));
}

#[test]
fn the_workers_stop_when_their_launcher_is_killed() {
    let mut launcher = spawn(&["max_epochs=100000"], &["--nproc", "2"], &[]);
    // The pipe of their output stays open: they do not end for want of a reader.
    let _rows = wait_for_row(&mut launcher, "2 ");
    let pids = workers(&launcher);
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.iter().any(|p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pids.iter().any(|p| alive(p)), "workers {pids:?} outlived their launcher");
}

#[test]
fn a_port_in_use_is_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let env = [("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str())];
    let o = train(&["distributed__timeout=5"], &[], &env);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("rank 0 cannot serve the store on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn an_unreachable_master_is_one_line_after_the_timeout() {
    let port = free_port().to_string();
    let env = [("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str())];
    let started = Instant::now();
    let o = train(&["distributed__timeout=3"], &[], &env);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("rank 1 cannot reach the store at 127.0.0.1:{port}")), "{stderr}");
}

/// NCCL loads from libtorchfit_nccl.so (built with the workspace) and needs a GPU: without one
/// the job ends in one line naming CUDA's reason, exit 3.
#[test]
fn nccl_without_a_gpu_is_one_line_naming_the_reason() {
    if Path::new("/dev/nvidiactl").exists() {
        eprintln!("SKIPPED: this machine has a GPU; NCCL is checked on it by hand (README)");
        return;
    }
    // Beside the binary, where `cargo build` puts it (`cargo test` builds no cdylib by itself).
    torchfit_tests::plugin_library("torchfit-nccl", "torchfit_nccl");
    let port = free_port().to_string();
    let env = [("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", port.as_str())];
    let o = train(&["distributed__backend=\"nccl\"", "distributed__timeout=10"], &[], &env);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("NCCL on cuda:0: CUDA error"), "{stderr}");
}

#[test]
fn bad_launcher_variables_are_named() {
    let env = [("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
    let o = train(&[], &[], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("environment: `RANK`: 2 is not below WORLD_SIZE 2"));
}
