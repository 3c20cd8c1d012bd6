//! Stock dataset readers: `csv` (numeric CSV, optionally gzip-compressed), `idx` (the MNIST
//! format, plain or gzip-compressed; a plain file is read sample by sample, so it need not fit in
//! memory), `npy` and `npz` (NumPy arrays; `.npy` inputs are streamed the same way) and
//! `image_folder` (a folder per class of PNG or JPEG images, decoded per batch on worker threads,
//! with torchvision's transforms).
#![deny(missing_docs)]

pub mod csv;
pub mod idx;
pub mod image_folder;
pub mod npy;
pub mod transforms;

use torchfit_sdk::export_plugin;

export_plugin! {
    name: "torchfit-plugin-readers",
    components: [
        Reader("csv", csv::build, "numeric CSV file, optionally .gz; keys: path, target, header, delimiter, scale, shape"),
        Reader("idx", idx::build, "IDX files (MNIST), plain (streamed) or .gz; keys: images, labels, scale, mean, std, shape, limit"),
        Reader("npy", npy::build_npy, "NumPy .npy inputs (streamed) and targets; keys: x, y, scale, mean, std, shape, limit"),
        Reader("image_folder", image_folder::build, "a folder per class of PNG/JPEG images; keys: root, transforms, grayscale, extensions, workers, limit"),
        Reader("npz", npy::build_npz, "two arrays of a NumPy .npz archive; keys: path, x, y, scale, mean, std, shape, limit"),
    ],
}
