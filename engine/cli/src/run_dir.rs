//! The run directory (`--out DIR`) a `torchfit train` owns: locked for the run, cleaned of what
//! an interrupted run left, and checked for what the run asks of it.
//!
//! - One run at a time: the hidden file `.torchfit.lock` holds an advisory lock (and the owner's
//!   pid) while a run uses the folder; a second run on it is refused. The lock goes with the
//!   process, however it ends, so a killed run never leaves the folder locked.
//! - Every leftover of an interrupted save is completed or removed first
//!   ([`torchfit_engine::checkpoint::recover_all`]), so a folder that holds nothing but the
//!   leftovers of a first save counts as empty.
//! - A fresh run needs the folder empty; `--resume` continues from the newest complete
//!   checkpoint saved at an epoch boundary in it, whatever callback wrote it, and starts from the
//!   beginning (with a warning) when the folder holds no checkpoint and nothing but what a run
//!   that failed before its first checkpoint leaves (config, history, summary).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use torchfit_engine::checkpoint::{self, Found};
use torchfit_engine::{Error, Result};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".torchfit.lock";

/// How the run starts in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// From freshly built components.
    Fresh,
    /// From this checkpoint.
    Resume(Found),
}

/// The epochs after which `--resume` continued the run in `dir`: its `summary.json`'s
/// `resumed_after` (none when absent or unreadable).
pub fn resumed_after(dir: &Path) -> Vec<usize> {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|s| serde_json::from_value(s["resumed_after"].clone()).ok())
        .unwrap_or_default()
}

/// A run directory held by this process.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    created: bool,
    /// The lock, held by the process that writes the folder (none for [`RunDir::follow`]).
    _lock: Option<File>,
    begin: Begin,
}

impl RunDir {
    /// Creates (when missing) and locks `path`, cleans what interrupted runs left, and decides
    /// how the run begins there.
    pub fn open(path: &Path, resume: bool) -> Result<RunDir> {
        let refuse = |message: String| Error::RunDir { dir: path.to_path_buf(), message };
        if path.exists() && !path.is_dir() {
            return Err(refuse("exists and is not a directory".into()));
        }
        let created = !path.exists();
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let opened = lock(path).and_then(|lock| {
            checkpoint::recover_all(path)?;
            let begin = begin(path, resume).map_err(refuse)?;
            Ok(RunDir { path: path.to_path_buf(), created, _lock: Some(lock), begin })
        });
        if opened.is_err() && created {
            let _ = std::fs::remove_file(path.join(LOCK_FILE));
            let _ = std::fs::remove_dir(path);
        }
        opened
    }

    /// The folder as another process of a distributed job holds it (rank 0, which opened it
    /// first): this one neither locks, cleans nor writes it, and begins as the folder says (from
    /// the same checkpoint as rank 0).
    pub fn follow(path: &Path, resume: bool) -> Result<RunDir> {
        let refuse = |message: String| Error::RunDir { dir: path.to_path_buf(), message };
        let begin = begin(path, resume).map_err(refuse)?;
        Ok(RunDir { path: path.to_path_buf(), created: false, _lock: None, begin })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the run begins.
    pub fn begin(&self) -> &Begin {
        &self.begin
    }

    /// Removes the folder again when this run created it and wrote nothing into it (a run that
    /// failed before training).
    pub fn abandon(self) {
        if self.created && contents(&self.path).is_empty() {
            let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// A folder other than a run directory (a search's `--out`) held by this process, with the same
/// rules: locked while held, empty unless continued with `--resume`.
#[derive(Debug)]
pub struct Claim {
    _lock: File,
    /// Whether the folder held something already (then it was claimed with `resume`).
    pub resumed: bool,
}

impl Claim {
    /// Creates (when missing) and locks `path`; refuses a folder with content without `resume`.
    pub fn new(path: &Path, resume: bool) -> Result<Claim> {
        if path.exists() && !path.is_dir() {
            return Err(Error::RunDir { dir: path.to_path_buf(), message: "exists and is not a directory".into() });
        }
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let lock = lock(path)?;
        let resumed = !contents(path).is_empty();
        if resumed && !resume {
            let message = "exists and is not empty; pass --resume to continue in it, or choose another --out".into();
            return Err(Error::RunDir { dir: path.to_path_buf(), message });
        }
        Ok(Claim { _lock: lock, resumed })
    }
}

/// Takes the folder's lock, or names the process that holds it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let who = if owner.is_empty() { "another process".to_owned() } else { format!("process {owner}") };
            return Err(Error::RunDir {
                dir: dir.to_path_buf(),
                message: format!("is in use by {who} (torchfit holds {LOCK_FILE} while a run uses the folder)"),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// The folder's entries other than the lock file.
fn contents(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n != LOCK_FILE).collect()
        })
        .unwrap_or_default()
}

/// The files a run that failed before its first checkpoint leaves (see [`crate::run`]).
const FAILED_RUN_FILES: &[&str] = &["config.toml", "history.json", "summary.json"];

/// Whether `dir` holds nothing but what a run that failed before its first checkpoint leaves,
/// and empty folders (a checkpoint's `dirname` made for a save that never completed): `--resume`
/// starts such a run afresh. A trained model (`model.safetensors`) or any other file is kept.
fn holds_only_a_failed_run(dir: &Path) -> bool {
    contents(dir).iter().all(|name| {
        let path = dir.join(name);
        FAILED_RUN_FILES.contains(&name.as_str()) || (path.is_dir() && contents(&path).is_empty())
    })
}

/// How a run begins in `dir` (already cleaned), or why it cannot.
fn begin(dir: &Path, resume: bool) -> std::result::Result<Begin, String> {
    let empty = contents(dir).is_empty();
    if !resume {
        return match empty {
            true => Ok(Begin::Fresh),
            false => {
                Err("exists and is not empty; pass --resume to continue the run in it, or choose another --out".into())
            }
        };
    }
    match checkpoint::newest(dir).map_err(|e| e.to_string())? {
        Some(found) => Ok(Begin::Resume(found)),
        None if empty || holds_only_a_failed_run(dir) => {
            log::warn!("{} holds no checkpoint: the run starts from the beginning", dir.display());
            Ok(Begin::Fresh)
        }
        None => Err("has no complete checkpoint to resume from (params, optimizer, callbacks and history of one prefix; a run with --out ends with train_end_*)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("torchfit-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_run_on_a_locked_folder_is_refused_naming_the_owner() {
        let d = dir("locked");
        let first = RunDir::open(&d, false).unwrap();
        let err = RunDir::open(&d, true).unwrap_err().to_string();
        assert!(err.contains("is in use by process") && err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        RunDir::open(&d, true).unwrap();
    }

    #[test]
    fn a_folder_with_only_leftovers_of_a_first_save_starts_fresh_with_or_without_resume() {
        for resume in [false, true] {
            let d = dir(&format!("leftovers-{resume}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("params.safetensors.next"), "staged").unwrap();
            std::fs::write(d.join(".history.json.tmp4000000000.json"), "half").unwrap();
            let run = RunDir::open(&d, resume).unwrap();
            assert_eq!(run.begin(), &Begin::Fresh);
            assert!(contents(&d).is_empty(), "{:?}", contents(&d));
        }
    }

    #[test]
    fn a_fresh_run_refuses_a_folder_with_content_and_resume_needs_a_checkpoint_there() {
        let d = dir("content");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let fresh = RunDir::open(&d, false).unwrap_err().to_string();
        assert!(fresh.contains("not empty"), "{fresh}");
        let resume = RunDir::open(&d, true).unwrap_err().to_string();
        assert!(resume.contains("no complete checkpoint"), "{resume}");
        assert!(d.join("notes.txt").exists());
    }

    #[test]
    fn resume_starts_afresh_in_a_folder_a_run_left_before_its_first_checkpoint() {
        let d = dir("failed-first");
        std::fs::create_dir_all(d.join("checkpoints")).unwrap();
        for f in FAILED_RUN_FILES {
            std::fs::write(d.join(f), "{}").unwrap();
        }
        assert!(RunDir::open(&d, false).unwrap_err().to_string().contains("not empty"));
        assert_eq!(RunDir::open(&d, true).unwrap().begin(), &Begin::Fresh);
        std::fs::write(d.join("model.safetensors"), "trained").unwrap();
        let err = RunDir::open(&d, true).unwrap_err().to_string();
        assert!(err.contains("no complete checkpoint"), "a trained model is never started over: {err}");
    }

    #[test]
    fn a_folder_the_run_created_goes_when_nothing_was_written() {
        let d = dir("abandoned");
        RunDir::open(&d, false).unwrap().abandon();
        assert!(!d.exists());
        let kept = dir("kept");
        let run = RunDir::open(&kept, false).unwrap();
        std::fs::write(kept.join("history.json"), "[]").unwrap();
        run.abandon();
        assert!(kept.join("history.json").exists());
    }
}
