//! # torchfit-engine
//!
//! The torchfit training engine: the epoch/batch loop and its event bus ([`NeuralNet`]), the
//! [`History`], data splitting and batching ([`data`]), optimizers with checkpointable state
//! ([`optim`]), configuration with skorch's parameter routing ([`config`]), the component
//! [`Registry`], and the `torchfit` binary.
//!
//! ```no_run
//! use torchfit_engine::NeuralNet;
//! # fn main() -> Result<(), torchfit_engine::Error> {
//! let x = tch::Tensor::randn([100, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let y = x.sum_dim_intlist(1, false, tch::Kind::Float).gt(0.0).to_kind(tch::Kind::Int64);
//! let mut net = NeuralNet::classifier();
//! net.set_params(&[("module__hidden", "[16]"), ("optimizer__lr", "0.1"), ("max_epochs", "5")])?;
//! net.fit(&x, &y)?;
//! println!("valid_acc = {:?}", net.history().last_f64("valid_acc"));
//! let classes = net.predict(&x)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod callbacks;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
mod error;
pub mod fsutil;
pub mod history;
pub mod malloc;
pub mod net;
pub mod optim;
pub mod plugins;
pub mod registry;
pub mod run;

pub use error::{Error, Result};
pub use history::History;
pub use net::{EpochCount, Evaluation, NeuralNet, Valid};
pub use optim::Optimizer;
pub use registry::Registry;
pub use torchfit_sdk as sdk;
/// The stock models (`mlp`, `cnn`, `resnet18`, `small_resnet`, `torchscript`), linked in-process.
pub use torchfit_plugin_models as models;
/// The stock criteria (`cross_entropy`, `nll`, `bce_with_logits`, `mse`, `l1`, `smooth_l1`,
/// `huber`), linked in-process.
pub use torchfit_plugin_criteria as criteria;
/// The stock dataset readers (`csv`, `idx`), linked in-process.
pub use torchfit_plugin_readers as readers;
