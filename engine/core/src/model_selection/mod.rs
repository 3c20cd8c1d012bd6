//! Model selection, scikit-learn's name for it: how well a config generalizes, and which of
//! several configs to keep.
//!
//! | file | concept |
//! |---|---|
//! | `folds.rs` | the folds: `KFold` and `StratifiedKFold`, index for index |
//! | `cross_validate.rs` | cross-validation: a fresh fit per fold, scored on the held-out samples |
//! | `search.rs` | the search's decisions: candidates of a grid, iterations, ranks, `cv_results_`, and the in-process driver |
//! | `halving.rs` | successive halving: which candidates go on, with how many epochs |
//! | `random_search.rs` | random candidates: lists and distributions, seeded |
//!
//! A fold is fitted by [`crate::NeuralNet`]'s own loop; `torchfit search` (the `torchfit`
//! package) spreads the folds over worker processes with these decisions.

mod cross_validate;
pub mod folds;
pub mod halving;
pub mod random_search;
pub mod search;

pub use cross_validate::{mean_std, CrossValidation, Cv, FoldResult};
pub use folds::{k_fold, stratified_k_fold, Fold};
