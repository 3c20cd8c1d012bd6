//! # torchfit-sdk
//!
//! The interfaces between the torchfit engine and its plugins: [`Callback`], [`Criterion`],
//! [`Model`], [`DatasetReader`] and [`Scorer`], the [`Host`] services the engine lends to a
//! callback during a hook, the [`Error`] type every fallible call returns, the metrics the engine
//! and plugins share ([`metrics`]), and fakes to test a component without the engine
//! ([`testing`]). A plugin lists its components in one [`export_plugin!`] call.
//!
//! Plugin authors implement these traits in ordinary Rust. The engine only ever talks to a plugin
//! through them, so a component built into the engine, linked in-process, or loaded from a shared
//! library behaves the same.
//!
//! ## Contracts in one place
//! - Every hook returns `Result<Flow>`: `Ok(Flow::Continue)` goes on, `Ok(Flow::Stop)` asks the
//!   engine to stop after the current epoch (the epoch still ends and `on_train_end` still runs),
//!   and `Err(_)` aborts the run: the engine stops at once, still calls `on_train_end` on every
//!   callback, and reports the error with the callback's name.
//! - Callbacks talk to each other only through history keys ([`Host::record`],
//!   [`Host::history_get`]); a key a callback needs but cannot find is an
//!   [`Error::MissingHistoryKey`] that names the callback expected to write it.
//! - Tensors handed to a hook are borrowed for the duration of the call.
#![deny(missing_docs)]

pub mod callback;
pub mod checkpoint;
pub mod component;
pub mod config;
pub mod criterion;
pub mod dataset;
pub mod error;
#[doc(hidden)]
pub mod ffi;
pub mod host;
pub mod io;
pub mod json;
pub mod metrics;
pub mod model;
pub mod reader;
pub mod scorer;
pub mod scoring;
pub mod testing;
pub mod version;

pub use callback::{Batch, BatchOutput, Callback, Flow};
pub use checkpoint::Parts;
pub use component::{BuildContext, Constructor, Ctor, Kind as ComponentKind, Task};
pub use config::parse_config;
pub use criterion::Criterion;
pub use dataset::TensorDataset;
pub use error::{Error, Result};
pub use host::{Forward, Host};
pub use model::Model;
pub use reader::DatasetReader;
pub use scorer::Scorer;
pub use version::SdkVersion;

/// The `log` crate: a plugin's `log::info!` etc. are forwarded to the host's logger.
pub use log;
/// JSON values: configs, history values and callback state.
pub use serde_json::{json, Map, Value};
/// The `tch` crate this SDK is built against; plugins should use this re-export so that their
/// tensors are the engine's tensors.
pub use tch;
/// Re-exported for [`export_plugin!`]; plugin crates need no direct dependency on these.
#[doc(hidden)]
pub use {abi_stable, inventory};
