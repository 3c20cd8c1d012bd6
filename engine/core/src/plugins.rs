//! Loading plugin libraries at run time.
//!
//! Search path, in order: the config's `plugin_dirs` (relative to the config file), the folders
//! in `TORCHFIT_PLUGIN_PATH` (`:`-separated), then the folder of the running binary. Every `*.so`
//! in the first two is loaded; in the binary's folder only `libtorchfit_plugin_*.so` (the stock
//! plugins cargo builds next to it). Files listed in the config's `plugins` are loaded too.
//!
//! Each file is loaded on its own (`lib_header_from_path` + `init_root_module`), so many
//! plugins load side by side. A file is refused, with a message of one line, when it is not a
//! torchfit plugin, was built against another torchfit plugin ABI (abi_stable's layout report
//! goes to the debug log), or against another libtorch. Libraries are never unloaded.

use crate::config::Params;
use crate::{Registry, Result};
use abi_stable::library::{lib_header_from_path, LibraryError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use torchfit_sdk::ffi::ext::{ExtHeader, SdkExtFfi, EXT_SYMBOL};
use torchfit_sdk::ffi::{ComponentDescFfi, LogSink, PluginRoot_Ref, ABI_VERSION, TORCH_TAG};
use torchfit_sdk::SdkVersion;

/// Why a library was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened as a shared library.
    #[error("{}: cannot be loaded: {reason}", path.display())]
    Open {
        /// The library file refused.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A shared library without torchfit's root module.
    #[error("{}: not a torchfit plugin (it exports no plugin root module)", path.display())]
    NotAPlugin {
        /// The library file refused.
        path: PathBuf,
    },
    /// Built against an incompatible torchfit SDK.
    #[error("{}: built against an incompatible torchfit plugin ABI ({summary}); rebuild it against torchfit-sdk {}", path.display(), env!("CARGO_PKG_VERSION"))]
    Abi {
        /// The library file refused.
        path: PathBuf,
        /// What differs, in a few words.
        summary: String,
    },
    /// Two sources register the same name for one kind of component.
    #[error("{kind} `{name}` is registered twice: by {first} and by {second}")]
    Duplicate {
        /// Kind of component.
        kind: torchfit_sdk::ComponentKind,
        /// The component's name.
        name: String,
        /// Where the first registration came from.
        first: String,
        /// Where the second came from.
        second: String,
    },
    /// Built against another tch/libtorch.
    #[error("{}: built against {plugin}, but this torchfit uses {host}; rebuild the plugin", path.display())]
    Torch {
        /// The library file refused.
        path: PathBuf,
        /// The plugin's tag.
        plugin: String,
        /// The host's tag.
        host: String,
    },
}

struct Inner {
    path: PathBuf,
    root: PluginRoot_Ref,
    /// The SDK 1.1 extension root, when the plugin has one (built with SDK 1.1 or later).
    ext: Option<&'static SdkExtFfi>,
    name: String,
    version: String,
    components: Vec<ComponentDescFfi>,
}

/// A loaded plugin library (cheap to clone; never unloaded).
#[derive(Clone)]
pub struct Library(Arc<Inner>);

impl Library {
    /// Loads the plugin library at `path` and checks that it fits this host.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let path = path.to_path_buf();
        let header = lib_header_from_path(&path).map_err(|e| classify(&path, e))?;
        let root = header.init_root_module::<PluginRoot_Ref>().map_err(|e| classify(&path, e))?;
        if root.abi_version() != ABI_VERSION {
            return Err(LoadError::Abi {
                path,
                summary: format!("plugin ABI version {}, this torchfit speaks {ABI_VERSION}", root.abi_version()),
            });
        }
        let tag = root.torch_tag().as_str();
        if tag != TORCH_TAG {
            return Err(LoadError::Torch { path, plugin: tag.into(), host: TORCH_TAG.into() });
        }
        let ext = extension_root(&path)?;
        (root.set_logger())(LogSink { log: torchfit_sdk::ffi::export::host_log_sink });
        let components = (root.components())().into_vec();
        let (name, version) = (root.name().to_string(), root.version().to_string());
        let sdk = ext.map_or(SdkVersion::V1_0, |e| SdkVersion::v1(e.sdk_minor));
        log::debug!(
            "loaded plugin {name} {version} (SDK {sdk}) from {} ({} components)",
            path.display(),
            components.len()
        );
        Ok(Library(Arc::new(Inner { path, root, ext, name, version, components })))
    }

    /// The SDK version the plugin was built with.
    pub fn sdk_version(&self) -> SdkVersion {
        self.0.ext.map_or(SdkVersion::V1_0, |e| SdkVersion::v1(e.sdk_minor))
    }

    /// Its extension root (SDK 1.1 and later plugins).
    pub fn ext(&self) -> Option<&'static SdkExtFfi> {
        self.0.ext
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The plugin's package name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The plugin's package version.
    pub fn version(&self) -> &str {
        &self.0.version
    }

    /// The components it provides.
    pub fn components(&self) -> &[ComponentDescFfi] {
        &self.0.components
    }

    /// Its root module.
    pub fn root(&self) -> PluginRoot_Ref {
        self.0.root
    }
}

/// The extension root of the library at `path`, checked against this host's (SDK 1.1 and
/// later); `None` for a 1.0 plugin, which has no [`EXT_SYMBOL`].
fn extension_root(path: &Path) -> Result<Option<&'static SdkExtFfi>, LoadError> {
    // SAFETY: the library is already loaded and initialized by abi_stable (this only takes
    // another reference to it); the symbol, when present, has the SDK's signature.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
    let header = match unsafe { lib.get::<extern "C" fn() -> ExtHeader>(EXT_SYMBOL) } {
        Ok(f) => f(),
        Err(_) => return Ok(None),
    };
    // Libraries are never unloaded (see the module docs).
    std::mem::forget(lib);
    // SAFETY: the header comes from the plugin's extension symbol.
    unsafe { torchfit_sdk::ffi::ext::check(header) }.map(Some).map_err(|summary| LoadError::Abi {
        path: path.to_path_buf(),
        summary: format!("its SDK extension root differs: {summary}"),
    })
}

fn classify(path: &Path, e: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => {
            LoadError::Open { path, reason: err.to_string().lines().next().unwrap_or_default().to_owned() }
        }
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path },
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            log::debug!("{}: abi_stable layout report:\n{report}", path.display());
            let last: Vec<&str> = report.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let tail = last.iter().rev().take(2).rev().cloned().collect::<Vec<_>>().join(" ");
            let tail: String = tail.chars().take(160).collect();
            LoadError::Abi { path, summary: format!("the root module's layout differs: ...{tail}") }
        }
        LibraryError::IncompatibleVersionNumber { library_name, expected_version, actual_version } => LoadError::Abi {
            path,
            summary: format!("{library_name} {actual_version}, this torchfit expects {expected_version}"),
        },
        other => {
            let text = other.to_string();
            log::debug!("{}: {text}", path.display());
            LoadError::Abi {
                path,
                summary: text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("unknown")
                    .chars()
                    .take(160)
                    .collect(),
            }
        }
    }
}

/// The folders searched for plugins: `config_dirs`, `TORCHFIT_PLUGIN_PATH`, the binary's folder.
pub fn search_path(config_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config_dirs.to_vec();
    if let Some(env) = std::env::var_os("TORCHFIT_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir);
    }
    dirs
}

/// The plugin files in `dirs` (see the module docs for which), in search-path order, each once.
pub fn discover(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let only_stock = exe_dir.as_deref() == Some(dir.as_path());
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
            .filter(|p| {
                !only_stock
                    || p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libtorchfit_plugin_"))
            })
            .collect();
        found.sort();
        for f in found {
            let canon = std::fs::canonicalize(&f).unwrap_or(f);
            if !files.contains(&canon) {
                files.push(canon);
            }
        }
    }
    files
}

/// Loads `files`; the first failure is returned.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Library>, LoadError> {
    files.iter().map(|f| Library::load(f)).collect()
}

/// The builtin registry plus every plugin on the search path of `config_dirs` and the listed
/// `files`. A shared library on the search path that is no torchfit plugin (it does not load,
/// or exports no plugin root module) is skipped with a warning; a listed file that is none, a
/// plugin built for another ABI or libtorch, or a name registered twice, is an error.
pub fn registry(config_dirs: &[PathBuf], files: &[PathBuf]) -> Result<Registry> {
    let mut listed = Vec::new();
    for f in files {
        listed.push(std::fs::canonicalize(f).map_err(|e| crate::Error::io(f, e))?);
    }
    let mut libraries = Vec::new();
    for f in discover(&search_path(config_dirs)).into_iter().filter(|f| !listed.contains(f)) {
        match Library::load(&f) {
            Ok(lib) => libraries.push(lib),
            Err(e @ (LoadError::Open { .. } | LoadError::NotAPlugin { .. })) => {
                log::warn!("skipped on the plugin search path: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    libraries.extend(load_all(&listed)?);
    let mut registry = Registry::builtin();
    let linked: Vec<&str> = torchfit_sdk::ffi::export::registrations().map(|r| r.plugin).collect();
    for lib in libraries {
        if linked.contains(&lib.name()) {
            // A library of a plugin crate this program links (e.g. a stock callback crate used
            // in-process, whose cdylib cargo builds beside the program) is the same code.
            log::debug!(
                "{}: plugin {} is linked into this program; using the linked one",
                lib.path().display(),
                lib.name()
            );
            continue;
        }
        registry.add_library(&lib)?;
    }
    Ok(registry)
}

/// The registry for a config: its `plugin_dirs` and `plugins` resolved against its folder. A
/// `plugin_dirs` folder that does not exist is a config error naming it.
pub fn registry_for(params: &Params) -> Result<Registry> {
    let settings = params.settings();
    let resolve = |p: &String| params.base_dir().join(p);
    for (i, dir) in settings.plugin_dirs.iter().enumerate() {
        if !resolve(dir).is_dir() {
            let message = format!("{} is not a folder", resolve(dir).display());
            return Err(params.config_error(&format!("plugin_dirs[{i}]"), message));
        }
    }
    registry(
        &settings.plugin_dirs.iter().map(resolve).collect::<Vec<_>>(),
        &settings.plugins.iter().map(resolve).collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_library_is_refused_with_its_name() {
        let p = std::env::temp_dir().join(format!("torchfit-notalib-{}.so", std::process::id()));
        std::fs::write(&p, b"not an ELF file").unwrap();
        let e = Library::load(&p).err().unwrap();
        assert!(matches!(e, LoadError::Open { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()));
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn a_shared_library_without_a_root_module_is_not_a_plugin() {
        let libz = Path::new(env!("TORCHFIT_LIBTORCH_LIB")).join("libtorch_global_deps.so");
        let e = Library::load(&libz).err().unwrap();
        assert!(matches!(e, LoadError::NotAPlugin { .. }), "{e}");
    }

    #[test]
    fn the_binary_folder_contributes_only_stock_plugins() {
        let dir = std::env::temp_dir().join(format!("torchfit-discover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["b.so", "a.so", "notes.txt"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let names: Vec<String> = discover(std::slice::from_ref(&dir))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.so", "b.so"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
