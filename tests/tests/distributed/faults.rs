//! Faults end in one-line errors within a bounded time, never in a hang.

use super::{free_port, train, BASE};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use torchfit_tests::{root, temp_dir, torchfit_bin};

/// A worker of a 2-process job started by hand (rank 0 serves the store on `port`).
fn worker(rank: usize, port: u16, out: &std::path::Path) -> Child {
    let mut cmd = Command::new(torchfit_bin());
    cmd.args(["train", "examples/digits/config.toml"]);
    for s in BASE.iter().chain(&["max_epochs=100000", "iterator_train__batch_size=8", "distributed__timeout=60"]) {
        cmd.args(["--set", s]);
    }
    cmd.arg("--out").arg(out).current_dir(root());
    cmd.env("RANK", rank.to_string()).env("WORLD_SIZE", "2").env("MASTER_ADDR", "127.0.0.1");
    cmd.env("MASTER_PORT", port.to_string()).env("TORCHFIT_LOG", "warn");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Reads `child`'s standard output until a table row starting with `row`.
fn wait_for_row(child: &mut Child, row: &str) -> std::io::Lines<BufReader<std::process::ChildStdout>> {
    let mut rows = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in rows.by_ref() {
        if line.unwrap().trim_start().starts_with(row) {
            break;
        }
    }
    rows
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
    let mut cmd = Command::new(torchfit_bin());
    cmd.args(["train", "examples/digits/config.toml", "--nproc", "2"]).current_dir(root());
    for s in BASE.iter().chain(&["max_epochs=100000", "distributed__timeout=60"]) {
        cmd.args(["--set", s]);
    }
    let mut launcher = cmd.env("TORCHFIT_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let rows = wait_for_row(&mut launcher, "2 ");
    let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", launcher.id(), launcher.id())).unwrap();
    let pids: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "{children}");
    assert!(Command::new("kill").args(["-9", pids[1]]).status().unwrap().success());
    let killed = Instant::now();
    rows.for_each(drop);
    let o = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(killed.elapsed() < Duration::from_secs(60), "took {:?}", killed.elapsed());
    assert_eq!(o.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("worker rank 1 was killed by signal 9"), "{stderr}");
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

#[test]
fn bad_launcher_variables_are_named() {
    let env = [("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
    let o = train(&[], &[], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("environment: `RANK`: 2 is not below WORLD_SIZE 2"));
}
