//! `--resume` of a 2-process run restores every rank and ends equal to the uninterrupted run;
//! a different number of processes is refused.

use super::{history, ok, train};
use torchfit_tests::temp_dir;

const BATCH: &str = "iterator_train__batch_size=16";

#[test]
fn resuming_a_two_process_run_equals_the_uninterrupted_run() {
    let root = temp_dir("dist-resume");
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    ok(&train(&[BATCH, "max_epochs=4"], &["--nproc", "2", "--out", straight.to_str().unwrap()], &[]));
    ok(&train(&[BATCH, "max_epochs=2"], &["--nproc", "2", "--out", resumed.to_str().unwrap()], &[]));
    ok(&train(&[BATCH, "max_epochs=4"], &["--nproc", "2", "--out", resumed.to_str().unwrap(), "--resume"], &[]));
    assert_eq!(history(&resumed), history(&straight));
    let model = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(model(&resumed), model(&straight));
}

#[test]
fn resuming_with_another_number_of_processes_is_refused() {
    let run = temp_dir("dist-resume-world").join("run");
    ok(&train(&[BATCH, "max_epochs=1"], &["--nproc", "2", "--out", run.to_str().unwrap()], &[]));
    let o = train(&["max_epochs=2"], &["--out", run.to_str().unwrap(), "--resume"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("was trained by 2 processes") && stderr.contains("--nproc 2"), "{stderr}");
    let o = train(&["max_epochs=2"], &["--nproc", "2", "--out", run.to_str().unwrap(), "--resume"], &[]);
    ok(&o);
}
