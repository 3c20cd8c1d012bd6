//! `print_log`: the per-epoch table (skorch's `PrintLog`), always run last.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `keys_ignored` | `[]` | epoch keys not to show |
//! | `decimals` | `4` | digits after the point for numbers |
//!
//! Columns: `epoch`, `train_loss`, `valid_loss`, the other keys in the order they were first
//! recorded, `event_*` keys, and `dur` last; only keys with numbers (or flags) are shown, never
//! text, lists or objects. A value whose `<key>_best` is true is shown in green on a terminal and
//! followed by `*` otherwise. The first epoch fixes the columns and the header is printed once:
//! a key that first appears in a later epoch stays in `history.json`, out of the table (said once
//! at info level).

use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::IsTerminal;
use torchfit_sdk::{parse_config, BuildContext, Callback, Flow, Host, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    keys_ignored: Vec<String>,
    decimals: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { keys_ignored: Default::default(), decimals: 4 }
    }
}

/// The table's settings, and its columns once the first epoch has fixed them.
pub(crate) struct PrintLog {
    keys_ignored: Vec<String>,
    decimals: usize,
    color: bool,
    columns: Vec<String>,
    /// Keys that first appeared after the columns were fixed (said once each).
    late: std::collections::BTreeSet<String>,
}

impl PrintLog {
    fn widths(&self) -> Vec<usize> {
        self.columns.iter().map(|c| c.len().max(self.decimals + 3)).collect()
    }
}

/// Builds it.
pub(crate) fn build(config: &serde_json::Value, _ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    let c: Config = parse_config(config)?;
    Ok(Box::new(PrintLog {
        keys_ignored: c.keys_ignored,
        decimals: c.decimals,
        color: std::io::stdout().is_terminal(),
        columns: Vec::new(),
        late: Default::default(),
    }))
}

/// The columns to show for an epoch record, in display order.
pub(crate) fn columns(epoch: &Map<String, Value>, ignored: &[String]) -> Vec<String> {
    let tabular = |k: &String| matches!(epoch.get(k), Some(Value::Number(_) | Value::Bool(_) | Value::Null));
    let shown = |k: &&String| !k.ends_with("_best") && tabular(k) && !ignored.contains(k);
    let mut keys: Vec<String> = epoch.keys().filter(shown).cloned().collect();
    let rank = |k: &str| match k {
        "epoch" => 0,
        "train_loss" => 1,
        "valid_loss" => 2,
        "dur" => 5,
        k if k.starts_with("event_") => 4,
        _ => 3,
    };
    keys.sort_by_key(|k| rank(k)); // stable: keeps recording order within a rank
    keys
}

/// One cell: numbers with `decimals` digits (integers as they are), best values marked.
pub(crate) fn cell(epoch: &Map<String, Value>, key: &str, decimals: usize, color: bool) -> String {
    let text = match epoch.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::Number(n)) if n.is_f64() => format!("{:.*}", decimals, n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => {
            if *b {
                "+".into()
            } else {
                String::new()
            }
        }
        Some(v) => v.to_string(),
    };
    let best = epoch.get(&format!("{key}_best")).and_then(Value::as_bool).unwrap_or(false);
    match (best, color) {
        (true, true) => format!("\x1b[32m{text}\x1b[0m"),
        (true, false) => format!("{text}*"),
        _ => text,
    }
}

fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (false, _) => n += 1,
            _ => {}
        }
    }
    n
}

/// Formats one table line: cells right-aligned to `widths`.
pub(crate) fn line(cells: &[String], widths: &[usize]) -> String {
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{}{}", " ".repeat(w.saturating_sub(visible_len(c))), c))
        .collect();
    parts.join("  ")
}

impl Callback for PrintLog {
    fn initialize(&mut self) -> Result<()> {
        self.columns.clear();
        self.late.clear();
        Ok(())
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if !host.is_main_process() {
            return Ok(Flow::Continue); // one table per job: rank 0's
        }
        let Some(epoch) = host.history_epoch(-1) else { return Ok(Flow::Continue) };
        let mut text = String::new();
        let new = columns(&epoch, &self.keys_ignored);
        if self.columns.is_empty() {
            self.columns = new;
            let widths = self.widths();
            text += &line(&self.columns, &widths);
            text.push('\n');
            let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            text += &line(&rules, &widths);
            text.push('\n');
        } else {
            for key in new.iter().filter(|k| !self.columns.contains(k)) {
                if self.late.insert(key.clone()) {
                    log::info!(
                        "print_log: `{key}` first appeared in epoch {}: it is in the history, not in the table",
                        host.epochs()
                    );
                }
            }
        }
        let cols = &self.columns;
        let widths = self.widths();
        let cells: Vec<String> = cols.iter().map(|k| cell(&epoch, k, self.decimals, self.color)).collect();
        text += &line(&cells, &widths);
        text.push('\n');
        // The table is for reading; a closed stdout (`| head`) must not stop the training.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn epoch() -> Map<String, Value> {
        json!({"epoch": 2, "valid_acc": 0.9, "valid_acc_best": true, "dur": 0.5, "train_loss": 0.31234, "train_loss_best": false, "event_lr": 0.1, "valid_loss": 0.4})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn columns_put_epoch_and_losses_first_and_dur_last() {
        assert_eq!(columns(&epoch(), &[]), ["epoch", "train_loss", "valid_loss", "valid_acc", "event_lr", "dur"]);
        assert_eq!(
            columns(&epoch(), &["event_lr".to_string()]),
            ["epoch", "train_loss", "valid_loss", "valid_acc", "dur"]
        );
    }

    #[test]
    fn text_lists_and_objects_are_not_columns() {
        let mut e = epoch();
        e.insert("note".into(), json!("warmup"));
        e.insert("per_class".into(), json!([0.1, 0.2]));
        e.insert("event_cp".into(), json!(true));
        assert_eq!(columns(&e, &[]), ["epoch", "train_loss", "valid_loss", "valid_acc", "event_lr", "event_cp", "dur"]);
    }

    #[test]
    fn the_header_is_printed_once_and_a_late_key_stays_out_of_the_table() {
        let mut log =
            PrintLog { keys_ignored: vec![], decimals: 4, color: false, columns: vec![], late: Default::default() };
        let mut host = torchfit_sdk::testing::FakeHost::default();
        host.new_epoch();
        host.record("train_loss", json!(0.5)).unwrap();
        log.on_epoch_end(&mut host).unwrap();
        host.new_epoch();
        host.record("train_loss", json!(0.4)).unwrap();
        host.record("swa_loss", json!(0.3)).unwrap();
        log.on_epoch_end(&mut host).unwrap();
        assert_eq!(log.columns, ["epoch", "train_loss"], "the columns of the first epoch");
        assert!(log.late.contains("swa_loss"));
    }

    #[test]
    fn best_values_are_marked_and_others_are_not() {
        let e = epoch();
        assert_eq!(cell(&e, "valid_acc", 4, false), "0.9000*");
        assert_eq!(cell(&e, "valid_acc", 4, true), "\x1b[32m0.9000\x1b[0m");
        assert_eq!(cell(&e, "train_loss", 4, false), "0.3123");
        assert_eq!(cell(&e, "epoch", 4, false), "2");
    }

    #[test]
    fn colour_codes_do_not_count_towards_alignment() {
        let l = line(&["\x1b[32m0.9\x1b[0m".to_string(), "1".to_string()], &[5, 3]);
        assert_eq!(l, "  \x1b[32m0.9\x1b[0m    1");
    }
}
