//! Compiles `cpp/shim.cpp` against the wheel's headers (`../build/libtorch.rs`).
//! `USE_C10D_GLOO` makes `ProcessGroupGloo.hpp` declare the class; `cpp/gloo-stubs` stands in
//! for the gloo headers the wheel does not ship (see its README).
#[path = "../build/libtorch.rs"]
mod libtorch;

fn main() {
    libtorch::compile_shim("cpp/shim.cpp", "torchfit_c10d_shim", |b| {
        b.define("GLOG_USE_GLOG_EXPORT", None).define("USE_C10D_GLOO", None).include("cpp/gloo-stubs");
    });
    println!("cargo:rerun-if-changed=cpp");
}
