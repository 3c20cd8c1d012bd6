//! Image transforms of the `image_folder` reader, with torchvision's semantics.
//!
//! Each is a config entry (`{ resize = [32, 32] }`) applied in order. The geometry (which box to
//! crop, what size to resize to) is decided by pure functions tested on their own; the image
//! operations come from the `image` crate. Random transforms draw from a [`SampleRng`] seeded by
//! the run's seed, the epoch and the sample, so a run replays exactly whatever the worker count.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Pixel};
use serde::Deserialize;

/// A size: one number (for `resize`, the shorter side, keeping the aspect ratio; for crops, a
/// square) or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// One number.
    One(u32),
    /// Height and width.
    Pair([u32; 2]),
}

/// Mean and standard deviation per channel, or `"imagenet"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Normalize {
    /// A named preset: `"imagenet"`.
    Preset(String),
    /// Explicit values, one per channel (or one for all).
    Values {
        /// Subtracted.
        mean: Vec<f64>,
        /// Then divided by.
        std: Vec<f64>,
    },
}

/// ImageNet's channel means (torchvision's).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet's channel standard deviations (torchvision's).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl Normalize {
    /// Mean and std for `channels` channels.
    pub fn values(&self, channels: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
        let (mean, std) = match self {
            Normalize::Preset(p) if p == "imagenet" => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
            Normalize::Preset(p) => return Err(format!("unknown preset '{p}' (known: imagenet)")),
            Normalize::Values { mean, std } => (mean.clone(), std.clone()),
        };
        let widen = |v: Vec<f64>| if v.len() == 1 { vec![v[0]; channels] } else { v };
        let (mean, std) = (widen(mean), widen(std));
        if mean.len() != channels || std.len() != channels {
            return Err(format!("{} means and {} stds for {channels} channels", mean.len(), std.len()));
        }
        if std.contains(&0.0) {
            return Err("a std is 0".into());
        }
        Ok((mean, std))
    }
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

/// One transform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Bilinear (antialiased) resize to `[h, w]`, or the shorter side to `n`.
    Resize(Size),
    /// The central box of this size.
    CenterCrop(Size),
    /// torchvision's `RandomResizedCrop`: a box of random area and aspect ratio, resized.
    RandomResizedCrop {
        /// Output size.
        size: Size,
        /// Range of the box's area as a fraction of the image's.
        #[serde(default = "default_scale")]
        scale: [f64; 2],
        /// Range of the box's aspect ratio (width / height).
        #[serde(default = "default_ratio")]
        ratio: [f64; 2],
    },
    /// Mirrors left-right with this probability.
    RandomHorizontalFlip(f64),
    /// Mirrors top-bottom with this probability.
    RandomVerticalFlip(f64),
    /// Subtracts a mean and divides by a std per channel, on values in [0, 1]; must come last.
    Normalize(Normalize),
}

impl Transform {
    /// Whether it draws random numbers.
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Transform::RandomResizedCrop { .. } | Transform::RandomHorizontalFlip(_) | Transform::RandomVerticalFlip(_)
        )
    }
}

/// Per-sample random numbers: SplitMix64 seeded by (seed, epoch, sample).
#[derive(Debug, Clone)]
pub struct SampleRng(u64);

impl SampleRng {
    /// The generator of `sample` in `epoch` of a run with `seed`.
    pub fn new(seed: u64, epoch: u64, sample: u64) -> Self {
        let mut r = SampleRng(seed ^ 0x1f0d_e5a3_7c4b_9e21);
        for v in [epoch, sample] {
            r.0 = r.next_u64() ^ v;
        }
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

/// A crop box: left, top, width, height.
pub type CropBox = (u32, u32, u32, u32);

/// The size `resize` gives an image of `w` x `h` (pure): `[h, w]` as given, or the shorter side
/// set to `n` and the other scaled (rounded down, torchvision's rule).
pub fn resize_dims(w: u32, h: u32, size: Size) -> (u32, u32) {
    match size {
        Size::Pair([th, tw]) => (tw, th),
        Size::One(n) if w <= h => (n, (n as u64 * h as u64 / w as u64) as u32),
        Size::One(n) => ((n as u64 * w as u64 / h as u64) as u32, n),
    }
}

/// `(width, height)` of a crop size.
fn crop_dims(size: Size) -> (u32, u32) {
    match size {
        Size::One(n) => (n, n),
        Size::Pair([h, w]) => (w, h),
    }
}

/// The central `cw` x `ch` box of a `w` x `h` image (pure; torchvision rounds the offsets).
pub fn center_box(w: u32, h: u32, cw: u32, ch: u32) -> Option<CropBox> {
    (cw <= w && ch <= h)
        .then(|| (((w - cw) as f64 / 2.0).round() as u32, ((h - ch) as f64 / 2.0).round() as u32, cw, ch))
}

/// torchvision's `RandomResizedCrop.get_params` (pure but for `rng`): up to ten draws of an area
/// fraction in `scale` and a log-uniform aspect ratio in `ratio`, the first box that fits is
/// placed uniformly; if none fits, the central box clamped to `ratio`.
pub fn random_resized_box(w: u32, h: u32, scale: [f64; 2], ratio: [f64; 2], rng: &mut SampleRng) -> CropBox {
    let area = (w as f64) * (h as f64);
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(lr0, lr1).exp();
        let cw = (target * aspect).sqrt().round() as i64;
        let ch = (target / aspect).sqrt().round() as i64;
        if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
            let (cw, ch) = (cw as u32, ch as u32);
            let top = rng.below(h - ch + 1);
            let left = rng.below(w - cw + 1);
            return (left, top, cw, ch);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (lo, hi) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (cw, ch) = if in_ratio < lo {
        (w, ((w as f64 / lo).round() as u32).min(h))
    } else if in_ratio > hi {
        (((h as f64 * hi).round() as u32).min(w), h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// Applies the geometric transforms of `chain` (all but `normalize`) to `img`.
pub fn apply<P>(
    mut img: ImageBuffer<P, Vec<P::Subpixel>>,
    chain: &[Transform],
    rng: &mut SampleRng,
) -> Result<ImageBuffer<P, Vec<P::Subpixel>>, String>
where
    P: Pixel + 'static,
{
    for t in chain {
        let (w, h) = img.dimensions();
        img = match t {
            Transform::Resize(size) => {
                let (nw, nh) = resize_dims(w, h, *size);
                imageops::resize(&img, nw.max(1), nh.max(1), FilterType::Triangle)
            }
            Transform::CenterCrop(size) => {
                let (cw, ch) = crop_dims(*size);
                let (x, y, cw, ch) =
                    center_box(w, h, cw, ch).ok_or_else(|| format!("center_crop of {cw}x{ch} from a {w}x{h} image"))?;
                imageops::crop_imm(&img, x, y, cw, ch).to_image()
            }
            Transform::RandomResizedCrop { size, scale, ratio } => {
                let (x, y, cw, ch) = random_resized_box(w, h, *scale, *ratio, rng);
                let (tw, th) = crop_dims(*size);
                imageops::resize(&imageops::crop_imm(&img, x, y, cw, ch).to_image(), tw, th, FilterType::Triangle)
            }
            Transform::RandomHorizontalFlip(p) => {
                if rng.uniform(0.0, 1.0) < *p {
                    imageops::flip_horizontal(&img)
                } else {
                    img
                }
            }
            Transform::RandomVerticalFlip(p) => {
                if rng.uniform(0.0, 1.0) < *p {
                    imageops::flip_vertical(&img)
                } else {
                    img
                }
            }
            Transform::Normalize(_) => img,
        };
    }
    Ok(img)
}

/// Checks a chain (pure): probabilities in [0, 1], ranges ordered, sizes not zero, at most one
/// `normalize` and only at the end.
pub fn validate(chain: &[Transform]) -> Result<(), String> {
    for (i, t) in chain.iter().enumerate() {
        match t {
            Transform::Normalize(_) if i + 1 != chain.len() => return Err("normalize must be the last transform".into()),
            Transform::RandomHorizontalFlip(p) | Transform::RandomVerticalFlip(p) if !(0.0..=1.0).contains(p) => {
                return Err(format!("flip probability {p} is not in [0, 1]"))
            }
            Transform::RandomResizedCrop { scale, ratio, .. } if !(0.0 < scale[0] && scale[0] <= scale[1] && scale[1] <= 1.0 && 0.0 < ratio[0] && ratio[0] <= ratio[1]) => {
                return Err(format!("random_resized_crop needs 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale:?} and {ratio:?}"))
            }
            Transform::Resize(s) | Transform::CenterCrop(s) | Transform::RandomResizedCrop { size: s, .. } if matches!(s, Size::One(0)) || matches!(s, Size::Pair(p) if p.contains(&0)) => {
                return Err("a size of 0".into())
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_the_aspect_ratio_when_given_the_shorter_side() {
        assert_eq!(resize_dims(500, 375, Size::One(256)), (341, 256));
        assert_eq!(resize_dims(375, 500, Size::One(256)), (256, 341));
        assert_eq!(resize_dims(500, 375, Size::Pair([224, 100])), (100, 224));
    }

    #[test]
    fn center_boxes_are_central_and_refuse_to_grow() {
        assert_eq!(center_box(10, 8, 4, 4), Some((3, 2, 4, 4)));
        assert_eq!(center_box(10, 8, 4, 9), None);
    }

    #[test]
    fn random_resized_boxes_fit_inside_and_respect_the_ranges() {
        let mut rng = SampleRng::new(0, 1, 2);
        let mut areas = Vec::new();
        for _ in 0..2000 {
            let (x, y, w, h) = random_resized_box(64, 48, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
            assert!(x + w <= 64 && y + h <= 48 && w > 0 && h > 0);
            let aspect = w as f64 / h as f64;
            assert!((0.7..1.43).contains(&aspect), "{aspect}");
            areas.push((w * h) as f64 / (64.0 * 48.0));
        }
        let small = areas.iter().filter(|&&a| a < 0.3).count();
        assert!(small > 400 && areas.iter().all(|&a| a <= 1.0), "areas spread over the range: {small} below 0.3");
    }

    #[test]
    fn an_impossible_ratio_falls_back_to_the_clamped_central_box() {
        let mut rng = SampleRng::new(0, 0, 0);
        // A 100x10 strip cannot hold a near-square box of 8-100 % of its area.
        assert_eq!(random_resized_box(100, 10, [0.9, 1.0], [0.75, 4.0 / 3.0], &mut rng), (43, 0, 13, 10));
    }

    #[test]
    fn sample_generators_depend_on_seed_epoch_and_sample_only() {
        let draw = |s, e, i| SampleRng::new(s, e, i).next_u64();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 3, 2));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
        let mut r = SampleRng::new(5, 5, 5);
        assert!((0..1000).map(|_| r.below(7)).all(|v| v < 7));
    }

    #[test]
    fn flips_mirror_with_their_probability() {
        let img = image::GrayImage::from_raw(2, 1, vec![1, 2]).unwrap();
        let mut rng = SampleRng::new(0, 0, 0);
        let flipped = apply(img.clone(), &[Transform::RandomHorizontalFlip(1.0)], &mut rng).unwrap();
        assert_eq!(flipped.into_raw(), vec![2, 1]);
        assert_eq!(apply(img, &[Transform::RandomHorizontalFlip(0.0)], &mut rng).unwrap().into_raw(), vec![1, 2]);
    }

    #[test]
    fn chains_and_normalisation_are_checked() {
        let n = Transform::Normalize(Normalize::Preset("imagenet".into()));
        assert!(validate(&[n.clone(), Transform::Resize(Size::One(4))]).unwrap_err().contains("last"));
        assert!(validate(&[Transform::RandomHorizontalFlip(1.5)]).is_err());
        assert!(validate(&[Transform::Resize(Size::Pair([0, 3]))]).is_err());
        assert!(validate(&[Transform::Resize(Size::One(4)), n]).is_ok());
        assert_eq!(Normalize::Preset("imagenet".into()).values(3).unwrap().0, IMAGENET_MEAN.to_vec());
        assert!(Normalize::Preset("imagenet".into()).values(1).is_err());
        assert_eq!(Normalize::Values { mean: vec![0.5], std: vec![0.25] }.values(3).unwrap().1, vec![0.25; 3]);
        assert!(Normalize::Preset("cifar".into()).values(3).unwrap_err().contains("cifar"));
    }

    #[test]
    fn transforms_are_read_from_config_entries() {
        let chain: Vec<Transform> = serde_json::from_value(serde_json::json!([
            {"resize": 256}, {"center_crop": [224, 200]},
            {"random_resized_crop": {"size": 32, "scale": [0.5, 1.0]}},
            {"random_horizontal_flip": 0.5}, {"normalize": "imagenet"}
        ]))
        .unwrap();
        assert_eq!(chain[0], Transform::Resize(Size::One(256)));
        assert_eq!(chain[1], Transform::CenterCrop(Size::Pair([224, 200])));
        assert_eq!(
            chain[2],
            Transform::RandomResizedCrop { size: Size::One(32), scale: [0.5, 1.0], ratio: default_ratio() }
        );
        assert!(chain[3].is_random() && !chain[4].is_random());
    }
}
