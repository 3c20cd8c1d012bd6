//! `torchfit predict`: what skorch's `predict` and `predict_proba` give, for the model of a run
//! directory, on its data set or a new file, as CSV or NumPy.

use super::train::ModelMeta;
use super::Ended;
use crate::dataset::reader;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;
use torchfit_engine::config::Params;
use torchfit_engine::data::{FeatureScaler, Scaling};
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::{Error, NeuralNet, Result};
use torchfit_sdk::metrics::{class_probabilities, predicted_classes};
use torchfit_sdk::Task;

/// `torchfit predict`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory written by `torchfit train --out`.
    run: PathBuf,
    /// Predict on this file (read by the run's dataset reader) instead of the run's data set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Write predictions here instead of standard output: NumPy's format for a `.npy` file,
    /// CSV otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A classifier's class probabilities beside its label (skorch's `predict_proba`); in a
    /// `.npy` file, the probabilities alone.
    #[arg(long, conflicts_with = "logits")]
    proba: bool,
    /// The model's raw outputs (logits), in their shape in a `.npy` file.
    #[arg(long)]
    logits: bool,
    /// A segmentation model's masks as PNG files in this folder, named after the inputs (patches
    /// put back together, their reflected context cut off).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "proba", "logits"])]
    masks: Option<PathBuf>,
}

/// Predicts and writes the rows to `--out` or standard output.
pub fn execute(args: Args) -> Result<Ended> {
    let Args { run, data, sets, out, proba, logits, masks } = args;
    if let Some(dir) = masks {
        let written = write_masks(&run, data.as_deref(), &sets, &dir)?;
        eprintln!("{written} masks written to {}", dir.display());
        return Ok(Ended::Completed);
    }
    let what = match (proba, logits) {
        (true, _) => Predicted::Proba,
        (_, true) => Predicted::Logits,
        _ => Predicted::Labels,
    };
    let predictions = predict(&run, data.as_deref(), &sets, what)?;
    match out {
        Some(path) => predictions.write(&path)?,
        // A reader that closed its end (`| head`) took what it wanted.
        None => match std::io::stdout().write_all(predictions.csv().as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(Error::io(Path::new("<stdout>"), e)),
            _ => {}
        },
    }
    Ok(Ended::Completed)
}

/// What `torchfit predict` gives for each sample (skorch's `predict` and `predict_proba`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Predicted {
    /// The class (classifier) or the outputs (regressor).
    #[default]
    Labels,
    /// The class and its probabilities (classifier; a regressor's outputs).
    Proba,
    /// The model's raw outputs, in their shape.
    Logits,
}

/// The predictions of a run's model: one row per sample, in the data set's order.
#[derive(Debug)]
pub struct Predictions {
    /// Each sample's id: its name when the reader gives names (an image's path under the
    /// reader's root), else its row in the data set.
    pub ids: Vec<String>,
    /// The column names of [`Predictions::rows`] after `id`.
    pub columns: Vec<String>,
    /// What `--out FILE.npy` holds: the labels (`Int64`, one per sample), the probabilities
    /// (`[samples, classes]`), or the outputs in the model's shape (`[samples, ...]`).
    pub array: Tensor,
    /// Each sample's values, as the CSV writes them (the label first, then the probabilities).
    pub rows: Vec<Vec<String>>,
}

impl Predictions {
    /// CSV with a header: `id` ([`Predictions::ids`], quoted as RFC 4180 asks when it holds a
    /// comma, a quote or a line break), then [`Predictions::columns`].
    pub fn csv(&self) -> String {
        let mut text =
            std::iter::once("id").chain(self.columns.iter().map(String::as_str)).collect::<Vec<_>>().join(",");
        text.push('\n');
        for (id, row) in self.ids.iter().zip(&self.rows) {
            text += &format!("{},{}\n", torchfit_sdk::io::csv_field(id, ','), row.join(","));
        }
        text
    }

    /// Writes the predictions to `path`: a NumPy file for `.npy` ([`Predictions::array`]), CSV
    /// otherwise; atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => torchfit_sdk::io::with_temp(path, |tmp| {
                self.array.write_npy(tmp).map_err(|e| torchfit_sdk::Error::msg(format!("{}: {e}", path.display())))
            })
            .map_err(Error::from),
            _ => write_atomic(path, self.csv().as_bytes()),
        }
    }
}

/// Each row of `t` (`[samples, ...]`, flattened per sample) as text.
fn rows_of(t: &Tensor) -> Result<Vec<Vec<String>>> {
    let n = t.size().first().copied().unwrap_or(0);
    let rows = t.f_to_kind(tch::Kind::Float)?.f_reshape([n, -1])?;
    let k = rows.size()[1] as usize;
    let flat = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
    // Debug: the shortest text that reads back as the same float32, in exponent form when tiny.
    Ok(flat.chunks(k.max(1)).map(|r| r.iter().map(|v| format!("{v:?}")).collect()).collect())
}

/// `prefix_0`, `prefix_1`, ... for `k` columns (`prefix` alone for one).
fn numbered(prefix: &str, k: usize) -> Vec<String> {
    match k {
        1 => vec![prefix.to_owned()],
        _ => (0..k).map(|i| format!("{prefix}_{i}")).collect(),
    }
}

/// The predictions of the model in run directory `run` for the config's data set (or `data`, a
/// file the same reader can read), as `what` asks.
pub fn predict(run: &Path, data: Option<&Path>, sets: &[String], what: Predicted) -> Result<Predictions> {
    let Outputs { out, task, names, .. } = predict_outputs(run, data, sets)?;
    let per_sample = |t: &Tensor| t.size().iter().skip(1).product::<i64>() as usize;
    let ids = names.unwrap_or_else(|| (0..out.size()[0]).map(|i| i.to_string()).collect());
    Ok(match (task, what) {
        (_, Predicted::Logits) => {
            let name = if task == Task::Classification { "logit" } else { "value" };
            Predictions { ids, columns: numbered(name, per_sample(&out)), rows: rows_of(&out)?, array: out }
        }
        (Task::Regression, _) => {
            Predictions { ids, columns: numbered("value", per_sample(&out)), rows: rows_of(&out)?, array: out }
        }
        (Task::Classification, Predicted::Labels) => {
            let labels = predicted_classes(&out)?;
            let rows = Vec::<i64>::try_from(&labels)?.into_iter().map(|c| vec![c.to_string()]).collect();
            Predictions { ids, columns: vec!["label".into()], rows, array: labels }
        }
        (Task::Classification, Predicted::Proba) => {
            let proba = class_probabilities(&out)?;
            let labels = Vec::<i64>::try_from(&predicted_classes(&out)?)?;
            let rows = labels
                .iter()
                .zip(rows_of(&proba)?)
                .map(|(c, p)| std::iter::once(c.to_string()).chain(p).collect())
                .collect();
            let columns = std::iter::once("label".to_owned()).chain(numbered("proba", per_sample(&proba))).collect();
            Predictions { ids, columns, rows, array: proba }
        }
    })
}

/// Writes the masks of the model in run directory `run` for its data set (or `data`) into
/// `dir` as PNG files (`--masks`); returns how many.
fn write_masks(run: &Path, data: Option<&Path>, sets: &[String], dir: &Path) -> Result<usize> {
    let Outputs { out, names, border, .. } = predict_outputs(run, data, sets)?;
    let names = names.ok_or_else(|| {
        Error::Data("--masks names its files after the inputs: the reader gives no sample names".into())
    })?;
    let masks = super::masks::stitch(&out, &names, border)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let count = masks.len();
    for m in masks {
        let image = image::GrayImage::from_raw(m.size.0, m.size.1, m.pixels)
            .ok_or_else(|| Error::Data(format!("{}: a mask of the wrong size", m.name)))?;
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::Data(format!("{}: {e}", m.name)))?;
        let stem =
            Path::new(&m.name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| m.name.clone());
        write_atomic(&dir.join(format!("{stem}.png")), &png)?;
    }
    Ok(count)
}

/// What the model of a run gives for the samples: its outputs on the CPU, the task it was
/// trained for, the samples' names when the reader gives them, and the reflected context around
/// each sample (`image_masks`' `padding`; 0 for other readers).
struct Outputs {
    out: Tensor,
    task: Task,
    names: Option<Vec<String>>,
    border: i64,
}

/// The model of run directory `run`, loaded, and its outputs for every sample of the config's
/// data set (or `data`), on the CPU; the task it was trained for; the samples' names when the
/// reader gives them.
fn predict_outputs(run: &Path, data: Option<&Path>, sets: &[String]) -> Result<Outputs> {
    let Loaded { mut net, mut reader, meta } = load_run(run, data, sets)?;
    let all: Vec<i64> = (0..reader.len() as i64).collect();
    let names = reader.sample_names().filter(|n| n.len() == all.len());
    let dataset = net.params().table().get("dataset").and_then(toml::Value::as_table);
    let border = match dataset {
        Some(d) if d.get("name").and_then(toml::Value::as_str) == Some("image_masks") => {
            d.get("padding").and_then(toml::Value::as_integer).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(Outputs { out: net.forward_reader(reader.as_mut(), &all)?, task: meta.task, names, border })
}

/// The model of a run directory, loaded, with the reader of its data set (or of `data`).
pub struct Loaded {
    /// The net, its trained parameters (and fitted scaler) loaded.
    pub net: NeuralNet,
    /// The run's reader over its data set or `data`, checked against the model's input shape.
    pub reader: Box<dyn torchfit_sdk::DatasetReader>,
    /// The run's `model.json`.
    pub meta: ModelMeta,
}

/// Loads the model of run directory `run` (checksums checked) and builds the run's reader over
/// its data set, or over `data` (a file or folder the same reader reads), with `sets` applied
/// to the run's config.
pub fn load_run(run: &Path, data: Option<&Path>, sets: &[String]) -> Result<Loaded> {
    let meta_path = run.join("model.json");
    let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let meta: ModelMeta =
        serde_json::from_str(&meta_text).map_err(|e| Error::Data(format!("{}: {e}", meta_path.display())))?;
    torchfit_engine::net::check_model_shape(&meta.input_shape, meta.n_outputs)
        .map_err(|m| Error::Data(format!("{}: {m}", meta_path.display())))?;
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
    let mut params = Params::from_str(&text, &config.display().to_string(), meta.base_dir.clone())?;
    for s in sets {
        params.set_assignment(s)?;
    }
    if let Some(d) = data {
        let abs = std::path::absolute(d).map_err(|e| Error::io(d, e))?;
        let reader = params.settings().dataset.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let (key, targets) = data_keys(&reader).ok_or_else(|| {
            let message = format!(
                "`predict --data` knows the data key of the stock readers only; for `{reader}` set it with --set dataset__<key>=FILE"
            );
            params.config_error("dataset.name", message)
        })?;
        params.set(&format!("dataset.{key}"), toml::Value::String(abs.display().to_string()), "--data")?;
        if let Some(targets) = targets {
            // The run's targets belong to its own data, not to this file.
            params.remove(&format!("dataset.{targets}"))?;
        }
    }
    let spec = params.settings().dataset.clone().ok_or_else(|| params.config_error("dataset", "missing".into()))?;
    let registry = torchfit_engine::plugins::registry_for(&params)?;
    let reader = reader(&registry, &params, "dataset", &spec)?;
    if reader.sample_shape().iter().product::<i64>() != meta.input_shape.iter().product::<i64>() {
        return Err(Error::Data(format!(
            "samples have shape {:?} but the model was trained on {:?}",
            reader.sample_shape(),
            meta.input_shape
        )));
    }
    let mut net = NeuralNet::with_registry(params, registry).with_defaults(crate::defaults());
    net.initialize(&meta.input_shape, meta.n_outputs)?;
    let model = run.join("model.safetensors");
    if let Some(sum) = &meta.model {
        sum.check(&model, &meta_path)?;
    }
    net.load_params(&model)?;
    match &meta.feature_scaler {
        Some(sum) => {
            let path = run.join(super::train::FEATURE_SCALER);
            sum.check(&path, &meta_path)?;
            let tensors = torchfit_sdk::io::load_tensors(&path)?;
            let scaler = FeatureScaler::from_tensors(&tensors, &meta.input_shape)
                .map_err(|m| Error::Data(format!("{}: {m}", path.display())))?;
            net.set_feature_scaler(Some(scaler))?;
        }
        None if net.params().settings().scaler != Scaling::None => {
            let message = "records no fitted scaler, but the run's config sets `scaler`";
            return Err(Error::Data(format!("{}: {message}", meta_path.display())));
        }
        None => {}
    }
    Ok(Loaded { net, reader, meta })
}

/// The key of a stock reader that names its data (what `predict --data` sets), and the key of
/// its targets file when it has one apart (removed: the file to predict comes without them).
fn data_keys(reader: &str) -> Option<(&'static str, Option<&'static str>)> {
    match reader {
        "csv" | "npz" | "text" => Some(("path", None)),
        "idx" => Some(("images", Some("labels"))),
        "npy" => Some(("x", Some("y"))),
        "image_folder" => Some(("root", None)),
        "image_masks" => Some(("images", Some("masks"))),
        _ => None,
    }
}
