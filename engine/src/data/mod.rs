//! Data: in-memory datasets, the CSV reader, splits and seeded batch order.

pub mod csv;
pub mod dataset;
pub mod loader;
pub mod rng;
pub mod split;

pub use dataset::TensorDataset;
pub use loader::{batches, Batches};
pub use rng::{SplitMix64, Stream};
pub use split::split_indices;
