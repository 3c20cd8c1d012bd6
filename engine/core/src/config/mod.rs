//! Run configuration: a TOML tree that skorch-style parameter names address, and the typed
//! settings the engine reads from it.
//!
//! One tree serves the config file, `torchfit train --set K=V` and the library's `set_params`:
//! `optimizer__lr` (or `optimizer.lr`) addresses `[optimizer] lr`, `callbacks__print_log__decimals`
//! addresses `[callbacks.print_log] decimals`.

mod settings;

pub use settings::{
    CallbackOverride, CallbackSpec, ComponentSpec, IteratorConfig, OnNan, Settings, SplitConfig, SplitKind,
};

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The configuration tree of a net, with where each value came from, and its typed
/// [`Settings`], resolved once per change: a tree that does not resolve is refused when it is
/// loaded or changed, so every `Params` holds valid settings.
#[derive(Debug, Clone)]
pub struct Params {
    tree: Tree,
    settings: Settings,
}

/// The TOML tree and the origin of its values.
#[derive(Debug, Clone)]
struct Tree {
    table: Table,
    source: String,
    base_dir: PathBuf,
    /// `(key path, origin)` of values set after loading, newest last.
    overrides: Vec<(Vec<String>, String)>,
}

/// Splits `optimizer__lr` / `optimizer.lr` into `["optimizer", "lr"]`.
pub fn key_path(key: &str) -> Vec<String> {
    key.split("__").flat_map(|p| p.split('.')).map(str::to_owned).collect()
}

/// Parses the right-hand side of `K=V` as a TOML value; anything that is not TOML (a bare word
/// such as `adam`) is taken as a string.
pub fn parse_value(text: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

/// The section a set of `path` to `value` replaces: a component's section (`[module]`,
/// `[criterion]`, `[optimizer]`, the readers', a callback's) whose `name` (a callback's `type`)
/// changes to another value.
fn replaced_section(table: &Table, path: &[String], value: &Value) -> Option<Vec<String>> {
    const NAMED: &[&str] = &["module", "criterion", "optimizer", "dataset", "valid_dataset", "test_dataset"];
    let (section, key) = path.split_at(path.len().checked_sub(1)?);
    let is_choice = match (section, key[0].as_str()) {
        ([s], "name") => NAMED.contains(&s.as_str()),
        ([c, _], "type") => c == "callbacks",
        _ => false,
    };
    let mut current = table.get(section.first()?)?;
    for part in &section[1..] {
        current = current.as_table()?.get(part)?;
    }
    let old = current.as_table()?.get(&key[0])?;
    (is_choice && old != value).then(|| section.to_vec())
}

impl Params {
    /// Reads a TOML config file; relative paths in it resolve against its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Self::from_str(&text, &path.display().to_string(), base)
    }

    /// Parses TOML `text`; `source` names it in errors.
    pub fn from_str(text: &str, source: &str, base_dir: PathBuf) -> Result<Self> {
        let table: Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            Error::Config {
                origin: source.to_owned(),
                key: line.map(|l| format!("line {l}")).unwrap_or_default(),
                message: e.message().replace('\n', " "),
            }
        })?;
        Self::resolved(Tree { table, source: source.to_owned(), base_dir, overrides: Vec::new() })
    }

    fn resolved(tree: Tree) -> Result<Self> {
        let settings = tree.resolve()?;
        Ok(Self { tree, settings })
    }

    /// The TOML tree, as loaded and changed.
    pub fn table(&self) -> &Table {
        &self.tree.table
    }

    /// Folder that relative paths resolve against.
    pub fn base_dir(&self) -> &Path {
        &self.tree.base_dir
    }

    /// Sets `key` (skorch routing) to `value`; `origin` names it in errors (`--set K=V`).
    /// The change is validated at once: on error the tree is left as it was. Choosing another
    /// component (`module__name=cnn`, `callbacks__cp__type=...`) replaces its section: the old
    /// component's keys are dropped, not merged into the new one's.
    pub fn set(&mut self, key: &str, value: Value, origin: &str) -> Result<()> {
        let path = key_path(key);
        if path.iter().any(String::is_empty) {
            return Err(Error::Config { origin: origin.into(), key: key.into(), message: "empty key segment".into() });
        }
        let mut next = self.tree.clone();
        if let Some(section) = replaced_section(&next.table, &path, &value) {
            log::debug!("{origin}: another component for `{}`: its earlier keys are dropped", section.join("."));
            let mut table = &mut next.table;
            for part in &section[..section.len() - 1] {
                table = table.get_mut(part).and_then(Value::as_table_mut).expect("replaced_section found it");
            }
            table.insert(section[section.len() - 1].clone(), Value::Table(Table::new()));
            next.overrides.retain(|(p, _)| !p.starts_with(&section));
        }
        let mut table = &mut next.table;
        for (i, part) in path[..path.len() - 1].iter().enumerate() {
            let entry = table.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
            if let Value::Boolean(true) = entry {
                *entry = Value::Table(Table::new());
            }
            table = entry.as_table_mut().ok_or_else(|| Error::Config {
                origin: origin.into(),
                key: path[..=i].join("."),
                message: "is not a table, cannot set a key inside it".into(),
            })?;
        }
        table.insert(path[path.len() - 1].clone(), value);
        next.overrides.push((path, origin.to_owned()));
        *self = Self::resolved(next)?;
        Ok(())
    }

    /// Removes `key` (skorch routing) when present, validating the result as [`Params::set`]
    /// does.
    pub fn remove(&mut self, key: &str) -> Result<()> {
        let path = key_path(key);
        let mut next = self.tree.clone();
        let mut table = Some(&mut next.table);
        for part in &path[..path.len() - 1] {
            table = table.and_then(|t| t.get_mut(part)).and_then(Value::as_table_mut);
        }
        if let Some(t) = table {
            t.remove(&path[path.len() - 1]);
        }
        *self = Self::resolved(next)?;
        Ok(())
    }

    /// Applies `K=V` (as given to `--set`).
    pub fn set_assignment(&mut self, assignment: &str) -> Result<()> {
        let origin = format!("--set {assignment}");
        let (k, v) = assignment.split_once('=').ok_or_else(|| Error::Config {
            origin: origin.clone(),
            key: assignment.into(),
            message: "expected KEY=VALUE".into(),
        })?;
        self.set(k.trim(), parse_value(v.trim()), &origin)
    }

    /// The typed settings of the tree.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// An [`Error::Config`] for `key`, attributed to the `--set` that touched it, else the file.
    pub fn config_error(&self, key: &str, message: String) -> Error {
        self.tree.config_error(key, message)
    }

    /// Re-attributes a component's config error to `section` of this tree (`module.hidden[1]`,
    /// with the file or `--set` it came from); other errors pass through.
    pub fn component_error(&self, section: &str, error: Error) -> Error {
        match error {
            Error::Component { source: torchfit_sdk::Error::Config { key, message }, .. } => {
                let key = if key.is_empty() {
                    section.to_owned()
                } else if key.starts_with('[') {
                    format!("{section}{key}")
                } else {
                    format!("{section}.{key}")
                };
                self.config_error(&key, message)
            }
            other => other,
        }
    }

    /// The tree as TOML text (the resolved config a run directory keeps).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.tree.table).unwrap_or_default()
    }
}

impl Tree {
    /// Reads the typed settings from the tree; errors name the file (or `--set`) and the dotted
    /// key.
    fn resolve(&self) -> Result<Settings> {
        let value = Value::Table(self.table.clone());
        serde_path_to_error::deserialize::<_, Settings>(value)
            .map_err(|e| {
                let mut key = e.path().to_string();
                let message = e.inner().to_string().lines().next().unwrap_or_default().to_owned();
                if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                    if key == "." {
                        key = field.to_owned();
                    } else if !key.ends_with(field) {
                        key = format!("{key}.{field}");
                    }
                }
                self.config_error(&key, message)
            })?
            .validated()
            .map_err(|(key, message)| self.config_error(&key, message))
    }

    /// An [`Error::Config`] for `key`, attributed to the `--set` that touched it, else the file.
    fn config_error(&self, key: &str, message: String) -> Error {
        let path = key_path(key);
        let source = self
            .overrides
            .iter()
            .rev()
            .find(|(p, _)| p.iter().zip(&path).all(|(a, b)| a == b.split('[').next().unwrap_or(b)))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| self.source.clone());
        Error::Config { origin: source, key: key.to_owned(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Params {
        Params::from_str("max_epochs = 3\n[module]\nname = 'mlp'\n[optimizer]\nlr = 0.1\n", "cfg.toml", ".".into())
            .unwrap()
    }

    #[test]
    fn double_underscores_route_into_sections() {
        let mut p = base();
        p.set("optimizer__lr", Value::Float(0.05), "t").unwrap();
        p.set_assignment("callbacks__print_log__decimals=3").unwrap();
        p.set_assignment("iterator_train__batch_size=16").unwrap();
        let s = p.settings();
        assert_eq!(s.optimizer.lr, Some(0.05));
        assert_eq!(s.iterator_train.batch_size, 16);
        assert_eq!(p.table()["callbacks"]["print_log"]["decimals"].as_integer(), Some(3));
    }

    #[test]
    fn choosing_another_component_replaces_its_settings_instead_of_merging_them() {
        let text = "[module]\nname = 'mlp'\nhidden = [8]\ndropout = 0.5\n[callbacks.lr]\ntype = 'lr_scheduler'\npolicy = 'StepLR'\n";
        let mut p = Params::from_str(text, "cfg.toml", ".".into()).unwrap();
        p.set_assignment("module__name=cnn").unwrap();
        assert_eq!(p.table()["module"].as_table().unwrap().len(), 1, "{:?}", p.table()["module"]);
        p.set_assignment("module__dense=[16]").unwrap();
        assert_eq!(p.table()["module"]["dense"].as_array().unwrap().len(), 1);
        p.set_assignment("module__name=cnn").unwrap();
        assert!(p.table()["module"].get("dense").is_some(), "the same component keeps its keys");
        p.set_assignment("callbacks__lr__type=early_stopping").unwrap();
        assert!(p.table()["callbacks"]["lr"].get("policy").is_none());
    }

    #[test]
    fn an_unknown_key_names_the_file_and_the_dotted_key() {
        let err = Params::from_str("[optimizer]\nlrr = 0.1\n[module]\nname='mlp'", "cfg.toml", ".".into()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cfg.toml: `optimizer.lrr`"), "{text}");
    }

    #[test]
    fn a_bad_set_names_the_set_and_leaves_the_tree_unchanged() {
        let mut p = base();
        let err = p.set_assignment("optimizer__lr=fast").unwrap_err().to_string();
        assert!(err.starts_with("--set optimizer__lr=fast: `optimizer.lr`"), "{err}");
        assert_eq!(p.settings().optimizer.lr, Some(0.1));
    }

    #[test]
    fn malloc_defaults_to_training_and_an_unknown_policy_names_the_key() {
        use crate::malloc::MallocPolicy;
        assert_eq!(base().settings().malloc, MallocPolicy::Training);
        let s = Params::from_str("malloc = \"system\"\n[module]\nname='mlp'", "cfg.toml", ".".into())
            .unwrap()
            .settings()
            .clone();
        assert_eq!(s.malloc, MallocPolicy::System);
        let err = Params::from_str("malloc = \"jemalloc\"\n[module]\nname='mlp'", "cfg.toml", ".".into())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cfg.toml: `malloc`"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let err = Params::from_str("max_epochs = 3\nseed = = 1\n", "cfg.toml", ".".into()).unwrap_err().to_string();
        assert!(err.starts_with("cfg.toml: `line 2`"), "{err}");
    }

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        assert_eq!(parse_value("0.5"), Value::Float(0.5));
        assert_eq!(parse_value("[64, 32]"), Value::Array(vec![Value::Integer(64), Value::Integer(32)]));
        assert_eq!(parse_value("adam"), Value::String("adam".into()));
        assert_eq!(parse_value("true"), Value::Boolean(true));
    }
}
