//! Building what a run trains: model, criterion, optimizer and callbacks, from the settings and
//! the registry (skorch's `initialize`).

use super::host::Scorers;
use super::Valid;
use crate::config::{Params, Settings};
use crate::data::select;
use crate::{device, Error, Optimizer, Registry, Result};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use torchfit_sdk::{
    BuildContext, Callback, ComponentKind, Criterion, DatasetReader, Inspected, Inspection, Model, Task,
};

/// The choices a net falls back on where its config is silent and only the program composing
/// the engine with components can choose: the engine names no model, criterion or reader of its
/// own. (skorch keeps them in `NeuralNetClassifier` and `NeuralNetRegressor`, not in its
/// generic net.) The `torchfit` package's presets fill them with its stock components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The criterion of a classification net whose config has no `[criterion]`.
    pub classification_criterion: Option<String>,
    /// The criterion of a regression net whose config has no `[criterion]`.
    pub regression_criterion: Option<String>,
}

impl Defaults {
    /// The default criterion of `task`, if the program chose one.
    pub fn criterion(&self, task: Task) -> Option<&str> {
        match task {
            Task::Classification => self.classification_criterion.as_deref(),
            Task::Regression => self.regression_criterion.as_deref(),
        }
    }
}

/// Everything `initialize` builds: the components of one run and the settings they were built
/// with.
pub(super) struct Components {
    pub settings: Settings,
    pub device: Device,
    pub model: Box<dyn Model>,
    pub criterion: Box<dyn Criterion>,
    /// The registered names of the model and the criterion, which errors name.
    pub names: (String, String),
    pub optimizer: Optimizer,
    /// In the order events reach them (`print_log` last), by their config name.
    pub callbacks: Vec<(String, Box<dyn Callback>)>,
    pub input_shape: Vec<i64>,
    pub n_outputs: i64,
    pub run_dir: Option<PathBuf>,
    pub scorers: Scorers,
    /// The stop flag of the fit running, if any (see [`super::interrupt`]).
    pub watch: Option<super::interrupt::Watch>,
    /// How a step runs: alone, or as one rank of a data-parallel job.
    pub replicas: super::replicas::Replicas,
    /// Whether the history's last epoch is open: from its record's start until `on_epoch_end`
    /// reached every callback. A checkpoint saved meanwhile is not a resume point.
    pub mid_epoch: bool,
    /// The training and validation batch counts of the epoch running; `(0, 0)` as a fit starts
    /// and ends.
    pub batch_counts: (usize, usize),
    /// The gradient scaler of a `16-mixed` run.
    pub scaler: Option<crate::amp::GradScaler>,
    /// How training batches group into optimizer steps.
    pub accumulation: super::accumulation::Accumulation,
    /// The fitted `scaler`, applied to every input before the model (on the run's device).
    pub features: Option<crate::data::FeatureScaler>,
}

/// What a net is built from.
pub(super) struct Recipe<'a> {
    pub params: &'a Params,
    pub registry: &'a Registry,
    pub defaults: &'a Defaults,
    pub run_dir: Option<PathBuf>,
    pub dist: Option<std::sync::Arc<crate::distributed::Distributed>>,
}

impl Components {
    /// Builds the components for samples of `input_shape` and `n_outputs` outputs. Seeds
    /// libtorch first, so the same seed gives the same initial weights.
    pub fn build(recipe: Recipe<'_>, input_shape: &[i64], n_outputs: i64) -> Result<Self> {
        let Recipe { params, registry, defaults, run_dir, dist } = recipe;
        check_model_shape(input_shape, n_outputs).map_err(Error::Data)?;
        let settings = params.settings().clone();
        if let Some(t) = settings.threads {
            tch::set_num_threads(t);
        }
        if let Some(d) = &dist {
            warn_if_oversubscribed(d.launch());
        }
        crate::malloc::apply(settings.malloc);
        let mut device =
            device::resolve(device::parse(&settings.device).map_err(|m| params.config_error("device", m))?)?;
        if let (Some(d), Device::Cuda(0), "cuda" | "auto") = (&dist, device, settings.device.as_str()) {
            device = Device::Cuda(d.launch().local_rank); // each process of a node takes its own GPU
        }
        // libtorch has one generator per process: nets built at once in threads of one process
        // (the ranks of a job in tests, a search) each seed it and draw their initial weights
        // under this lock, so each gets the weights its seed gives.
        static INITIALIZING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let seeded = INITIALIZING.lock().unwrap_or_else(|p| p.into_inner());
        tch::manual_seed(settings.seed as i64);
        let ctx = |name: &str| BuildContext {
            name: name.into(),
            input_shape: input_shape.to_vec(),
            n_outputs,
            task: settings.task,
            device,
            base_dir: params.base_dir().to_path_buf(),
            seed: settings.seed,
        };
        let module = &settings.module;
        let model = registry
            .model(&module.name, &module.json(), &ctx("module"))
            .map_err(|e| params.component_error("module", e))?;
        drop(seeded);
        let (criterion_name, criterion) = match (&settings.criterion, defaults.criterion(settings.task)) {
            (Some(c), _) => (c.name.clone(), registry.criterion(&c.name, &c.json(), &ctx("criterion"))),
            (None, Some(name)) => {
                (name.to_owned(), registry.criterion(name, &serde_json::json!({}), &ctx("criterion")))
            }
            (None, None) => {
                let message = format!(
                    "missing: this net has no default criterion for {:?}; name one ([criterion] name = ...)",
                    settings.task
                );
                return Err(params.config_error("criterion", message));
            }
        };
        let criterion = criterion.map_err(|e| params.component_error("criterion", e))?;
        let optimizer = Optimizer::new(&settings.optimizer, model.parameters()).map_err(|e| match e {
            Error::Config { key, message, .. } => {
                params.config_error(format!("optimizer.{key}").trim_end_matches('.'), message)
            }
            other => other,
        })?;
        let overrides = settings.callback_overrides().map_err(|(k, m)| params.config_error(&k, m))?;
        let mut callbacks = Vec::new();
        for spec in crate::callbacks::resolve(crate::callbacks::defaults(settings.task), overrides) {
            let section = format!("callbacks.{}", spec.name);
            let mut cb = registry
                .callback(&spec.kind, &spec.params, &ctx(&spec.name))
                .map_err(|e| params.component_error(&section, e))?;
            cb.initialize().map_err(|source| Error::Callback {
                name: spec.name.clone(),
                event: "initialize",
                source,
            })?;
            callbacks.push((spec.name, cb));
        }
        let scorers = Scorers::new(registry.clone(), ctx("scorer"));
        let names = (module.name.clone(), criterion_name);
        let replicas = super::replicas::Replicas::new(dist, device, model.as_ref())?;
        let scaler = settings
            .precision
            .scales_loss()
            .then(|| crate::amp::GradScaler::new(device, Default::default()))
            .transpose()?;
        let accumulation = super::accumulation::Accumulation::new(settings.accumulate_grad_batches);
        Ok(Self {
            settings,
            device,
            model,
            criterion,
            names,
            optimizer,
            callbacks,
            input_shape: input_shape.to_vec(),
            n_outputs,
            run_dir,
            scorers,
            watch: None,
            replicas,
            mid_epoch: false,
            batch_counts: (0, 0),
            scaler,
            accumulation,
            features: None,
        })
    }

    /// The model's output for `x` (training mode when `train`), `x` scaled first by the fitted
    /// `scaler`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.model_call("forward", x, |x| self.model.forward(x, train))
    }

    /// [`Model::forward_inspected`] for `x`, scaled first as [`Components::forward`] does.
    pub fn forward_inspected(&self, x: &Tensor, inspection: &Inspection) -> Result<Inspected> {
        self.model_call("forward_inspected", x, |x| self.model.forward_inspected(x, inspection))
    }

    /// `call` on `x` scaled by the fitted `scaler`, its panics and errors the model's.
    fn model_call<T>(
        &self,
        what: &str,
        x: &Tensor,
        call: impl FnOnce(&Tensor) -> torchfit_sdk::Result<T>,
    ) -> Result<T> {
        let scaled;
        let x = match &self.features {
            Some(f) => {
                scaled = f.apply(x)?;
                &scaled
            }
            None => x,
        };
        crate::error::unpanic(what, || call(x)).map_err(|source| Error::Component {
            kind: ComponentKind::Model,
            name: self.names.0.clone(),
            source,
        })
    }

    /// The criterion's loss as a 0-dim tensor. It must hold a single value: backward and the
    /// batch's history entry need one.
    pub fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let error = |source| Error::Component { kind: ComponentKind::Criterion, name: self.names.1.clone(), source };
        let loss = crate::error::unpanic("loss", || self.criterion.loss(y_pred, y)).map_err(error)?;
        match (loss.dim(), loss.numel()) {
            (0, _) => Ok(loss),
            (_, 1) => Ok(loss.f_reshape([0i64; 0])?),
            _ => {
                let message = format!(
                    "the loss has shape {:?}; it must be a single value (reduce it, e.g. with its mean)",
                    loss.size()
                );
                Err(error(torchfit_sdk::Error::msg(message)))
            }
        }
    }
}

/// How many outputs the model needs for the training samples `train` of `reader` (and the
/// validation samples): for classification one per class up to the largest label, for
/// regression one per target column.
pub(super) fn output_count(
    task: Task,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    valid: &mut Valid<'_>,
) -> Result<i64> {
    Ok(match task {
        Task::Classification => {
            let labels = select(&class_labels(reader)?, train);
            let max = labels.iter().copied().max().unwrap_or(0);
            check_labels("the training data", &labels, max + 1)?; // refuses a negative label
            if let Valid::Other(r, idx) = valid {
                check_labels("the validation data", &select(&class_labels(*r)?, idx), max + 1)?;
            }
            max + 1
        }
        Task::Regression => reader.targets()?.size().get(1).copied().unwrap_or(1),
    })
}

/// Refuses a shape no model can be built for: a sample dimension or an output count below 1
/// (they size the model's layers, and libtorch would refuse them inside a model's constructor).
pub fn check_model_shape(input_shape: &[i64], n_outputs: i64) -> std::result::Result<(), String> {
    if let Some(d) = input_shape.iter().find(|&&d| d < 1) {
        return Err(format!("input shape {input_shape:?} has a dimension of {d}; each must be at least 1"));
    }
    if n_outputs < 1 {
        return Err(format!("{n_outputs} outputs; a model needs at least 1"));
    }
    Ok(())
}

/// Refuses held-out data (`what`: a test set) that a model trained on the samples `train` of
/// `reader` could not evaluate: samples of another shape, or, for classification, class labels
/// outside the training labels. Checked before training, so that a mistake there costs no run.
pub fn check_held_out(
    task: Task,
    reader: &mut dyn DatasetReader,
    train: &[i64],
    held: &mut dyn DatasetReader,
    what: &str,
) -> Result<()> {
    check_shape(what, held, reader)?;
    if task == Task::Classification {
        let classes = select(&class_labels(reader)?, train).into_iter().max().unwrap_or(0) + 1;
        check_labels(what, &class_labels(held)?, classes)?;
    }
    Ok(())
}

/// Refuses the samples of `what` (held-out data: "the validation", "[test_dataset]") whose
/// shape differs from those of the training `reader`.
pub(crate) fn check_shape(what: &str, held: &dyn DatasetReader, reader: &dyn DatasetReader) -> Result<()> {
    let (shape, expected) = (held.sample_shape(), reader.sample_shape());
    match shape == expected {
        true => Ok(()),
        false => Err(Error::Data(format!("{what} samples have shape {shape:?}, the training samples {expected:?}"))),
    }
}

/// Refuses class labels of `what` that a model with `classes` outputs (from the training data)
/// cannot predict.
pub(crate) fn check_labels(what: &str, labels: &[i64], classes: i64) -> Result<()> {
    match labels.iter().find(|&&l| l < 0 || l >= classes) {
        None => Ok(()),
        Some(l) => Err(Error::Data(format!(
            "{what} has class label {l}, outside the training data's labels 0..={} (the model has {classes} outputs)",
            classes - 1
        ))),
    }
}

/// The class label of every sample of `reader`.
pub(super) fn class_labels(reader: &mut dyn DatasetReader) -> Result<Vec<i64>> {
    let y = reader.targets()?;
    if y.is_floating_point() {
        return Err(Error::Data(
            "classification needs integer class labels; set task = \"regression\" for real-valued targets".into(),
        ));
    }
    Ok(Vec::<i64>::try_from(y.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

/// Warns once, on each node's local rank 0, when the processes of this node together run more
/// intra-op threads than it has cores (a config written for one process, `threads = 2`, started
/// with `--nproc 2` on two cores): a result of the config that the engine does not change, since
/// the thread count decides the bits of a CPU result.
fn warn_if_oversubscribed(launch: &crate::distributed::Launch) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let threads = tch::get_num_threads().max(1) as usize;
    let cores = crate::distributed::cores();
    if launch.local_rank == 0 && launch.oversubscribes(threads, cores) {
        WARNED.call_once(|| {
            let fair = crate::distributed::threads_per_process(cores, launch.local_world_size);
            log::warn!(
                "threads: {threads} intra-op threads in each of the {} processes on this node ask for more than its \
                 {cores} cores, and they will wait on each other (an epoch several times as long); \
                 set threads = {fair} (--set threads={fair})",
                launch.local_world_size
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::check_model_shape;

    #[test]
    fn a_model_needs_positive_dimensions_and_at_least_one_output() {
        assert!(check_model_shape(&[64], 10).is_ok());
        assert!(check_model_shape(&[1, 28, 28], 1).is_ok());
        assert!(check_model_shape(&[], 1).is_ok(), "a scalar sample");
        assert!(check_model_shape(&[64], 0).unwrap_err().contains("0 outputs"));
        assert!(check_model_shape(&[64], -1).unwrap_err().contains("-1 outputs"));
        assert!(check_model_shape(&[1, 0, 28], 10).unwrap_err().contains("dimension of 0"));
        assert!(check_model_shape(&[-5], 10).unwrap_err().contains("dimension of -5"));
    }
}
