//! Compiles `cpp/nccl.cpp` with `USE_C10D_NCCL` against the headers of the libtorch that
//! torch-sys links (a CUDA build of the PyPI torch wheel) and links it with `torch_cuda`. It
//! needs `nccl.h` (the `nvidia-nccl` wheel torch pulls) and two CUDA header wheels torch does not
//! pull, `nvidia-cuda-crt` and `nvidia-cuda-cccl` (`.cargo/setup.sh` installs them). Where any of
//! that is missing (a CPU build of torch), the library is built without NCCL and says why when
//! asked for a group.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-check-cfg=cfg(torchfit_nccl)");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=../c10d/cpp/guard.hpp");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first"),
    );
    // The wheel's own folder (`.venv/torch` is a link to it), beside the nvidia-* wheels.
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let torch = lib.parent().expect("libtorch's lib folder has a parent").to_path_buf();
    let site = torch.parent().expect("torch's folder has a parent").to_path_buf();
    let (cuda, nccl) = (site.join("nvidia/cu13/include"), site.join("nvidia/nccl/include"));
    let needed: [(PathBuf, &str); 4] = [
        (lib.join("libtorch_cuda.so"), "a CUDA build of torch"),
        (nccl.join("nccl.h"), "the nvidia-nccl wheel"),
        (cuda.join("crt/host_defines.h"), "the nvidia-cuda-crt wheel"),
        (cuda.join("cccl/cuda/std/version"), "the nvidia-cuda-cccl wheel"),
    ];
    if let Some((path, what)) = needed.iter().find(|(p, _)| !p.exists()) {
        let why = format!("this torchfit was built without NCCL: {} is missing ({what})", path.display());
        println!("cargo:warning={why}");
        println!("cargo:rustc-env=TORCHFIT_NCCL_MISSING={why}");
        return;
    }
    let include = torch.join("include");
    let isystem = |b: &mut cc::Build, p: &Path| {
        b.flag("-isystem").flag(p.to_str().expect("utf-8 path"));
    };
    let mut build = cc::Build::new();
    // torchfit-c10d's error guard, shared with its shim.
    build.cpp(true).file("cpp/nccl.cpp").std("c++17").include("../c10d/cpp");
    build.define("_GLIBCXX_USE_CXX11_ABI", "1").define("GLOG_USE_GLOG_EXPORT", None).define("USE_C10D_NCCL", None);
    for p in [include.clone(), include.join("torch/csrc/api/include"), cuda.join("cccl"), cuda, nccl] {
        isystem(&mut build, &p);
    }
    build.warnings(false).compile("torchfit_nccl_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    for l in ["torch_cuda", "c10_cuda", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-cfg=torchfit_nccl");
    println!("cargo:rustc-env=TORCHFIT_NCCL_MISSING=");
}
