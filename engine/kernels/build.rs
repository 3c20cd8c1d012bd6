//! Compiles `cpp/kernels.cpp` against the wheel's headers (`../build/libtorch.rs`); it shares
//! torchfit-c10d's `guard.hpp`.
#[path = "../build/libtorch.rs"]
mod libtorch;

fn main() {
    libtorch::compile_shim("cpp/kernels.cpp", "torchfit_kernels_shim", |b| {
        b.include("../c10d/cpp");
    });
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=../c10d/cpp/guard.hpp");
}
