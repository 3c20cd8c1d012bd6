//! The Rust side of `engine/c10d/cpp/guard.hpp`, shared by the crates with a C++ shim over
//! libtorch (`torchfit-c10d`, `torchfit-amp`, `torchfit-kernels`, included with `#[path]`): a
//! shim function answers NULL, or a message it allocated for the caller to free; each crate
//! re-exports [`Error`] and [`Result`] as its own.

use std::ffi::{c_char, CStr};

/// A failure reported by libtorch (its message, without C++ frames).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// `Ok` for a NULL answer `e`, else its message as an [`Error`] (freed with the shim's `free`).
pub fn check(e: *mut c_char, free: unsafe extern "C" fn(*mut c_char)) -> Result<()> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null answer is a NUL-terminated string the shim allocated for us to free.
    let message = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    // SAFETY: freed once, with the shim's allocator.
    unsafe { free(e) };
    Err(Error(message))
}
