//! Image transforms of the `image_folder` reader, with torchvision's semantics.
//!
//! The geometric ones (`random_rotation`, `random_affine`) map every output pixel back to its
//! source by the inverse transform about the image's centre, nearest neighbour, pixels from
//! outside filled with 0 (torchvision's defaults: `InterpolationMode.NEAREST`, `fill = 0`, no
//! `expand`); `color_jitter` changes brightness, contrast, saturation and hue by factors drawn
//! from its ranges, in a random order, as torchvision's `ColorJitter` does (saturation and hue
//! leave a one-channel image as it is).
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
    /// torchvision's `RandomRotation(degrees)`: by an angle drawn from `[-d, d]` (or `[a, b]`),
    /// counter-clockwise, about the centre.
    RandomRotation(Degrees),
    /// torchvision's `RandomAffine`: rotation, translation, scaling and shear drawn from their
    /// ranges, about the centre.
    RandomAffine {
        /// Rotation range, as `random_rotation`'s.
        degrees: Degrees,
        /// Largest shift as a fraction of the width and of the height: `[a, b]`.
        #[serde(default)]
        translate: Option<[f64; 2]>,
        /// Range of the scale factor: `[lo, hi]`.
        #[serde(default)]
        scale: Option<[f64; 2]>,
        /// Shear parallel to the x axis, in degrees, as a rotation range.
        #[serde(default)]
        shear: Option<Degrees>,
    },
    /// torchvision's `ColorJitter`: each factor drawn from `[max(0, 1 - v), 1 + v]` (hue: a
    /// shift in `[-v, v]`, `v <= 0.5`); 0 leaves the property alone.
    ColorJitter {
        /// Brightness.
        #[serde(default)]
        brightness: f64,
        /// Contrast.
        #[serde(default)]
        contrast: f64,
        /// Saturation.
        #[serde(default)]
        saturation: f64,
        /// Hue.
        #[serde(default)]
        hue: f64,
    },
    /// Subtracts a mean and divides by a std per channel, on values in [0, 1]; must come last.
    Normalize(Normalize),
}

/// An angle range in degrees: `d` for `[-d, d]`, or `[a, b]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Degrees {
    /// `[-d, d]`.
    Symmetric(f64),
    /// `[a, b]`.
    Range([f64; 2]),
}

impl Degrees {
    fn range(self) -> [f64; 2] {
        match self {
            Degrees::Symmetric(d) => [-d, d],
            Degrees::Range(r) => r,
        }
    }

    fn valid(self) -> bool {
        match self {
            Degrees::Symmetric(d) => d >= 0.0 && d.is_finite(),
            Degrees::Range([a, b]) => a <= b && a.is_finite() && b.is_finite(),
        }
    }
}

/// An affine map of the plane about the image's centre: `p' = m p + t` (pixel units, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// The 2 x 2 part, row-major.
    pub m: [f64; 4],
    /// The translation.
    pub t: [f64; 2],
}

impl Affine {
    /// Rotation by `angle` degrees counter-clockwise (as the image is seen), then translation by
    /// `t`, scaling by `scale` and shear by `shear` degrees along x (pure).
    pub fn new(angle: f64, t: [f64; 2], scale: f64, shear: f64) -> Self {
        let (a, sh) = (angle.to_radians(), shear.to_radians().tan());
        let (c, s) = (a.cos(), a.sin());
        // With y pointing down, a counter-clockwise turn maps (x, y) to (x c + y s, -x s + y c).
        let r = [c, s, -s, c];
        // R * Sh * scale, Sh = [[1, sh], [0, 1]].
        let m = [r[0] * scale, (r[0] * sh + r[1]) * scale, r[2] * scale, (r[2] * sh + r[3]) * scale];
        Affine { m, t }
    }

    /// The source point of output point `p` (the inverse map), or `None` for a singular map.
    pub fn source(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let [a, b, c, d] = self.m;
        let det = a * d - b * c;
        if det.abs() < 1e-12 {
            return None;
        }
        let (x, y) = (p[0] - self.t[0], p[1] - self.t[1]);
        Some([(d * x - b * y) / det, (-c * x + a * y) / det])
    }
}

/// `img` under `affine` about its centre: each output pixel takes its nearest source pixel, 0
/// (every channel) where that falls outside.
pub fn warp<P: Pixel<Subpixel = u8> + 'static>(
    img: &ImageBuffer<P, Vec<u8>>,
    affine: &Affine,
) -> ImageBuffer<P, Vec<u8>> {
    let (w, h) = img.dimensions();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let zero = {
        let mut p = *img.get_pixel(0, 0);
        p.apply(|_| 0);
        p
    };
    ImageBuffer::from_fn(w, h, |x, y| {
        let src = affine.source([x as f64 + 0.5 - cx, y as f64 + 0.5 - cy]);
        match src.map(|[sx, sy]| ((sx + cx).floor(), (sy + cy).floor())) {
            Some((sx, sy)) if sx >= 0.0 && sy >= 0.0 && sx < w as f64 && sy < h as f64 => {
                *img.get_pixel(sx as u32, sy as u32)
            }
            _ => zero,
        }
    })
}

/// The factors of one `color_jitter` draw, and the order they apply in (0 brightness,
/// 1 contrast, 2 saturation, 3 hue), as torchvision's `ColorJitter.get_params` draws them.
pub fn jitter_params(ranges: [f64; 4], rng: &mut SampleRng) -> ([usize; 4], [Option<f64>; 4]) {
    let mut order = [0, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let mut factors = [None; 4];
    for (k, v) in ranges.into_iter().enumerate() {
        if v > 0.0 {
            factors[k] = Some(if k == 3 { rng.uniform(-v, v) } else { rng.uniform((1.0 - v).max(0.0), 1.0 + v) });
        }
    }
    (order, factors)
}

/// Luma of an RGB pixel in [0, 255], PIL's `L` conversion weights.
fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Applies one jitter (`k` as in [`jitter_params`]) with `factor` to channel values in
/// [0, 255] (`channels` 1 or 3 per pixel).
pub fn jitter(values: &mut [f32], channels: usize, k: usize, factor: f64) {
    let f = factor as f32;
    let blend = |v: &mut f32, other: f32| *v = (*v * f + other * (1.0 - f)).clamp(0.0, 255.0);
    match (k, channels) {
        (0, _) => values.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 255.0)),
        (1, _) => {
            let mean = if channels == 3 {
                values.chunks(3).map(|p| luma([p[0], p[1], p[2]])).sum::<f32>() / (values.len() / 3).max(1) as f32
            } else {
                values.iter().sum::<f32>() / values.len().max(1) as f32
            };
            values.iter_mut().for_each(|v| blend(v, mean));
        }
        (2, 3) => values.chunks_mut(3).for_each(|p| {
            let g = luma([p[0], p[1], p[2]]);
            p.iter_mut().for_each(|v| blend(v, g));
        }),
        (3, 3) => values.chunks_mut(3).for_each(|p| {
            let (hh, s, v) = rgb_to_hsv([p[0] / 255.0, p[1] / 255.0, p[2] / 255.0]);
            let rgb = hsv_to_rgb(((hh + f).rem_euclid(1.0), s, v));
            p.iter_mut().zip(rgb).for_each(|(c, x)| *c = (x * 255.0).clamp(0.0, 255.0));
        }),
        _ => {}
    }
}

fn rgb_to_hsv([r, g, b]: [f32; 3]) -> (f32, f32, f32) {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, if max == 0.0 { 0.0 } else { d / max }, max)
}

fn hsv_to_rgb((h, s, v): (f32, f32, f32)) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

impl Transform {
    /// Whether it draws random numbers.
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Transform::RandomResizedCrop { .. }
                | Transform::RandomHorizontalFlip(_)
                | Transform::RandomVerticalFlip(_)
                | Transform::RandomRotation(_)
                | Transform::RandomAffine { .. }
                | Transform::ColorJitter { .. }
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
    P: Pixel<Subpixel = u8> + 'static,
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
            Transform::RandomRotation(degrees) => {
                let [lo, hi] = degrees.range();
                warp(&img, &Affine::new(rng.uniform(lo, hi), [0.0, 0.0], 1.0, 0.0))
            }
            Transform::RandomAffine { degrees, translate, scale, shear } => {
                let [lo, hi] = degrees.range();
                let angle = rng.uniform(lo, hi);
                let t = match translate {
                    Some([a, b]) => {
                        let (mx, my) = (a * w as f64, b * h as f64);
                        [rng.uniform(-mx, mx).round(), rng.uniform(-my, my).round()]
                    }
                    None => [0.0, 0.0],
                };
                let s = scale.map_or(1.0, |[lo, hi]| rng.uniform(lo, hi));
                let sh = shear.map_or(0.0, |d| {
                    let [lo, hi] = d.range();
                    rng.uniform(lo, hi)
                });
                warp(&img, &Affine::new(angle, t, s, sh))
            }
            Transform::ColorJitter { brightness, contrast, saturation, hue } => {
                let (order, factors) = jitter_params([*brightness, *contrast, *saturation, *hue], rng);
                let channels = P::CHANNEL_COUNT as usize;
                let mut values: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
                for k in order {
                    if let Some(f) = factors[k] {
                        jitter(&mut values, channels, k, f);
                    }
                }
                let raw: Vec<u8> = values.iter().map(|v| v.round() as u8).collect();
                ImageBuffer::from_raw(w, h, raw).ok_or("color_jitter: the image's buffer changed size")?
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
            Transform::RandomRotation(d) if !d.valid() => {
                return Err(format!("random_rotation's degrees {d:?} is not d >= 0 or [a, b] with a <= b"))
            }
            Transform::RandomAffine { degrees, translate, scale, shear } => {
                if !degrees.valid() || shear.is_some_and(|s| !s.valid()) {
                    return Err("random_affine's degrees and shear are d >= 0 or [a, b] with a <= b".into());
                }
                if translate.is_some_and(|t| !t.iter().all(|v| (0.0..=1.0).contains(v))) {
                    return Err(format!("random_affine's translate {translate:?} must be two fractions in [0, 1]"));
                }
                if scale.is_some_and(|[lo, hi]| !(0.0 < lo && lo <= hi && hi.is_finite())) {
                    return Err(format!("random_affine's scale {scale:?} must be [lo, hi] with 0 < lo <= hi"));
                }
            }
            Transform::ColorJitter { brightness, contrast, saturation, hue } => {
                if [brightness, contrast, saturation].iter().any(|v| !(v.is_finite() && **v >= 0.0)) {
                    return Err("color_jitter's brightness, contrast and saturation must be >= 0".into());
                }
                if !(0.0..=0.5).contains(hue) {
                    return Err(format!("color_jitter's hue {hue} must be in [0, 0.5]"));
                }
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

    /// A 4 x 4 image whose pixel (x, y) holds 1 + x + 4 y.
    fn ramp() -> image::GrayImage {
        image::GrayImage::from_fn(4, 4, |x, y| image::Luma([1 + x as u8 + 4 * y as u8]))
    }

    #[test]
    fn a_quarter_turn_rotates_counter_clockwise_about_the_centre() {
        let turned = warp(&ramp(), &Affine::new(90.0, [0.0, 0.0], 1.0, 0.0));
        // Counter-clockwise as seen: the top row comes from the right column, read downwards.
        assert_eq!(&turned.as_raw()[..4], &[4, 8, 12, 16]);
        assert_eq!(warp(&ramp(), &Affine::new(0.0, [0.0, 0.0], 1.0, 0.0)), ramp(), "no change at 0 degrees");
        let full = warp(&ramp(), &Affine::new(360.0, [0.0, 0.0], 1.0, 0.0));
        assert_eq!(full, ramp());
    }

    #[test]
    fn a_shift_moves_pixels_and_fills_with_zero_what_comes_from_outside() {
        let shifted = warp(&ramp(), &Affine::new(0.0, [1.0, 0.0], 1.0, 0.0));
        assert_eq!(&shifted.as_raw()[..4], &[0, 1, 2, 3]);
        let halved = warp(&ramp(), &Affine::new(0.0, [0.0, 0.0], 0.5, 0.0));
        assert_eq!(halved.as_raw()[0], 0, "a shrunk image leaves its border empty");
        assert_ne!(halved.as_raw()[5], 0);
    }

    #[test]
    fn random_rotations_stay_within_their_range() {
        let mut rng = SampleRng::new(3, 1, 0);
        let img = image::GrayImage::from_fn(9, 9, |x, y| image::Luma([(x == 4 || y == 4) as u8 * 255]));
        for _ in 0..20 {
            // 0 degrees either way: the cross is unchanged.
            assert_eq!(
                apply(img.clone(), &[Transform::RandomRotation(Degrees::Symmetric(0.0))], &mut rng).unwrap(),
                img
            );
        }
        let turned = apply(img.clone(), &[Transform::RandomRotation(Degrees::Range([90.0, 90.0]))], &mut rng).unwrap();
        assert_eq!(turned, img, "a quarter turn of a centred cross is the cross");
    }

    #[test]
    fn color_jitter_factors_come_from_their_ranges_and_act_as_torchvision_describes() {
        let mut rng = SampleRng::new(0, 0, 0);
        for _ in 0..200 {
            let (order, f) = jitter_params([0.5, 0.0, 0.2, 0.1], &mut rng);
            let mut sorted = order;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            assert!(f[0].is_some_and(|b| (0.5..1.5).contains(&b)) && f[1].is_none());
            assert!(f[2].is_some_and(|s| (0.8..1.2).contains(&s)) && f[3].is_some_and(|h| (-0.1..0.1).contains(&h)));
        }
        let mut px = vec![200.0, 100.0, 50.0];
        jitter(&mut px, 3, 0, 0.0);
        assert_eq!(px, [0.0; 3], "brightness 0 is black");
        let mut px = vec![200.0, 100.0, 50.0];
        jitter(&mut px, 3, 2, 0.0);
        assert!(px.iter().all(|v| (v - px[0]).abs() < 1e-3), "saturation 0 is grey: {px:?}");
        let mut px = vec![200.0, 100.0, 50.0];
        jitter(&mut px, 3, 3, 1.0 / 3.0);
        assert_eq!(
            px.iter().map(|v| v.round() as u8).collect::<Vec<_>>(),
            [50, 200, 100],
            "a third of a turn of hue: red to green"
        );
        let mut grey = vec![10.0, 20.0];
        jitter(&mut grey, 1, 3, 0.3);
        assert_eq!(grey, [10.0, 20.0], "hue leaves one channel alone");
    }

    #[test]
    fn chains_and_normalisation_are_checked() {
        assert!(validate(&[Transform::RandomRotation(Degrees::Symmetric(-1.0))]).is_err());
        let jitter = Transform::ColorJitter { brightness: 0.2, contrast: 0.0, saturation: 0.0, hue: 0.7 };
        assert!(validate(&[jitter]).unwrap_err().contains("hue"));
        let affine = Transform::RandomAffine {
            degrees: Degrees::Symmetric(10.0),
            translate: Some([0.1, 1.5]),
            scale: None,
            shear: None,
        };
        assert!(validate(&[affine]).unwrap_err().contains("translate"));
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
            {"random_horizontal_flip": 0.5}, {"normalize": "imagenet"},
            {"random_rotation": 15}, {"random_affine": {"degrees": [-5, 5], "translate": [0.1, 0.1], "scale": [0.9, 1.1]}},
            {"color_jitter": {"brightness": 0.4, "hue": 0.1}}
        ]))
        .unwrap();
        assert_eq!(chain[0], Transform::Resize(Size::One(256)));
        assert_eq!(chain[1], Transform::CenterCrop(Size::Pair([224, 200])));
        assert_eq!(
            chain[2],
            Transform::RandomResizedCrop { size: Size::One(32), scale: [0.5, 1.0], ratio: default_ratio() }
        );
        assert!(chain[3].is_random() && !chain[4].is_random());
        assert_eq!(chain[5], Transform::RandomRotation(Degrees::Symmetric(15.0)));
        assert!(chain[6].is_random() && chain[7].is_random());
    }
}
