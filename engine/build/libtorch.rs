//! Shared by the build scripts of the crates with a C++ shim over libtorch (`torchfit-c10d`,
//! `torchfit-amp`, `torchfit-kernels`, included with `#[path]`): the shim compiled against the headers of the
//! libtorch that torch-sys links (a PyPI torch wheel: `<torch>/include`, `<torch>/lib`), and
//! the lines that link it with `torch_cpu` and `c10` and find them at run time.

/// Compiles `file` into the static library `name`, after `configure` added the crate's own
/// defines and include folders.
pub fn compile_shim(file: &str, name: &str, configure: impl FnOnce(&mut cc::Build)) {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    let root = std::path::Path::new(&lib).parent().expect("libtorch's lib folder has a parent").to_path_buf();
    let include = root.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(file)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 path"))
        .flag("-isystem")
        .flag(include.join("torch/csrc/api/include").to_str().expect("utf-8 path"))
        .warnings(false);
    configure(&mut build);
    build.compile(name);
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rerun-if-changed=../build/libtorch.rs");
}
