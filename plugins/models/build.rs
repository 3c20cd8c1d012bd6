//! The SDK's build script (an rpath to libtorch, the libtorch version), then `cpp/jit_buffers.cpp` and
//! `cpp/guided_relu.cpp` compiled against the headers of the libtorch torch-sys links (a PyPI torch wheel).
#[path = "../../sdk/build.rs"]
mod sdk;

fn main() {
    sdk::main();
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    let include = std::path::Path::new(&lib).parent().expect("libtorch's lib folder has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .file("cpp/jit_buffers.cpp")
        .file("cpp/guided_relu.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 path"))
        .flag("-isystem")
        .flag(include.join("torch/csrc/api/include").to_str().expect("utf-8 path"))
        .warnings(false)
        .compile("torchfit_models_jit");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rerun-if-changed=cpp");
}
