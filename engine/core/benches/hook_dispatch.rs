//! Cost of one hook call: a no-op `on_batch_end` called directly on a `dyn Callback`, through the
//! stable-ABI adapters in the same image, and on a callback loaded from a plugin library, each
//! through the SDK 1.0 interface and the SDK 1.1 extension interface.
//!
//! `cargo bench -p torchfit-engine --bench hook_dispatch` (build the test plugin first:
//! `cargo build --release -p torchfit-testplugin-faulty`). Prints medians of 7 alternating runs.

use std::hint::black_box;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use torchfit_engine::plugins::Library;
use torchfit_engine::Registry;
use torchfit_sdk::ffi::ext::DynCallbackExt;
use torchfit_sdk::ffi::{ComponentFfi, DynCallback, KindFfi};
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

    let lib_path =
        std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.join("libtorchfit_testplugin_faulty.so")));
    let lib = lib_path.filter(|p| p.exists()).map(|p| Library::load(&p).expect("load the test plugin"));
    let ctx = BuildContext { n_outputs: 2, ..torchfit_sdk::testing::context("noop") };
    let config = serde_json::json!({"hook": "none"});
    let mut paths: Vec<(&str, Box<dyn Callback>)> = vec![
        ("direct dyn Callback (builtin)", Box::new(Noop)),
        ("ABI adapters, same image, SDK 1.0 interface", Box::new(DynCallback::wrap(Noop))),
        ("ABI adapters, same image, SDK 1.1 interface", Box::new(DynCallbackExt::wrap(Box::new(Noop)))),
    ];
    if let Some(lib) = &lib {
        // The 1.0 interface, as a 1.0 plugin is built (through the library's 1.0 root).
        let built = (lib.root().build())(
            KindFfi::Callback,
            "faulty".into(),
            config.to_string().as_str().into(),
            &(&ctx).into(),
        );
        match built.into_result() {
            Ok(ComponentFfi::Callback(c)) => {
                paths.push(("loaded from a plugin .so, SDK 1.0 interface", Box::new(DynCallback::new(c))))
            }
            _ => panic!("the test plugin builds its callback"),
        }
        let mut r = Registry::default();
        r.add_library(lib).unwrap();
        paths.push(("loaded from a plugin .so, SDK 1.1 interface", r.callback("faulty", &config, &ctx).unwrap()));
    }

    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..7 {
        for ((_, cb), times) in paths.iter_mut().zip(&mut runs) {
            times.push(ns_per_call(cb.as_mut(), &mut host, &out));
        }
    }
    let medians: Vec<f64> = runs.into_iter().map(median).collect();
    println!("hook dispatch, on_batch_end, median of 7 runs of {CALLS} calls");
    println!("{:<48} {:>10} {:>8}", "path", "ns/call", "ratio");
    for ((name, _), m) in paths.iter().zip(&medians) {
        println!("{name:<48} {m:>10.1} {:>8.2}", m / medians[0]);
    }
    if lib.is_none() {
        println!("(build torchfit-testplugin-faulty --release to measure the loaded paths)");
    }
}
