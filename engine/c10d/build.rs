//! Compiles `cpp/shim.cpp` against the headers of the libtorch that torch-sys links (a PyPI
//! torch wheel: `<torch>/include`, `<torch>/lib`) and links it with `torch_cpu` and `c10`.
//! `USE_C10D_GLOO` makes `ProcessGroupGloo.hpp` declare the class; `cpp/gloo-stubs` stands in
//! for the gloo headers the wheel does not ship (see its README).
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    let root = std::path::Path::new(&lib).parent().expect("libtorch's lib folder has a parent").to_path_buf();
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("cpp/shim.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .include("cpp/gloo-stubs")
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 path"))
        .flag("-isystem")
        .flag(include.join("torch/csrc/api/include").to_str().expect("utf-8 path"))
        .warnings(false)
        .compile("torchfit_c10d_shim");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rerun-if-changed=cpp");
}
