//! Parameters refused before they are allocated: a layer whose sizes come from the config or the
//! data (a hidden size of 4e9, a class label of 1e9) must be an error naming its cause, not an
//! allocation that aborts the process or swaps the machine to a halt.
//!
//! The bound is the machine's physical memory: parameters alone (four bytes each, before their
//! gradients and optimizer state) that exceed it can never train.

use torchfit_sdk::{Error, Result};

/// What the layers built so far hold, against what the machine has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Bytes of parameters taken so far.
    taken: u128,
    /// Bytes of physical memory.
    memory: u128,
}

/// Bytes of physical memory (`sysinfo`); unbounded where it cannot be read.
fn physical_memory() -> u128 {
    // SAFETY: `sysinfo` fills the zeroed struct it is given and touches nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    match unsafe { libc::sysinfo(&mut info) } {
        0 => info.totalram as u128 * info.mem_unit.max(1) as u128,
        _ => u128::MAX,
    }
}

impl Budget {
    /// The budget of this machine.
    pub(crate) fn of_machine() -> Self {
        Self::with_memory(physical_memory())
    }

    /// A budget of `memory` bytes.
    pub(crate) fn with_memory(memory: u128) -> Self {
        Budget { taken: 0, memory }
    }

    /// Takes the parameters of a layer of `shape` (every factor of its weight and bias counts),
    /// or the error `refuse` makes of the message that says why not.
    pub(crate) fn take(&mut self, sizes: &[i64], refuse: impl FnOnce(String) -> Error) -> Result<()> {
        let count = sizes.iter().fold(1u128, |n, &s| n.saturating_mul(s.max(0) as u128));
        let layer = count.saturating_mul(4);
        self.taken = self.taken.saturating_add(layer);
        if self.taken <= self.memory {
            return Ok(());
        }
        let gb = |b: u128| b as f64 / 1e9;
        Err(refuse(format!(
            "the model would hold {:.1} GB of parameters (this layer {count} of them), more than this machine's {:.1} GB of memory",
            gb(self.taken),
            gb(self.memory)
        )))
    }

    /// The parameters of a linear layer from `inputs` to `outputs` (weight and bias).
    pub(crate) fn linear(&mut self, inputs: i64, outputs: i64, refuse: impl FnOnce(String) -> Error) -> Result<()> {
        self.take(&[outputs, inputs.saturating_add(1)], refuse)
    }

    /// The output layer, whose width comes from the data: its error says so.
    pub(crate) fn output(&mut self, inputs: i64, outputs: i64) -> Result<()> {
        self.linear(inputs, outputs, |m| {
            Error::data(format!(
                "{outputs} outputs (for classification: the largest class label + 1, from the data): {m}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_refused_once_their_parameters_outgrow_the_memory() {
        let mut b = Budget::with_memory(1_000);
        b.linear(9, 10, |m| torchfit_sdk::Error::config("hidden[0]", m)).unwrap();
        b.linear(10, 10, |m| torchfit_sdk::Error::config("hidden[1]", m)).unwrap();
        let err = b.linear(10, 10, |m| torchfit_sdk::Error::config("hidden[2]", m)).unwrap_err().to_string();
        assert!(err.contains("hidden[2]") && err.contains("more than this machine"), "{err}");
        let err = Budget::with_memory(1 << 30).output(100, 1_000_000_001).unwrap_err().to_string();
        assert!(err.contains("1000000001 outputs") && err.contains("class label"), "{err}");
        assert!(Budget::with_memory(1 << 40).take(&[i64::MAX, i64::MAX, i64::MAX], Error::data).is_err());
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let memory = physical_memory();
        assert!(memory > 1 << 28 && memory < u128::MAX, "{memory}");
    }
}
