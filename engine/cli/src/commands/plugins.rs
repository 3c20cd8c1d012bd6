//! `torchfit plugins`: every component torchfit can use, builtin or found on the search path.

use super::{load_params, Ended};
use crate::table::aligned;
use std::io::Write;
use std::path::PathBuf;
use torchfit_engine::registry::Component;
use torchfit_engine::{plugins, Result};

/// `torchfit plugins`' arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also search the plugin folders and files of this config.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Prints the table.
pub fn execute(args: Args) -> Result<Ended> {
    let registry = match args.config {
        Some(c) => plugins::registry_for(&load_params(&c, &[])?)?,
        None => plugins::registry(&[], &[])?,
    };
    let text = component_table(registry.components());
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(Ended::Completed)
}

/// `torchfit plugins`: one line per component, sorted by kind then name, in aligned columns
/// (kind, name, version, origin, summary).
pub fn component_table(components: &[Component]) -> String {
    let mut rows: Vec<[String; 5]> = components
        .iter()
        .map(|c| {
            [c.kind.as_str().to_owned(), c.name.clone(), c.version.clone(), c.origin.to_string(), c.summary.clone()]
        })
        .collect();
    rows.sort_by(|a, b| (&a[0], &a[1]).cmp(&(&b[0], &b[1])));
    aligned(["kind", "name", "version", "origin", "summary"], &rows, [false; 5])
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_engine::Registry;

    #[test]
    fn the_component_table_is_sorted_by_kind_then_name_in_aligned_columns() {
        let text = component_table(Registry::builtin().components());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("kind") && lines[0].ends_with("summary"), "{}", lines[0]);
        let keys: Vec<(&str, &str)> = lines[1..]
            .iter()
            .map(|l| {
                let mut w = l.split_whitespace();
                (w.next().unwrap(), w.next().unwrap())
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.contains(&("model", "mlp")) && keys.contains(&("callback", "print_log")), "{keys:?}");
        let column = |l: &str| l.find(l.split_whitespace().nth(2).unwrap()).unwrap();
        assert!(lines.iter().all(|l| column(l) == column(lines[0])), "the version column is aligned:\n{text}");
    }
}
