//! PyTorch's distributed engine (c10d) from Rust: the pieces `torch.distributed` and
//! `DistributedDataParallel` are made of, taken from the libtorch that tch links.
//!
//! - [`Store`]: a `TCPStore` (server or client), optionally under a key prefix; the rendezvous.
//! - [`ProcessGroup`]: a Gloo process group over a store; sum all-reduce, coalesced broadcast,
//!   and barrier.
//! - [`Reducer`]: DDP's `c10d::Reducer`, which averages gradients bucket by bucket from autograd
//!   hooks while backward still runs.
//!
//! Nothing here re-implements communication: a C++ shim (`cpp/shim.cpp`, built by `build.rs`
//! against the wheel's headers) forwards to libtorch and turns its exceptions into [`Error`]s.
//! Every blocking call is bounded by the timeout its store or group was made with: a peer that
//! dies makes the survivors' collectives fail ("Connection closed by peer"), not hang.

use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;
use tch::Tensor;

#[path = "../../build/shim_error.rs"]
mod shim_error;
pub use shim_error::{Error, Result};

#[repr(C)]
struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct RawReducer {
    _private: [u8; 0],
}
type CTensor = torch_sys::C_tensor;

extern "C" {
    fn tf_c10d_free_error(e: *mut c_char);
    fn tf_c10d_set_log_level(level: c_int);
    fn tf_c10d_tcp_store(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world_size: i64,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    fn tf_c10d_store_port(s: *const RawStore) -> u16;
    fn tf_c10d_prefix_store(s: *const RawStore, prefix: *const c_char, out: *mut *mut RawStore) -> *mut c_char;
    fn tf_c10d_store_set(s: *const RawStore, key: *const c_char, value: *const u8, n: usize) -> *mut c_char;
    fn tf_c10d_store_check(s: *const RawStore, key: *const c_char, exists: *mut c_int) -> *mut c_char;
    fn tf_c10d_store_add(s: *const RawStore, key: *const c_char, delta: i64, value: *mut i64) -> *mut c_char;
    fn tf_c10d_store_free(s: *mut RawStore);
    fn tf_c10d_gloo_group(
        s: *const RawStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn tf_c10d_store_handle(s: *const RawStore) -> *const c_void;
    fn tf_c10d_nccl_group(
        s: *const RawStore,
        cpu: *const RawStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        nccl: *mut c_void,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn tf_c10d_group_free(g: *mut RawGroup);
    fn tf_c10d_all_reduce_sum(g: *const RawGroup, t: *mut CTensor) -> *mut c_char;
    fn tf_c10d_broadcast_coalesced(
        g: *const RawGroup,
        ts: *const *mut CTensor,
        n: usize,
        buffer_bytes: usize,
        root: c_int,
    ) -> *mut c_char;
    fn tf_c10d_barrier(g: *const RawGroup) -> *mut c_char;
    fn tf_c10d_reducer_new(
        g: *const RawGroup,
        params: *const *mut CTensor,
        names: *const *const c_char,
        n: usize,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut RawReducer,
    ) -> *mut c_char;
    fn tf_c10d_reducer_prepare_for_forward(r: *const RawReducer) -> *mut c_char;
    fn tf_c10d_reducer_prepare_for_backward(
        r: *const RawReducer,
        outputs: *const *mut CTensor,
        n: usize,
    ) -> *mut c_char;
    fn tf_c10d_reducer_stats(r: *const RawReducer, out: *mut i64) -> *mut c_char;
    fn tf_c10d_reducer_free(r: *mut RawReducer);
}

/// How much of libtorch's own logging reaches standard error: c10d logs each retry and timeout
/// itself (at error level), besides the error this crate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CppLog {
    /// Info and up (libtorch's most verbose).
    Info,
    /// Warnings and up (libtorch's default).
    Warning,
    /// Errors and up.
    Error,
    /// Fatal messages only: the errors still arrive as [`Error`]s.
    Fatal,
}

/// Sets libtorch's log threshold (c10's `caffe2_log_level`) for the whole process.
pub fn set_cpp_log(level: CppLog) {
    // SAFETY: writes one int that libtorch reads before logging.
    unsafe { tf_c10d_set_log_level(level as c_int) }
}

/// Turns the shim's answer (NULL or an owned message) into a `Result`.
/// The file name of the NCCL library.
const NCCL_LIBRARY: &str = "libtorchfit_nccl.so";

/// The NCCL library, loaded once for the life of the process (it brings libtorch_cuda, which is
/// never unloaded).
fn nccl_library() -> Result<&'static libloading::Library> {
    static LOADED: std::sync::OnceLock<std::result::Result<libloading::Library, String>> = std::sync::OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf));
        let candidates: Vec<std::path::PathBuf> = match std::env::var_os("TORCHFIT_NCCL_LIBRARY") {
            Some(path) => vec![path.into()],
            None => exe_dir.iter().flat_map(|d| [d.join(NCCL_LIBRARY), d.join("..").join(NCCL_LIBRARY)]).collect(),
        };
        let Some(path) = candidates.iter().find(|p| p.exists()) else {
            return Err(format!(
                "backend \"nccl\" needs {NCCL_LIBRARY} beside the torchfit executable (`cargo build --release` builds it) or at TORCHFIT_NCCL_LIBRARY; looked at {}",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        };
        // SAFETY: torchfit-nccl's library runs no code at load beyond libtorch_cuda's own.
        unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load {}: {e}", path.display()))
    });
    loaded.as_ref().map_err(|e| Error(e.clone()))
}

fn check(e: *mut c_char) -> Result<()> {
    shim_error::check(e, tf_c10d_free_error)
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error(format!("{what} {s:?} contains a NUL byte")))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The `at::Tensor*` handles of `ts`, borrowed for one call.
fn handles(ts: &[&Tensor]) -> Vec<*mut CTensor> {
    ts.iter().map(|t| t.as_ptr() as *mut CTensor).collect()
}

/// A c10d key-value store over TCP (`torch.distributed.TCPStore`).
pub struct Store {
    raw: *mut RawStore,
}

// SAFETY: c10d's TCPStore serializes its requests on one socket behind a mutex; a PrefixStore
// only rewrites keys. The handle is never aliased mutably from Rust.
unsafe impl Send for Store {}
// SAFETY: as above.
unsafe impl Sync for Store {}

impl Store {
    fn tcp(host: &str, port: u16, server: bool, world_size: Option<usize>, timeout: Duration) -> Result<Self> {
        let host = c_string("host", host)?;
        let world = world_size.map_or(-1, |w| w as i64);
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C string, out-pointer to a local.
        check(unsafe { tf_c10d_tcp_store(host.as_ptr(), port, server as c_int, world, millis(timeout), &mut raw) })?;
        Ok(Self { raw })
    }

    /// Serves a store on `host:port` (port 0: a free port, see [`Store::port`]) for
    /// `world_size` clients, itself a client of it too.
    pub fn serve(host: &str, port: u16, world_size: usize, timeout: Duration) -> Result<Self> {
        Self::tcp(host, port, true, Some(world_size), timeout)
    }

    /// Connects to the store served on `host:port`, retrying until `timeout`.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<Self> {
        Self::tcp(host, port, false, None, timeout)
    }

    /// The port the store listens on (the one chosen when it was served on port 0).
    pub fn port(&self) -> u16 {
        // SAFETY: live handle.
        unsafe { tf_c10d_store_port(self.raw) }
    }

    /// A view of this store whose keys all start with `prefix/` (`PrefixStore`).
    pub fn prefixed(&self, prefix: &str) -> Result<Self> {
        let p = c_string("prefix", prefix)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: live handle, valid C string, out-pointer to a local.
        check(unsafe { tf_c10d_prefix_store(self.raw, p.as_ptr(), &mut raw) })?;
        Ok(Self { raw })
    }

    /// Sets `key` to `value`. It does not wait for the server: a later request on the same
    /// store (for example [`Store::add`]) is answered after it.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let k = c_string("key", key)?;
        // SAFETY: live handle, valid C string, slice pointer and length.
        check(unsafe { tf_c10d_store_set(self.raw, k.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// Whether `key` is set, without waiting.
    pub fn contains(&self, key: &str) -> Result<bool> {
        let k = c_string("key", key)?;
        let mut exists = 0;
        // SAFETY: live handle, valid C string, out-pointer to a local.
        check(unsafe { tf_c10d_store_check(self.raw, k.as_ptr(), &mut exists) })?;
        Ok(exists != 0)
    }

    /// Adds `delta` to the counter `key` (0 when unset) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let k = c_string("key", key)?;
        let mut value = 0;
        // SAFETY: live handle, valid C string, out-pointer to a local.
        check(unsafe { tf_c10d_store_add(self.raw, k.as_ptr(), delta, &mut value) })?;
        Ok(value)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and dropped once.
        unsafe { tf_c10d_store_free(self.raw) }
    }
}

/// A process group on Gloo (`ProcessGroupGloo` inside a `ProcessGroup`): CPU tensors, and CUDA
/// tensors through host memory.
pub struct ProcessGroup {
    raw: *mut RawGroup,
    rank: usize,
    size: usize,
}

// SAFETY: c10d process groups are used from any thread; Gloo queues work on its own threads.
unsafe impl Send for ProcessGroup {}
// SAFETY: as above.
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group of `size` processes rendezvousing in `store`, as `rank`. Blocks until
    /// every rank joined or `timeout` passed; `timeout` also bounds every collective.
    /// `GLOO_SOCKET_IFNAME` names the network interfaces, as with `torch.distributed`.
    pub fn gloo(store: &Store, rank: usize, size: usize, timeout: Duration) -> Result<Self> {
        if size == 0 || rank >= size {
            return Err(Error(format!("rank {rank} is outside a world of {size}")));
        }
        let mut raw = std::ptr::null_mut();
        // SAFETY: live store handle, out-pointer to a local.
        check(unsafe { tf_c10d_gloo_group(store.raw, rank as c_int, size as c_int, millis(timeout), &mut raw) })?;
        Ok(Self { raw, rank, size })
    }

    /// Joins a group as [`ProcessGroup::gloo`] does, with PyTorch's NCCL backend for CUDA tensors
    /// (torch.distributed's `"cpu:gloo,cuda:nccl"`: CPU tensors still go through Gloo). CUDA
    /// device `device` becomes this process's current device. NCCL comes from
    /// `libtorchfit_nccl.so` (the `torchfit-nccl` package), loaded now from
    /// `TORCHFIT_NCCL_LIBRARY`, or beside the executable (or its parent folder).
    pub fn nccl(store: &Store, rank: usize, size: usize, timeout: Duration, device: usize) -> Result<Self> {
        if size == 0 || rank >= size {
            return Err(Error(format!("rank {rank} is outside a world of {size}")));
        }
        type Create = unsafe extern "C" fn(*const c_void, c_int, c_int, i64, c_int, *mut *mut c_void) -> *mut c_char;
        let library = nccl_library()?;
        // SAFETY: the symbol has this signature (torchfit-nccl's `torchfit_nccl_backend`).
        let create: libloading::Symbol<'_, Create> = unsafe { library.get(b"torchfit_nccl_backend\0") }
            .map_err(|e| Error(format!("{NCCL_LIBRARY} has no torchfit_nccl_backend: {e}")))?;
        let (cpu, cuda) = (store.prefixed("cpu/")?, store.prefixed("cuda/")?);
        let mut backend = std::ptr::null_mut();
        // SAFETY: a live store handle, an out-pointer to a local; the message is malloc'd.
        check(unsafe {
            create(
                tf_c10d_store_handle(cuda.raw),
                rank as c_int,
                size as c_int,
                millis(timeout),
                device as c_int,
                &mut backend,
            )
        })
        .map_err(|Error(e)| Error(format!("NCCL on cuda:{device}: {}", e.lines().next().unwrap_or_default())))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: live store handles; the backend's reference passes to the group (or is dropped).
        check(unsafe {
            tf_c10d_nccl_group(store.raw, cpu.raw, rank as c_int, size as c_int, millis(timeout), backend, &mut raw)
        })?;
        Ok(Self { raw, rank, size })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sums `t` over all ranks, in place (Gloo has no average: divide afterwards).
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()> {
        // SAFETY: live group; the tensor handle outlives the call, which waits for the work.
        check(unsafe { tf_c10d_all_reduce_sum(self.raw, t.as_mut_ptr()) })
    }

    /// Overwrites `tensors` on every rank with `root`'s, packed into buffers of at most
    /// `buffer_bytes` (`torch.distributed`'s `_broadcast_coalesced`). Tensors that must be
    /// written without recording autograd history are best passed under `no_grad`.
    pub fn broadcast(&self, tensors: &[&Tensor], buffer_bytes: usize, root: usize) -> Result<()> {
        let hs = handles(tensors);
        // SAFETY: live group; handles borrowed from live tensors for the call.
        check(unsafe { tf_c10d_broadcast_coalesced(self.raw, hs.as_ptr(), hs.len(), buffer_bytes, root as c_int) })
    }

    /// Waits until every rank reaches the barrier.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: live group.
        check(unsafe { tf_c10d_barrier(self.raw) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and dropped once.
        unsafe { tf_c10d_group_free(self.raw) }
    }
}

/// DDP's gradient reducer (`c10d::Reducer`): after [`Reducer::prepare_for_backward`], the
/// backward pass of the outputs given averages each parameter's gradient over all ranks,
/// bucket by bucket as gradients become ready, so communication overlaps the rest of backward.
///
/// Contract (DDP's): built from the parameters that require grad, in the same order on every
/// rank; [`Reducer::prepare_for_forward`] then [`Reducer::prepare_for_backward`] once per step
/// on every rank, and every one of those parameters gets a gradient in that backward (no
/// unused parameters). After the first step the buckets are rebuilt in gradient-ready order.
pub struct Reducer {
    raw: *mut RawReducer,
}

// SAFETY: the Reducer guards its state with its own mutex; autograd threads call into it.
unsafe impl Send for Reducer {}

/// DDP's default bucket size, 25 MiB (`bucket_cap_mb`).
pub const BUCKET_BYTES: usize = 25 * 1024 * 1024;
/// DDP's first bucket, 1 MiB (`dist._DEFAULT_FIRST_BUCKET_BYTES`), so the first all-reduce
/// starts early in backward.
pub const FIRST_BUCKET_BYTES: usize = 1024 * 1024;

/// DDP's Logger's averages of a Reducer's sampled iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducerStats {
    /// Forward pass (from `prepare_for_forward` to `prepare_for_backward`).
    pub forward_compute: Duration,
    /// Backward pass, to the last gradient ready.
    pub backward_compute: Duration,
    /// From the first bucket's all-reduce started to the last one finished.
    pub backward_comm: Duration,
    /// The part of the communication that ran while backward still computed.
    pub backward_overlap: Duration,
    /// The iteration the averages were last updated at.
    pub iteration: u64,
}

impl Reducer {
    /// A reducer over `params` (name, tensor) in `group`, with DDP's bucketing.
    pub fn new(group: &ProcessGroup, params: &[(String, Tensor)], bucket_bytes: usize) -> Result<Self> {
        let tensors: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        let hs = handles(&tensors);
        let names = params.iter().map(|(n, _)| c_string("parameter name", n)).collect::<Result<Vec<CString>>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let first = FIRST_BUCKET_BYTES.min(bucket_bytes);
        let mut raw = std::ptr::null_mut();
        // SAFETY: live group; handles and names borrowed for the call (the Reducer keeps its own
        // references to the tensors); out-pointer to a local.
        check(unsafe {
            tf_c10d_reducer_new(
                group.raw,
                hs.as_ptr(),
                name_ptrs.as_ptr(),
                hs.len(),
                bucket_bytes as i64,
                first as i64,
                &mut raw,
            )
        })?;
        Ok(Self { raw })
    }

    /// Before each training forward pass (rebuilds the buckets once after the first step).
    pub fn prepare_for_forward(&self) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { tf_c10d_reducer_prepare_for_forward(self.raw) })
    }

    /// DDP's Logger's timing of this Reducer: averages over sampled iterations (the first ten,
    /// then every hundredth), as `DistributedDataParallel._get_ddp_logging_data()` reports them.
    /// `None` before any iteration was timed.
    pub fn stats(&self) -> Result<Option<ReducerStats>> {
        let mut out = [-1i64; 5];
        // SAFETY: live handle, an out-array of the five values the shim writes.
        check(unsafe { tf_c10d_reducer_stats(self.raw, out.as_mut_ptr()) })?;
        let ns = |v: i64| Duration::from_nanos(v.max(0) as u64);
        Ok((out[..4].iter().all(|v| *v >= 0)).then(|| ReducerStats {
            forward_compute: ns(out[0]),
            backward_compute: ns(out[1]),
            backward_comm: ns(out[2]),
            backward_overlap: ns(out[3]),
            iteration: out[4].max(0) as u64,
        }))
    }

    /// Before backward from `outputs`: arms the autograd hooks for this step.
    pub fn prepare_for_backward(&self, outputs: &[&Tensor]) -> Result<()> {
        let hs = handles(outputs);
        // SAFETY: live handle; outputs borrowed for the call.
        check(unsafe { tf_c10d_reducer_prepare_for_backward(self.raw, hs.as_ptr(), hs.len()) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and dropped once.
        unsafe { tf_c10d_reducer_free(self.raw) }
    }
}
