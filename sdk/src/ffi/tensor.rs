//! Tensors across the plugin boundary.
//!
//! A tensor crosses as a [`RawTensor`]: tch's heap `at::Tensor*`. The host and every plugin map
//! the same libtorch, so the pointer is valid on both sides; what must be agreed is who frees it.
//! Two ways cross, and safe SDK code only ever uses them through these functions:
//!
//! - **lent** ([`RawTensor::lend`] / [`RawTensor::borrow`]): the sender keeps ownership; the
//!   receiver gets a [`TensorRef`] that never frees and cannot outlive the call.
//! - **given** ([`RawTensor::give`] / [`RawTensor::take`]): ownership moves; the receiver takes
//!   it exactly once and the tensor is freed by the receiver's `Drop`.

use abi_stable::StableAbi;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use tch::Tensor;

/// An `at::Tensor*` in flight between the host and a plugin.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct RawTensor {
    ptr: *mut c_void,
}

impl RawTensor {
    /// Lends `t` for the duration of one call; the receiver must only [`RawTensor::borrow`] it.
    pub fn lend(t: &Tensor) -> Self {
        RawTensor { ptr: t.as_ptr() as *mut c_void }
    }

    /// Gives `t` away; the receiver must [`RawTensor::take`] it exactly once.
    pub fn give(t: Tensor) -> Self {
        let t = ManuallyDrop::new(t);
        RawTensor { ptr: t.as_ptr() as *mut c_void }
    }

    /// Borrows a lent tensor for the call it was lent to.
    ///
    /// # Safety
    /// `self` must come from [`RawTensor::lend`] on a tensor that outlives `'a`.
    pub unsafe fn borrow<'a>(self) -> TensorRef<'a> {
        // SAFETY: the pointer is a live `at::Tensor*` (caller's contract); ManuallyDrop keeps
        // this wrapper from freeing the lender's tensor.
        TensorRef {
            tensor: ManuallyDrop::new(unsafe { Tensor::from_ptr(self.ptr as *mut torch_sys::C_tensor) }),
            _lender: PhantomData,
        }
    }

    /// Takes ownership of a given tensor.
    ///
    /// # Safety
    /// `self` must come from [`RawTensor::give`] and be taken only once.
    pub unsafe fn take(self) -> Tensor {
        // SAFETY: ownership was released by `give` (caller's contract).
        unsafe { Tensor::from_ptr(self.ptr as *mut torch_sys::C_tensor) }
    }
}

/// A borrowed tensor that cannot outlive the call it was lent to and never frees it.
pub struct TensorRef<'a> {
    tensor: ManuallyDrop<Tensor>,
    _lender: PhantomData<&'a Tensor>,
}

impl Deref for TensorRef<'_> {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.tensor
    }
}

/// A named tensor (parameter, buffer, state entry) in flight.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NamedTensor {
    /// The name (`hidden.0.weight`).
    pub name: abi_stable::std_types::RString,
    /// The tensor, lent or given as the function's docs say.
    pub tensor: RawTensor,
}

impl NamedTensor {
    /// Gives every tensor of `list` away.
    pub fn give_all(list: Vec<(String, Tensor)>) -> abi_stable::std_types::RVec<NamedTensor> {
        list.into_iter().map(|(n, t)| NamedTensor { name: n.into(), tensor: RawTensor::give(t) }).collect()
    }

    /// Lends every tensor of `list`.
    pub fn lend_all(list: &[(String, Tensor)]) -> abi_stable::std_types::RVec<NamedTensor> {
        list.iter().map(|(n, t)| NamedTensor { name: n.as_str().into(), tensor: RawTensor::lend(t) }).collect()
    }

    /// Takes every tensor of a given list.
    ///
    /// # Safety
    /// Every tensor must have been given ([`NamedTensor::give_all`]) and not taken before.
    pub unsafe fn take_all(list: abi_stable::std_types::RVec<NamedTensor>) -> Vec<(String, Tensor)> {
        // SAFETY: forwarded contract.
        list.into_iter().map(|n| (n.name.into_string(), unsafe { n.tensor.take() })).collect()
    }

    /// Shallow, owned copies of every tensor of a lent list (the lender keeps the originals).
    ///
    /// # Safety
    /// Every tensor must have been lent and still be alive.
    pub unsafe fn copy_lent(list: &[NamedTensor]) -> Vec<(String, Tensor)> {
        // SAFETY: forwarded contract; shallow_clone bumps the refcount, so the copy owns a share.
        list.iter().map(|n| (n.name.to_string(), unsafe { n.tensor.borrow() }.shallow_clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn a_lent_tensor_is_still_alive_after_the_borrow_ends() {
        let t = Tensor::ones([3], (Kind::Float, Device::Cpu));
        let raw = RawTensor::lend(&t);
        {
            let b = unsafe { raw.borrow() };
            assert_eq!(b.size(), [3]);
        }
        assert_eq!(t.double_value(&[0]), 1.0);
    }

    #[test]
    fn a_given_tensor_is_owned_by_the_taker() {
        let raw = RawTensor::give(Tensor::from_slice(&[1f32, 2.0]));
        let t = unsafe { raw.take() };
        assert_eq!(t.double_value(&[1]), 2.0);
    }
}
