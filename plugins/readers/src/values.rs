//! What the array readers (`idx`, `npy`, `npz`) do to the values they read: scale, normalize,
//! reshape, limit and check, configured by the same six keys.

use serde::Deserialize;
use torchfit_sdk::{Error, Result};

/// The keys `scale`, `mean`, `std`, `shape`, `limit` and `allow_non_finite`.
#[derive(Debug, Clone, Deserialize)]
pub struct Values {
    /// Divisor of the raw values; each reader has its own default (`idx`: 255, NumPy: 1).
    pub scale: Option<f64>,
    /// Subtracted after scaling.
    #[serde(default)]
    pub mean: f64,
    /// Divisor after subtracting the mean.
    #[serde(default = "one")]
    pub std: f64,
    /// Per-sample shape; the array's when empty.
    #[serde(default)]
    pub shape: Vec<i64>,
    /// Only the first samples.
    pub limit: Option<usize>,
    /// Keep NaN and infinite values (inputs after scaling, and floating targets); by default
    /// they are an error naming the file and the sample.
    #[serde(default)]
    pub allow_non_finite: bool,
}

fn one() -> f64 {
    1.0
}

/// [`Values`] checked against an array: `x -> (x / scale - mean) / std` as one multiply-add,
/// the per-sample shape and the number of samples used.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    a: f64,
    b: f64,
    /// Shape of one sample.
    pub shape: Vec<i64>,
    /// Samples used (the array's, or `limit` when smaller).
    pub len: usize,
    /// Whether non-finite values are refused ([`Values::allow_non_finite`] unset).
    pub finite_only: bool,
}

impl Values {
    /// Checks these settings against an array of `dims` (samples first), with `default_scale`
    /// when `scale` is not given. Zero `scale` or `std`, and a `shape` that does not hold a
    /// sample's values, are config errors naming the key.
    pub fn layout(&self, default_scale: f64, dims: &[usize]) -> Result<Layout> {
        let scale = self.scale.unwrap_or(default_scale);
        if self.std == 0.0 || scale == 0.0 {
            return Err(Error::config(if self.std == 0.0 { "std" } else { "scale" }, "must not be 0"));
        }
        let sample: usize = dims[1..].iter().product();
        let shape =
            if self.shape.is_empty() { dims[1..].iter().map(|&d| d as i64).collect() } else { self.shape.clone() };
        if shape.iter().product::<i64>() != sample as i64 {
            return Err(Error::config("shape", format!("{shape:?} does not hold the {sample} values of a sample")));
        }
        let len = self.limit.map_or(dims[0], |l| l.min(dims[0]));
        Ok(Layout {
            a: 1.0 / (scale * self.std),
            b: self.mean / self.std,
            shape,
            len,
            finite_only: !self.allow_non_finite,
        })
    }
}

impl Layout {
    /// A raw value, scaled and normalized.
    pub fn value(&self, raw: f64) -> f32 {
        (raw * self.a - self.b) as f32
    }

    /// The first sample of `values` (samples of `sample` values each, for `indices`) that
    /// holds a non-finite value, as an error naming `path`, when such values are refused.
    pub fn check_finite(&self, path: &std::path::Path, indices: &[i64], values: &[f32], sample: usize) -> Result<()> {
        if !self.finite_only {
            return Ok(());
        }
        match values
            .chunks(sample.max(1))
            .zip(indices)
            .find_map(|(s, &i)| Some((i, s.iter().find(|v| !v.is_finite())?)))
        {
            None => Ok(()),
            Some((i, v)) => Err(non_finite(path, &format!("sample {i}"), *v as f64)),
        }
    }

    /// [`Layout::value`] of every byte.
    fn byte_table(&self) -> [f32; 256] {
        std::array::from_fn(|b| self.value(b as f64))
    }

    /// How a reader of unsigned bytes computes [`Layout::value`] in its batch loop: a division
    /// in `f32` where that gives every byte's value exactly (a scale without `mean` and `std`,
    /// such as the `idx` default of 255), a lookup in a table of the 256 values otherwise.
    pub fn byte_conversion(&self) -> ByteConversion {
        let table = self.byte_table();
        let divisor = (1.0 / self.a) as f32;
        if (0..=255u8).all(|b| (b as f32 / divisor).to_bits() == table[b as usize].to_bits()) {
            ByteConversion::Divide(divisor)
        } else {
            ByteConversion::Table(Box::new(table))
        }
    }
}

/// The error for a non-finite value at `place` (a sample, a row) of `path`.
pub fn non_finite(path: &std::path::Path, place: &str, value: f64) -> Error {
    Error::data(format!(
        "{}: {place} holds a non-finite value ({value}); set allow_non_finite = true to keep such values",
        path.display()
    ))
}

/// Bytes to values, with the same bits as [`Layout::value`] (see [`Layout::byte_conversion`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ByteConversion {
    /// `byte as f32 / divisor`, which the compiler vectorizes.
    Divide(f32),
    /// The value of each byte, looked up.
    Table(Box<[f32; 256]>),
}

impl ByteConversion {
    /// Writes the value of each of `bytes` into `out`, which must be as long.
    pub fn convert(&self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len());
        match self {
            ByteConversion::Divide(d) => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = b as f32 / d),
            ByteConversion::Table(t) => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = t[b as usize]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: serde_json::Value) -> Values {
        torchfit_sdk::parse_config(&v).unwrap()
    }

    #[test]
    fn the_readers_default_scale_applies_unless_one_is_given() {
        let l = values(serde_json::json!({})).layout(255.0, &[4, 2]).unwrap();
        assert_eq!((l.value(255.0), l.shape.clone(), l.len), (1.0, vec![2], 4));
        let l = values(serde_json::json!({"scale": 1.0, "mean": 10.0, "std": 2.0, "limit": 3}))
            .layout(255.0, &[4, 2])
            .unwrap();
        assert_eq!((l.value(20.0), l.len, l.shape.clone()), (5.0, 3, vec![2]));
    }

    #[test]
    fn bytes_are_divided_when_that_is_exact_and_looked_up_otherwise_with_the_same_bits() {
        let all: Vec<u8> = (0..=255).collect();
        for (config, divides) in [
            (serde_json::json!({}), true),
            (serde_json::json!({"scale": 1.0}), true),
            (serde_json::json!({"mean": 0.1307, "std": 0.3081}), false),
            (serde_json::json!({"mean": 0.5, "std": 0.5}), false),
        ] {
            let l = values(config.clone()).layout(255.0, &[1, 1]).unwrap();
            let conversion = l.byte_conversion();
            assert_eq!(matches!(conversion, ByteConversion::Divide(_)), divides, "{config}");
            let mut out = vec![0f32; 256];
            conversion.convert(&all, &mut out);
            assert!(all.iter().zip(&out).all(|(&b, o)| o.to_bits() == l.value(b as f64).to_bits()), "{config}");
        }
    }

    #[test]
    fn zero_divisors_and_wrong_shapes_name_their_key() {
        let key = |v: serde_json::Value| match values(v).layout(1.0, &[4, 6]) {
            Err(Error::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(serde_json::json!({"std": 0.0})), "std");
        assert_eq!(key(serde_json::json!({"scale": 0.0})), "scale");
        assert_eq!(key(serde_json::json!({"shape": [5]})), "shape");
        assert_eq!(values(serde_json::json!({"shape": [2, 3]})).layout(1.0, &[4, 6]).unwrap().shape, vec![2, 3]);
    }
}
