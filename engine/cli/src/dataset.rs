//! The config's data set as the commands read it: the `[dataset]` reader (and the other readers
//! a config names), and the samples training may use (all but the held-out `test_split`).

use torchfit_engine::config::{ComponentSpec, Params, SplitKind};
use torchfit_engine::data::{split_indices, Stream};
use torchfit_engine::{Registry, Result};
use torchfit_sdk::{BuildContext, DatasetReader};

/// The reader `spec` configured under `key` (`dataset`, `valid_dataset`, `test_dataset`).
pub(crate) fn reader(
    registry: &Registry,
    params: &Params,
    key: &str,
    spec: &ComponentSpec,
) -> Result<Box<dyn DatasetReader>> {
    let settings = params.settings();
    let ctx = BuildContext {
        name: key.into(),
        input_shape: vec![],
        n_outputs: 0,
        task: settings.task,
        device: tch::Device::Cpu,
        base_dir: params.base_dir().to_path_buf(),
        seed: settings.seed,
    };
    registry.reader(&spec.name, &spec.json(), &ctx).map_err(|e| params.component_error(key, e))
}

/// The config's data set and how its samples are used.
pub(crate) struct TrainingData {
    /// The reader of `[dataset]`.
    pub reader: Box<dyn DatasetReader>,
    /// The samples training may use.
    pub pool: Vec<i64>,
    /// The held-out `test_split`.
    pub test: Vec<i64>,
}

/// The config's data set (`spec`) and the samples training may use (all but the held-out
/// `test_split`).
pub(crate) fn training_data(params: &Params, registry: &Registry, spec: &ComponentSpec) -> Result<TrainingData> {
    let settings = params.settings();
    let mut data = reader(registry, params, "dataset", spec)?;
    let n = data.len();
    if settings.test_dataset.is_some() && settings.test_split.is_some() {
        return Err(params.config_error("test_dataset", "give either [test_dataset] or [test_split], not both".into()));
    }
    let (pool, test) = match &settings.test_split {
        Some(ts) if ts.kind == SplitKind::Fraction => {
            let labels = if settings.stratify(ts) {
                Some(Vec::<i64>::try_from(data.targets()?.f_flatten(0, -1)?)?)
            } else {
                None
            };
            let (pool, test) = split_indices(n, labels.as_deref(), ts.fraction, settings.seed, Stream::TestSplit);
            if test.is_empty() {
                log::warn!("test_split.fraction = {} of {n} samples holds none out: the run has no test", ts.fraction);
            }
            (pool, test)
        }
        _ => ((0..n as i64).collect(), Vec::new()),
    };
    Ok(TrainingData { reader: data, pool, test })
}
