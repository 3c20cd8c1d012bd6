//! Checkpoints written as one unit.
//!
//! A checkpoint is several files (params, optimizer, callbacks, history). Each file being atomic
//! is not enough: a kill between two renames would pair epoch N's params with epoch N−1's
//! optimizer state. So a save is a small redo log:
//!
//! 1. every file is written and synced as `<file>.next` (the old set is untouched);
//! 2. `<prefix>checkpoint.commit`, listing those files, is written atomically: the commit point;
//! 3. each `.next` is renamed over its file, the folder is synced, and the commit file removed.
//!
//! [`recover`] runs before every load and save of the prefix, and [`recover_all`] before a run
//! starts in a folder: with a commit file it finishes step 3 (the new set wins); without one it
//! deletes stray `.next` files (the old set wins). So whenever the process dies, the next reader
//! sees one whole checkpoint, old or new.
//! (A tool that reads the files directly, such as PyTorch, can see a mix only while a save is
//! between steps 2 and 3.)

use crate::fsutil::write_atomic;
use crate::{Error, Result};
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

/// Writes `files` as one checkpoint `prefix` under `dir` (see the module docs).
pub(crate) fn save(dir: &Path, prefix: &str, files: Vec<Writer<'_>>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    recover(dir, prefix)?;
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    if let Err(e) = stage(files) {
        discard(&paths);
        return Err(e);
    }
    mark(dir, prefix, &paths)?;
    finish(dir, prefix, &paths)
}

/// Completes or discards an interrupted save of checkpoint `prefix` under `dir`.
pub fn recover(dir: &Path, prefix: &str) -> Result<()> {
    let commit = commit_file(dir, prefix);
    if commit.exists() {
        let text = std::fs::read_to_string(&commit).map_err(|e| Error::io(&commit, e))?;
        let names: Vec<String> =
            serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", commit.display())))?;
        log::warn!("completing the checkpoint save interrupted in {}", dir.display());
        return finish(dir, prefix, &names.iter().map(|n| dir.join(n)).collect::<Vec<_>>());
    }
    let paths: Vec<PathBuf> = Files::new(dir, prefix).all_of(Parts::ALL).into_iter().map(Path::to_path_buf).collect();
    discard(&paths);
    Ok(())
}

/// [`recover`] for every checkpoint under `dir` whose save was interrupted after its commit
/// point (a missing `dir` has none).
pub fn recover_all(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let prefixes: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(COMMIT).map(str::to_owned)).collect();
    prefixes.iter().try_for_each(|prefix| recover(dir, prefix))
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
        save(&d, "p_", set(&d, "1")).unwrap();
        save(&d, "p_", set(&d, "2")).unwrap();
        assert_eq!(contents(&d), ["2", "2", "2"]);
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn a_save_killed_before_its_commit_point_leaves_the_old_set() {
        let d = dir("before");
        save(&d, "p_", set(&d, "1")).unwrap();
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
        save(&d, "p_", set(&d, "1")).unwrap();
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
        save(&d, "p_", set(&d, "1")).unwrap();
        let mut files = set(&d, "2");
        let bad = Files::new(&d, "p_").history;
        files[2] = (bad.clone(), Box::new(move |_: &Path| Err(Error::io(&bad, std::io::Error::other("disk full")))));
        let err = save(&d, "p_", files).unwrap_err().to_string();
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
    fn prefixes_do_not_touch_each_other() {
        let d = dir("prefixes");
        save(&d, "p_", set(&d, "1")).unwrap();
        let other = Files::new(&d, "q_").params;
        std::fs::write(staged(&other), "staged").unwrap();
        recover(&d, "p_").unwrap();
        assert!(staged(&other).exists());
    }
}
