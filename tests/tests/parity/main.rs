//! Where PyTorch defines the semantics, torchfit is compared with the venv's PyTorch: the
//! optimizers against `torch.optim`, the criteria against `torch.nn`, the learning-rate policies
//! against `torch.optim.lr_scheduler`.

mod criteria;
mod lr_scheduler;
mod optimizer;
