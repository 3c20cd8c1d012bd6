//! The `torchfit` binary end to end: the README's demo, run directories, reproducibility, every
//! reader, a TorchScript model, hyper-parameter search, TensorBoard event files.

mod demo;
mod explain;
mod fuzz;
mod interrupt;
mod kill;
mod plot;
mod readers;
mod reproducibility;
mod run_dir;
mod sampler;
mod scaler;
mod search;
mod segmentation;
mod tensorboard;
mod text;
mod torchscript;
