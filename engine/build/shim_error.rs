//! The Rust side of `engine/c10d/cpp/guard.hpp`, shared by the crates with a C++ shim over
//! libtorch (`torchfit-c10d`, `torchfit-amp`, `torchfit-kernels`, included with `#[path]`): a
//! shim function answers NULL, or a message it allocated for the caller to free.

use std::ffi::{c_char, CStr};

/// The message of answer `e` (freed with the shim's `free`), or `None` for NULL.
pub fn take(e: *mut c_char, free: unsafe extern "C" fn(*mut c_char)) -> Option<String> {
    if e.is_null() {
        return None;
    }
    // SAFETY: a non-null answer is a NUL-terminated string the shim allocated for us to free.
    let message = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    // SAFETY: freed once, with the shim's allocator.
    unsafe { free(e) };
    Some(message)
}
