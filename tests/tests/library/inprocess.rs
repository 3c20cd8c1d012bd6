//! A plugin crate linked as an rlib registers its components with `inventory`: the library API
//! finds them in-process, without loading anything.

use custom_callback as _; // linking the crate is what registers its components
use torchfit::registry::{Origin, Registry};
use torchfit_sdk::ComponentKind;

#[test]
fn a_linked_plugin_crate_is_found_in_process() {
    let r = Registry::builtin();
    let c = r.components().iter().find(|c| c.name == "grad_norm").expect("grad_norm registered in-process");
    assert_eq!(c.kind, ComponentKind::Callback);
    assert_eq!(c.origin, Origin::InProcess("custom-callback".into()));
}

#[test]
fn a_linked_callback_trains_with_the_library_api() {
    let _serial = torchfit_tests::serial();
    let x = tch::Tensor::randn([64, 4], (tch::Kind::Float, tch::Device::Cpu));
    let y = x.sum_dim_intlist(1, false, tch::Kind::Float).gt(0.0).to_kind(tch::Kind::Int64);
    let mut net = torchfit::classifier();
    net.set_params(&[("max_epochs", "2"), ("callbacks__print_log", "false"), ("callbacks__grad_norm__key", "gn")])
        .unwrap();
    net.fit(&x, &y).unwrap();
    assert!(net.history().last_f64("gn").unwrap() > 0.0);
}
