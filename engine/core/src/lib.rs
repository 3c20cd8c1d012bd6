//! # torchfit-engine
//!
//! The torchfit training engine: the epoch/batch loop and its event bus ([`NeuralNet`]), the
//! [`History`], data splitting and batching ([`data`]), optimizers with checkpointable state
//! ([`optim`]), configuration with skorch's parameter routing ([`config`]), the component
//! [`Registry`] and the plugin loader ([`plugins`]).
//!
//! The engine depends on `torchfit-sdk` and names no model, criterion or reader: components
//! reach it through the registry (its builtin default callbacks, plugin crates linked into the
//! program, plugin libraries loaded at run time), and a program composing it says what a config
//! may leave out ([`Defaults`]). The `torchfit` package is that program for the stock plugins:
//! its `torchfit::classifier()` is the usual way in.
//!
//! ```no_run
//! use torchfit_engine::{config::Params, plugins, Defaults, NeuralNet};
//! # fn main() -> Result<(), torchfit_engine::Error> {
//! # let (x, y) = (tch::Tensor::zeros([1], tch::kind::FLOAT_CPU), tch::Tensor::zeros([1], tch::kind::INT64_CPU));
//! // The config names the components: `[module] name = "mlp"`, `[criterion] name = "cross_entropy"`.
//! let params = Params::from_file("config.toml".as_ref())?;
//! let registry = plugins::registry_for(&params)?; // builtin, linked and loaded components
//! let mut net = NeuralNet::with_registry(params, registry).with_defaults(Defaults::default());
//! net.fit(&x, &y)?;
//! println!("valid_loss = {:?}", net.history().last_f64("valid_loss"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod amp;
pub mod callbacks;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod distributed;
mod error;
pub mod fsutil;
pub mod history;
pub mod malloc;
pub mod model_selection;
pub mod net;
pub mod optim;
pub mod plugins;
pub mod registry;

pub use error::{panic_summary, Class, Error, Result};
pub use history::History;
pub use net::{Defaults, EpochCount, Evaluation, NeuralNet, Valid};
pub use optim::Optimizer;
pub use registry::Registry;
pub use torchfit_sdk as sdk;
