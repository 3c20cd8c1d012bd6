//! Data-parallel training on PyTorch's own distributed engine, c10d (through
//! [`torchfit_c10d`]), with the semantics of `DistributedDataParallel` and
//! `DistributedSampler`.
//!
//! A process learns its place in the job from its launcher's environment ([`Launch`], torchrun's
//! contract) and joins the job's process group ([`Distributed::join`]); a [`crate::NeuralNet`]
//! given the group ([`crate::NeuralNet::set_distributed`]) then trains data-parallel:
//!
//! - at the start (and after a resume) parameters and buffers are broadcast from rank 0, after
//!   checking that every rank built the same parameter shapes;
//! - each epoch every rank trains on its [`shard`] of the epoch's seeded order (`batch_size` is
//!   per process); DDP's Reducer averages the gradients during backward, bucket by bucket;
//!   buffers (batch-norm statistics) are broadcast from rank 0 before each training forward
//!   unless `broadcast_buffers = false`;
//! - validation batches are those of one process, dealt round-robin: rank `r` computes the
//!   outputs of batches `r`, `r + world_size`, ... and sends each to the others, so every rank's
//!   callbacks see every validation batch with the outputs one process would compute, and
//!   validation losses and scores (any scorer) are one process's; the training losses in
//!   history are reduced over the ranks (weighted by batch sizes) at the end of each epoch, so
//!   `history.json` reads like one process's;
//! - decisions are agreed: a non-finite loss or a skipped step on one rank skips it on all, and a
//!   stop asked on any rank (a callback, a signal) stops every rank at the same batch or epoch;
//! - files are written by rank 0 only (checkpoints, the run directory; callbacks ask
//!   `Host::is_main_process`).
//!
//! Faults end in errors within a bounded time, never a hang: a lost peer fails the next
//! collective at once ("Connection closed by peer") and the error names the ranks that stopped
//! answering; a peer that never joins fails the rendezvous after `timeout`.

mod launch;
mod shard;

pub use launch::{cores, threads_per_process, Launch};
pub use shard::shard;

use crate::{Error, Result};
use serde::Deserialize;
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torchfit_c10d::{ProcessGroup, Reducer, Store};

/// The communication backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Gloo, for CPU tensors (it also carries CUDA tensors, through host memory).
    #[default]
    Gloo,
    /// NCCL, PyTorch's backend for CUDA tensors (`cuda:LOCAL_RANK`); CPU tensors still go
    /// through Gloo, as torch.distributed's `"cpu:gloo,cuda:nccl"`. Loaded at run time from
    /// `libtorchfit_nccl.so` (the `torchfit-nccl` package).
    Nccl,
}

/// `[distributed]`: how a process of a distributed job trains (ignored in a process of its own).
/// A key left out takes its value from [`DistributedConfig::default`], PyTorch's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedConfig {
    /// The backend (`gloo` or `nccl`).
    pub backend: Backend,
    /// Seconds the rendezvous and each collective may wait for the other ranks (PyTorch's
    /// default for Gloo: 1800).
    pub timeout: f64,
    /// Gradient bucket size in MiB (DDP's `bucket_cap_mb`, 25).
    pub bucket_cap_mb: f64,
    /// Broadcast buffers from rank 0 before each training forward (DDP's `broadcast_buffers`).
    pub broadcast_buffers: bool,
    /// Drop the tail of the epoch's order that does not divide among the ranks instead of
    /// repeating its head (`DistributedSampler`'s `drop_last`).
    pub drop_last: bool,
}

/// The longest `timeout`, in seconds (about 31 years): a deadline this far off still fits the
/// 64-bit nanosecond clocks c10d adds it to (a larger one made `Duration` panic, or would
/// overflow them).
const MAX_TIMEOUT: f64 = 1e9;

impl Default for DistributedConfig {
    fn default() -> Self {
        Self { backend: Backend::Gloo, timeout: 1800.0, bucket_cap_mb: 25.0, broadcast_buffers: true, drop_last: false }
    }
}

impl DistributedConfig {
    pub(crate) fn validated(&self) -> std::result::Result<(), (String, String)> {
        if !(self.timeout > 0.0 && self.timeout <= MAX_TIMEOUT) {
            return Err((
                "distributed.timeout".into(),
                format!("must be a positive number of seconds, at most {MAX_TIMEOUT:e}, got {:?}", self.timeout),
            ));
        }
        if !(self.bucket_cap_mb > 0.0 && self.bucket_cap_mb < 1e6) {
            return Err((
                "distributed.bucket_cap_mb".into(),
                format!("must be in (0, 1e6), got {:?}", self.bucket_cap_mb),
            ));
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// This process's membership of a distributed job: its [`Launch`] and the job's process group.
pub struct Distributed {
    launch: Launch,
    config: DistributedConfig,
    group: ProcessGroup,
    /// The rendezvous store, under this attempt's prefix (kept for fault reports).
    store: Store,
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed").field("launch", &self.launch).field("config", &self.config).finish()
    }
}

/// Key prefix of this job's keys in the store (torch.distributed's `/worker/attempt_N`).
fn prefix(launch: &Launch) -> String {
    format!("torchfit/attempt_{}", launch.restart_count)
}

impl Distributed {
    /// Joins the job `launch` describes: connects to (rank 0 without an agent: serves) the
    /// rendezvous store at `MASTER_ADDR:MASTER_PORT` and builds the process group, waiting up to
    /// `config.timeout` for every rank.
    pub fn join(launch: Launch, config: &DistributedConfig) -> Result<Self> {
        config.validated().map_err(|(key, message)| Error::Config { origin: "config".into(), key, message })?;
        // The errors come back as this crate's; libtorch's own lines about each retry are noise
        // below a debug log.
        let debug = log::max_level() >= log::LevelFilter::Debug;
        torchfit_c10d::set_cpp_log(if debug { torchfit_c10d::CppLog::Warning } else { torchfit_c10d::CppLog::Fatal });
        let timeout = config.timeout();
        let at = format!("{}:{}", launch.master_addr, launch.master_port);
        let store = if launch.serves_store() {
            Store::serve(&launch.master_addr, launch.master_port, launch.world_size, timeout)
                .map_err(|e| Error::Rendezvous(format!("rank 0 cannot serve the store on {at}: {e}")))?
        } else {
            Store::connect(&launch.master_addr, launch.master_port, timeout)
                .map_err(|e| Error::Rendezvous(format!("rank {} cannot reach the store at {at}: {e}", launch.rank)))?
        };
        let store = store.prefixed(&prefix(&launch)).map_err(|e| Error::Rendezvous(e.0))?;
        let group = match config.backend {
            Backend::Gloo => ProcessGroup::gloo(&store, launch.rank, launch.world_size, timeout),
            Backend::Nccl => ProcessGroup::nccl(&store, launch.rank, launch.world_size, timeout, launch.local_rank),
        };
        let group = group.map_err(|e| {
            Error::Rendezvous(format!(
                "rank {} of {} could not join the group at {at} (timeout {} s): {e}",
                launch.rank, launch.world_size, config.timeout
            ))
        })?;
        log::debug!("rank {} of {} joined the group at {at}", launch.rank, launch.world_size);
        Ok(Self { launch, config: config.clone(), group, store })
    }

    /// How this process was launched.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// The `[distributed]` settings it joined with.
    pub fn config(&self) -> &DistributedConfig {
        &self.config
    }

    /// Rank, world size and local rank, as the SDK's host service reports them.
    pub fn process(&self) -> torchfit_sdk::Process {
        torchfit_sdk::Process {
            rank: self.launch.rank,
            world_size: self.launch.world_size,
            local_rank: self.launch.local_rank,
        }
    }

    /// Whether this is rank 0, the one that writes files.
    pub fn is_main(&self) -> bool {
        self.launch.rank == 0
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        self.group.barrier().map_err(|e| self.lost("a barrier", e))
    }

    /// Whether each of `flags` is raised on any rank.
    pub fn any(&self, flags: &[bool]) -> Result<Vec<bool>> {
        let mut t = Tensor::from_slice(&flags.iter().map(|&f| f as u8 as f32).collect::<Vec<f32>>());
        self.group.all_reduce_sum(&mut t).map_err(|e| self.lost("agreeing on the batch's decisions", e))?;
        Ok(Vec::<f32>::try_from(&t)?.into_iter().map(|v| v > 0.0).collect())
    }

    /// Sums `t` over the ranks, in place (through host memory for a device tensor).
    pub fn sum(&self, t: &mut Tensor) -> Result<()> {
        if t.device() == Device::Cpu {
            return self.group.all_reduce_sum(t).map_err(|e| self.lost("an all-reduce", e));
        }
        let mut host = t.f_to_device(Device::Cpu)?;
        self.group.all_reduce_sum(&mut host).map_err(|e| self.lost("an all-reduce", e))?;
        t.f_copy_(&host)?;
        Ok(())
    }

    /// Overwrites `tensors` on every rank with rank 0's, without recording autograd history.
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        self.broadcast_from(tensors, 0)
    }

    /// Overwrites `tensors` on every rank with rank `root`'s, without recording autograd history
    /// (tensors on a device travel through host memory).
    pub fn broadcast_from(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        let on_host = tensors.iter().all(|t| t.device() == Device::Cpu);
        let staged: Vec<Tensor> = match on_host {
            true => tensors.iter().map(Tensor::shallow_clone).collect(),
            false => tensors.iter().map(|t| t.f_to_device(Device::Cpu)).collect::<std::result::Result<_, _>>()?,
        };
        let refs: Vec<&Tensor> = staged.iter().collect();
        // DDP's `_sync_module_states` packs 250 MiB per broadcast.
        self.group
            .broadcast(&refs, 250 * 1024 * 1024, root)
            .map_err(|e| self.lost(&format!("a broadcast from rank {root}"), e))?;
        if !on_host {
            for (t, host) in tensors.iter().zip(&staged) {
                t.shallow_clone().f_copy_(host)?;
            }
        }
        Ok(())
    }

    /// Rank `owner`'s `tensor` on every rank: the owner passes `Some`, the others `None` and get
    /// a tensor of the owner's shape and kind on `device`.
    pub fn share(&self, tensor: Option<Tensor>, owner: usize, device: Device) -> Result<Tensor> {
        let header = match &tensor {
            Some(t) => {
                let kind = KINDS.iter().position(|k| *k == t.kind()).ok_or_else(|| {
                    Error::Distributed(format!("cannot share outputs of kind {:?} between ranks", t.kind()))
                })?;
                let mut h = vec![kind as i64, t.dim() as i64];
                h.extend(t.size());
                h.resize(HEADER, 0);
                if t.dim() > HEADER - 2 {
                    return Err(Error::Distributed(format!("cannot share outputs of {} dimensions", t.dim())));
                }
                Tensor::from_slice(&h)
            }
            None => Tensor::zeros([HEADER as i64], (Kind::Int64, Device::Cpu)),
        };
        self.broadcast_from(std::slice::from_ref(&header), owner)?;
        let h = Vec::<i64>::try_from(&header)?;
        let kind = KINDS[h[0].clamp(0, KINDS.len() as i64 - 1) as usize];
        let shape = &h[2..2 + h[1].clamp(0, HEADER as i64 - 2) as usize];
        let t = match tensor {
            Some(t) => t.f_contiguous()?,
            None => Tensor::f_zeros(shape, (kind, device))?,
        };
        self.broadcast_from(std::slice::from_ref(&t), owner)?;
        Ok(t)
    }

    /// Fails on every rank unless every rank holds parameters of the same names, shapes and
    /// types as rank 0 (DDP checks the same before its first broadcast).
    pub fn check_same_parameters(&self, params: &[(String, Tensor)]) -> Result<()> {
        let own = fingerprint(params);
        let mut theirs = Tensor::from_slice(&own);
        self.group.broadcast(&[&theirs], 1 << 20, 0).map_err(|e| self.lost("comparing the models", e))?;
        theirs = theirs.f_contiguous()?;
        let same = Vec::<i64>::try_from(&theirs)? == own;
        let differs = self.any(&[!same])?[0];
        if differs {
            let what = if same { "another rank's model" } else { "this rank's model" };
            return Err(Error::Distributed(format!(
                "{what} differs from rank 0's (parameter names, shapes or types): every rank must build the same model"
            )));
        }
        Ok(())
    }

    /// Whether every rank holds rank 0's parameter values (compared by two sums per tensor, in
    /// double precision): the same on every rank, the job's answer. A job whose gradients are
    /// averaged stays identical; a difference means the ranks trained apart.
    pub fn parameters_in_sync(&self, params: &[(String, Tensor)]) -> Result<bool> {
        let _guard = tch::no_grad_guard();
        let mut own = Vec::with_capacity(2 * params.len());
        for (_, t) in params {
            let t = t.f_to_kind(Kind::Double)?;
            own.push(t.f_sum(Kind::Double)?.f_double_value(&[])?);
            own.push(t.f_abs()?.f_sum(Kind::Double)?.f_double_value(&[])?);
        }
        let main = Tensor::from_slice(&own);
        self.broadcast_from_main(std::slice::from_ref(&main))?;
        let same = Vec::<f64>::try_from(&main)?.iter().zip(&own).all(|(a, b)| a.to_bits() == b.to_bits());
        Ok(!self.any(&[!same])?[0])
    }

    /// DDP's Reducer over `params` (those that require grad), with `bucket_cap_mb` buckets.
    pub(crate) fn reducer(&self, params: &[(String, Tensor)]) -> Result<Reducer> {
        let bytes = (self.config.bucket_cap_mb * 1024.0 * 1024.0) as usize;
        Reducer::new(&self.group, params, bytes.max(1)).map_err(|e| Error::Distributed(format!("reducer: {e}")))
    }

    /// Turns a failed collective into an error naming the ranks that stopped answering: each
    /// survivor marks itself alive in the store and, after a grace period, the ranks without a
    /// mark are reported lost. Takes a few seconds, and only after a failure.
    pub(crate) fn lost(&self, during: &str, e: torchfit_c10d::Error) -> Error {
        const GRACE: Duration = Duration::from_secs(3);
        let me = format!("alive/{}", self.launch.rank);
        if self.store.set(&me, b"1").and_then(|()| self.store.add("alive/count", 1)).is_err() {
            let holder = if self.launch.agent_store { "the launcher" } else { "rank 0" };
            return Error::Distributed(format!("{during} failed and the store is gone too ({holder} served it): {e}"));
        }
        std::thread::sleep(GRACE);
        let lost: Vec<String> = (0..self.launch.world_size)
            .filter(|r| !self.store.contains(&format!("alive/{r}")).unwrap_or(true))
            .map(|r| r.to_string())
            .collect();
        match lost.len() {
            0 => Error::Distributed(format!("{during} failed on rank {}: {e}", self.launch.rank)),
            1 => Error::Distributed(format!("lost rank {} ({during} failed: {e})", lost[0])),
            _ => Error::Distributed(format!("lost ranks {} ({during} failed: {e})", lost.join(", "))),
        }
    }
}

/// Length of the header [`Distributed::share`] sends first: kind, rank of the shape, the shape.
const HEADER: usize = 10;
/// The kinds of outputs ranks can share, by their position.
const KINDS: [Kind; 10] = [
    Kind::Float,
    Kind::Double,
    Kind::Half,
    Kind::BFloat16,
    Kind::Int64,
    Kind::Int,
    Kind::Int16,
    Kind::Int8,
    Kind::Uint8,
    Kind::Bool,
];

/// Parameter names, dtypes and shapes as integers (names hashed).
fn fingerprint(params: &[(String, Tensor)]) -> Vec<i64> {
    use std::hash::{Hash, Hasher};
    let mut out = vec![params.len() as i64];
    for (name, t) in params {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        format!("{:?}", t.kind()).hash(&mut h);
        t.size().hash(&mut h);
        out.push(h.finish() as i64);
    }
    out
}

/// The size-weighted mean loss and the total size of each batch over the ranks: `losses[i]` is
/// this rank's mean loss of batch `i`, `sizes[i]` its sample count.
pub(crate) fn reduce_batches(d: &Distributed, losses: &[f64], sizes: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = losses.len();
    let mut flat: Vec<f64> = losses.iter().zip(sizes).map(|(l, s)| l * s).collect();
    flat.extend_from_slice(sizes);
    let mut t = Tensor::from_slice(&flat).to_kind(Kind::Double);
    d.sum(&mut t)?;
    let v = Vec::<f64>::try_from(&t)?;
    let (weighted, totals) = v.split_at(n);
    Ok((weighted.iter().zip(totals).map(|(w, s)| if *s > 0.0 { w / s } else { f64::NAN }).collect(), totals.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::DistributedConfig;

    fn with_timeout(timeout: f64) -> DistributedConfig {
        DistributedConfig { timeout, ..DistributedConfig::default() }
    }

    #[test]
    fn a_timeout_is_refused_unless_every_clock_can_hold_its_deadline() {
        for ok in [1e-3, 1800.0, 1e9] {
            assert!(with_timeout(ok).validated().is_ok(), "{ok}");
            assert!(std::time::Duration::try_from_secs_f64(ok).is_ok());
        }
        for bad in [0.0, -1.0, 1.1e9, 1e300, f64::INFINITY, f64::NAN] {
            let (key, message) = with_timeout(bad).validated().unwrap_err();
            assert_eq!(key, "distributed.timeout", "{bad}");
            assert!(message.contains("at most 1e9"), "{message}");
        }
    }
}
