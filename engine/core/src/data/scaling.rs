//! `scaler`: per-feature scaling of the inputs, fitted on the training samples of each fit and
//! applied before the model wherever it runs (training, validation, prediction, a callback's
//! `Host::forward`): scikit-learn's `Pipeline(MinMaxScaler(), net)` or
//! `Pipeline(StandardScaler(), net)` (the skorch talk's), with their rules:
//!
//! - `"minmax"`: `(x - min) / (max - min)` per feature, a feature of one value shifted to 0;
//! - `"standard"`: `(x - mean) / std` per feature (`std` with `ddof = 0`), a constant feature
//!   centred only.
//!
//! A feature is one element of a sample (a column of a table, a pixel of an image). Fitting
//! reads the training samples once, as evaluation reads them (no augmentation); cross-validation
//! fits it anew on each fold's training part, as a pipeline does. Only the engine knows the
//! training split, so it fits the scaler, not the reader.

use super::{batches, for_each_batch};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::{DatasetReader, Stage};

/// The `scaler` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Inputs as the reader gives them.
    #[default]
    None,
    /// scikit-learn's `MinMaxScaler()`.
    Minmax,
    /// scikit-learn's `StandardScaler()`.
    Standard,
}

/// A fitted scaler: `x' = (x - offset) * scale`, both of a sample's shape.
#[derive(Debug)]
pub struct FeatureScaler {
    offset: Tensor,
    scale: Tensor,
}

impl FeatureScaler {
    /// Fits `scaling` on samples `indices` of `reader`, read in batches of `batch_size`; `None`
    /// for [`Scaling::None`].
    pub fn fit(
        scaling: Scaling,
        reader: &mut dyn DatasetReader,
        indices: &[i64],
        batch_size: usize,
    ) -> Result<Option<Self>> {
        if scaling == Scaling::None {
            return Ok(None);
        }
        let shape = reader.sample_shape();
        // Running statistics per feature, in float64: min and max, or count, mean and the sum of
        // squared deviations (combined batch by batch, Chan et al.'s rule).
        let mut stats: Option<(Tensor, Tensor)> = None;
        let mut count = 0i64;
        for_each_batch(reader, &batches(indices, batch_size, false, 0, 0), Stage::Eval, 0, |_, _, x, _| {
            if !x.is_floating_point() {
                return Err(Error::Data("`scaler` scales floating-point inputs; this reader gives integers".into()));
            }
            let x = x.f_to_kind(Kind::Double)?.f_flatten(1, -1)?;
            let n = x.size()[0];
            let batch = match scaling {
                Scaling::Minmax => (x.f_amin(0, false)?, x.f_amax(0, false)?),
                _ => {
                    let mean = x.f_mean_dim(0, false, Kind::Double)?;
                    (mean.shallow_clone(), x.f_sub(&mean)?.f_square()?.f_sum_dim_intlist(0, false, Kind::Double)?)
                }
            };
            stats = Some(match (stats.take(), scaling) {
                (None, _) => batch,
                (Some((lo, hi)), Scaling::Minmax) => (lo.f_minimum(&batch.0)?, hi.f_maximum(&batch.1)?),
                (Some((mean, m2)), _) => {
                    let total = (count + n) as f64;
                    let delta = batch.0.f_sub(&mean)?;
                    let mean = mean.f_add(&delta.f_mul_scalar(n as f64 / total)?)?;
                    let m2 =
                        m2.f_add(&batch.1)?.f_add(&delta.f_square()?.f_mul_scalar(count as f64 * n as f64 / total)?)?;
                    (mean, m2)
                }
            });
            count += n;
            Ok(ControlFlow::Continue(()))
        })?;
        let Some((a, b)) = stats else { return Err(Error::Data("`scaler` has no training samples to fit".into())) };
        let (offset, spread) = match scaling {
            Scaling::Minmax => (a.shallow_clone(), b.f_sub(&a)?),
            _ => (a, b.f_div_scalar(count as f64)?.f_sqrt()?),
        };
        // scikit-learn's `_handle_zeros_in_scale`: a spread of (nearly) zero divides by 1.
        let tiny = 10.0 * f64::EPSILON;
        let spread = spread.f_where_scalarother(&spread.f_abs()?.f_ge(tiny)?, 1.0)?;
        let scale = spread.f_reciprocal()?;
        let to_sample = |t: Tensor| -> Result<Tensor> { Ok(t.f_to_kind(Kind::Float)?.f_reshape(shape.as_slice())?) };
        Ok(Some(FeatureScaler { offset: to_sample(offset)?, scale: to_sample(scale)? }))
    }

    /// `x` (a batch of samples) scaled.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_sub(&self.offset)?.f_mul(&self.scale)?)
    }

    /// The scaler on `device`.
    pub fn to_device(&self, device: Device) -> Result<Self> {
        Ok(FeatureScaler { offset: self.offset.f_to_device(device)?, scale: self.scale.f_to_device(device)? })
    }

    /// Its tensors by name (`offset`, `scale`), as saved beside a model.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![("offset".into(), self.offset.shallow_clone()), ("scale".into(), self.scale.shallow_clone())]
    }

    /// A scaler from [`FeatureScaler::tensors`]; the error names what is missing or of the wrong
    /// shape against `sample_shape`.
    pub fn from_tensors(tensors: &[(String, Tensor)], sample_shape: &[i64]) -> std::result::Result<Self, String> {
        let get = |name: &str| -> std::result::Result<Tensor, String> {
            let t = tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or(format!("no `{name}` tensor"))?;
            if t.size().iter().product::<i64>() != sample_shape.iter().product::<i64>() {
                return Err(format!("`{name}` has shape {:?}, the samples {sample_shape:?}", t.size()));
            }
            Ok(t.to_kind(Kind::Float).reshape(sample_shape))
        };
        Ok(FeatureScaler { offset: get("offset")?, scale: get("scale")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::TensorDataset;

    /// Three features over five samples: a ramp, a constant, a spread with an outlier.
    fn data() -> TensorDataset {
        let x = Tensor::from_slice(&[0.0f32, 7.0, 1.0, 1.0, 7.0, 2.0, 2.0, 7.0, 3.0, 3.0, 7.0, 4.0, 4.0, 7.0, 100.0])
            .view([5, 3]);
        TensorDataset::new(&x, &Tensor::zeros([5], (Kind::Int64, Device::Cpu))).unwrap()
    }

    fn scaled(scaling: Scaling, fit_on: &[i64], batch_size: usize) -> Vec<f32> {
        let mut d = data();
        let s = FeatureScaler::fit(scaling, &mut d, fit_on, batch_size).unwrap().unwrap();
        let (x, _) = d.get(&[0, 1, 2, 3, 4]).unwrap();
        Vec::<f32>::try_from(s.apply(&x).unwrap().flatten(0, -1)).unwrap()
    }

    #[test]
    fn minmax_maps_the_training_range_to_0_1_and_shifts_a_constant_feature_to_0() {
        let got = scaled(Scaling::Minmax, &[0, 1, 2, 3, 4], 2);
        assert_eq!(&got[..3], &[0.0, 0.0, 0.0]);
        assert_eq!(&got[12..], &[1.0, 0.0, 1.0]);
        assert_eq!(got[3], 0.25);
    }

    #[test]
    fn standard_gives_mean_0_and_unit_population_std_whatever_the_batches() {
        for batch_size in [1, 2, 5] {
            let got = scaled(Scaling::Standard, &[0, 1, 2, 3, 4], batch_size);
            // The ramp 0..4: mean 2, population std sqrt(2).
            let expected = (0.0 - 2.0) / 2f32.sqrt();
            assert!((got[0] - expected).abs() < 1e-6, "{batch_size}: {got:?}");
            assert_eq!(got[1], 0.0, "a constant feature is centred only");
        }
    }

    #[test]
    fn only_the_samples_it_is_fitted_on_count() {
        let got = scaled(Scaling::Minmax, &[0, 1], 8);
        assert_eq!(got[12], 4.0, "the ramp's 4 against a fitted range of 0..1");
    }
}
