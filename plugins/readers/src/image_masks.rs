//! `image_masks`: images and their segmentation masks, two folders of files with the same names
//! (the skorch talk's nuclei data), cut into patches with reflected context and flipped at
//! random in training, image and mask alike (the talk's `PatchedDataset(patch_size, padding,
//! random_flips)`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `images` | required | folder of PNG or JPEG images |
//! | `masks` | none | folder of PNG masks, one per image with the same file stem; a pixel above 0 is foreground. Without it the targets are empty masks: images to predict (`torchfit predict --data FOLDER`) |
//! | `grayscale` | `false` | one channel (luma) instead of RGB |
//! | `patch_size` | none | cut each image into `patch_size` x `patch_size` patches on a grid that covers it (the last row and column of patches end at the image's edge); none: whole images, all of one size |
//! | `padding` | `0` | context around each patch (or image), taken from the image reflected at its edges; a loss with the same `padding` (`bce_with_logits`) leaves it out |
//! | `random_flips` | `false` | training samples mirrored left-right and top-bottom, each with probability 1/2, image and mask together |
//!
//! Samples are `[channels, s, s]` images in [0, 1] with `[1, s, s]` 0/1 float masks as targets,
//! `s = patch_size + 2 padding` (set `task = "regression"`: the targets are masks, not class
//! labels). Everything is decoded once, when the reader is built. Flips are drawn from the
//! run's seed, the epoch and the sample, so runs replay exactly; evaluation (validation,
//! prediction) never flips. A sample's name is its image's file name, with `@top,left` for a
//! patch.

use crate::transforms::SampleRng;
use image::ImageReader;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result, Stage};

/// Settings of the `image_masks` reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMasksConfig {
    /// The images' folder.
    pub images: String,
    /// The masks' folder; none for images to predict.
    pub masks: Option<String>,
    /// One luma channel instead of three.
    #[serde(default)]
    pub grayscale: bool,
    /// Side of the patches; whole images when absent.
    pub patch_size: Option<i64>,
    /// Reflected context around each sample.
    #[serde(default)]
    pub padding: i64,
    /// Random flips of training samples.
    #[serde(default)]
    pub random_flips: bool,
}

/// One sample: which image, and the top-left corner of its patch (in the unpadded image).
#[derive(Debug, Clone, Copy)]
struct Patch {
    image: usize,
    top: i64,
    left: i64,
}

/// The reader: every image and mask decoded and reflect-padded, and the patches over them.
pub struct ImageMasks {
    names: Vec<String>,
    /// `[c, h + 2p, w + 2p]` per image, and `[1, h + 2p, w + 2p]` per mask.
    images: Vec<Tensor>,
    masks: Vec<Tensor>,
    patches: Vec<Patch>,
    side: [i64; 2],
    channels: i64,
    whole: bool,
    random_flips: bool,
    seed: u64,
    epoch: u64,
    stage: Stage,
}

/// Builds an `image_masks` reader.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: ImageMasksConfig = parse_config(config)?;
    let masks = cfg.masks.as_ref().map(|m| ctx.resolve(m));
    let mut reader = ImageMasks::open(&ctx.resolve(&cfg.images), masks.as_deref(), &cfg)?;
    reader.seed = ctx.seed;
    Ok(Box::new(reader))
}

/// The top-left corners of `size` patches covering `n` pixels (pure): every `size` pixels, the
/// last one ending at `n`.
pub fn grid(n: i64, size: i64) -> Vec<i64> {
    let mut starts: Vec<i64> = (0..n.saturating_sub(size) + 1).step_by(size.max(1) as usize).collect();
    if starts.last().is_some_and(|&s| s + size < n) {
        starts.push(n - size);
    }
    starts
}

/// The image at `path` as a `[channels, height, width]` uint8 tensor (one channel: luma).
fn decode(path: &Path, grayscale: bool) -> Result<Tensor> {
    let img = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::data(format!("{}: {e}", path.display())))?;
    let (w, h, raw, c) = if grayscale {
        let i = img.to_luma8();
        (i.width(), i.height(), i.into_raw(), 1)
    } else {
        let i = img.to_rgb8();
        (i.width(), i.height(), i.into_raw(), 3)
    };
    Ok(Tensor::from_slice(&raw).f_view([h as i64, w as i64, c])?.f_permute([2, 0, 1])?.f_contiguous()?)
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(dir, e))?
        .into_iter()
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    out.sort();
    Ok(out)
}

impl ImageMasks {
    /// Decodes the images under `images` and their masks under `masks` (empty masks without).
    pub fn open(images: &Path, masks: Option<&Path>, cfg: &ImageMasksConfig) -> Result<Self> {
        let p = cfg.padding;
        if p < 0 {
            return Err(Error::config("padding", format!("must be at least 0, got {p}")));
        }
        if cfg.patch_size.is_some_and(|s| s < 1) {
            return Err(Error::config("patch_size", "must be at least 1"));
        }
        let image_files = files(images)?;
        if image_files.is_empty() {
            return Err(Error::data(format!("{}: no PNG or JPEG images", images.display())));
        }
        let mask_files = masks.map(files).transpose()?;
        let (mut names, mut xs, mut ys, mut patches) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut whole_side = None;
        for path in &image_files {
            let x = decode(path, cfg.grayscale)?;
            let (h, w) = (x.size()[1], x.size()[2]);
            let y = match (masks, &mask_files) {
                (Some(dir), Some(found)) => {
                    let stem = path.file_stem().unwrap_or_default();
                    let mask_path = found.iter().find(|m| m.file_stem() == Some(stem)).ok_or_else(|| {
                        Error::data(format!("{}: no mask of the same name in {}", path.display(), dir.display()))
                    })?;
                    let mask = decode(mask_path, true)?;
                    let (mh, mw) = (mask.size()[1], mask.size()[2]);
                    if (mw, mh) != (w, h) {
                        return Err(Error::data(format!("{}: {mw}x{mh}, its image {w}x{h}", mask_path.display())));
                    }
                    mask
                }
                _ => Tensor::f_zeros([1, h, w], (Kind::Uint8, torchfit_sdk::tch::Device::Cpu))?,
            };
            if p >= h.min(w) {
                return Err(Error::config(
                    "padding",
                    format!("{p} reflects nothing of a {w}x{h} image ({}): at most {}", path.display(), h.min(w) - 1),
                ));
            }
            let x = x.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?;
            let y = y.f_gt(0)?.f_to_kind(Kind::Float)?;
            let pad = |t: Tensor| -> Result<Tensor> {
                Ok(if p > 0 { t.f_unsqueeze(0)?.f_reflection_pad2d([p, p, p, p])?.f_squeeze_dim(0)? } else { t })
            };
            let image = xs.len();
            match cfg.patch_size {
                Some(s) => {
                    if s > h || s > w {
                        return Err(Error::config(
                            "patch_size",
                            format!("{s} is larger than {} ({w}x{h})", path.display()),
                        ));
                    }
                    for top in grid(h, s) {
                        for left in grid(w, s) {
                            patches.push(Patch { image, top, left });
                        }
                    }
                }
                None => {
                    if whole_side.is_some_and(|side| side != [h, w]) {
                        return Err(Error::data(format!(
                            "{}: {w}x{h}, unlike the first image; set patch_size",
                            path.display()
                        )));
                    }
                    whole_side = Some([h, w]);
                    patches.push(Patch { image, top: 0, left: 0 });
                }
            }
            names.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
            xs.push(pad(x)?);
            ys.push(pad(y)?);
        }
        let channels = if cfg.grayscale { 1 } else { 3 };
        let side = match (cfg.patch_size, whole_side) {
            (Some(s), _) => [s + 2 * p, s + 2 * p],
            (None, Some([h, w])) => [h + 2 * p, w + 2 * p],
            (None, None) => unreachable!("at least one image"),
        };
        Ok(ImageMasks {
            names,
            images: xs,
            masks: ys,
            patches,
            side,
            channels,
            whole: cfg.patch_size.is_none(),
            random_flips: cfg.random_flips,
            seed: 0,
            epoch: 0,
            stage: Stage::Train,
        })
    }

    /// Sample `i`: its image and mask patch, flipped when training says so.
    fn sample(&self, i: usize) -> Result<(Tensor, Tensor)> {
        let Patch { image, top, left } = self.patches[i];
        let crop =
            |t: &Tensor| -> Result<Tensor> { Ok(t.f_narrow(1, top, self.side[0])?.f_narrow(2, left, self.side[1])?) };
        let (mut x, mut y) = (crop(&self.images[image])?, crop(&self.masks[image])?);
        if self.random_flips && self.stage == Stage::Train {
            let mut rng = SampleRng::new(self.seed, self.epoch, i as u64);
            for dim in [2i64, 1] {
                if rng.uniform(0.0, 1.0) < 0.5 {
                    x = x.f_flip([dim])?;
                    y = y.f_flip([dim])?;
                }
            }
        }
        Ok((x, y))
    }
}

impl DatasetReader for ImageMasks {
    fn len(&self) -> usize {
        self.patches.len()
    }

    fn sample_shape(&self) -> Vec<i64> {
        vec![self.channels, self.side[0], self.side[1]]
    }

    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let (mut xs, mut ys) = (Vec::with_capacity(indices.len()), Vec::with_capacity(indices.len()));
        for &i in indices {
            let i = usize::try_from(i).ok().filter(|&i| i < self.patches.len());
            let i = i.ok_or_else(|| Error::data(format!("sample index out of 0..{}", self.patches.len())))?;
            let (x, y) = self.sample(i)?;
            xs.push(x);
            ys.push(y);
        }
        Ok((Tensor::f_stack(&xs, 0)?, Tensor::f_stack(&ys, 0)?))
    }

    fn targets(&mut self) -> Result<Tensor> {
        let stage = std::mem::replace(&mut self.stage, Stage::Eval);
        let all: Vec<i64> = (0..self.patches.len() as i64).collect();
        let got = self.get(&all).map(|(_, y)| y);
        self.stage = stage;
        got
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
        Some(
            self.patches
                .iter()
                .map(|p| {
                    let name = &self.names[p.image];
                    if self.whole {
                        name.clone()
                    } else {
                        format!("{name}@{},{}", p.top, p.left)
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_the_image_and_end_at_its_edge() {
        assert_eq!(grid(10, 5), [0, 5]);
        assert_eq!(grid(12, 5), [0, 5, 7]);
        assert_eq!(grid(5, 5), [0]);
    }

    /// A folder pair of `n` 6x4 images: image k has pixel (x, y) = 10 x + y + k, the mask marks
    /// its left column.
    fn write(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
        let (images, masks) = (dir.join("images"), dir.join("masks"));
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&masks).unwrap();
        for k in 0..n {
            let img = image::GrayImage::from_fn(6, 4, |x, y| image::Luma([(10 * x + y) as u8 + k as u8]));
            img.save(images.join(format!("cell{k}.png"))).unwrap();
            let mask = image::GrayImage::from_fn(6, 4, |x, _| image::Luma([if x == 0 { 255 } else { 0 }]));
            mask.save(masks.join(format!("cell{k}.png"))).unwrap();
        }
        (images, masks)
    }

    fn config(v: serde_json::Value) -> ImageMasksConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn patches_take_reflected_context_and_masks_follow_their_images() {
        let dir = std::env::temp_dir().join(format!("image-masks-{}", std::process::id()));
        let (images, masks) = write(&dir, 2);
        let cfg =
            config(serde_json::json!({"images": "i", "masks": "m", "grayscale": true, "patch_size": 4, "padding": 1}));
        let mut r = ImageMasks::open(&images, Some(&masks), &cfg).unwrap();
        // Columns 0..4 and 2..6 of each of the two images.
        assert_eq!(r.len(), 4);
        assert_eq!(r.sample_shape(), [1, 6, 6]);
        assert_eq!(r.sample_names().unwrap()[1], "cell0.png@0,2");
        let (x, y) = r.get(&[0]).unwrap();
        // Reflection: padded column 0 is the image's column 1, padded row 0 its row 1.
        let px = |t: &Tensor, r: i64, c: i64| (t.double_value(&[0, 0, r, c]) * 255.0).round();
        assert_eq!(px(&x, 0, 0), 11.0);
        assert_eq!(px(&x, 1, 1), 0.0);
        assert_eq!(y.double_value(&[0, 0, 1, 1]), 1.0, "the mask's left column");
        assert_eq!(y.double_value(&[0, 0, 1, 0]), 0.0, "reflected: the image's column 1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn training_flips_image_and_mask_together_and_evaluation_never_flips() {
        let dir = std::env::temp_dir().join(format!("image-masks-flip-{}", std::process::id()));
        let (images, masks) = write(&dir, 1);
        let cfg = config(serde_json::json!({"images": "i", "masks": "m", "grayscale": true, "random_flips": true}));
        let mut r = ImageMasks::open(&images, Some(&masks), &cfg).unwrap();
        r.set_stage(Stage::Eval).unwrap();
        let x0 = r.get(&[0]).unwrap().0;
        r.set_stage(Stage::Train).unwrap();
        let mut flipped = 0;
        for epoch in 0..40 {
            r.reset(epoch, 7).unwrap();
            let (x, y) = r.get(&[0]).unwrap();
            // The mask marks exactly the pixels of the image's left column (values below 10).
            let left = (&x * 255.0).round().lt(5.0).to_kind(Kind::Float);
            assert!(left.equal(&y), "epoch {epoch}: the mask did not follow its image");
            flipped += usize::from(!x.equal(&x0));
        }
        assert!((15..40).contains(&flipped), "3 of 4 draws flip something: {flipped} of 40");
        r.set_stage(Stage::Eval).unwrap();
        assert!(r.get(&[0]).unwrap().0.equal(&x0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_mask_and_too_much_padding_are_refused_naming_them() {
        let dir = std::env::temp_dir().join(format!("image-masks-bad-{}", std::process::id()));
        let (images, masks) = write(&dir, 1);
        let cfg = config(serde_json::json!({"images": "i", "masks": "m", "padding": 4}));
        assert!(ImageMasks::open(&images, Some(&masks), &cfg).err().unwrap().to_string().contains("padding"));
        std::fs::remove_file(masks.join("cell0.png")).unwrap();
        let cfg = config(serde_json::json!({"images": "i", "masks": "m"}));
        assert!(ImageMasks::open(&images, Some(&masks), &cfg).err().unwrap().to_string().contains("cell0.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
