//! SDK versions: what a plugin was built with, and what a component needs of its host.
//!
//! The plugin ABI is 1 (`ffi::ABI_VERSION`); within it the SDK grows by minor versions under
//! the rule in [`crate::ffi`]'s documentation: 1.0 is the first released SDK, 1.1 added the
//! extension interfaces, 1.2 the process service, 1.3 the reader's stage and sample names, 1.4 one batch's history value, the
//! gradient scaler and gradient accumulation, 1.5 a look inside a model's forward pass. A 1.x host loads every 1.y plugin.

/// An SDK version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SdkVersion {
    /// The plugin ABI (breaking changes).
    pub major: u32,
    /// Additions within the ABI.
    pub minor: u32,
}

impl SdkVersion {
    /// The first released SDK: the hooks, host services and components of ABI v1.
    pub const V1_0: SdkVersion = SdkVersion { major: 1, minor: 0 };
    /// SDK 1.1: extension interfaces (events and host services by name), `on_loss_computed`,
    /// stopping after a batch, skipping the step, replacing the batch, optimizer
    /// hyper-parameters and state, buffers and state dict, running the model, callback tensor
    /// state, scorer direction, error kinds.
    pub const V1_1: SdkVersion = SdkVersion { major: 1, minor: 1 };
    /// SDK 1.2: the process a callback runs in ([`crate::Host::process`]: rank and world size
    /// of a data-parallel run).
    pub const V1_2: SdkVersion = SdkVersion { major: 1, minor: 2 };
    /// SDK 1.3: a reader's stage ([`crate::DatasetReader::set_stage`]: training or evaluation)
    /// and its sample names ([`crate::DatasetReader::sample_names`]).
    pub const V1_3: SdkVersion = SdkVersion { major: 1, minor: 3 };
    /// SDK 1.4: one batch's history value ([`crate::Host::history_batch_value`]), the gradient
    /// scaler of a `16-mixed` run ([`crate::Host::grad_scaler`]) and the batches per optimizer
    /// step ([`crate::Host::accumulate_grad_batches`]).
    pub const V1_4: SdkVersion = SdkVersion { major: 1, minor: 4 };
    /// SDK 1.5: a look inside a model's forward pass ([`crate::Model::forward_inspected`]:
    /// guided ReLUs, a named layer's output).
    pub const V1_5: SdkVersion = SdkVersion { major: 1, minor: 5 };
    /// The version this SDK is.
    pub const CURRENT: SdkVersion = SdkVersion::V1_5;

    /// Version `1.minor`.
    pub const fn v1(minor: u32) -> Self {
        SdkVersion { major: 1, minor }
    }
}

impl std::fmt::Display for SdkVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
