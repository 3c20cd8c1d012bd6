//! Where PyTorch defines the semantics, torchfit is compared with the venv's PyTorch: the
//! optimizers against `torch.optim`, the criteria against `torch.nn`, the learning-rate policies
//! against `torch.optim.lr_scheduler`, SWA's `update_bn` against `torch.optim.swa_utils`; and where
//! scikit-learn does, against scikit-learn: cross-validation folds, the search grid and successive
//! halving.

mod criteria;
mod folds;
mod halving;
mod lr_scheduler;
mod optimizer;
mod update_bn;
