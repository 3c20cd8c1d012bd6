//! Gives every binary and test executable of the package an rpath to libtorch's `lib/` folder,
//! which torch-sys (a direct dependency, so that `DEP_TCH_LIBTORCH_LIB` is set) reports, and
//! records the libtorch version the crate is built against (`TORCHFIT_TORCH_VERSION`); for the
//! SDK, it also tells crates that depend on it where libtorch is (`DEP_TORCHFIT_SDK_LIBTORCH_LIB`).
//! Every crate of the workspace that links libtorch uses this script (`build = "../sdk/build.rs"`).
pub fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib folder; run `bash .cargo/setup.sh` first");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=TORCHFIT_LIBTORCH_LIB={lib}");
    // For the SDK itself (`links = "torchfit_sdk"`): crates that depend on it read the folder as
    // DEP_TORCHFIT_SDK_LIBTORCH_LIB.
    if std::env::var_os("CARGO_MANIFEST_LINKS").is_some() {
        println!("cargo:libtorch_lib={lib}");
    }
    // PyPI's torch has torch/version.py (`__version__ = '2.11.0+cu130'`); a plain libtorch
    // download has build-version. The local part (+cu130, +cpu) does not change the C++ ABI.
    let root = std::path::Path::new(&lib).parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let from_py = std::fs::read_to_string(root.join("version.py")).ok().and_then(|t| {
        t.lines().find_map(|l| {
            l.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_owned())
        })
    });
    let version = from_py
        .or_else(|| std::fs::read_to_string(root.join("build-version")).ok())
        .unwrap_or_else(|| "unknown".into());
    let version = version.trim().split('+').next().unwrap_or("unknown").to_owned();
    println!("cargo:rustc-env=TORCHFIT_TORCH_VERSION={version}");
    println!("cargo:rerun-if-changed={}", root.join("version.py").display());
}
