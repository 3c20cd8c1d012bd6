//! torchfit as a Rust library: skorch's fit/predict shape and the event bus's contracts, exact
//! resume in-process, cross-validation, and plugin crates linked as rlibs.
//!
//! libtorch has one random generator per process: tests here that train hold
//! `torchfit_tests::serial()`.

mod api;
mod cross_validate;
mod explain;
mod inprocess;
mod lr_find;
mod non_finite;
mod precision;
mod resume;
