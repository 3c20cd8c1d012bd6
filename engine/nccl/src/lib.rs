//! NCCL for torchfit's data-parallel jobs: PyTorch's `ProcessGroupNCCL`, created by one C
//! function that `torchfit-c10d` finds at run time in `libtorchfit_nccl.so` (beside the
//! `torchfit` binary, or at `TORCHFIT_NCCL_LIBRARY`). It is a library of its own because it
//! links libtorch_cuda, which every torchfit process would otherwise load at start.
//!
//! Built without NCCL (a CPU build of torch, or the CUDA header wheels missing, see `build.rs`),
//! the function returns the reason instead of a group.

use std::ffi::{c_char, c_int, c_void};

#[cfg(torchfit_nccl)]
extern "C" {
    fn tf_nccl_backend(
        store: *const c_void,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// Makes `device` the current CUDA device and creates an NCCL backend of `size` ranks, this one
/// `rank`, rendezvousing in `store`. Returns NULL and the backend in `*out`, or a message
/// allocated with `malloc`.
///
/// # Safety
/// `store` points to a live `c10::intrusive_ptr<c10d::Store>`, `out` to writable memory; the
/// caller owns the returned `c10d::Backend*` (one reference) or frees the message with `free`.
#[no_mangle]
pub unsafe extern "C" fn torchfit_nccl_backend(
    store: *const c_void,
    rank: c_int,
    size: c_int,
    timeout_ms: i64,
    device: c_int,
    out: *mut *mut c_void,
) -> *mut c_char {
    #[cfg(torchfit_nccl)]
    {
        // SAFETY: the caller's contract is the C function's.
        unsafe { tf_nccl_backend(store, rank, size, timeout_ms, device, out) }
    }
    #[cfg(not(torchfit_nccl))]
    {
        let _ = (store, rank, size, timeout_ms, device, out);
        let why = concat!(env!("TORCHFIT_NCCL_MISSING"), "\0");
        // SAFETY: a NUL-terminated static string; strdup allocates with malloc.
        unsafe { libc::strdup(why.as_ptr().cast()) }
    }
}

/// Whether this library was built with NCCL.
#[no_mangle]
pub extern "C" fn torchfit_nccl_built() -> c_int {
    cfg!(torchfit_nccl) as c_int
}
