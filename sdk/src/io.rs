//! Files written so that a crash never leaves half of one: temporary file, sync, rename.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use tch::Tensor;

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed over
/// `path`; a crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    with_temp(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| Error::io(tmp, e))
    })
}

/// Runs `write` on a temporary path beside `path`, then renames it over `path`; the temporary
/// file is removed when anything fails.
pub fn with_temp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?;
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = dir.join(format!(".{}.tmp{}{ext}", name.to_string_lossy(), std::process::id()));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves named tensors as safetensors (readable by `safetensors.torch.load_file`), atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.f_to_device(tch::Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_>>()?;
    with_temp(path, |tmp| {
        Tensor::write_safetensors(&cpu, tmp).map_err(|e| match e {
            // The kind of an I/O error (a full disk) tells the host the environment refused.
            tch::TchError::SafeTensorError { err: safetensors::SafeTensorError::IoError(e), .. } => Error::io(path, e),
            tch::TchError::Io(e) => Error::io(path, e),
            other => Error::msg(format!("{}: {other}", path.display())),
        })?;
        std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
    })
}

/// Loads named tensors saved by [`save_tensors`], in the file's order.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    Tensor::read_safetensors(path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// Saves a JSON value, atomically.
pub fn save_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value).map_err(Error::msg)?.as_bytes())
}

/// Loads a JSON value.
pub fn load_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// `text` as one cell of a CSV file whose cells `separator` separates: quoted, its quotes
/// doubled, when it holds the separator, a quote or a line break (RFC 4180); as it is otherwise.
pub fn csv_field(text: &str, separator: char) -> String {
    match text.contains([separator, '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("torchfit-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let d = dir("atomic");
        let path = d.join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    #[test]
    fn a_write_into_a_missing_folder_fails_naming_the_file() {
        let err = write_atomic(Path::new("/nonexistent-torchfit/x.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-torchfit/"), "{err}");
    }

    #[test]
    fn tensors_and_json_round_trip() {
        let d = dir("round");
        let t = vec![("w".to_string(), Tensor::from_slice(&[1f32, 2.0]))];
        save_tensors(&d.join("t.safetensors"), &t).unwrap();
        let back = load_tensors(&d.join("t.safetensors")).unwrap();
        assert_eq!(back[0].0, "w");
        assert!(back[0].1.equal(&t[0].1));
        save_json(&d.join("s.json"), &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(load_json(&d.join("s.json")).unwrap()["a"], 1);
        assert!(load_tensors(&d.join("missing.safetensors")).unwrap_err().to_string().contains("missing.safetensors"));
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no temporaries left");
    }
}
