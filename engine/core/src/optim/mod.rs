//! Optimizers whose state the engine owns as tensors, so that it can be checkpointed and
//! restored exactly (tch's own optimizer cannot save its state).
//!
//! Each follows the update rule of its `torch.optim` namesake; a test compares 20 steps with
//! PyTorch's for each implementation: the single-tensor path (`for_loop`, written here, what
//! PyTorch uses on CPU), and for SGD, Adam and AdamW torch's multi-tensor (`foreach`, PyTorch's
//! default on CUDA) and fused kernels, called through torchfit-kernels.
//!
//! | key | default | applies to |
//! |---|---|---|
//! | `name` | `"sgd"` | `sgd`, `adam`, `adamw`, `rmsprop` |
//! | `implementation` | `"auto"` | `"auto"` (`"foreach"` on CUDA, `"for_loop"` elsewhere, as PyTorch), `"for_loop"`, `"foreach"`, `"fused"`; the last two for `sgd`, `adam`, `adamw` |
//! | `lr` | `0.01` | all |
//! | `weight_decay` | `0` (`0.01` for `adamw`) | all |
//! | `momentum` | `0` | `sgd`, `rmsprop` |
//! | `dampening` | `0` | `sgd` |
//! | `nesterov` | `false` | `sgd` |
//! | `betas` | `[0.9, 0.999]` | `adam`, `adamw` |
//! | `eps` | `1e-8` | `adam`, `adamw`, `rmsprop` |
//! | `alpha` | `0.99` | `rmsprop` |
//! | `centered` | `false` | `rmsprop` |
//! | `param_groups` | `[]` | all: `[[optimizer.param_groups]]` with `params` (glob or list of globs) and any of the keys above except `name` |
//!
//! Parameters are assigned to the first group whose pattern matches their name; the rest form the
//! default group, which comes last (as in skorch).

mod adam;
mod multi_tensor;
mod optimizer;
mod rmsprop;
mod settings;
mod sgd;

pub use optimizer::{Group, Optimizer};
pub use settings::{GroupConfig, Hyper, HyperConfig, Implementation, OptimizerConfig, OptimizerName};
