//! Deterministic train/validation/test splits over sample indices.

use super::rng::{SplitMix64, Stream};

/// `values` at `positions` (indices into `values`): the samples of a split or fold, their labels.
pub fn select(values: &[i64], positions: &[i64]) -> Vec<i64> {
    positions.iter().map(|&p| values[p as usize]).collect()
}

/// Splits `0..n` into `(kept, held_out)` with `round(fraction * n)` held out, both sorted.
///
/// With `labels`, the split is stratified: each class contributes to the held-out part in
/// proportion to its size (largest remainders get the leftover places), so class frequencies
/// match in both parts. The choice depends only on `seed` and `stream`.
pub fn split_indices(
    n: usize,
    labels: Option<&[i64]>,
    fraction: f64,
    seed: u64,
    stream: Stream,
) -> (Vec<i64>, Vec<i64>) {
    let mut rng = SplitMix64::new(seed, stream, 0);
    let n_out = ((fraction * n as f64).round() as usize).min(n);
    let mut held: Vec<i64> = match labels {
        None => {
            let mut all: Vec<i64> = (0..n as i64).collect();
            rng.shuffle(&mut all);
            all.truncate(n_out);
            all
        }
        Some(labels) => {
            assert_eq!(labels.len(), n, "one label per sample");
            let mut classes: Vec<i64> = labels.to_vec();
            classes.sort_unstable();
            classes.dedup();
            let mut groups: Vec<Vec<i64>> =
                classes.iter().map(|c| (0..n as i64).filter(|&i| labels[i as usize] == *c).collect()).collect();
            let exact: Vec<f64> = groups.iter().map(|g| g.len() as f64 * n_out as f64 / n as f64).collect();
            let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by(|&a, &b| {
                (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b))
            });
            let missing = n_out - quota.iter().sum::<usize>();
            for &g in order.iter().take(missing) {
                quota[g] += 1;
            }
            let mut held = Vec::with_capacity(n_out);
            for (group, q) in groups.iter_mut().zip(quota) {
                rng.shuffle(group);
                held.extend_from_slice(&group[..q]);
            }
            held
        }
    };
    held.sort_unstable();
    let mut is_held = vec![false; n];
    for &i in &held {
        is_held[i as usize] = true;
    }
    let kept = (0..n as i64).filter(|&i| !is_held[i as usize]).collect();
    (kept, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(idx: &[i64], labels: &[i64]) -> [usize; 3] {
        let mut c = [0; 3];
        for &i in idx {
            c[labels[i as usize] as usize] += 1;
        }
        c
    }

    #[test]
    fn a_stratified_split_keeps_class_proportions() {
        let labels: Vec<i64> = (0..1000)
            .map(|i| {
                if i < 600 {
                    0
                } else if i < 900 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let (kept, held) = split_indices(1000, Some(&labels), 0.2, 0, Stream::ValidSplit);
        assert_eq!(held.len(), 200);
        assert_eq!(kept.len(), 800);
        assert_eq!(counts(&held, &labels), [120, 60, 20]);
    }

    #[test]
    fn parts_are_disjoint_sorted_and_cover_everything() {
        let (kept, held) = split_indices(101, None, 0.3, 5, Stream::TestSplit);
        assert_eq!(held.len(), 30);
        let mut all: Vec<i64> = kept.iter().chain(&held).copied().collect();
        assert!(kept.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]));
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
    }

    #[test]
    fn the_split_depends_on_the_seed_and_only_on_it() {
        let a = split_indices(500, None, 0.2, 1, Stream::ValidSplit);
        assert_eq!(a, split_indices(500, None, 0.2, 1, Stream::ValidSplit));
        assert_ne!(a, split_indices(500, None, 0.2, 2, Stream::ValidSplit));
    }

    #[test]
    fn leftover_places_go_to_the_largest_remainders() {
        // 3 classes of 5; 20% of 15 = 3 places: one per class.
        let labels: Vec<i64> = (0..15).map(|i| i / 5).collect();
        let (_, held) = split_indices(15, Some(&labels), 0.2, 0, Stream::ValidSplit);
        assert_eq!(counts(&held, &labels), [1, 1, 1]);
    }
}
