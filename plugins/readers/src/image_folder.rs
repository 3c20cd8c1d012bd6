//! `image_folder`: torchvision's `ImageFolder`, a folder per class of PNG or JPEG files.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `root` | required | the folder; each sub-folder is a class, classes numbered in sorted name order. A folder without class folders, or one image file, is read unlabeled (targets `-1`): what `torchfit predict --data` takes |
//! | `transforms` | `[]` | applied in order to training samples (see [`crate::transforms::Transform`]) |
//! | `eval_transforms` | `transforms` without its random steps | applied to validation and prediction samples: they must come out at the training samples' size |
//! | `grayscale` | `false` | one channel (luma) instead of RGB |
//! | `extensions` | `["png", "jpg", "jpeg"]` | file endings taken, any case; other files are skipped |
//! | `workers` | the cores available | threads decoding the images of one batch |
//! | `limit` | all | only the first `limit` files (in class, then path order) |
//!
//! Images are decoded from disk for each batch, so a data set larger than memory trains; set
//! `prefetch` in `[iterator_train]` to decode the next batches while the current one trains.
//! Every image must come out of the transforms at the same size (a batch is one tensor): end the
//! chain with `resize = [h, w]`, a crop, or keep images of one size. Values are in [0, 1] unless
//! the chain ends with `normalize` (each chain's own last step). Random transforms are seeded by the run's seed, the epoch
//! (from [`DatasetReader::reset`]) and the sample index, so runs replay exactly whatever
//! `workers` is; between `reset`s, reading a sample twice gives the same image. The engine says
//! which chain applies before each pass ([`DatasetReader::set_stage`]): `transforms` in training
//! passes, `eval_transforms` in every other (torchvision's `transform` of the training set and of
//! the test set); a host older than SDK 1.3 never says, and the reader then stays in training.
//! Each sample's name ([`DatasetReader::sample_names`]) is its path under `root`.

use crate::transforms::{self, SampleRng, Transform};
use image::ImageReader;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result, Stage};

/// Settings of the `image_folder` reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// The folder of class folders.
    pub root: String,
    /// Transforms of training samples, in order.
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Transforms of evaluation samples; `transforms` without its random steps when absent.
    pub eval_transforms: Option<Vec<Transform>>,
    /// One luma channel instead of three.
    #[serde(default)]
    pub grayscale: bool,
    /// File endings taken.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Decoding threads per batch.
    pub workers: Option<usize>,
    /// Only the first files.
    pub limit: Option<usize>,
}

fn default_extensions() -> Vec<String> {
    ["png", "jpg", "jpeg"].map(String::from).to_vec()
}

/// A chain of transforms and its final normalization.
struct Chain {
    steps: Vec<Transform>,
    normalize: Option<(Vec<f64>, Vec<f64>)>,
}

impl Chain {
    /// Checks `steps`, configured under `key`, for images of `channels` channels.
    fn new(steps: Vec<Transform>, key: &str, channels: usize) -> Result<Self> {
        transforms::validate(&steps).map_err(|message| Error::config(key, message))?;
        let normalize = match steps.last() {
            Some(Transform::Normalize(n)) => {
                Some(n.values(channels).map_err(|message| Error::config(format!("{key}.normalize"), message))?)
            }
            _ => None,
        };
        Ok(Chain { steps, normalize })
    }
}

/// A folder of class folders of images (or unlabeled images), decoded per batch.
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<Labelled>,
    classes: Vec<String>,
    train: Chain,
    eval: Chain,
    stage: Stage,
    grayscale: bool,
    workers: usize,
    shape: Vec<i64>,
    seed: u64,
    epoch: u64,
}

/// Builds the reader from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: ImageFolderConfig = parse_config(config)?;
    let mut reader = ImageFolder::open(&ctx.resolve(&cfg.root), cfg)?;
    reader.seed = ctx.seed;
    Ok(Box::new(reader))
}

/// Files under `dir` (recursively) whose extension is in `extensions`, sorted by path.
fn images_under(dir: &Path, extensions: &[String], out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            images_under(&path, extensions, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Lists the classes and files under `root` (or takes `root`, an image file), and decodes
    /// the first image to learn the sample shape.
    pub fn open(root: &Path, cfg: ImageFolderConfig) -> Result<Self> {
        let channels = if cfg.grayscale { 1 } else { 3 };
        let eval_steps = match &cfg.eval_transforms {
            Some(steps) => steps.clone(),
            None => cfg.transforms.iter().filter(|t| !t.is_random()).cloned().collect(),
        };
        let eval = Chain::new(eval_steps, "eval_transforms", channels)?;
        let train = Chain::new(cfg.transforms, "transforms", channels)?;
        let (classes, mut files) = match root.is_file() {
            true => (Vec::new(), vec![(root.to_path_buf(), UNLABELED)]),
            false => class_files(root, &cfg.extensions)?,
        };
        files.truncate(cfg.limit.unwrap_or(usize::MAX));
        if files.is_empty() {
            return Err(Error::data(format!(
                "{}: no images ({}) in it or in class sub-folders",
                root.display(),
                cfg.extensions.join(", ")
            )));
        }
        let workers = cfg.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        let mut reader = ImageFolder {
            root: root.to_path_buf(),
            files,
            classes,
            train,
            eval,
            stage: Stage::Train,
            grayscale: cfg.grayscale,
            workers,
            shape: Vec::new(),
            seed: 0,
            epoch: 0,
        };
        let (c, h, w, _) = reader.decode(0)?;
        reader.shape = vec![c as i64, h as i64, w as i64];
        reader.stage = Stage::Eval;
        let (ec, eh, ew, _) = reader.decode(0)?;
        reader.stage = Stage::Train;
        if (ec, eh, ew) != (c, h, w) {
            let message = format!(
                "the first image comes out of them as [{ec}, {eh}, {ew}] but out of `transforms` as {:?}: evaluation samples must have the training samples' size (torchvision's habit: resize, then center_crop)",
                reader.shape
            );
            return Err(Error::config("eval_transforms", message));
        }
        log::debug!(
            "{}: {} images in {} classes, samples of {:?}",
            root.display(),
            reader.files.len(),
            reader.classes.len(),
            reader.shape
        );
        Ok(reader)
    }

    /// Class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Decodes and transforms sample `i`: channels, height, width and the values (CHW).
    fn decode(&self, i: usize) -> Result<(usize, u32, u32, Vec<f32>)> {
        let path = &self.files[i].0;
        let at = |m: String| Error::data(format!("{}: {m}", path.display()));
        let img = ImageReader::open(path)
            .map_err(|e| Error::io(path, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?
            .decode()
            .map_err(|e| at(e.to_string()))?;
        let mut rng = SampleRng::new(self.seed, self.epoch, i as u64);
        let chain = match self.stage {
            Stage::Train => &self.train,
            Stage::Eval => &self.eval,
        };
        let (w, h, raw, c) = if self.grayscale {
            let img = transforms::apply(img.to_luma8(), &chain.steps, &mut rng).map_err(at)?;
            (img.width(), img.height(), img.into_raw(), 1)
        } else {
            let img = transforms::apply(img.to_rgb8(), &chain.steps, &mut rng).map_err(at)?;
            (img.width(), img.height(), img.into_raw(), 3)
        };
        let plane = (w * h) as usize;
        let mut out = vec![0f32; raw.len()];
        for (p, px) in raw.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                let v = v as f64 / 255.0;
                out[ch * plane + p] = match &chain.normalize {
                    Some((mean, std)) => ((v - mean[ch]) / std[ch]) as f32,
                    None => v as f32,
                };
            }
        }
        Ok((c, h, w, out))
    }

    /// Decodes sample `i` into `out`, which holds exactly one sample of the reader's shape.
    fn decode_into(&self, i: i64, out: &mut [f32]) -> Result<()> {
        let (c, h, w, values) = self.decode(i as usize)?;
        let shape = [c as i64, h as i64, w as i64];
        if shape[..] != self.shape[..] {
            let path = self.files[i as usize].0.display();
            return Err(Error::data(format!("{path}: comes out of the transforms as {shape:?}, the first image as {:?}; end the transforms with resize = [h, w] or a crop", self.shape)));
        }
        out.copy_from_slice(&values);
        Ok(())
    }
}

impl DatasetReader for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn sample_shape(&self) -> Vec<i64> {
        self.shape.clone()
    }

    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        if let Some(&i) = indices.iter().find(|&&i| i < 0 || i as usize >= self.files.len()) {
            return Err(Error::data(format!("image_folder: sample {i} out of range (0..{})", self.files.len())));
        }
        let sample = self.shape.iter().product::<i64>() as usize;
        let x = crate::filled(indices.len(), &self.shape, |x| self.decode_batch(indices, sample, x))?;
        let y: Vec<i64> = indices.iter().map(|&i| self.files[i as usize].1).collect();
        Ok((x, Tensor::from_slice(&y)))
    }

    fn targets(&mut self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.files.iter().map(|f| f.1).collect::<Vec<_>>()))
    }

    fn reset(&mut self, epoch: u64, seed: u64) -> Result<()> {
        (self.epoch, self.seed) = (epoch, seed);
        Ok(())
    }

    fn set_stage(&mut self, stage: Stage) -> Result<()> {
        self.stage = stage;
        Ok(())
    }

    fn sample_names(&mut self) -> Option<Vec<String>> {
        let name = |p: &Path| match p.strip_prefix(&self.root) {
            Ok(under) if !under.as_os_str().is_empty() => under.display().to_string(),
            _ => p.display().to_string(),
        };
        Some(self.files.iter().map(|(p, _)| name(p)).collect())
    }
}

/// An image file and its class (its target).
type Labelled = (PathBuf, i64);

/// The target of an image read without a class (a flat folder, one file).
const UNLABELED: i64 = -1;

/// The class names under `root` and the images of each, numbered in sorted name order; a folder
/// without class folders holding images gives no classes and its images unlabeled.
fn class_files(root: &Path, extensions: &[String]) -> Result<(Vec<String>, Vec<Labelled>)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut files = Vec::new();
    for (class, dir) in dirs.iter().enumerate() {
        let mut found = Vec::new();
        images_under(dir, extensions, &mut found)?;
        files.extend(found.into_iter().map(|p| (p, class as i64)));
    }
    if files.is_empty() {
        let mut loose = Vec::new();
        images_under(root, extensions, &mut loose)?;
        return Ok((Vec::new(), loose.into_iter().map(|p| (p, UNLABELED)).collect()));
    }
    let names = dirs.iter().map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    Ok((names.collect(), files))
}

impl ImageFolder {
    /// Decodes the samples `indices` into `x` (`sample` values each), on `workers` threads.
    fn decode_batch(&self, indices: &[i64], sample: usize, x: &mut [f32]) -> Result<()> {
        let per_worker = indices.len().div_ceil(self.workers).max(1);
        let this = self;
        if per_worker >= indices.len() {
            indices.iter().zip(x.chunks_mut(sample)).try_for_each(|(&i, o)| this.decode_into(i, o))?;
        } else {
            std::thread::scope(|s| {
                let jobs: Vec<_> = indices
                    .chunks(per_worker)
                    .zip(x.chunks_mut(per_worker * sample))
                    .map(|(idx, out)| {
                        s.spawn(move || {
                            idx.iter().zip(out.chunks_mut(sample)).try_for_each(|(&i, o)| this.decode_into(i, o))
                        })
                    })
                    .collect();
                jobs.into_iter().try_for_each(|j| {
                    j.join().unwrap_or_else(|_| Err(Error::msg("image_folder: a decoding thread panicked")))
                })
            })?;
        }
        Ok(())
    }
}
