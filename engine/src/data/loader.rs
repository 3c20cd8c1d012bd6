//! Batch order for one pass over a set of sample indices.

use super::rng::{SplitMix64, Stream};

/// The batches of one pass: index lists of at most `batch_size` samples.
pub type Batches = Vec<Vec<i64>>;

/// Cuts `indices` into batches of `batch_size` (the last may be smaller). With `shuffle`, the
/// order is a permutation drawn from `(seed, epoch)` alone, so a resumed run repeats it exactly.
pub fn batches(indices: &[i64], batch_size: usize, shuffle: bool, seed: u64, epoch: u64) -> Batches {
    let mut order = indices.to_vec();
    if shuffle {
        SplitMix64::new(seed, Stream::Shuffle, epoch).shuffle(&mut order);
    }
    order.chunks(batch_size.max(1)).map(<[i64]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_index_once_with_a_short_last_batch() {
        let idx: Vec<i64> = (0..10).collect();
        let b = batches(&idx, 4, true, 0, 1);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<i64> = b.concat();
        all.sort();
        assert_eq!(all, idx);
    }

    #[test]
    fn without_shuffle_the_order_is_kept() {
        let idx = [5i64, 3, 9];
        assert_eq!(batches(&idx, 2, false, 0, 0), vec![vec![5, 3], vec![9]]);
    }

    #[test]
    fn each_epoch_shuffles_differently_but_reproducibly() {
        let idx: Vec<i64> = (0..50).collect();
        assert_eq!(batches(&idx, 50, true, 3, 1), batches(&idx, 50, true, 3, 1));
        assert_ne!(batches(&idx, 50, true, 3, 1), batches(&idx, 50, true, 3, 2));
    }
}
