//! Stock callbacks `epoch_scoring` and `batch_scoring` (skorch's `EpochScoring` and
//! `BatchScoring`) and the scorers they use by name: `accuracy`, `balanced_accuracy`, `f1`,
//! `f1_macro`, `f1_micro`, `precision[_macro|_micro]`, `recall[_macro|_micro]`, `roc_auc`,
//! `log_loss`, `r2`, `mse`, `mae`, `iou` (per-pixel masks). A scorer from any other plugin is used through
//! [`Host::score`].
#![deny(missing_docs)]

pub mod metrics;
mod scorers;

use serde::Deserialize;
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{
    export_plugin, parse_config, scoring::record_with_best, BatchOutput, BuildContext, Callback, Error, Flow, Host,
    Result,
};

pub use scorers::{Metric, UnknownScorer};

/// Settings shared by both callbacks (skorch's names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The scorer's name: one of [`Metric`]'s, or a scorer component of another plugin.
    pub scoring: String,
    /// The history key written; the callback's name in the config by default.
    pub name: Option<String>,
    /// Score the training batches instead of the validation batches.
    #[serde(default)]
    pub on_train: bool,
    /// Direction of `<name>_best`; the scorer's own by default (lower for `log_loss`, `mse` and
    /// `mae`, higher for the rest; a scorer from another plugin may declare its own, SDK 1.1).
    /// Required for a scorer from another plugin that declares none.
    pub lower_is_better: Option<bool>,
    /// A border of per-pixel outputs and targets (`[n, c, h, w]`) left out of the score: the
    /// context a padded loss ignores (segmentation, the skorch talk's IoU with `padding`).
    #[serde(default)]
    pub padding: i64,
}

/// A scorer resolved from its name.
enum Scoring {
    Own(Metric),
    Host(String),
}

impl Scoring {
    fn score(&self, host: &mut dyn Host, y_true: &Tensor, y_pred: &Tensor, padding: i64) -> Result<f64> {
        let (y_true, y_pred) = match padding {
            0 => (y_true.shallow_clone(), y_pred.shallow_clone()),
            p => (
                torchfit_sdk::metrics::without_border(&y_true.f_view_as(y_pred)?, p)?,
                torchfit_sdk::metrics::without_border(y_pred, p)?,
            ),
        };
        match self {
            Scoring::Own(m) => m.score(&y_true, &y_pred),
            Scoring::Host(name) => host.score(name, &y_true, &y_pred),
        }
    }
}

/// What both callbacks are built from.
struct Setup {
    scoring: Scoring,
    key: String,
    on_train: bool,
    /// Known at build time, except for a scorer of another plugin that is not given one: that
    /// one is asked of the host at train begin.
    lower_is_better: Option<bool>,
    /// Border of per-pixel outputs left out of the score.
    padding: i64,
}

fn setup(config: &serde_json::Value, ctx: &BuildContext) -> Result<Setup> {
    let c: Config = parse_config(config)?;
    let (scoring, natural) = match c.scoring.parse::<Metric>() {
        Ok(m) => (Scoring::Own(m), Some(m.lower_is_better())),
        Err(UnknownScorer) => (Scoring::Host(c.scoring.clone()), None),
    };
    let key = c.name.unwrap_or_else(|| ctx.name.clone());
    if c.padding < 0 {
        return Err(Error::config("padding", format!("must be at least 0, got {}", c.padding)));
    }
    Ok(Setup { scoring, key, on_train: c.on_train, lower_is_better: c.lower_is_better.or(natural), padding: c.padding })
}

impl Setup {
    /// The direction of `<name>_best`: given, the plugin's own scorer's, or the one a scorer of
    /// another plugin declares (asked of the host once).
    fn lower_is_better(&mut self, host: &mut dyn Host) -> Result<bool> {
        if let Some(d) = self.lower_is_better {
            return Ok(d);
        }
        let name = match &self.scoring {
            Scoring::Host(name) => name.clone(),
            Scoring::Own(m) => return Ok(m.lower_is_better()),
        };
        let declared = host.scorer_lower_is_better(&name).ok().flatten();
        self.lower_is_better = declared;
        declared.ok_or_else(|| {
            Error::config(
                "lower_is_better",
                format!("`{name}` is not one of this plugin's scorers and declares no direction, so it must be given"),
            )
        })
    }
}

/// Scores all predictions of an epoch's phase at its end, from predictions cached batch by batch
/// (no second inference pass); writes `<name>` and `<name>_best` per epoch.
pub struct EpochScoring {
    s: Setup,
    cache: Vec<(Tensor, Tensor)>,
}

fn build_epoch(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(EpochScoring { s: setup(config, ctx)?, cache: Vec::new() }))
}

impl Callback for EpochScoring {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.s.lower_is_better(host)?;
        Ok(Flow::Continue)
    }

    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.cache.clear();
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, _host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training == self.s.on_train {
            self.cache.push((out.batch.y.shallow_clone(), out.y_pred.f_detach()?));
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if self.cache.is_empty() {
            return Ok(Flow::Continue); // no batches of this phase (no validation data)
        }
        let (ys, preds): (Vec<Tensor>, Vec<Tensor>) = self.cache.drain(..).unzip();
        let score = self.s.scoring.score(host, &Tensor::f_cat(&ys, 0)?, &Tensor::f_cat(&preds, 0)?, self.s.padding)?;
        let lower_is_better = self.s.lower_is_better(host)?;
        record_with_best(host, &self.s.key, score, lower_is_better)?;
        Ok(Flow::Continue)
    }
}

/// Scores every batch of its phase (written to the batch's history as `<name>`) and records
/// their mean weighted by batch size as `<name>` and `<name>_best` at epoch end.
pub struct BatchScoring {
    s: Setup,
    batches: Vec<(f64, usize)>,
}

fn build_batch(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Callback>> {
    Ok(Box::new(BatchScoring { s: setup(config, ctx)?, batches: Vec::new() }))
}

/// The epoch value of batch scores: their mean weighted by batch size (skorch's `BatchScoring`),
/// NaN batches left out (a scorer may be undefined on a batch, as roc_auc on one class).
pub fn epoch_value(batches: &[(f64, usize)]) -> Option<f64> {
    let (scores, sizes): (Vec<f64>, Vec<f64>) =
        batches.iter().filter(|(s, _)| !s.is_nan()).map(|&(s, n)| (s, n as f64)).unzip();
    torchfit_sdk::metrics::weighted_mean(&scores, &sizes)
}

impl Callback for BatchScoring {
    fn on_train_begin(&mut self, host: &mut dyn Host) -> Result<Flow> {
        self.s.lower_is_better(host)?;
        Ok(Flow::Continue)
    }

    fn on_epoch_begin(&mut self, _host: &mut dyn Host) -> Result<Flow> {
        self.batches.clear();
        Ok(Flow::Continue)
    }

    fn on_batch_end(&mut self, host: &mut dyn Host, out: &BatchOutput<'_>) -> Result<Flow> {
        if out.batch.training == self.s.on_train {
            let score = self.s.scoring.score(host, out.batch.y, out.y_pred, self.s.padding)?;
            host.record_batch(&self.s.key, score.into())?;
            self.batches.push((score, out.batch.y.size().first().copied().unwrap_or(0) as usize));
        }
        Ok(Flow::Continue)
    }

    fn on_epoch_end(&mut self, host: &mut dyn Host) -> Result<Flow> {
        if let Some(score) = epoch_value(&self.batches) {
            let lower_is_better = self.s.lower_is_better(host)?;
            record_with_best(host, &self.s.key, score, lower_is_better)?;
        }
        Ok(Flow::Continue)
    }
}

export_plugin! {
    name: "torchfit-plugin-scoring",
    components: [
        Callback("epoch_scoring", build_epoch, "scores an epoch's cached predictions with `scoring` as `<name>` and `<name>_best`; keys: scoring, name, on_train, lower_is_better"),
        Callback("batch_scoring", build_batch, "scores each batch with `scoring` (batch history) and records the size-weighted mean per epoch; keys: scoring, name, on_train, lower_is_better"),
        Scorer("accuracy", scorers::accuracy, "fraction of arg-max predictions equal to the target"),
        Scorer("balanced_accuracy", scorers::balanced_accuracy, "mean recall over the classes present"),
        Scorer("f1", scorers::f1, "F1 of class 1 (binary)"),
        Scorer("f1_macro", scorers::f1_macro, "unweighted mean F1 over classes"),
        Scorer("f1_micro", scorers::f1_micro, "F1 from total counts"),
        Scorer("precision", scorers::precision, "precision of class 1 (binary)"),
        Scorer("precision_macro", scorers::precision_macro, "unweighted mean precision over classes"),
        Scorer("precision_micro", scorers::precision_micro, "precision from total counts"),
        Scorer("recall", scorers::recall, "recall of class 1 (binary)"),
        Scorer("recall_macro", scorers::recall_macro, "unweighted mean recall over classes"),
        Scorer("recall_micro", scorers::recall_micro, "recall from total counts"),
        Scorer("roc_auc", scorers::roc_auc, "ROC AUC (binary; one-vs-rest macro for more classes)"),
        Scorer("log_loss", scorers::log_loss, "mean negative log-likelihood of softmax outputs"),
        Scorer("r2", scorers::r2, "coefficient of determination"),
        Scorer("mse", scorers::mse, "mean squared error"),
        Scorer("mae", scorers::mae, "mean absolute error"),
        Scorer("iou", scorers::iou, "mean intersection over union of masks thresholded at logit 0 and target 0.5 (segmentation)"),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use torchfit_sdk::testing::FakeHost;

    fn ctx() -> BuildContext {
        BuildContext { input_shape: vec![1], ..torchfit_sdk::testing::context("valid_f1") }
    }

    #[test]
    fn a_plugin_scorer_takes_its_own_direction_and_a_foreign_one_needs_it() {
        let mut host = FakeHost::default();
        let mut direction = |config| setup(&config, &ctx()).unwrap().lower_is_better(&mut host);
        assert!(direction(json!({"scoring": "log_loss"})).unwrap());
        assert!(!direction(json!({"scoring": "f1_macro"})).unwrap());
        assert!(direction(json!({"scoring": "f1_macro", "lower_is_better": true})).unwrap());
        let e = direction(json!({"scoring": "my_metric"})).unwrap_err().to_string();
        assert!(e.contains("lower_is_better") && e.contains("my_metric"), "{e}");
        assert!(setup(&json!({"scoring": "f1", "typo": 1}), &ctx()).is_err());
    }

    #[test]
    fn the_epoch_value_of_batch_scores_is_weighted_by_batch_size() {
        assert_eq!(epoch_value(&[(1.0, 3), (0.0, 1)]), Some(0.75));
        assert_eq!(epoch_value(&[(f64::NAN, 3), (0.5, 1)]), Some(0.5));
        assert_eq!(epoch_value(&[]), None);
    }

    fn batch_end(cb: &mut dyn Callback, host: &mut FakeHost, y: &[i64], logits: &[f32], training: bool) {
        let y = Tensor::from_slice(y);
        let y_pred = Tensor::from_slice(logits).view([y.size()[0], -1]);
        let x = Tensor::zeros([y.size()[0], 1], (torchfit_sdk::tch::Kind::Float, torchfit_sdk::tch::Device::Cpu));
        let loss = Tensor::from(0.0);
        let out = BatchOutput {
            batch: torchfit_sdk::Batch { x: &x, y: &y, training, index: 0 },
            y_pred: &y_pred,
            loss: &loss,
        };
        cb.on_batch_end(host, &out).unwrap();
    }

    #[test]
    fn epoch_scoring_scores_all_cached_batches_of_its_phase_at_once() {
        let mut cb = build_epoch(&json!({"scoring": "f1_macro"}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        host.new_epoch();
        cb.on_epoch_begin(&mut host).unwrap();
        // Validation: y = [0, 1, 2, 0, 1, 2], predicted [0, 2, 1, 0, 0, 1] over two batches.
        batch_end(cb.as_mut(), &mut host, &[0, 1, 2], &[9., 0., 0., 0., 0., 9., 0., 9., 0.], false);
        batch_end(cb.as_mut(), &mut host, &[0, 1, 2], &[9., 0., 0., 9., 0., 0., 0., 9., 0.], false);
        // A training batch is not the callback's phase.
        batch_end(cb.as_mut(), &mut host, &[0], &[0., 0., 9.], true);
        cb.on_epoch_end(&mut host).unwrap();
        let f1 = host.history_get(-1, "valid_f1").unwrap().as_f64().unwrap();
        assert!((f1 - 0.26666666666666666).abs() < 1e-12, "{f1}");
        assert_eq!(host.history_get(-1, "valid_f1_best"), Some(json!(true)));
    }

    #[test]
    fn batch_scoring_writes_each_batch_and_the_weighted_epoch_mean() {
        let mut cb =
            build_batch(&json!({"scoring": "accuracy", "on_train": true, "name": "train_acc"}), &ctx()).unwrap();
        let mut host = FakeHost::default();
        host.new_epoch();
        cb.on_epoch_begin(&mut host).unwrap();
        host.new_batch();
        batch_end(cb.as_mut(), &mut host, &[0, 1, 1], &[1., 0., 0., 1., 0., 1.], true);
        host.new_batch();
        batch_end(cb.as_mut(), &mut host, &[1], &[1., 0.], true);
        cb.on_epoch_end(&mut host).unwrap();
        assert_eq!(host.history_batch_values(-1, "train_acc"), [json!(1.0), json!(0.0)]);
        assert_eq!(host.history_get(-1, "train_acc"), Some(json!(0.75)));
    }
}
