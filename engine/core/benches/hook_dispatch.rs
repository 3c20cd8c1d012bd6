//! Cost of one hook call: a no-op `on_batch_end` called directly on a `dyn Callback`, through the
//! stable-ABI adapters in the same image, and on a callback loaded from a plugin library.
//!
//! `cargo bench -p torchfit-engine --bench hook_dispatch` (build the test plugin first:
//! `cargo build --release -p torchfit-testplugin-faulty`). Prints medians of 7 alternating runs.

use std::hint::black_box;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use torchfit_engine::plugins::Library;
use torchfit_engine::Registry;
use torchfit_sdk::ffi::DynCallback;
use torchfit_sdk::testing::FakeHost;
use torchfit_sdk::{Batch, BatchOutput, BuildContext, Callback, Flow, Host, Result};

struct Noop;

impl Callback for Noop {
    fn on_batch_end(&mut self, _host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        black_box(out.batch.index);
        Ok(Flow::Continue)
    }
}

const CALLS: usize = 1_000_000;

fn ns_per_call(cb: &mut dyn Callback, host: &mut FakeHost, out: &BatchOutput<'_>) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        black_box(cb.on_batch_end(host, black_box(out)).unwrap());
    }
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let x = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let loss = Tensor::from(0.5f32);
    let out = BatchOutput { batch: Batch { x: &x, y: &y, training: true, index: 0 }, y_pred: &x, loss: &loss };
    let mut host = FakeHost::default();

    let mut direct: Box<dyn Callback> = Box::new(Noop);
    let mut adapted: Box<dyn Callback> = Box::new(DynCallback::wrap(Noop));
    let lib_path =
        std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.join("libtorchfit_testplugin_faulty.so")));
    let mut loaded: Option<Box<dyn Callback>> = lib_path.filter(|p| p.exists()).map(|p| {
        let lib = Library::load(&p).expect("load the test plugin");
        let mut r = Registry::default();
        r.add_library(&lib).unwrap();
        let ctx = BuildContext { n_outputs: 2, ..torchfit_sdk::testing::context("noop") };
        r.callback("faulty", &serde_json::json!({"hook": "none"}), &ctx).unwrap()
    });

    let (mut d, mut a, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        d.push(ns_per_call(direct.as_mut(), &mut host, &out));
        a.push(ns_per_call(adapted.as_mut(), &mut host, &out));
        if let Some(cb) = loaded.as_mut() {
            l.push(ns_per_call(cb.as_mut(), &mut host, &out));
        }
    }
    let base = median(d.clone());
    println!("hook dispatch, on_batch_end, median of 7 runs of {CALLS} calls");
    println!("{:<44} {:>10} {:>8}", "path", "ns/call", "ratio");
    println!("{:<44} {:>10.1} {:>8.2}", "direct dyn Callback (builtin)", base, 1.0);
    println!(
        "{:<44} {:>10.1} {:>8.2}",
        "ABI adapters, same image (DynCallback::wrap)",
        median(a.clone()),
        median(a) / base
    );
    match l.is_empty() {
        false => println!("{:<44} {:>10.1} {:>8.2}", "loaded from a plugin .so", median(l.clone()), median(l) / base),
        true => println!("(build torchfit-testplugin-faulty --release to measure the loaded path)"),
    }
}
