//! The stock callback plugins through the binary, each loaded from its library as a third
//! party's would be: checkpoints and resuming, scoring, early stopping, freezing, clipping,
//! logging.

mod checkpoint;
mod scoring;
mod stock;
