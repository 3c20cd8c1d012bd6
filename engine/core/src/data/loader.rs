//! Batch order for one pass over a set of sample indices, and the loader that fetches the
//! batches from a reader, optionally on a thread of its own ahead of the training loop.

use super::rng::{SplitMix64, Stream};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::sync_channel;
use tch::Tensor;
use torchfit_sdk::{DatasetReader, Error, Result, Stage};

/// The batches of one pass: index lists of at most `batch_size` samples.
pub type Batches = Vec<Vec<i64>>;

/// Cuts `indices` into batches of `batch_size` (the last may be smaller). With `shuffle`, the
/// order is a permutation drawn from `(seed, epoch)` alone, so a resumed run repeats it exactly.
pub fn batches(indices: &[i64], batch_size: usize, shuffle: bool, seed: u64, epoch: u64) -> Batches {
    order(indices, shuffle, seed, epoch).chunks(batch_size.max(1)).map(<[i64]>::to_vec).collect()
}

/// The order of one pass over `indices`: as given, or with `shuffle` a permutation drawn from
/// `(seed, epoch)` alone (the same in every process of a distributed job).
pub fn order(indices: &[i64], shuffle: bool, seed: u64, epoch: u64) -> Vec<i64> {
    let mut order = indices.to_vec();
    if shuffle {
        SplitMix64::new(seed, Stream::Shuffle, epoch).shuffle(&mut order);
    }
    order
}

/// Calls `step(index, indices, x, y)` for each batch of `batches` in order, with the batch's
/// samples from `reader`, which is first told the pass's `stage` (training or evaluation).
///
/// With `prefetch == 0` each batch is read in line, just before its step. Otherwise a loader
/// thread reads the batches in the same order and keeps up to `prefetch` of them ready, so that
/// reading (decoding, disk) overlaps the steps; what the steps see is the same either way. A step
/// that returns `ControlFlow::Break` ends the pass after it. The first error, from the reader or
/// from a step, ends the pass and is returned; a panicking reader is reported as an error.
pub fn for_each_batch<E>(
    reader: &mut dyn DatasetReader,
    batches: &Batches,
    stage: Stage,
    prefetch: usize,
    mut step: impl FnMut(usize, &[i64], Tensor, Tensor) -> std::result::Result<ControlFlow<()>, E>,
) -> std::result::Result<(), E>
where
    E: From<Error>,
{
    reader.set_stage(stage)?;
    if prefetch == 0 {
        for (index, idx) in batches.iter().enumerate() {
            let (x, y) = read(reader, idx)?;
            if step(index, idx, x, y)?.is_break() {
                break;
            }
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        // More slots than batches would hold nothing; the channel allocates its slots up front.
        let (tx, rx) = sync_channel::<Result<(Tensor, Tensor)>>(prefetch.min(batches.len()));
        scope.spawn(move || {
            for idx in batches {
                let batch = read(reader, idx);
                let failed = batch.is_err();
                // A closed channel means the consumer stopped early: nothing more to read.
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        for (index, idx) in batches.iter().enumerate() {
            let (x, y) = rx.recv().map_err(|_| Error::msg("the loader thread stopped"))??;
            if step(index, idx, x, y)?.is_break() {
                break;
            }
        }
        Ok(())
    })
}

fn read(reader: &mut dyn DatasetReader, idx: &[i64]) -> Result<(Tensor, Tensor)> {
    catch_unwind(AssertUnwindSafe(|| reader.get(idx)))
        .unwrap_or_else(|_| Err(Error::msg(format!("the reader panicked reading a batch of {} samples", idx.len()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::TensorDataset;

    fn dataset(n: i64) -> TensorDataset {
        let x = Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)).view([n, 1]);
        TensorDataset::new(&x, &Tensor::arange(n, (tch::Kind::Int64, tch::Device::Cpu))).unwrap()
    }

    fn seen(prefetch: usize) -> Vec<(usize, Vec<i64>, Vec<f32>)> {
        let mut out = Vec::new();
        let b = batches(&(0..23).collect::<Vec<_>>(), 5, true, 9, 1);
        for_each_batch::<Error>(&mut dataset(23), &b, Stage::Train, prefetch, |i, idx, x, _| {
            out.push((i, idx.to_vec(), Vec::<f32>::try_from(x.flatten(0, -1)).unwrap()));
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        out
    }

    #[test]
    fn prefetching_hands_the_steps_the_same_batches_in_the_same_order() {
        let inline = seen(0);
        assert_eq!(inline.len(), 5);
        assert!(inline.iter().all(|(_, idx, x)| idx.iter().map(|&i| i as f32).collect::<Vec<_>>() == *x));
        for prefetch in [1, 2, 8, 1_000_000_000_000] {
            assert_eq!(seen(prefetch), inline, "prefetch {prefetch}");
        }
    }

    struct Panicky;
    impl DatasetReader for Panicky {
        fn len(&self) -> usize {
            4
        }
        fn sample_shape(&self) -> Vec<i64> {
            vec![1]
        }
        fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
            if indices[0] >= 2 {
                panic!("bad sample");
            }
            Ok((Tensor::zeros([1, 1], tch::kind::FLOAT_CPU), Tensor::zeros([1], tch::kind::INT64_CPU)))
        }
    }

    #[test]
    fn a_panicking_reader_or_a_failing_step_ends_the_pass_with_an_error() {
        let b: Batches = (0..4).map(|i| vec![i]).collect();
        for prefetch in [0, 2] {
            let mut steps = 0;
            let e = for_each_batch::<Error>(&mut Panicky, &b, Stage::Train, prefetch, |_, _, _, _| {
                steps += 1;
                Ok(ControlFlow::Continue(()))
            });
            assert!(e.unwrap_err().to_string().contains("panicked"), "prefetch {prefetch}");
            assert_eq!(steps, 2);
            let mut steps = 0;
            let e = for_each_batch::<Error>(
                &mut dataset(40),
                &(0..40).map(|i| vec![i]).collect(),
                Stage::Train,
                prefetch,
                |i, _, _, _| {
                    steps += 1;
                    if i == 1 {
                        Err(Error::msg("step failed"))
                    } else {
                        Ok(ControlFlow::Continue(()))
                    }
                },
            );
            assert_eq!((e.unwrap_err().to_string(), steps), ("step failed".to_owned(), 2));
        }
    }

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

    #[test]
    fn a_step_that_breaks_ends_the_pass_after_it() {
        let b: Batches = (0..10).map(|i| vec![i]).collect();
        for prefetch in [0, 3] {
            let mut steps = Vec::new();
            for_each_batch::<Error>(&mut dataset(10), &b, Stage::Train, prefetch, |i, _, _, _| {
                steps.push(i);
                Ok(if i == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })
            .unwrap();
            assert_eq!(steps, [0, 1, 2, 3], "prefetch {prefetch}");
        }
    }
}
