//! Callbacks built into the engine and the default callback list.
//!
//! Defaults, in order: `epoch_timer`, `train_loss`, `valid_loss`, `valid_acc` (classification
//! only), `progress_bar`, then the user's callbacks in config order, and `print_log` always last.
//! `[callbacks.<name>]` reconfigures a default in place (or adds a callback, its `type` defaulting
//! to `<name>`); `callbacks.<name> = false` disables one.

pub mod accuracy_scoring;
pub mod epoch_timer;
pub mod passthrough;
pub mod print_log;
pub mod progress;

use crate::config::{CallbackOverride, CallbackSpec};
use serde::Deserialize;
use serde_json::json;
use torchfit_sdk::{BuildContext, Task};

/// The keys of the builtin scoring callbacks, skorch's: `name` (the history key written; the
/// callback's config name by default), `on_train` (score the training batches instead of the
/// validation batches) and `lower_is_better` (the direction of `<name>_best`; each callback has
/// its default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScoringConfig {
    name: Option<String>,
    #[serde(default)]
    pub on_train: bool,
    pub lower_is_better: Option<bool>,
}

impl ScoringConfig {
    /// The history key written.
    pub fn key(&self, ctx: &BuildContext) -> String {
        self.name.clone().unwrap_or_else(|| ctx.name.clone())
    }
}

fn spec(name: &str, kind: &str, params: serde_json::Value) -> CallbackSpec {
    CallbackSpec { name: name.into(), kind: kind.into(), params }
}

/// The default callbacks for `task`, skorch's list plus a progress bar.
pub(crate) fn defaults(task: Task) -> Vec<CallbackSpec> {
    let mut v = vec![
        spec("epoch_timer", "epoch_timer", json!({})),
        spec("train_loss", "passthrough_scoring", json!({"on_train": true})),
        spec("valid_loss", "passthrough_scoring", json!({"on_train": false})),
    ];
    if task == Task::Classification {
        v.push(spec("valid_acc", "accuracy_scoring", json!({"lower_is_better": false})));
    }
    v.push(spec("progress_bar", "progress_bar", json!({})));
    v.push(spec("print_log", "print_log", json!({})));
    v
}

/// The callbacks of a run: defaults reconfigured or disabled by `overrides`, user callbacks after
/// the defaults, `print_log` last.
pub(crate) fn resolve(defaults: Vec<CallbackSpec>, overrides: Vec<CallbackOverride>) -> Vec<CallbackSpec> {
    let mut list: Vec<Option<CallbackSpec>> = defaults.into_iter().map(Some).collect();
    for (name, over) in overrides {
        match list.iter().position(|s| s.as_ref().is_some_and(|s| s.name == name)) {
            Some(i) => match over {
                // A table for a default with the same type merges its keys into the default's.
                Some(o) if o.kind == list[i].as_ref().map(|d| d.kind.clone()).unwrap_or_default() || o.kind == name => {
                    let d = list[i].as_mut().expect("position found a default");
                    if let (Some(dp), Some(op)) = (d.params.as_object_mut(), o.params.as_object()) {
                        dp.extend(op.clone());
                    }
                }
                Some(o) => list[i] = Some(o),
                None => list[i] = None,
            },
            None => list.push(over),
        }
    }
    let mut out: Vec<CallbackSpec> = list.into_iter().flatten().collect();
    if let Some(i) = out.iter().position(|s| s.kind == "print_log") {
        let p = out.remove(i);
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[CallbackSpec]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_classifier_gets_skorchs_defaults_with_print_log_last() {
        let v = resolve(defaults(Task::Classification), vec![]);
        assert_eq!(names(&v), ["epoch_timer", "train_loss", "valid_loss", "valid_acc", "progress_bar", "print_log"]);
        assert_eq!(
            names(&resolve(defaults(Task::Regression), vec![])),
            ["epoch_timer", "train_loss", "valid_loss", "progress_bar", "print_log"]
        );
    }

    #[test]
    fn user_callbacks_run_after_the_defaults_and_before_print_log() {
        let user = spec("my_cb", "my_type", json!({"x": 1}));
        let v = resolve(defaults(Task::Regression), vec![("my_cb".into(), Some(user.clone()))]);
        assert_eq!(names(&v), ["epoch_timer", "train_loss", "valid_loss", "progress_bar", "my_cb", "print_log"]);
        assert_eq!(v[4], user);
    }

    #[test]
    fn a_default_is_disabled_by_false_and_reconfigured_by_a_table() {
        let v = resolve(
            defaults(Task::Classification),
            vec![
                ("progress_bar".into(), None),
                ("valid_acc".into(), Some(spec("valid_acc", "valid_acc", json!({"on_train": true})))),
            ],
        );
        assert_eq!(names(&v), ["epoch_timer", "train_loss", "valid_loss", "valid_acc", "print_log"]);
        assert_eq!(v[3].kind, "accuracy_scoring");
        assert_eq!(v[3].params["on_train"], json!(true));
        assert_eq!(v[3].params["lower_is_better"], json!(false));
    }

    #[test]
    fn a_default_given_another_type_is_replaced() {
        let v = resolve(
            defaults(Task::Regression),
            vec![("print_log".into(), Some(spec("print_log", "my_log", json!({}))))],
        );
        assert_eq!(v.last().unwrap().kind, "my_log");
    }
}
