//! Gradient accumulation (Lightning's `accumulate_grad_batches`, Poutyne's `batches_per_step`):
//! the training batches of an epoch form groups of `k`; each batch's backward adds its
//! gradients, with its loss scaled by `1 / k`, and the optimizer steps after a group's last
//! batch. The last group of an epoch may be shorter: it is stepped at the epoch's end, its loss
//! still scaled by `1 / k` (Lightning's rule). `on_grad_computed`, the optimizer step and the
//! gradient scaler run once per group; the batch records say which batches stepped
//! (`stepped`). A non-finite loss in a group skips that group's step. In a data-parallel job
//! only a group's last batch all-reduces gradients (DDP's `no_sync` for the others).

/// Where a training batch stands in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InGroup {
    /// The group's first batch: the gradients are cleared before its backward.
    pub first: bool,
    /// The group's last batch: gradients are reduced over the ranks and the optimizer steps.
    pub last: bool,
}

/// The accumulation of one fit: how many batches a group holds, and whether the group running
/// met a non-finite loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Accumulation {
    every: usize,
    tainted: bool,
}

impl Accumulation {
    /// Groups of `every` batches (at least 1; 1 steps after every batch).
    pub fn new(every: usize) -> Self {
        Self { every: every.max(1), tainted: false }
    }

    /// Whether batches are accumulated at all.
    pub fn accumulates(&self) -> bool {
        self.every > 1
    }

    /// Where batch `index` (from 0) of a pass of `batches` training batches stands.
    pub fn position(&self, index: usize, batches: usize) -> InGroup {
        InGroup {
            first: index.is_multiple_of(self.every),
            last: (index + 1).is_multiple_of(self.every) || index + 1 >= batches,
        }
    }

    /// What the loss is multiplied by before backward: `1 / k`, or `None` without accumulation.
    pub fn loss_factor(&self) -> Option<f64> {
        self.accumulates().then(|| 1.0 / self.every as f64)
    }

    /// Notes the batch at `at`: a group starts clean; `non_finite` taints it.
    pub fn note(&mut self, at: InGroup, non_finite: bool) {
        if at.first {
            self.tainted = false;
        }
        self.tainted |= non_finite;
    }

    /// Whether the group running met a non-finite loss (its step is skipped).
    pub fn tainted(&self) -> bool {
        self.tainted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(every: usize, batches: usize) -> Vec<usize> {
        let a = Accumulation::new(every);
        (0..batches).filter(|&i| a.position(i, batches).last).collect()
    }

    #[test]
    fn every_batch_steps_without_accumulation() {
        assert_eq!(steps(1, 4), [0, 1, 2, 3]);
        assert_eq!(Accumulation::new(1).loss_factor(), None);
    }

    #[test]
    fn a_group_steps_after_its_last_batch_and_the_short_last_group_at_the_epochs_end() {
        assert_eq!(steps(4, 8), [3, 7]);
        assert_eq!(steps(4, 10), [3, 7, 9]);
        assert_eq!(steps(3, 2), [1]);
        let a = Accumulation::new(4);
        assert_eq!(a.position(4, 10), InGroup { first: true, last: false });
        assert_eq!(a.loss_factor(), Some(0.25));
    }

    #[test]
    fn a_non_finite_loss_taints_its_group_only() {
        let mut a = Accumulation::new(2);
        a.note(a.position(0, 4), true);
        a.note(a.position(1, 4), false);
        assert!(a.tainted());
        a.note(a.position(2, 4), false);
        assert!(!a.tainted());
    }
}
