//! Stock dataset readers: `csv` (numeric CSV, optionally gzip-compressed), `idx` (the MNIST
//! format, plain or gzip-compressed; a plain file is read sample by sample, so it need not fit in
//! memory), `npy` and `npz` (NumPy arrays; `.npy` inputs are streamed the same way) and
//! `image_folder` (a folder per class of PNG or JPEG images, decoded per batch on worker threads,
//! with torchvision's transforms).
#![deny(missing_docs)]

pub mod csv;
pub mod idx;
pub mod image_folder;
pub mod image_masks;
pub mod npy;
pub mod text;
pub mod transforms;
pub mod values;

use torchfit_sdk::export_plugin;
use torchfit_sdk::tch::{Device, Kind, Tensor};

/// A new `f32` CPU batch of `n` samples of `sample_shape`, its values written by `fill` in
/// place, one sample after another.
///
/// Batches are built straight into the tensor's memory, without a `Vec<f32>` that
/// `Tensor::from_slice` would copy: one allocation and one pass per batch instead of two.
pub(crate) fn filled(
    n: usize,
    sample_shape: &[i64],
    fill: impl FnOnce(&mut [f32]) -> torchfit_sdk::Result<()>,
) -> torchfit_sdk::Result<Tensor> {
    let shape: Vec<i64> = std::iter::once(n as i64).chain(sample_shape.iter().copied()).collect();
    let t = Tensor::f_empty(&shape, (Kind::Float, Device::Cpu))?;
    let n = shape.iter().product::<i64>() as usize;
    if n == 0 {
        return Ok(t);
    }
    // SAFETY: `t` is a new contiguous CPU f32 tensor of exactly `n` elements that nothing else
    // refers to while the slice lives.
    let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) };
    fill(out)?;
    Ok(t)
}

/// Asks the CPU to start loading `bytes` into its caches. A hint: it changes no result, and does
/// nothing on targets other than x86-64.
pub(crate) fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch never faults, and the address lies in `bytes`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

export_plugin! {
    name: "torchfit-plugin-readers",
    components: [
        Reader("csv", csv::build, "numeric CSV file, optionally .gz; keys: path, target, header, delimiter, scale, shape"),
        Reader("idx", idx::build, "IDX files (MNIST), plain (streamed) or .gz; keys: images, labels, scale, mean, std, shape, limit"),
        Reader("npy", npy::build_npy, "NumPy .npy inputs (streamed) and targets; keys: x, y, scale, mean, std, shape, limit"),
        Reader("image_folder", image_folder::build, "a folder per class of PNG/JPEG images; keys: root, transforms, grayscale, extensions, workers, limit"),
        Reader("image_masks", image_masks::build, "images and their segmentation masks (two folders, same names), in patches with reflected context and random flips; keys: images, masks, grayscale, patch_size, padding, random_flips"),
        Reader("text", text::build, "short texts and class labels, one per line, as UTF-8 byte ids for text_cnn; keys: path, delimiter, max_length, lowercase, header"),
        Reader("npz", npy::build_npz, "two arrays of a NumPy .npz archive; keys: path, x, y, scale, mean, std, shape, limit"),
    ],
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_filled_batch_has_the_batch_size_first_and_the_values_written() {
        let t = super::filled(3, &[1, 2], |out| {
            out.iter_mut().enumerate().for_each(|(i, o)| *o = i as f32);
            Ok(())
        })
        .unwrap();
        assert_eq!(t.size(), vec![3, 1, 2]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(super::filled(0, &[4], |_| unreachable!()).unwrap().size(), vec![0, 4]);
    }
}
