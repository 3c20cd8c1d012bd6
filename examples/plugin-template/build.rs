//! Gives the plugin's test executables a run-time path to libtorch, which the SDK reports, so
//! that `cargo test` finds `libtorch_cpu.so`. (The plugin library itself needs none: loaded by
//! `torchfit`, it uses the host's libtorch.)
fn main() {
    let lib = std::env::var("DEP_TORCHFIT_SDK_LIBTORCH_LIB")
        .expect("torchfit-sdk reports libtorch's folder; set LIBTORCH (see README.md)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
