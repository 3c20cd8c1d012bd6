//! Cross-validation of a net (scikit-learn's `cross_validate`): for each fold the net is fitted
//! afresh on the fold's training samples (with its `train_split` inside them, as skorch's nets in
//! scikit-learn do) and scored on the held-out ones, by accuracy / R² or any scorer component.

use super::folds::{k_fold, stratified_k_fold, Fold};
use crate::data::select;
use crate::net::{NeuralNet, Start};
use crate::{Error, Result};
use std::time::Instant;
use torchfit_sdk::metrics::{accuracy, r2};
use torchfit_sdk::{DatasetReader, Task};

/// How the samples are split into folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cv {
    /// Number of folds (scikit-learn's `cv = 5` default).
    pub n_splits: usize,
    /// Stratify by class; `None`: for classification (scikit-learn's choice for classifiers).
    pub stratified: Option<bool>,
    /// Shuffle before splitting, with this seed; `None`: folds of consecutive samples.
    pub shuffle: Option<u64>,
    /// A scorer component by name (`f1_macro`, `log_loss`, a plugin's); `None`: accuracy for
    /// classification, R² for regression. Scores are higher-is-better, as in scikit-learn: a
    /// scorer that is lower-is-better is negated and named `neg_<name>`.
    pub scoring: Option<String>,
}

impl Default for Cv {
    fn default() -> Self {
        Cv { n_splits: 5, stratified: None, shuffle: None, scoring: None }
    }
}

/// One fold's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldResult {
    /// The score on the held-out samples (see [`Cv::scoring`]).
    pub score: f64,
    /// Seconds fitting.
    pub fit_seconds: f64,
    /// Seconds scoring.
    pub score_seconds: f64,
    /// Samples trained on (before the net's own validation split) and scored.
    pub train_samples: usize,
    /// Samples scored.
    pub test_samples: usize,
}

/// The result of a cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// What the scores are: `accuracy`, `r2`, a scorer's name, or `neg_<name>` for a
    /// lower-is-better scorer.
    pub scoring: String,
    /// Each fold's result, in fold order.
    pub folds: Vec<FoldResult>,
    /// Mean of the folds' scores.
    pub mean: f64,
    /// Population standard deviation of the folds' scores (NumPy's `std`, as `cv_results_`).
    pub std: f64,
}

impl NeuralNet {
    /// Cross-validates the net's config on the samples `indices` of `reader` (all when `None`):
    /// fits a fresh net on each fold's training samples and scores it on the fold's held-out
    /// ones. The net ends fitted on the last fold.
    pub fn cross_validate(
        &mut self,
        reader: &mut dyn DatasetReader,
        indices: Option<&[i64]>,
        cv: &Cv,
    ) -> Result<CrossValidation> {
        let split = Split::of(reader, indices, self.params().settings().task, cv)?;
        let mut folds = Vec::with_capacity(split.folds.len());
        let mut scoring = String::new();
        for fold in 0..split.folds.len() {
            let (name, result) = self.fit_and_score(reader, &split, fold, cv)?;
            log::info!("fold {} of {}: {name} {:.6}", fold + 1, split.folds.len(), result.score);
            scoring = name;
            folds.push(result);
        }
        Ok(CrossValidation::of(scoring, folds))
    }

    /// Fold `fold` (from 0) of [`NeuralNet::cross_validate`] alone, and the scoring's name: what
    /// a search runs in each of its worker processes. The same fold fitted here or inside
    /// `cross_validate` scores the same, bit for bit.
    pub fn cross_validate_fold(
        &mut self,
        reader: &mut dyn DatasetReader,
        indices: Option<&[i64]>,
        cv: &Cv,
        fold: usize,
    ) -> Result<(String, FoldResult)> {
        let split = Split::of(reader, indices, self.params().settings().task, cv)?;
        if fold >= split.folds.len() {
            let message = format!("fold {fold} of a {}-fold cross-validation", split.folds.len());
            return Err(Error::Config { origin: "cross_validate".into(), key: "fold".into(), message });
        }
        self.fit_and_score(reader, &split, fold, cv)
    }

    /// Refuses, before any fit, a cross-validation `cv` of the samples `indices` of `reader` that
    /// could not be split into its folds (more folds than samples, or than members of every
    /// class when stratified), as each fold of it would.
    pub fn check_folds(&self, reader: &mut dyn DatasetReader, indices: Option<&[i64]>, cv: &Cv) -> Result<()> {
        Split::of(reader, indices, self.params().settings().task, cv).map(drop)
    }

    /// Fits a fresh net on fold `fold`'s training samples and scores it on its held-out ones.
    fn fit_and_score(
        &mut self,
        reader: &mut dyn DatasetReader,
        split: &Split,
        fold: usize,
        cv: &Cv,
    ) -> Result<(String, FoldResult)> {
        let Split { pool, targets, folds } = split;
        let (train, test) = (select(pool, &folds[fold].train), select(pool, &folds[fold].test));
        let started = Instant::now();
        self.fit_dataset(reader, Some(&train), Start::Fresh)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let out = self.forward_reader(reader, &test)?;
        let y = targets.f_index_select(0, &tch::Tensor::from_slice(&test))?;
        let (scoring, score) = match (&cv.scoring, self.params().settings().task) {
            (Some(name), _) => self.score_by(name, &y, &out)?,
            (None, Task::Classification) => ("accuracy".to_owned(), accuracy(&y, &out)?),
            (None, Task::Regression) => ("r2".to_owned(), r2(&y, &out)?),
        };
        let result = FoldResult {
            score,
            fit_seconds,
            score_seconds: started.elapsed().as_secs_f64(),
            train_samples: train.len(),
            test_samples: test.len(),
        };
        Ok((scoring, result))
    }
}

/// The samples a cross-validation uses, their targets, and its folds (positions into `pool`).
struct Split {
    pool: Vec<i64>,
    targets: tch::Tensor,
    folds: Vec<Fold>,
}

impl Split {
    /// The samples `indices` of `reader` (all when `None`) in folds stratified as `cv` says.
    fn of(reader: &mut dyn DatasetReader, indices: Option<&[i64]>, task: Task, cv: &Cv) -> Result<Self> {
        let pool: Vec<i64> = indices.map(<[i64]>::to_vec).unwrap_or_else(|| (0..reader.len() as i64).collect());
        let targets = reader.targets().map_err(|e| Error::Data(e.to_string()))?;
        let refuse = |m: String| Error::Config { origin: "cross_validate".into(), key: "cv".into(), message: m };
        let folds = match cv.stratified.unwrap_or(task == Task::Classification) {
            false => k_fold(pool.len(), cv.n_splits, cv.shuffle).map_err(refuse)?,
            true => {
                let all = Vec::<i64>::try_from(targets.f_flatten(0, -1)?.f_to_kind(tch::Kind::Int64)?)?;
                let labels: Vec<i64> = pool.iter().map(|&i| all[i as usize]).collect();
                stratified_k_fold(&labels, cv.n_splits, cv.shuffle).map_err(refuse)?
            }
        };
        Ok(Split { pool, targets, folds })
    }
}

impl CrossValidation {
    /// The folds' results with the mean and population standard deviation of their scores.
    pub fn of(scoring: String, folds: Vec<FoldResult>) -> Self {
        let (mean, std) = mean_std(folds.iter().map(|f| f.score));
        CrossValidation { scoring, folds, mean, std }
    }
}

/// Mean and population standard deviation (NumPy's `std`), NaN for no values.
pub fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    (mean, (values.map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(score: f64) -> FoldResult {
        FoldResult { score, fit_seconds: 0.0, score_seconds: 0.0, train_samples: 2, test_samples: 1 }
    }

    #[test]
    fn the_summary_is_the_mean_and_numpys_population_std() {
        let s = CrossValidation::of("accuracy".into(), vec![fold(0.9), fold(0.8), fold(1.0)]);
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.std - (0.02f64 / 3.0).sqrt()).abs() < 1e-12); // np.std([0.9, 0.8, 1.0])
    }
}
