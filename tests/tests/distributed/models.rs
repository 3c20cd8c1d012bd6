//! What the Reducer and the buffer broadcast must handle: parameters frozen and unfrozen during
//! the run, and batch-norm statistics.

use super::{ok, train};
use torchfit_tests::{plugin_library, temp_dir};

/// The parameters of a run directory's model, sorted by name.
fn model(dir: &std::path::Path) -> Vec<(String, tch::Tensor)> {
    let mut m = tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

/// The largest difference between two models' tensors of the same names.
fn max_diff(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((n, x), (m, y))| {
            assert_eq!(n, m);
            (x - y).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn freezing_and_unfreezing_during_a_run_rebuild_the_reducer_and_match_one_process() {
    plugin_library("torchfit-plugin-freezer", "torchfit_plugin_freezer");
    let root = temp_dir("dist-freeze");
    let (one, two) = (root.join("one"), root.join("two"));
    let sets = [
        "max_epochs=4",
        "callbacks__fr__type=\"freezer\"",
        "callbacks__fr__patterns=[\"hidden.0.*\"]",
        "callbacks__un__type=\"unfreezer\"",
        "callbacks__un__patterns=[\"hidden.0.*\"]",
        "callbacks__un__at=3",
    ];
    let with = |batch| -> Vec<&str> { sets.iter().copied().chain([batch]).collect() };
    let (b32, b16) = (with("iterator_train__batch_size=32"), with("iterator_train__batch_size=16"));
    ok(&train(&b32, &["--out", one.to_str().unwrap()], &[]));
    ok(&train(&b16, &["--nproc", "2", "--out", two.to_str().unwrap()], &[]));
    let diff = max_diff(&model(&one), &model(&two));
    assert!(diff < 1e-5, "2 processes differ from one by {diff}");
}

#[test]
fn batch_norm_models_train_with_and_without_the_buffer_broadcast() {
    let root = temp_dir("dist-bn");
    for (name, broadcast) in [("on", "true"), ("off", "false")] {
        let out = root.join(name);
        let flag = format!("distributed__broadcast_buffers={broadcast}");
        let o = train(&["module__batch_norm=true", &flag], &["--nproc", "2", "--out", out.to_str().unwrap()], &[]);
        ok(&o);
        let m = model(&out);
        let mean = m.iter().find(|(n, _)| n.ends_with("running_mean")).expect("a batch-norm layer");
        assert!(mean.1.abs().sum(tch::Kind::Double).double_value(&[]) > 0.0, "statistics were gathered");
    }
}
