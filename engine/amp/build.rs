//! Compiles `cpp/amp.cpp` against the headers of the libtorch that torch-sys links (a PyPI torch
//! wheel: `<torch>/include`, `<torch>/lib`) and links it with `torch_cpu` and `c10`.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    let root = std::path::Path::new(&lib).parent().expect("libtorch's lib folder has a parent").to_path_buf();
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("cpp/amp.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include("../c10d/cpp")
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 path"))
        .flag("-isystem")
        .flag(include.join("torch/csrc/api/include").to_str().expect("utf-8 path"))
        .warnings(false)
        .compile("torchfit_amp_shim");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=../c10d/cpp/guard.hpp");
}
