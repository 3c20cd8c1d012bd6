//! Data: splits, cross-validation folds and seeded batch order. Readers are components ([`torchfit_sdk::DatasetReader`]),
//! built through the registry; [`TensorDataset`] serves in-memory tensors.

pub mod folds;
pub mod loader;
pub mod rng;
pub mod split;

pub use folds::{k_fold, stratified_k_fold, Fold};
pub use loader::{batches, for_each_batch, order, Batches};
pub use rng::{SplitMix64, Stream};
pub use split::split_indices;
pub use torchfit_sdk::TensorDataset;
