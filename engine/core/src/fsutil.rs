//! Atomic file writes: a reader never sees a half-written file (the SDK's, shared with plugins).

use crate::Result;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file, synced and renamed (see
/// [`torchfit_sdk::io::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    torchfit_sdk::io::write_atomic(path, bytes).map_err(|e| match e {
        torchfit_sdk::Error::Io { path, source } => crate::Error::Io { path: path.into(), source },
        other => crate::Error::from(other),
    })
}
