//! Cross-validation folds as scikit-learn deals them: [`k_fold`] (`KFold`) and
//! [`stratified_k_fold`] (`StratifiedKFold`). Without shuffling the folds are scikit-learn's,
//! index for index (tested against the venv's scikit-learn); with `shuffle = Some(seed)` they
//! follow the same rules with this crate's seeded generator instead of NumPy's.

use crate::data::{SplitMix64, Stream};

/// One fold: the sample indices trained on and those scored, each in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Indices to train on.
    pub train: Vec<i64>,
    /// Indices held out and scored.
    pub test: Vec<i64>,
}

/// `n_splits` folds of `n` samples, as `KFold(n_splits, shuffle=...)`: fold `i` tests a
/// contiguous block of the (optionally shuffled) indices, the first `n % n_splits` blocks one
/// sample longer than the others.
pub fn k_fold(n: usize, n_splits: usize, shuffle: Option<u64>) -> Result<Vec<Fold>, String> {
    check(n, n_splits)?;
    let mut order: Vec<i64> = (0..n as i64).collect();
    if let Some(seed) = shuffle {
        SplitMix64::new(seed, Stream::Folds, 0).shuffle(&mut order);
    }
    let mut fold_of = vec![0usize; n];
    let mut start = 0;
    for fold in 0..n_splits {
        let size = n / n_splits + usize::from(fold < n % n_splits);
        for &i in &order[start..start + size] {
            fold_of[i as usize] = fold;
        }
        start += size;
    }
    Ok(assemble(&fold_of, n_splits))
}

/// `n_splits` folds of the samples labelled `labels`, as `StratifiedKFold(n_splits, shuffle=...)`
/// (scikit-learn 0.22 and later): classes are numbered by first appearance, the labels sorted by
/// that number are dealt to the folds round-robin to decide how many of each class every fold
/// gets, and each class's samples, in index order, fill its folds in turn (shuffled per class
/// with `shuffle`). Refused when every class has fewer than `n_splits` members; a class with
/// fewer is warned about, as scikit-learn does.
pub fn stratified_k_fold(labels: &[i64], n_splits: usize, shuffle: Option<u64>) -> Result<Vec<Fold>, String> {
    check(labels.len(), n_splits)?;
    // Classes numbered by first appearance (scikit-learn's `class_perm`).
    let mut sorted: Vec<i64> = labels.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut first = vec![usize::MAX; sorted.len()];
    for (i, l) in labels.iter().enumerate() {
        let c = sorted.binary_search(l).expect("every label is among the sorted labels");
        first[c] = first[c].min(i);
    }
    let mut by_first: Vec<usize> = (0..sorted.len()).collect();
    by_first.sort_by_key(|&c| first[c]);
    let mut number = vec![0usize; sorted.len()];
    for (k, &c) in by_first.iter().enumerate() {
        number[c] = k;
    }
    let encoded: Vec<usize> = labels.iter().map(|l| number[sorted.binary_search(l).expect("a known label")]).collect();
    let n_classes = sorted.len();
    let mut counts = vec![0usize; n_classes];
    for &k in &encoded {
        counts[k] += 1;
    }
    if counts.iter().all(|&c| c < n_splits) {
        return Err(format!("n_splits={n_splits} cannot be greater than the number of members in each class"));
    }
    if let Some(least) = counts.iter().min().filter(|&&m| m < n_splits) {
        log::warn!("the least populated class has only {least} members, which is less than n_splits={n_splits}");
    }
    // allocation[k][f]: how many samples of class k fold f tests (the sorted classes dealt round-robin).
    let mut order = encoded.clone();
    order.sort_unstable();
    let mut allocation = vec![vec![0usize; n_splits]; n_classes];
    for (i, &k) in order.iter().enumerate() {
        allocation[k][i % n_splits] += 1;
    }
    let mut fold_of = vec![0usize; labels.len()];
    for (k, per_fold) in allocation.iter().enumerate() {
        let mut folds: Vec<usize> = per_fold.iter().enumerate().flat_map(|(f, &n)| std::iter::repeat_n(f, n)).collect();
        if let Some(seed) = shuffle {
            SplitMix64::new(seed, Stream::Folds, k as u64 + 1).shuffle(&mut folds);
        }
        let members = encoded.iter().enumerate().filter(|(_, &e)| e == k).map(|(i, _)| i);
        for (i, f) in members.zip(folds) {
            fold_of[i] = f;
        }
    }
    Ok(assemble(&fold_of, n_splits))
}

fn check(n: usize, n_splits: usize) -> Result<(), String> {
    if n_splits < 2 {
        return Err(format!("n_splits must be at least 2, got {n_splits}"));
    }
    if n_splits > n {
        return Err(format!("cannot have n_splits={n_splits} greater than the number of samples: n_samples={n}"));
    }
    Ok(())
}

/// The folds from the fold each sample is tested in.
fn assemble(fold_of: &[usize], n_splits: usize) -> Vec<Fold> {
    (0..n_splits)
        .map(|f| {
            let (test, train): (Vec<i64>, Vec<i64>) =
                (0..fold_of.len() as i64).partition(|&i| fold_of[i as usize] == f);
            Fold { train, test }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_fold_gives_the_first_folds_one_more_sample() {
        // KFold(3).split(range(7)): test [0 1 2], [3 4], [5 6].
        let f = k_fold(7, 3, None).unwrap();
        assert_eq!(f.iter().map(|f| f.test.clone()).collect::<Vec<_>>(), [vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(f[1].train, [0, 1, 2, 5, 6]);
    }

    #[test]
    fn stratified_folds_keep_the_class_proportions() {
        // StratifiedKFold(2).split(X, [0,0,0,0,1,1,1,1]): test [0 1 4 5], [2 3 6 7].
        let f = stratified_k_fold(&[0, 0, 0, 0, 1, 1, 1, 1], 2, None).unwrap();
        assert_eq!(f[0].test, [0, 1, 4, 5]);
        assert_eq!(f[1].test, [2, 3, 6, 7]);
    }

    #[test]
    fn every_sample_is_tested_once_with_or_without_shuffling() {
        let labels: Vec<i64> = (0..103).map(|i| (i * 7 % 5) as i64).collect();
        for shuffle in [None, Some(3)] {
            for folds in [k_fold(103, 4, shuffle).unwrap(), stratified_k_fold(&labels, 4, shuffle).unwrap()] {
                let mut all: Vec<i64> = folds.iter().flat_map(|f| f.test.clone()).collect();
                all.sort_unstable();
                assert_eq!(all, (0..103).collect::<Vec<i64>>());
                for f in &folds {
                    assert_eq!(f.train.len() + f.test.len(), 103);
                }
            }
        }
        assert_ne!(k_fold(103, 4, Some(3)).unwrap(), k_fold(103, 4, None).unwrap());
    }

    #[test]
    fn impossible_splits_are_refused_as_scikit_learn_refuses_them() {
        assert!(k_fold(5, 1, None).unwrap_err().contains("at least 2"));
        assert!(k_fold(2, 3, None).unwrap_err().contains("n_samples=2"));
        let e = stratified_k_fold(&[0, 0, 1, 1], 3, None).unwrap_err();
        assert!(e.contains("number of members in each class"), "{e}");
    }
}
