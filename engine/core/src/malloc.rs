//! glibc's malloc, set for training loops (`malloc = "training"`, the default).
//!
//! Every training step frees and allocates the same tensors again: activations and gradients
//! from a few hundred KiB to tens of MiB. glibc serves an allocation above its mmap threshold
//! with a fresh `mmap` and gives a heap top above its trim threshold back to the kernel, and
//! either way the next step faults the pages in again. The mmap threshold starts at 128 KiB and
//! glibc raises it as such blocks are freed, so how often a run pays depends on the order of
//! its frees, and the same epoch can take several times the page faults from one run to the
//! next (measurements in `bench/README.md`). With fixed thresholds every run takes the same.
//!
//! [`apply`] fixes them once per process: mmap threshold 32 MiB (the most `mallopt` accepts) and
//! trim threshold 64 MiB. `torchfit train` applies it before its readers load the data,
//! [`NeuralNet::initialize`](crate::NeuralNet::initialize) when the first model is built; a
//! program that allocates much before that can call it first thing in `main`. It changes
//! nothing when the policy is `"system"`, when the environment already sets glibc's malloc
//! tunables (`MALLOC_*_` variables or `glibc.malloc` in `GLIBC_TUNABLES`), or on a C library
//! other than glibc.

use serde::Deserialize;

/// Who sets glibc's malloc thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MallocPolicy {
    /// torchfit fixes them for training loops (see the module docs).
    #[default]
    Training,
    /// glibc's own (dynamic) thresholds, or whatever the environment sets.
    System,
}

/// What [`decide`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Set these `(mallopt parameter, value)` pairs.
    Set(Vec<(i32, i32)>),
    /// Leave malloc alone, for this reason.
    Keep(&'static str),
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MIB: i32 = 1 << 20;
/// The settings of the training policy: `(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRAINING: [(i32, i32); 2] = [(libc::M_MMAP_THRESHOLD, 32 * MIB), (libc::M_TRIM_THRESHOLD, 64 * MIB)];
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const TRAINING: [(i32, i32); 0] = [];

/// Decides what to do for `policy` in an environment of `vars` (name, value) (pure).
pub fn decide<'a>(policy: MallocPolicy, mut vars: impl Iterator<Item = (&'a str, &'a str)>) -> Decision {
    if policy == MallocPolicy::System {
        return Decision::Keep("malloc = \"system\"");
    }
    if TRAINING.is_empty() {
        return Decision::Keep("not glibc");
    }
    if vars.any(|(k, v)| {
        (k.starts_with("MALLOC_") && k.ends_with('_')) || (k == "GLIBC_TUNABLES" && v.contains("glibc.malloc"))
    }) {
        return Decision::Keep("the environment sets glibc's malloc tunables");
    }
    Decision::Set(TRAINING.to_vec())
}

/// Carries out [`decide`] for this process's environment, once per process (later calls
/// return the first call's decision). A value that glibc refuses is logged and skipped.
pub fn apply(policy: MallocPolicy) -> &'static Decision {
    static DONE: std::sync::OnceLock<Decision> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        let decision = decide(policy, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match &decision {
            Decision::Set(pairs) => {
                for &(param, value) in pairs {
                    if !set(param, value) {
                        log::warn!("glibc refused mallopt({param}, {value})");
                    }
                }
                release_free_pages();
                log::debug!("malloc: fixed thresholds for training {pairs:?}");
            }
            Decision::Keep(why) => log::debug!("malloc: left as it is ({why})"),
        }
        decision
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(param: i32, value: i32) -> bool {
    // SAFETY: mallopt only changes glibc's malloc parameters; any value is checked by glibc.
    unsafe { libc::mallopt(param, value) == 1 }
}

/// Gives the pages of free heap chunks back to the kernel (`malloc_trim(0)`): what was freed
/// before the thresholds were fixed would otherwise stay resident for the whole run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_pages() {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_pages() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_param: i32, _value: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_training_policy_fixes_both_thresholds() {
        assert_eq!(decide(MallocPolicy::Training, [("PATH", "/bin")].into_iter()), Decision::Set(TRAINING.to_vec()));
        assert_eq!(TRAINING.len(), 2);
    }

    #[test]
    fn the_system_policy_changes_nothing() {
        assert_eq!(decide(MallocPolicy::System, std::iter::empty()), Decision::Keep("malloc = \"system\""));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn tunables_from_the_environment_win() {
        let keep = Decision::Keep("the environment sets glibc's malloc tunables");
        assert_eq!(
            decide(MallocPolicy::Training, [("MALLOC_ARENA_MAX", "2")].into_iter()),
            Decision::Set(TRAINING.to_vec()),
            "not a tunable: no trailing _"
        );
        assert_eq!(decide(MallocPolicy::Training, [("MALLOC_MMAP_THRESHOLD_", "65536")].into_iter()), keep);
        assert_eq!(
            decide(MallocPolicy::Training, [("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")].into_iter()),
            keep
        );
        assert_eq!(
            decide(MallocPolicy::Training, [("GLIBC_TUNABLES", "glibc.pthread.rseq=0")].into_iter()),
            Decision::Set(TRAINING.to_vec())
        );
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_every_value_of_the_training_policy() {
        for (param, value) in TRAINING {
            assert!(set(param, value), "mallopt({param}, {value}) refused");
        }
    }
}
