//! # torchfit
//!
//! Train neural networks from a TOML config or a Rust program, with skorch's `fit`/`predict`
//! shape. This package composes the engine ([`torchfit_engine`], re-exported here whole) with the
//! stock models ([`models`]), criteria ([`criteria`]) and dataset readers ([`readers`]), linked
//! in-process; provides the classifier and regressor presets ([`classifier`], [`regressor`],
//! [`from_params`], [`from_file`]); and runs the `torchfit` command ([`commands`], one module
//! per subcommand).
//!
//! ```no_run
//! # fn main() -> Result<(), torchfit::Error> {
//! let x = tch::Tensor::randn([100, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let y = x.sum_dim_intlist(1, false, tch::Kind::Float).gt(0.0).to_kind(tch::Kind::Int64);
//! let mut net = torchfit::classifier();
//! net.set_params(&[("module__hidden", "[16]"), ("optimizer__lr", "0.1"), ("max_epochs", "5")])?;
//! net.fit(&x, &y)?;
//! println!("valid_acc = {:?}", net.history().last_f64("valid_acc"));
//! let classes = net.predict(&x)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod commands;
mod dataset;
pub mod launch;
mod presets;
pub mod run_dir;
mod table;

pub use presets::{classifier, defaults, from_file, from_params, regressor};
pub use torchfit_engine::*;
/// The stock criteria (`cross_entropy`, `nll`, `bce_with_logits`, `mse`, `l1`, `smooth_l1`,
/// `huber`), linked in-process.
pub use torchfit_plugin_criteria as criteria;
/// The stock models (`mlp`, `cnn`, `resnet18`, `small_resnet`, `torchscript`), linked in-process.
pub use torchfit_plugin_models as models;
/// The stock dataset readers (`csv`, `idx`, `npy`, `npz`, `image_folder`), linked in-process.
pub use torchfit_plugin_readers as readers;
