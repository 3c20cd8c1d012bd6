//! Data: splits and seeded batch order (the readers are plugins: `torchfit-plugin-readers`).

pub mod loader;
pub mod rng;
pub mod split;

pub use loader::{batches, for_each_batch, Batches};
pub use rng::{SplitMix64, Stream};
pub use split::split_indices;
pub use torchfit_sdk::TensorDataset;
