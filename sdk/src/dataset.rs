//! A data set held in memory as two tensors.

use crate::{DatasetReader, Result};
use tch::{Kind, Tensor};

/// Inputs `x` (first dimension = samples) and targets `y`, held in memory.
#[derive(Debug)]
pub struct TensorDataset {
    x: Tensor,
    y: Tensor,
}

impl TensorDataset {
    /// A data set over `x` and `y`. Inputs are converted to `f32`; targets keep their kind
    /// (`i64` class indices or floating values).
    pub fn new(x: &Tensor, y: &Tensor) -> Result<Self> {
        let (nx, ny) = (x.size().first().copied(), y.size().first().copied());
        if nx != ny || nx.is_none() {
            let count =
                |n: Option<i64>| n.map_or("no sample dimension (a scalar)".to_owned(), |n| format!("{n} samples"));
            return Err(crate::Error::msg(format!("x has {} but y has {}", count(nx), count(ny))));
        }
        let x = x.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let y = y.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let y = if y.is_floating_point() { y.f_to_kind(Kind::Float)? } else { y.f_to_kind(Kind::Int64)? };
        Ok(Self { x, y })
    }

    /// The inputs, one row per sample.
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// The targets, one row per sample.
    pub fn y(&self) -> &Tensor {
        &self.y
    }
}

impl DatasetReader for TensorDataset {
    fn len(&self) -> usize {
        self.x.size()[0] as usize
    }

    fn sample_shape(&self) -> Vec<i64> {
        self.x.size()[1..].to_vec()
    }

    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let idx = Tensor::from_slice(indices);
        Ok((self.x.f_index_select(0, &idx)?, self.y.f_index_select(0, &idx)?))
    }

    fn targets(&mut self) -> Result<Tensor> {
        Ok(self.y.shallow_clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_gathers_the_requested_samples_in_order() {
        let x = Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([6, 2]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
        let mut ds = TensorDataset::new(&x, &y).unwrap();
        assert_eq!(ds.len(), 6);
        assert_eq!(ds.sample_shape(), vec![2]);
        let (bx, by) = ds.get(&[4, 1]).unwrap();
        assert_eq!(Vec::<f32>::try_from(bx.flatten(0, -1)).unwrap(), vec![8.0, 9.0, 2.0, 3.0]);
        assert_eq!(Vec::<i64>::try_from(by).unwrap(), vec![4, 1]);
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let x = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu));
        assert!(TensorDataset::new(&x, &y).is_err());
    }
}
