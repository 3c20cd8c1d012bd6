//! Images of cell nuclei with their exact masks: on a dark, unevenly lit background with
//! noise, elliptic nuclei of random size, orientation and brightness, some touching, each with a
//! brighter rim and inner texture; the mask marks every pixel inside an ellipse. Deterministic
//! for a seed.

use image::{GrayImage, Luma};
use std::path::Path;

/// SplitMix64: the generator's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// One image and its mask, `size` x `size`.
pub fn cell_image(size: u32, seed: u64) -> (GrayImage, GrayImage) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5bd1_e995);
    let s = size as f64;
    let count = (s * s / 900.0).round().max(1.0) as usize + (rng.next() * 4.0) as usize;
    // (centre x, centre y, semi-axes a and b, angle, brightness)
    let cells: Vec<[f64; 6]> = (0..count)
        .map(|_| {
            let a = rng.range(0.04, 0.09) * s;
            [
                rng.range(0.0, s),
                rng.range(0.0, s),
                a,
                a * rng.range(0.55, 1.0),
                rng.range(0.0, std::f64::consts::PI),
                rng.range(0.45, 0.9),
            ]
        })
        .collect();
    let (light_x, light_y) = (rng.range(-0.15, 0.15), rng.range(-0.15, 0.15));
    let mut image = GrayImage::new(size, size);
    let mut mask = GrayImage::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut value = 0.08 + light_x * (px / s - 0.5) + light_y * (py / s - 0.5);
            let mut inside = false;
            for &[cx, cy, a, b, angle, bright] in &cells {
                let (dx, dy) = (px - cx, py - cy);
                let (u, v) = (dx * angle.cos() + dy * angle.sin(), -dx * angle.sin() + dy * angle.cos());
                let r = (u / a).powi(2) + (v / b).powi(2);
                if r <= 1.0 {
                    inside = true;
                    let texture = 0.08 * ((u * 0.9).sin() * (v * 1.3).cos());
                    value = value.max(bright * (0.75 + 0.25 * r) + texture);
                }
            }
            value += rng.range(-0.06, 0.06);
            image.put_pixel(x, y, Luma([(value.clamp(0.0, 1.0) * 255.0).round() as u8]));
            mask.put_pixel(x, y, Luma([if inside { 255 } else { 0 }]));
        }
    }
    (image, mask)
}

/// Writes `count` images and masks of `size` pixels into `dir/images` and `dir/masks`
/// (`cell<k>.png`), from seeds `seed`, `seed + 1`, ...
pub fn write(dir: &Path, count: usize, size: u32, seed: u64) -> image::ImageResult<()> {
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for k in 0..count {
        let (image, mask) = cell_image(size, seed + k as u64);
        image.save(dir.join("images").join(format!("cell{k:03}.png")))?;
        mask.save(dir.join("masks").join(format!("cell{k:03}.png")))?;
    }
    Ok(())
}
