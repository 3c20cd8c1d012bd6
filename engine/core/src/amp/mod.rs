//! Mixed precision (Lightning's `precision`): [`Precision`] says how a training step's
//! arithmetic runs, [`GradScaler`] keeps `16-mixed` gradients from underflowing.
//!
//! Under `bf16-mixed` and `16-mixed` the training forward and the loss run inside torch's
//! autocast for the run's device type (CPU or CUDA), in bfloat16 or float16 where autocast's
//! tables say so (matrix products and convolutions; reductions and losses stay in float32).
//! Parameters, gradients and the optimizer stay in float32; backward runs outside autocast.
//! Validation and prediction run in full precision. Under `16-mixed` the loss is multiplied
//! by the scaler's scale before backward and the gradients are unscaled before
//! `on_grad_computed`, so clipping and callbacks see true gradients; an optimizer step whose
//! gradients hold an inf or a NaN is skipped and the scale backs off ([`GradScaler`]).
//! Both use torch's own machinery (autocast and the scaler's ATen kernels, through
//! `torchfit-amp`).

mod grad_scaler;

pub use grad_scaler::{GradScaler, ScalerConfig};
pub use torchfit_sdk::ScalerState;

use crate::Result;
use serde::Deserialize;
use tch::{Device, Kind};
use torchfit_amp::Autocast;

/// How a training step's arithmetic runs, by Lightning's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "PrecisionName")]
pub enum Precision {
    /// `"32"` (also `32` or `"32-true"`): float32 throughout.
    #[default]
    Full,
    /// `"bf16-mixed"`: forward and loss under autocast in bfloat16 (CPU and CUDA).
    Bf16Mixed,
    /// `"16-mixed"`: forward and loss under autocast in float16, the loss scaled by a
    /// [`GradScaler`].
    F16Mixed,
}

/// `precision` as written: a string, or the number 32.
#[derive(Deserialize)]
#[serde(untagged)]
enum PrecisionName {
    Number(i64),
    Text(String),
}

impl TryFrom<PrecisionName> for Precision {
    type Error = String;
    fn try_from(name: PrecisionName) -> std::result::Result<Self, String> {
        match name {
            PrecisionName::Number(32) => Ok(Precision::Full),
            PrecisionName::Text(t) if t == "32" || t == "32-true" => Ok(Precision::Full),
            PrecisionName::Text(t) if t == "bf16-mixed" => Ok(Precision::Bf16Mixed),
            PrecisionName::Text(t) if t == "16-mixed" => Ok(Precision::F16Mixed),
            PrecisionName::Number(n) => {
                Err(format!("unknown precision {n}: expected \"32\", \"bf16-mixed\" or \"16-mixed\""))
            }
            PrecisionName::Text(t) => {
                Err(format!("unknown precision {t:?}: expected \"32\", \"bf16-mixed\" or \"16-mixed\""))
            }
        }
    }
}

impl Precision {
    /// The dtype autocast runs in, `None` in full precision.
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Precision::Full => None,
            Precision::Bf16Mixed => Some(Kind::BFloat16),
            Precision::F16Mixed => Some(Kind::Half),
        }
    }

    /// Autocast on for `device` while the returned region lives (nothing in full precision).
    pub fn autocast(self, device: Device) -> Result<Option<Autocast>> {
        self.autocast_kind()
            .map(|kind| Autocast::enter(device, kind).map_err(|e| crate::Error::Data(format!("precision: {e}"))))
            .transpose()
    }

    /// Whether the loss is scaled ([`GradScaler`]).
    pub fn scales_loss(self) -> bool {
        self == Precision::F16Mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Precision, String> {
        #[derive(Deserialize)]
        struct T {
            precision: Precision,
        }
        toml::from_str::<T>(&format!("precision = {text}")).map(|t| t.precision).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn lightnings_names_are_read_and_others_refused() {
        assert_eq!(parse("32"), Ok(Precision::Full));
        assert_eq!(parse("\"32\""), Ok(Precision::Full));
        assert_eq!(parse("\"32-true\""), Ok(Precision::Full));
        assert_eq!(parse("\"bf16-mixed\""), Ok(Precision::Bf16Mixed));
        assert_eq!(parse("\"16-mixed\""), Ok(Precision::F16Mixed));
        assert!(parse("16").unwrap_err().contains("expected \"32\", \"bf16-mixed\" or \"16-mixed\""));
        assert!(parse("\"fp8\"").unwrap_err().contains("unknown precision \"fp8\""));
    }

    #[test]
    fn a_bf16_forward_runs_in_bf16_and_full_precision_opens_no_region() {
        let (a, b) = (Tensor::ones([2, 2], tch::kind::FLOAT_CPU), Tensor::ones([2, 2], tch::kind::FLOAT_CPU));
        {
            let _region = Precision::Bf16Mixed.autocast(Device::Cpu).unwrap();
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        assert!(Precision::Full.autocast(Device::Cpu).unwrap().is_none());
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    use tch::Tensor;
}
