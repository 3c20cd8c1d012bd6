//! Stock dataset readers: `csv` (numeric CSV, optionally gzip-compressed) and `idx` (the MNIST
//! format, plain or gzip-compressed; a plain file is read sample by sample, so it need not fit in
//! memory).
#![deny(missing_docs)]

pub mod csv;
pub mod idx;

use torchfit_sdk::export_plugin;

export_plugin! {
    name: "torchfit-plugin-readers",
    components: [
        Reader("csv", csv::build, "numeric CSV file, optionally .gz; keys: path, target, header, delimiter, scale, shape"),
        Reader("idx", idx::build, "IDX files (MNIST), plain (streamed) or .gz; keys: images, labels, scale, mean, std, shape, limit"),
    ],
}
