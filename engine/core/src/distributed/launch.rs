//! The environment a launcher gives each worker process: torchrun's contract (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`,
//! `TORCHELASTIC_USE_AGENT_STORE`, `TORCHELASTIC_RESTART_COUNT`), read into a [`Launch`].

use crate::{Error, Result};

/// The cores this process may run on (1 when that cannot be known).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Intra-op threads per process that share `cores` among `processes` (at least 1): what
/// `--nproc` gives each worker and what a search gives each fit.
pub fn threads_per_process(cores: usize, processes: usize) -> usize {
    (cores / processes.max(1)).max(1)
}

/// Where this process stands in a distributed job, as its launcher said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank, from 0.
    pub rank: usize,
    /// Number of processes in the job.
    pub world_size: usize,
    /// Rank among the processes of this node (the CUDA device it takes).
    pub local_rank: usize,
    /// Number of processes on this node.
    pub local_world_size: usize,
    /// Host of the rendezvous store.
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// Whether the launcher already serves the store on `MASTER_PORT` (torchrun's agent does):
    /// then every rank connects as a client; otherwise rank 0 serves it.
    pub agent_store: bool,
    /// How many times the launcher restarted the workers (keys of earlier attempts are kept
    /// apart, as torch.distributed does).
    pub restart_count: u64,
}

impl Launch {
    /// Whether `threads` intra-op threads in each of this node's processes ask for more than its
    /// `cores`: libtorch's OpenMP threads then spin waiting for each other's share of every
    /// operation, and the job runs several times slower than with a fair share.
    pub fn oversubscribes(&self, threads: usize, cores: usize) -> bool {
        threads.saturating_mul(self.local_world_size) > cores
    }

    /// The launch described by the process environment; `None` when `WORLD_SIZE` is unset
    /// (a process of its own).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The launch described by `var` (the environment, or a test's map). Each missing or
    /// malformed variable is an error naming it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = var("WORLD_SIZE") else { return Ok(None) };
        let world_size: usize = number("WORLD_SIZE", &world)?;
        let get = |key: &str| {
            var(key).ok_or_else(|| env_error(key, "missing (WORLD_SIZE is set: a launcher must set it too)"))
        };
        let rank: usize = number("RANK", &get("RANK")?)?;
        let local_rank: usize = match var("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => rank,
        };
        let local_world_size: usize = match var("LOCAL_WORLD_SIZE") {
            Some(v) => number("LOCAL_WORLD_SIZE", &v)?,
            None => world_size,
        };
        let master_addr = get("MASTER_ADDR")?;
        let master_port: u16 = number("MASTER_PORT", &get("MASTER_PORT")?)?;
        let agent_store = match var("TORCHELASTIC_USE_AGENT_STORE").as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" || v.is_empty() => false,
            Some(v) => {
                return Err(env_error("TORCHELASTIC_USE_AGENT_STORE", &format!("must be True or False, got {v:?}")))
            }
        };
        let restart_count = match var("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => number("TORCHELASTIC_RESTART_COUNT", &v)?,
            None => 0,
        };
        if world_size == 0 {
            return Err(env_error("WORLD_SIZE", "must be at least 1"));
        }
        if rank >= world_size {
            return Err(env_error("RANK", &format!("{rank} is not below WORLD_SIZE {world_size}")));
        }
        if local_world_size == 0 || local_rank >= local_world_size {
            let message = format!("{local_rank} is not below LOCAL_WORLD_SIZE {local_world_size}");
            return Err(env_error("LOCAL_RANK", &message));
        }
        if master_port == 0 {
            return Err(env_error("MASTER_PORT", "must be a port number from 1 to 65535"));
        }
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            agent_store,
            restart_count,
        }))
    }

    /// Whether this process serves the rendezvous store.
    pub fn serves_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| env_error(key, &format!("must be a non-negative integer, got {value:?}")))
}

fn env_error(key: &str, message: &str) -> Error {
    Error::Config { origin: "environment".into(), key: key.into(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(pairs: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    const TORCHRUN: &[(&str, &str)] = &[
        ("RANK", "3"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
    ];

    #[test]
    fn threads_oversubscribe_when_the_nodes_processes_ask_for_more_than_its_cores() {
        let l = launch(TORCHRUN).unwrap().unwrap(); // two processes on this node
        assert!(l.oversubscribes(2, 2));
        assert!(l.oversubscribes(5, 8));
        assert!(!l.oversubscribes(1, 2));
        assert!(!l.oversubscribes(4, 8));
    }

    #[test]
    fn cores_are_shared_among_processes() {
        assert_eq!(threads_per_process(16, 2), 8);
        assert_eq!(threads_per_process(2, 4), 1);
        assert_eq!(threads_per_process(3, 2), 1);
        assert_eq!(threads_per_process(8, 0), 8);
    }

    #[test]
    fn no_world_size_means_a_process_of_its_own() {
        assert_eq!(launch(&[("RANK", "0")]).unwrap(), None);
    }

    #[test]
    fn torchruns_variables_are_read_as_it_sets_them() {
        let l = launch(TORCHRUN).unwrap().unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank, l.local_world_size), (3, 4, 1, 2));
        assert_eq!((l.master_addr.as_str(), l.master_port, l.agent_store, l.restart_count), ("node0", 29500, true, 2));
        assert!(!l.serves_store());
    }

    #[test]
    fn rank_zero_serves_the_store_unless_an_agent_does() {
        let plain = [("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1234")];
        let l = launch(&plain).unwrap().unwrap();
        assert!(l.serves_store());
        assert_eq!((l.local_rank, l.local_world_size), (0, 2), "local values default to the global ones");
    }

    #[test]
    fn each_bad_variable_is_named() {
        let with = |key: &str, value: &str| {
            let mut v: Vec<(&str, &str)> = TORCHRUN.iter().filter(|(k, _)| *k != key).copied().collect();
            if !value.is_empty() {
                v.push((key, value));
            }
            launch(&v).unwrap_err().to_string()
        };
        assert!(with("RANK", "4").contains("`RANK`: 4 is not below WORLD_SIZE 4"), "{}", with("RANK", "4"));
        assert!(with("RANK", "").contains("`RANK`: missing"));
        assert!(with("MASTER_PORT", "http").contains("`MASTER_PORT`"));
        assert!(with("MASTER_PORT", "0").contains("`MASTER_PORT`"));
        assert!(with("MASTER_ADDR", "").contains("`MASTER_ADDR`: missing"));
        assert!(with("LOCAL_RANK", "2").contains("`LOCAL_RANK`"));
        assert!(with("TORCHELASTIC_USE_AGENT_STORE", "maybe").contains("`TORCHELASTIC_USE_AGENT_STORE`"));
        assert!(with("WORLD_SIZE", "0").contains("`WORLD_SIZE`"));
    }
}
