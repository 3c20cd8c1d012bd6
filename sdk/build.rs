//! Gives every binary and test executable of the package an rpath to libtorch's `lib/` folder,
//! which torch-sys (a direct dependency, so that `DEP_TCH_LIBTORCH_LIB` is set) reports.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=TORCHFIT_LIBTORCH_LIB={lib}");
}
