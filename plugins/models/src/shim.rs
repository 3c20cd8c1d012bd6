//! What the models' C++ shims (`cpp/`) share: each entry point returns null, or an error
//! message it allocated, which [`take_error`] reads and frees.

use std::ffi::{c_char, CStr};

extern "C" {
    fn torchfit_jit_free(message: *mut c_char);
}

/// `Ok` for a null `error`, else its message, freed.
///
/// # Safety
/// `error` is null or a message a shim entry point returned and nothing has freed.
pub(crate) unsafe fn take_error(error: *mut c_char) -> std::result::Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded contract; the message is freed once, here.
    let message = unsafe { CStr::from_ptr(error).to_string_lossy().into_owned() };
    unsafe { torchfit_jit_free(error) };
    Err(message)
}
