//! Which samples each process trains on: PyTorch's `DistributedSampler` over the epoch's order.

/// The samples of `rank` among `world_size` processes, from `order` (the epoch's order of every
/// training sample, the same on every rank): `order` is made a multiple of `world_size` long,
/// by repeating its head (`drop_last = false`, every sample seen at least once) or by cutting
/// its tail (`drop_last = true`), and rank `r` takes every `world_size`-th sample from `r` on.
/// Every rank gets the same count, so every rank runs the same number of batches.
pub fn shard(order: &[i64], rank: usize, world_size: usize, drop_last: bool) -> Vec<i64> {
    let world = world_size.max(1);
    if order.is_empty() {
        return Vec::new();
    }
    let total = if drop_last { order.len() / world * world } else { order.len().div_ceil(world) * world };
    order.iter().cycle().take(total).skip(rank).step_by(world).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn ranks_interleave_and_pad_from_the_head_like_distributed_sampler() {
        // torch.utils.data.DistributedSampler(range(5), num_replicas=2, shuffle=False):
        // rank 0 -> [0, 2, 4], rank 1 -> [1, 3, 0].
        let order = [0, 1, 2, 3, 4];
        assert_eq!(shard(&order, 0, 2, false), [0, 2, 4]);
        assert_eq!(shard(&order, 1, 2, false), [1, 3, 0]);
        // drop_last=True: [0, 2] and [1, 3].
        assert_eq!(shard(&order, 0, 2, true), [0, 2]);
        assert_eq!(shard(&order, 1, 2, true), [1, 3]);
    }

    #[test]
    fn padding_longer_than_the_data_repeats_it() {
        // DistributedSampler(range(2), num_replicas=5): [0, 1, 0, 1, 0] dealt one each.
        let got: Vec<Vec<i64>> = (0..5).map(|r| shard(&[7, 8], r, 5, false)).collect();
        assert_eq!(got, [vec![7], vec![8], vec![7], vec![8], vec![7]]);
    }

    #[test]
    fn one_process_keeps_the_order() {
        assert_eq!(shard(&[3, 1, 2], 0, 1, false), [3, 1, 2]);
        assert_eq!(shard(&[], 0, 2, false), Vec::<i64>::new());
    }

    #[test]
    fn two_ranks_batches_together_are_one_process_batches() {
        // Rank batches of b/2 taken side by side are the one-process batch of b.
        let order: Vec<i64> = (0..12).rev().collect();
        let (r0, r1) = (shard(&order, 0, 2, false), shard(&order, 1, 2, false));
        for (k, one) in order.chunks(4).enumerate() {
            let mut two: Vec<i64> =
                r0.chunks(2).nth(k).unwrap().iter().chain(r1.chunks(2).nth(k).unwrap()).copied().collect();
            let mut one = one.to_vec();
            two.sort();
            one.sort();
            assert_eq!(one, two);
        }
    }
}
