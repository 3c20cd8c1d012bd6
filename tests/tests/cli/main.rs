//! The `torchfit` binary end to end: the README's demo, run directories, reproducibility, every
//! reader, a TorchScript model.

mod demo;
mod interrupt;
mod readers;
mod reproducibility;
mod run_dir;
mod torchscript;
