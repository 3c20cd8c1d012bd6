//! Data: splits and seeded batch order (cross-validation folds are [`crate::model_selection`]'s). Readers are components ([`torchfit_sdk::DatasetReader`]),
//! built through the registry; [`TensorDataset`] serves in-memory tensors.

pub mod loader;
pub mod rng;
pub mod sampler;
pub mod scaling;
pub mod split;

pub use loader::{batches, for_each_batch, order, Batches};
pub use rng::{SplitMix64, Stream};
pub use sampler::SamplerConfig;
pub use scaling::{FeatureScaler, Scaling};
pub use split::{select, split_indices};
pub use torchfit_sdk::TensorDataset;
