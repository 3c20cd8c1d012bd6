//! Checkpoints written as one unit.
//!
//! A checkpoint is several files (params, optimizer, callbacks, history). Each file being atomic
//! is not enough: a kill between two renames would pair epoch N's params with epoch N−1's
//! optimizer state. So a save is a small redo log:
//!
//! 1. every file is written and synced as `<file>.next` (the old set is untouched), and so is the
//!    set's [`Record`], `<prefix>checkpoint.json`: each file's length and CRC-32, and whether the
//!    set was saved at an epoch boundary;
//! 2. `<prefix>checkpoint.commit`, listing those files, is written atomically: the commit point;
//! 3. each `.next` is renamed over its file, the folder is synced, and the commit file removed.
//!
//! Loading a set checks its files against its record first ([`verify`]): a file changed after
//! the save (a flipped byte, a truncation) is refused naming it, before anything is restored.
//! Only a set saved between two epochs is a point a run resumes from ([`newest`]): one saved
//! during an epoch (a callback's save on a batch, or at the end of a run stopped mid-epoch)
//! holds a history counting the cut epoch, which a resumed run would wrongly take as done.
//!
//! [`recover`] runs before every load and save of the prefix, and [`recover_all`] before a run
//! starts in a folder: with a commit file it finishes step 3 (the new set wins); without one it
//! deletes stray `.next` files (the old set wins). So whenever the process dies, the next reader
//! sees one whole checkpoint, old or new. [`recover_all`] also removes the temporary files of
//! atomic writes that a killed process left (`.<name>.tmp<pid>`), so nothing of an interrupted
//! save stays behind, and [`newest`] finds the checkpoint a resumed run starts from.
//! (A tool that reads the files directly, such as PyTorch, can see a mix only while a save is
//! between steps 2 and 3.)

use crate::fsutil::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use torchfit_sdk::checkpoint::{Files, Parts};

/// Writes one file of a set to the path it is given.
pub(crate) type Write<'a> = Box<dyn FnOnce(&Path) -> Result<()> + 'a>;

/// A file of the set and how to write it.
pub(crate) type Writer<'a> = (PathBuf, Write<'a>);

/// Suffix of the commit file, `<prefix>checkpoint.commit`: present only while a save is between
/// its commit point and its last rename.
const COMMIT: &str = "checkpoint.commit";

fn commit_file(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}{COMMIT}"))
}

/// The name a checkpoint file has while a save writes it: `<file>.next`.
fn staged(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// The folder a checkpoint `dir` names: the empty path is the working directory.
fn folder(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Suffix of a set's record, `<prefix>checkpoint.json`.
const RECORD: &str = "checkpoint.json";

/// The record of a checkpoint set, `<prefix>checkpoint.json`, saved and committed with its files.
/// A set from before records were written has none; it loads unchecked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Whether the set holds the run between two epochs, the only point a run resumes from.
    pub boundary: bool,
    /// Each file of the set by its name in the folder.
    pub files: BTreeMap<String, Sum>,
}

/// A file's length and CRC-32 (hexadecimal), as a [`Record`] or `model.json` keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the contents, 8 hexadecimal digits.
    pub crc32: String,
}

impl Sum {
    /// The sum of the file at `path`.
    pub fn of(path: &Path) -> Result<Sum> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let (mut hasher, mut bytes, mut buf) = (crc32fast::Hasher::new(), 0u64, vec![0u8; 1 << 20]);
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(Sum { bytes, crc32: format!("{:08x}", hasher.finalize()) })
    }

    /// Refuses the file at `path` unless it is the one this sum was taken of; `source` names
    /// what recorded the sum.
    pub fn check(&self, path: &Path, source: &Path) -> Result<()> {
        let found = Sum::of(path)?;
        if found == *self {
            return Ok(());
        }
        Err(Error::Data(format!(
            "{}: the file changed after it was saved ({} bytes with CRC-32 {}, but {} records {} bytes with CRC-32 {}); it is damaged and is not loaded",
            path.display(),
            found.bytes,
            found.crc32,
            source.display(),
            self.bytes,
            self.crc32
        )))
    }
}

/// The path of the record of checkpoint `prefix` under `dir`.
pub fn record_file(dir: &Path, prefix: &str) -> PathBuf {
    folder(dir).join(format!("{prefix}{RECORD}"))
}

/// The record of checkpoint `prefix` under `dir`; `None` for a set saved before records were.
pub fn record(dir: &Path, prefix: &str) -> Result<Option<Record>> {
    let path = record_file(dir, prefix);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Data(format!("{}: not a checkpoint record: {e}", path.display())))
}

/// Checks every file of checkpoint `prefix` under `dir` against its record (see the module
/// docs); a set without a record passes unchecked.
pub fn verify(dir: &Path, prefix: &str) -> Result<Option<Record>> {
    let Some(record) = record(dir, prefix)? else { return Ok(None) };
    let source = record_file(dir, prefix);
    for (name, sum) in &record.files {
        let path = folder(dir).join(name);
        if !path.exists() {
            return Err(Error::Data(format!(
                "{}: missing, but {} lists it as part of the checkpoint",
                path.display(),
                source.display()
            )));
        }
        sum.check(&path, &source)?;
    }
    Ok(Some(record))
}

/// Writes `files` as one checkpoint `prefix` under `dir` (see the module docs); `boundary` says
/// whether the run is between two epochs.
pub(crate) fn save(dir: &Path, prefix: &str, files: Vec<Writer<'_>>, boundary: bool) -> Result<()> {
    let dir = folder(dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    recover(dir, prefix)?;
    let mut paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let staged_all = stage(files).and_then(|()| stage_record(dir, prefix, &paths, boundary));
    paths.push(record_file(dir, prefix));
    if let Err(e) = staged_all {
        discard(&paths);
        return Err(e);
    }
    mark(dir, prefix, &paths)?;
    finish(dir, prefix, &paths)
}

/// Writes and syncs the record of the staged `files` as its own staged file.
fn stage_record(dir: &Path, prefix: &str, files: &[PathBuf], boundary: bool) -> Result<()> {
    let mut sums = BTreeMap::new();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        sums.insert(name, Sum::of(&staged(path))?);
    }
    let record = Record { boundary, files: sums };
    let text = serde_json::to_string_pretty(&record).map_err(|e| Error::Data(e.to_string()))?;
    let path = staged(&record_file(dir, prefix));
    std::fs::File::create(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(&path, e))
}

/// Completes or discards an interrupted save of checkpoint `prefix` under `dir`.
pub fn recover(dir: &Path, prefix: &str) -> Result<()> {
    let dir = folder(dir);
    let commit = commit_file(dir, prefix);
    if commit.exists() {
        let text = std::fs::read_to_string(&commit).map_err(|e| Error::io(&commit, e))?;
        let names: Vec<String> =
            serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", commit.display())))?;
        log::warn!("completing the checkpoint save interrupted in {}", dir.display());
        return finish(dir, prefix, &names.iter().map(|n| dir.join(n)).collect::<Vec<_>>());
    }
    let mut paths: Vec<PathBuf> =
        Files::new(dir, prefix).all_of(Parts::ALL).into_iter().map(Path::to_path_buf).collect();
    paths.push(record_file(dir, prefix));
    discard(&paths);
    Ok(())
}

/// Cleans every leftover of an interrupted save under `dir` (a missing `dir` has none): saves
/// past their commit point are completed ([`recover`]), then staged `.next` files without a
/// commit file and temporary files of other processes' atomic writes are removed. Only one
/// process may use the folder meanwhile (a run holds its run directory's lock).
pub fn recover_all(dir: &Path) -> Result<()> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    };
    for prefix in names(dir).iter().filter_map(|n| n.strip_suffix(COMMIT)) {
        recover(dir, prefix)?;
    }
    for name in names(dir).into_iter().filter(|n| n.ends_with(".next") || is_foreign_temporary(n)) {
        let path = dir.join(&name);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        log::info!("removed {}, left by an interrupted save", path.display());
    }
    Ok(())
}

/// Whether `name` is a temporary file of an atomic write (`.<name>.tmp<pid>[.<ext>]`, see
/// [`torchfit_sdk::io::with_temp`]) made by another process.
fn is_foreign_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    let Some((_, tail)) = rest.rsplit_once(".tmp") else { return false };
    let pid = tail.split('.').next().unwrap_or_default();
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && pid != std::process::id().to_string()
}

/// A complete checkpoint (every part of [`Parts::ALL`]) found by [`newest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its folder.
    pub dir: PathBuf,
    /// Its file-name prefix.
    pub prefix: String,
    /// Epochs in its history.
    pub epochs: usize,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} epochs)", self.dir.join(format!("{}*", self.prefix)).display(), self.epochs)
    }
}

/// The newest complete checkpoint saved at an epoch boundary in `dir` or a folder directly under
/// it, whatever callback wrote it: the one whose history has the most epochs; among those the
/// run's own ([`crate::net::RESUME_PREFIX`]), then the latest written. Sets saved during an
/// epoch are passed over (see the module docs). Call [`recover_all`] on the folders first.
pub fn newest(dir: &Path) -> Result<Option<Found>> {
    let mut folders = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        folders.extend(entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_dir()));
    }
    let mut best: Option<((usize, bool, std::time::SystemTime), Found)> = None;
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        let prefixes: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix("params.safetensors").map(str::to_owned))
            .collect();
        for prefix in prefixes {
            let files = Files::new(&folder, &prefix);
            if !files.exist(Parts::ALL) {
                continue;
            }
            if record(&folder, &prefix)?.is_some_and(|r| !r.boundary) {
                log::debug!("{}*: saved during an epoch, not a resume point", folder.join(&prefix).display());
                continue;
            }
            let epochs = crate::History::load(&files.history)?.len();
            let written = std::fs::metadata(&files.history)
                .and_then(|m| m.modified())
                .map_err(|e| Error::io(&files.history, e))?;
            let rank = (epochs, prefix == crate::net::RESUME_PREFIX, written);
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, Found { dir: folder.clone(), prefix, epochs }));
            }
        }
    }
    Ok(best.map(|(_, found)| found))
}

fn stage(files: Vec<Writer<'_>>) -> Result<()> {
    files.into_iter().try_for_each(|(path, write)| write(&staged(&path)))
}

fn discard(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(staged(p));
    }
}

fn mark(dir: &Path, prefix: &str, paths: &[PathBuf]) -> Result<()> {
    let names: Vec<String> =
        paths.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    write_atomic(
        &commit_file(dir, prefix),
        serde_json::to_string(&names).map_err(|e| Error::Data(e.to_string()))?.as_bytes(),
    )
}

fn finish(dir: &Path, prefix: &str, paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        let next = staged(p);
        if next.exists() {
            std::fs::rename(&next, p).map_err(|e| Error::io(p, e))?;
        }
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    let commit = commit_file(dir, prefix);
    std::fs::remove_file(&commit).map_err(|e| Error::io(&commit, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("torchfit-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn text(v: &str) -> Write<'static> {
        let v = v.to_owned();
        Box::new(move |p| std::fs::write(p, &v).map_err(|e| Error::io(p, e)))
    }

    fn set(d: &Path, v: &str) -> Vec<Writer<'static>> {
        let f = Files::new(d, "p_");
        vec![(f.params, text(v)), (f.optimizer, text(v)), (f.history, text(v))]
    }

    fn contents(d: &Path) -> Vec<String> {
        let f = Files::new(d, "p_");
        [f.params, f.optimizer, f.history].iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    fn leftovers(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".next") || n.ends_with(".commit"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_save_replaces_the_whole_set_and_leaves_nothing_behind() {
        let d = dir("whole");
        save(&d, "p_", set(&d, "1"), true).unwrap();
        save(&d, "p_", set(&d, "2"), true).unwrap();
        assert_eq!(contents(&d), ["2", "2", "2"]);
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn a_save_killed_before_its_commit_point_leaves_the_old_set() {
        let d = dir("before");
        save(&d, "p_", set(&d, "1"), true).unwrap();
        let mut files = set(&d, "2");
        files.truncate(2); // killed while staging the third file
        stage(files).unwrap();
        recover(&d, "p_").unwrap();
        assert_eq!(contents(&d), ["1", "1", "1"]);
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn a_save_killed_between_renames_is_completed_by_the_next_reader() {
        let d = dir("between");
        save(&d, "p_", set(&d, "1"), true).unwrap();
        let files = set(&d, "2");
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        stage(files).unwrap();
        mark(&d, "p_", &paths).unwrap();
        std::fs::rename(staged(&paths[0]), &paths[0]).unwrap(); // killed after the first rename
        assert_eq!(contents(&d), ["2", "1", "1"]);
        recover(&d, "p_").unwrap();
        assert_eq!(contents(&d), ["2", "2", "2"]);
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn a_failed_write_keeps_the_old_set_and_reports_the_file() {
        let d = dir("fails");
        save(&d, "p_", set(&d, "1"), true).unwrap();
        let mut files = set(&d, "2");
        let bad = Files::new(&d, "p_").history;
        files[2] = (bad.clone(), Box::new(move |_: &Path| Err(Error::io(&bad, std::io::Error::other("disk full")))));
        let err = save(&d, "p_", files, true).unwrap_err().to_string();
        assert!(err.contains("p_history.json") && err.contains("disk full"), "{err}");
        assert_eq!(contents(&d), ["1", "1", "1"]);
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn an_interrupted_first_save_is_completed_before_a_run_starts_in_the_folder() {
        let d = dir("first");
        let files = set(&d, "1");
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        stage(files).unwrap();
        mark(&d, "p_", &paths).unwrap(); // killed at the commit point: no file renamed yet
        assert!(!Files::new(&d, "p_").exist(Parts::PARAMS));
        recover_all(&d).unwrap();
        assert!(Files::new(&d, "p_").exist(Parts::PARAMS));
        assert_eq!(contents(&d), ["1", "1", "1"]);
        assert!(leftovers(&d).is_empty());
        recover_all(&d.join("missing")).unwrap();
    }

    #[test]
    fn a_first_save_killed_before_its_commit_point_leaves_nothing_behind() {
        let d = dir("first-killed");
        let mut files = set(&d, "1");
        files.truncate(2);
        stage(files).unwrap();
        let temporary = d.join(".p_history.json.tmp4000000000.json");
        std::fs::write(&temporary, "half").unwrap();
        let own = d.join(format!(".p_history.json.tmp{}.json", std::process::id()));
        std::fs::write(&own, "mine").unwrap();
        recover_all(&d).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [own.file_name().unwrap()], "only this process's own temporary stays");
    }

    #[test]
    fn temporaries_are_recognised_by_their_pid() {
        assert!(is_foreign_temporary(".history.json.tmp12.json"));
        assert!(is_foreign_temporary(".model.tmp12"));
        assert!(!is_foreign_temporary("history.json.tmp12.json"));
        assert!(!is_foreign_temporary(".notes.tmpx.txt"));
        assert!(!is_foreign_temporary(".config"));
    }

    #[test]
    fn the_newest_checkpoint_is_the_one_with_the_most_epochs_whatever_its_prefix() {
        let d = dir("newest");
        assert_eq!(newest(&d).unwrap(), None);
        let history = |epochs: usize| {
            let mut h = crate::History::new();
            for e in 1..=epochs {
                h.new_epoch();
                h.record("epoch", e).unwrap();
            }
            h
        };
        let write = |folder: &Path, prefix: &str, epochs: usize| {
            let f = Files::new(folder, prefix);
            std::fs::create_dir_all(folder).unwrap();
            for p in [&f.params, &f.optimizer, &f.callbacks] {
                std::fs::write(p, "x").unwrap();
            }
            history(epochs).save(&f.history).unwrap();
        };
        write(&d, "train_end_", 2);
        write(&d.join("checkpoints"), "", 3);
        write(&d, "partial_", 9);
        std::fs::remove_file(Files::new(&d, "partial_").optimizer).unwrap();
        let found = newest(&d).unwrap().unwrap();
        assert_eq!((found.dir, found.prefix.as_str(), found.epochs), (d.join("checkpoints"), "", 3));
        write(&d, "train_end_", 3);
        let found = newest(&d).unwrap().unwrap();
        assert_eq!((found.dir, found.prefix.as_str()), (d.clone(), "train_end_"), "the run's own wins a tie");
    }

    #[test]
    fn a_flipped_byte_in_any_file_of_a_set_is_found_and_named() {
        let d = dir("flipped");
        save(&d, "p_", set(&d, "12345"), true).unwrap();
        assert!(verify(&d, "p_").unwrap().is_some_and(|r| r.boundary && r.files.len() == 3));
        let optimizer = Files::new(&d, "p_").optimizer;
        std::fs::write(&optimizer, "12845").unwrap();
        let err = verify(&d, "p_").unwrap_err().to_string();
        assert!(err.contains(&format!("{}: the file changed after it was saved", optimizer.display())), "{err}");
        std::fs::write(&optimizer, "1234").unwrap();
        assert!(verify(&d, "p_").is_err(), "a truncated file is refused too");
        std::fs::remove_file(&optimizer).unwrap();
        assert!(verify(&d, "p_").unwrap_err().to_string().contains("missing"));
        std::fs::write(record_file(&d, "p_"), "{").unwrap();
        assert!(verify(&d, "p_").unwrap_err().to_string().contains("not a checkpoint record"));
        std::fs::remove_file(record_file(&d, "p_")).unwrap();
        assert_eq!(verify(&d, "p_").unwrap(), None, "a set saved before records loads unchecked");
    }

    #[test]
    fn a_set_saved_during_an_epoch_is_never_the_point_a_run_resumes_from() {
        let d = dir("mid-epoch");
        let write = |prefix: &str, epochs: usize, boundary: bool| {
            let f = Files::new(&d, prefix);
            let mut h = crate::History::new();
            for e in 1..=epochs {
                h.new_epoch();
                h.record("epoch", e).unwrap();
            }
            let files: Vec<Writer<'_>> = vec![
                (f.params, text("p")),
                (f.optimizer, text("o")),
                (f.callbacks, text("{}")),
                (f.history, Box::new(move |p: &Path| h.save(p))),
            ];
            save(&d, prefix, files, boundary).unwrap();
        };
        write("train_end_", 2, true);
        write("cb_end_", 3, false);
        let found = newest(&d).unwrap().unwrap();
        assert_eq!((found.prefix.as_str(), found.epochs), ("train_end_", 2));
        write("cb_end_", 3, true);
        assert_eq!(newest(&d).unwrap().unwrap().prefix, "cb_end_");
    }

    #[test]
    fn the_empty_folder_is_the_working_directory() {
        assert_eq!(folder(Path::new("")), Path::new("."));
        assert_eq!(folder(Path::new("a")), Path::new("a"));
    }

    #[test]
    fn prefixes_do_not_touch_each_other() {
        let d = dir("prefixes");
        save(&d, "p_", set(&d, "1"), true).unwrap();
        let other = Files::new(&d, "q_").params;
        std::fs::write(staged(&other), "staged").unwrap();
        recover(&d, "p_").unwrap();
        assert!(staged(&other).exists());
    }
}
