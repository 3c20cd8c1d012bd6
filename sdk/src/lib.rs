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
//! - `Ok(Flow::StopAfterBatch)` (SDK 1.1) ends training after the current batch: the rest of
//!   the epoch and its validation are skipped, `on_epoch_end` is not sent for it, and
//!   `on_train_end` runs.
//! - A callback asks the loop for more through the [`Host`] during a hook (checkpoints, a stop,
//!   a loss term, a skipped step, a replaced batch); the loop carries it out.
//!
//! ## Versions, and how the SDK grows
//! The SDK is versioned `1.minor` ([`SdkVersion`]): 1.0 was the first release, this is
//! [`SdkVersion::CURRENT`]. A plugin built against any 1.x SDK loads in a host of any 1.y:
//! a newer host calls every hook the plugin knows; an older host runs a newer plugin without the
//! hooks and services it does not have, or refuses it in one line when the plugin's
//! [`Callback::requires_sdk`] says it needs them.
//!
//! Every addition follows one rule. The interfaces of SDK 1.0 are frozen (the plugin loader
//! checks their layout and refuses a plugin when the host's copy differs). What 1.1 added is
//! reached through a second, also frozen, entry (the *extension root*) whose interfaces grow by
//! names instead of layouts: a new hook is a new event number, a new host service a new name
//! (a host that lacks it answers [`Error::Unsupported`] with the version that added it), a new
//! component request a new name, a new setting a new JSON key. Each addition: (1) takes a name
//! and the next minor version, listed in the tables of `ffi::ext` (source); (2) gets its Rust
//! API as a default method of the trait (`Host`, `Callback`, ...), so no plugin's source breaks;
//! (3) is carried on both sides of the boundary; (4) is tested with a plugin built before it, a
//! plugin using it, and a plugin using it on a host without it. A change that cannot follow the
//! rule is a new ABI version.
//!
//! | version | added |
//! |---|---|
//! | 1.0 | callbacks, criteria, models, dataset readers, scorers; the 1.0 host services |
//! | 1.1 | `on_loss_computed`, `Flow::StopAfterBatch`, `add_to_loss`, `skip_step`, `replace_batch`, optimizer hyper-parameters, group parameters, optimizer state, buffers, state dict (read and write), `forward`, `update_batch_norm`, `Model::set_batch_norm_stats`, `device`, scorer direction, callback tensor state, errors that keep their kind |
//! | 1.2 | `Host::process` (rank, world size, local rank; service `run.process`) and `Host::is_main_process`, which is true on an older host; `testing::Sdk10Host` to test a plugin against a 1.0 host |
//! | 1.3 | `DatasetReader::set_stage` (`Stage::Train` or `Stage::Eval` before each pass: augmentation in training only; request `set_stage`) and `DatasetReader::sample_names` (prediction ids; request `sample_names`) |
//! | 1.4 | `Host::history_batch_value` (one batch's value; service `history.batch_value`, a provided method over `history_get` on an older host) `Host::grad_scaler` (the `16-mixed` gradient scaler's scale and growth tracker; service `run.grad_scaler`) and `Host::accumulate_grad_batches` (batches per optimizer step, 1 on an older host; service `run.accumulate_grad_batches`) |
//! | 1.5 | `Model::forward_inspected` (a forward pass with guided ReLUs and a named layer's output kept, for `torchfit explain`; request `forward_inspected`, refused in one line by an older model plugin) |
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
pub mod glob;
pub mod host;
pub mod io;
pub mod metrics;
pub mod model;
pub mod reader;
pub mod scorer;
pub mod scoring;
pub mod testing;
pub mod values;
pub mod version;

pub use callback::{Batch, BatchOutput, Callback, Flow, Hook};
pub use checkpoint::Parts;
pub use component::{BuildContext, Constructor, Ctor, Kind as ComponentKind, Task};
pub use config::parse_config;
pub use criterion::Criterion;
pub use dataset::TensorDataset;
pub use error::{Error, Result};
pub use host::{Forward, Host, Process, ScalerState};
pub use model::{without_batch_norm_control, BatchNormStats, Inspected, Inspection, Model};
pub use reader::{DatasetReader, Stage};
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
