//! Device selection, including the one step tch leaves out: loading `libtorch_cuda.so`.
//!
//! The linker drops `libtorch_cuda.so` from the binary's needed libraries (nothing references
//! its symbols directly), and without it libtorch reports no CUDA. Asking for `cuda` or `auto`
//! loads it first: from the library search path (`LD_LIBRARY_PATH`, the binary's rpath), then
//! from the libtorch folder the engine was built against.

use crate::{Error, Result};
use std::sync::OnceLock;
use tch::Device;

/// A parsed `device` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device `n`.
    Cuda(usize),
    /// CUDA device 0 when available, else the CPU.
    Auto,
}

/// Parses `cpu`, `cuda`, `cuda:N` or `auto`.
pub fn parse(text: &str) -> std::result::Result<DeviceSpec, String> {
    match text {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        "auto" => Ok(DeviceSpec::Auto),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("unknown device {other:?}; expected cpu, cuda, cuda:N or auto")),
    }
}

/// Loads libtorch's CUDA library once; whether CUDA can be used afterwards.
pub fn cuda_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let candidates = [
            std::path::PathBuf::from("libtorch_cuda.so"),
            std::path::Path::new(env!("TORCHFIT_LIBTORCH_LIB")).join("libtorch_cuda.so"),
        ];
        for path in candidates {
            // SAFETY: loading libtorch's own CUDA library runs its static initializers, which
            // register the CUDA backend with the libtorch already loaded; nothing else runs.
            let lib = unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            };
            match lib {
                Ok(lib) => {
                    std::mem::forget(lib); // never unloaded: libtorch keeps pointers into it
                    log::debug!("loaded {}", path.display());
                    break;
                }
                Err(e) => log::debug!("cannot load {}: {e}", path.display()),
            }
        }
        tch::Cuda::is_available()
    })
}

/// The device to run on.
pub fn resolve(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
        DeviceSpec::Cuda(n) => {
            if !cuda_available() {
                return Err(Error::Device(
                    "CUDA was requested but is not available (no GPU, no driver, or libtorch_cuda.so not found)".into(),
                ));
            }
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                return Err(Error::Device(format!("cuda:{n} requested but only {count} CUDA device(s) present")));
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// Makes the context of the device `setting` names ahead of its first use (a CUDA context takes
/// a moment): start-up that a fit's clock should not count. Nothing happens on the CPU, or for a
/// setting that does not resolve (the fit itself reports that).
pub fn warm_up(setting: &str) {
    if let Ok(device @ Device::Cuda(_)) = parse(setting).map_err(Error::Device).and_then(resolve) {
        let _context = tch::Tensor::f_zeros([1], (tch::Kind::Float, device));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(parse("cuda:1"), Ok(DeviceSpec::Cuda(1)));
        assert_eq!(parse("auto"), Ok(DeviceSpec::Auto));
        assert!(parse("gpu").is_err());
        assert!(parse("cuda:x").is_err());
    }

    #[test]
    fn auto_falls_back_to_the_cpu_only_without_cuda() {
        let d = resolve(DeviceSpec::Auto).unwrap();
        assert_eq!(d == Device::Cpu, !cuda_available());
    }

    #[test]
    fn cuda_is_used_when_a_gpu_is_present() {
        if !cuda_available() {
            eprintln!("SKIP cuda_is_used_when_a_gpu_is_present: no CUDA device on this machine");
            return;
        }
        let d = resolve(DeviceSpec::Cuda(0)).unwrap();
        let t = tch::Tensor::ones([2], (tch::Kind::Float, d));
        assert!(t.device().is_cuda());
    }
}
