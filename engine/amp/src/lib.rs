//! PyTorch's automatic mixed precision from Rust, taken from the libtorch that tch links:
//!
//! - [`Autocast`]: a region of this thread in which ops on one device type run in a lower
//!   precision where autocast's tables say so (`torch.autocast(device_type, dtype)`): tch's own
//!   `autocast` covers CUDA with float16 only;
//! - [`unscale`]: `torch._amp_foreach_non_finite_check_and_unscale_`, the kernel
//!   `torch.amp.GradScaler.unscale_` runs (tch binds `_amp_update_scale_`, the other one).
//!
//! Nothing here re-implements a numeric rule: a C++ shim (`cpp/amp.cpp`, built by `build.rs`
//! against the wheel's headers) forwards to libtorch and turns its exceptions into [`Error`]s.

use std::ffi::{c_char, c_int};
use tch::{Device, Kind, Tensor};

#[path = "../../build/shim_error.rs"]
mod shim_error;
pub use shim_error::{Error, Result};

type CTensor = torch_sys::C_tensor;

extern "C" {
    fn tf_amp_free_error(e: *mut c_char);
    fn tf_amp_autocast_state(device_type: c_int, enabled: *mut c_int, dtype: *mut c_int) -> *mut c_char;
    fn tf_amp_autocast_set(device_type: c_int, enabled: c_int, dtype: c_int, enter: c_int) -> *mut c_char;
    fn tf_amp_unscale(
        grads: *const *mut CTensor,
        n: usize,
        found_inf: *mut CTensor,
        inv_scale: *const CTensor,
    ) -> *mut c_char;
}

fn check(e: *mut c_char) -> Result<()> {
    shim_error::check(e, tf_amp_free_error)
}

/// c10's `DeviceType` of `device`.
fn device_type(device: Device) -> c_int {
    match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        Device::Mps => 13,
        Device::Vulkan => 10,
    }
}

/// The reduced precisions autocast runs in, as c10's `ScalarType`.
fn scalar_type(kind: Kind) -> Result<c_int> {
    match kind {
        Kind::Half => Ok(5),
        Kind::BFloat16 => Ok(15),
        other => Err(Error(format!("autocast runs in float16 or bfloat16, not {other:?}"))),
    }
}

/// An autocast region on this thread: ops on its device type run in its dtype where autocast's
/// tables say so, until it is dropped (the state before it is restored; leaving the outermost
/// region clears the cache of casted weights, as `torch.autocast.__exit__` does). Regions nest.
/// Like PyTorch's, it belongs around forward and loss; backward runs outside it.
#[must_use = "autocast is on only while the region lives"]
pub struct Autocast {
    device_type: c_int,
    before: (c_int, c_int),
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Autocast {
    /// Turns autocast on for `device`'s type in `kind` (`Kind::BFloat16` or `Kind::Half`).
    pub fn enter(device: Device, kind: Kind) -> Result<Self> {
        let (device_type, dtype) = (device_type(device), scalar_type(kind)?);
        let (mut enabled, mut before) = (0, 0);
        // SAFETY: out-pointers to locals.
        check(unsafe { tf_amp_autocast_state(device_type, &mut enabled, &mut before) })?;
        // SAFETY: plain values.
        check(unsafe { tf_amp_autocast_set(device_type, 1, dtype, 1) })?;
        Ok(Self { device_type, before: (enabled, before), _not_send: std::marker::PhantomData })
    }

    /// Whether autocast is on for `device`'s type in this thread, and in which dtype.
    pub fn state(device: Device) -> Result<(bool, Kind)> {
        let (mut enabled, mut dtype) = (0, 0);
        // SAFETY: out-pointers to locals.
        check(unsafe { tf_amp_autocast_state(device_type(device), &mut enabled, &mut dtype) })?;
        let kind = match dtype {
            5 => Kind::Half,
            15 => Kind::BFloat16,
            6 => Kind::Float,
            _ => Kind::Float,
        };
        Ok((enabled != 0, kind))
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let (enabled, dtype) = self.before;
        // SAFETY: plain values. Restoring a state libtorch reported cannot fail; were it to,
        // there is no caller to tell from a destructor.
        let _ = check(unsafe { tf_amp_autocast_set(self.device_type, enabled, dtype, 0) });
    }
}

/// Multiplies every gradient in `grads` by `inv_scale` in place and sets `found_inf` to 1 when
/// any of their elements is inf or NaN (`torch._amp_foreach_non_finite_check_and_unscale_`).
/// All tensors are on one device, `grads` of one floating dtype; `found_inf` and `inv_scale`
/// are one-element float32 tensors.
pub fn unscale(grads: &[&Tensor], found_inf: &mut Tensor, inv_scale: &Tensor) -> Result<()> {
    let handles: Vec<*mut CTensor> = grads.iter().map(|t| t.as_ptr() as *mut CTensor).collect();
    // SAFETY: live tensors borrowed for the call; the kernel writes into the gradients' and
    // `found_inf`'s storage, which the borrows allow (`found_inf` exclusively).
    check(unsafe { tf_amp_unscale(handles.as_ptr(), handles.len(), found_inf.as_mut_ptr(), inv_scale.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matmul_in_a_bf16_region_runs_in_bf16_and_in_float_after_it() {
        let (a, b) =
            (Tensor::ones([4, 4], (Kind::Float, Device::Cpu)), Tensor::ones([4, 4], (Kind::Float, Device::Cpu)));
        {
            let _region = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            assert_eq!(Autocast::state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        assert!(!Autocast::state(Device::Cpu).unwrap().0);
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn unscaling_divides_by_the_scale_and_flags_an_inf() {
        let g1 = Tensor::from_slice(&[2.0f32, 4.0]);
        let g2 = Tensor::from_slice(&[8.0f32]);
        let mut found = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let inv = Tensor::from_slice(&[0.5f32]);
        unscale(&[&g1, &g2], &mut found, &inv).unwrap();
        assert_eq!(Vec::<f32>::try_from(&g1).unwrap(), [1.0, 2.0]);
        assert_eq!(Vec::<f32>::try_from(&g2).unwrap(), [4.0]);
        assert_eq!(found.double_value(&[0]), 0.0);
        let g3 = Tensor::from_slice(&[f32::INFINITY]);
        unscale(&[&g3], &mut found, &inv).unwrap();
        assert_eq!(found.double_value(&[0]), 1.0);
    }
}
