//! Gives the fuzz targets a run-time path to libtorch, which the SDK reports.
fn main() {
    let lib = std::env::var("DEP_TORCHFIT_SDK_LIBTORCH_LIB")
        .expect("torchfit-sdk reports libtorch's folder; run `bash .cargo/setup.sh` first");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
