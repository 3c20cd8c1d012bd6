//! `torchfit explain RUN --input FILE`: what in one input drives the model's output, drawn as the
//! input, the map and the overlay side by side (the course notebook's appendix):
//!
//! - `saliency`: the absolute gradient of the target output with respect to the input, its
//!   largest over channels per pixel (Simonyan et al. 2014);
//! - `smoothgrad`: the same of the gradients averaged over `--samples` copies of the input with
//!   Gaussian noise of `--noise` times its value range added (Smilkov et al. 2017).
//!
//! - `guided_backprop`: the gradient through ReLUs that pass back only the positive part of
//!   their gradient (Springenberg et al. 2015), drawn as `saliency` is;
//! - `activations`: the outputs of the layer `--layer` names (`conv.0`: the names the model's
//!   parameters carry), one heat map per channel on a shared scale.
//!
//! The last two look inside the model (`Model::forward_inspected`, SDK 1.5): every stock model
//! but `torchscript` can (guided backpropagation with ReLU activations only); any other model is
//! refused in one line saying why, and an unknown layer's error lists the layers.
//!
//! The input is read by the run's own reader, as `predict --data` reads a file (its
//! evaluation transforms applied); the first sample is explained.

use super::predict::{load_run, Loaded};
use super::Ended;
use image::{Rgb, RgbImage};
use std::path::PathBuf;
use tch::{Kind, Tensor};
use torchfit_engine::fsutil::write_atomic;
use torchfit_engine::{Error, Result};
use torchfit_sdk::Task;

/// How the map is computed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum Method {
    /// The input gradient's magnitude.
    Saliency,
    /// The input gradient averaged over noisy copies.
    Smoothgrad,
    /// Gradients through ReLUs that pass back only positive gradients.
    GuidedBackprop,
    /// A layer's outputs (feature maps), one per channel.
    Activations,
}

impl Method {
    /// The method's name on the command line (`guided_backprop`).
    fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
    }
}

/// `torchfit explain`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory written by `torchfit train --out`.
    run: PathBuf,
    /// The input: a file (or folder, whose first sample is taken) the run's reader reads.
    #[arg(long)]
    input: PathBuf,
    /// The output explained; the predicted class by default (a regressor's first output).
    #[arg(long)]
    target: Option<i64>,
    /// How the map is computed.
    #[arg(long, value_enum, default_value = "saliency")]
    method: Method,
    /// Noisy copies averaged by `smoothgrad`.
    #[arg(long, default_value_t = 25)]
    samples: usize,
    /// `smoothgrad`'s noise, as a fraction of the input's value range.
    #[arg(long, default_value_t = 0.15)]
    noise: f64,
    /// The layer whose feature maps `activations` draws.
    #[arg(long)]
    layer: Option<String>,
    /// Override a config key of the run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The picture (PNG).
    #[arg(long, default_value = "explain.png")]
    out: PathBuf,
}

/// Explains the input and writes the picture.
pub fn execute(args: Args) -> Result<Ended> {
    let layer = match (args.method, &args.layer) {
        (Method::Activations, None) => {
            return Err(Error::Config {
                origin: "--layer".into(),
                key: "layer".into(),
                message: "activations needs --layer NAME (a name the model's parameters carry, e.g. conv.0)".into(),
            })
        }
        (Method::Activations, Some(layer)) => Some(layer.clone()),
        _ => None,
    };
    if args.samples == 0 || !(args.noise.is_finite() && args.noise >= 0.0) {
        return Err(Error::Config {
            origin: "--samples/--noise".into(),
            key: "smoothgrad".into(),
            message: "needs samples >= 1 and a finite noise >= 0".into(),
        });
    }
    let Loaded { mut net, mut reader, meta } = load_run(&args.run, Some(&args.input), &args.sets)?;
    if reader.is_empty() {
        return Err(Error::Data(format!("{}: no sample to explain", args.input.display())));
    }
    reader.set_stage(torchfit_sdk::Stage::Eval)?;
    let (x, _) = reader.get(&[0])?;
    if let Some(layer) = layer {
        let maps = net.layer_output(&x, &layer).map_err(|e| refused(&args, e))?;
        let maps = feature_maps(&maps)?;
        write_png(&args.out, &feature_grid(&maps)?)?;
        let size = maps.size();
        eprintln!(
            "activations of layer {layer} ({} maps of {}x{}) written to {}",
            size[0],
            size[1],
            size[2],
            args.out.display()
        );
        return Ok(Ended::Completed);
    }
    let target = match args.target {
        Some(t) => t,
        None if meta.task == Task::Classification => {
            net.forward_reader(reader.as_mut(), &[0])?.f_argmax(-1, false)?.int64_value(&[0])
        }
        None => 0,
    };
    let grad = match args.method {
        Method::Saliency => net.input_gradient(&x, target)?,
        Method::GuidedBackprop => net.guided_gradient(&x, target).map_err(|e| refused(&args, e))?,
        _ => {
            // A model without input gradients (token ids) says so before any noise is added.
            let _plain = net.input_gradient(&x, target)?;
            let x = x.f_to_kind(Kind::Float)?;
            let range = x.f_max()?.f_sub(&x.f_min()?)?.double_value(&[]);
            tch::manual_seed(net.params().settings().seed as i64);
            let mut sum = x.f_zeros_like()?;
            for _ in 0..args.samples {
                let noisy = x.f_add(&x.f_randn_like()?.f_mul_scalar(args.noise * range)?)?;
                sum = sum.f_add(&net.input_gradient(&noisy, target)?)?;
            }
            sum.f_div_scalar(args.samples as f64)?
        }
    };
    let [c, h, w] = image_shape(&meta.input_shape);
    let input = x.f_to_kind(Kind::Float)?.f_reshape([c, h, w])?;
    let map = grad.f_reshape([c, h, w])?.f_abs()?.f_amax(0, false)?;
    write_png(&args.out, &panels(&input, &map)?)?;
    eprintln!("{} of output {target} written to {}", args.method.name(), args.out.display());
    Ok(Ended::Completed)
}

/// A model's refusal of `args.method` as the one line a user reads: the method and why.
fn refused(args: &Args, e: Error) -> Error {
    match e {
        Error::Component { name, source, .. } => Error::Config {
            origin: "--method".into(),
            key: "method".into(),
            message: format!("model `{name}` cannot give {}: {source}", args.method.name()),
        },
        other => other,
    }
}

/// Writes `picture` to `path` as PNG, atomically.
fn write_png(path: &std::path::Path, picture: &RgbImage) -> Result<()> {
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    write_atomic(path, &png)
}

/// `[channels, height, width]` of samples of `shape`: images as they are, a flat sample of a
/// square size as a square (the digits' 64 values as 8 x 8), any other as one row.
pub fn image_shape(shape: &[i64]) -> [i64; 3] {
    match *shape {
        [c, h, w] => [c, h, w],
        [h, w] => [1, h, w],
        _ => {
            let n: i64 = shape.iter().product();
            let side = (n as f64).sqrt().round() as i64;
            if side * side == n {
                [1, side, side]
            } else {
                [1, 1, n]
            }
        }
    }
}

/// `t` scaled to [0, 1] over its own range (all 0 when constant).
fn unit(t: &Tensor) -> Result<Tensor> {
    let (lo, hi) = (t.f_min()?, t.f_max()?);
    let span = hi.f_sub(&lo)?.double_value(&[]);
    Ok(if span > 0.0 { t.f_sub(&lo)?.f_div_scalar(span)? } else { t.f_zeros_like()? })
}

/// A heat colour for `v` in [0, 1]: black, red, yellow, white.
pub fn heat(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0) * 3.0;
    let channel = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(v), channel(v - 1.0), channel(v - 2.0)]
}

/// A layer's output for one sample as `[maps, height, width]`: a convolution's `[1, c, h, w]`
/// as its `c` maps, a 1-d convolution's `[1, c, length]` as one map of `c` rows, a dense
/// layer's `[1, n]` as `n` maps of one value each.
pub fn feature_maps(output: &Tensor) -> Result<Tensor> {
    let t = output.f_to_kind(Kind::Float)?.f_select(0, 0)?;
    Ok(match t.dim() {
        3 => t,
        2 => t.f_unsqueeze(0)?,
        1 => t.f_reshape([-1, 1, 1])?,
        0 => t.f_reshape([1, 1, 1])?,
        _ => t.f_flatten(2, -1)?.f_flatten(0, 1)?.f_unsqueeze(0)?,
    })
}

/// `maps` (`[n, h, w]`) as heat maps on one scale (the layer's smallest value black, its largest
/// white) in a grid of about square shape, each scaled up by whole pixels until its longer side
/// is at least 48 pixels, 2 pixels apart.
pub fn feature_grid(maps: &Tensor) -> Result<RgbImage> {
    let size = maps.size();
    let [n, h, w] = [size[0], size[1], size[2]].map(|d| d.max(1) as u64);
    let columns = ((n as f64).sqrt().ceil() as u64).max(1);
    let rows = n.div_ceil(columns);
    let gap = 2;
    let sides = |scale: u64| {
        let width = columns.saturating_mul(w.saturating_mul(scale) + gap) - gap;
        (width, rows.saturating_mul(h.saturating_mul(scale) + gap) - gap)
    };
    let mut scale = (48 / h.max(w)).max(1);
    while scale > 1 && sides(scale).0.saturating_mul(sides(scale).1) > MAX_GRID_PIXELS {
        scale -= 1;
    }
    let (width, height) = sides(scale);
    if width.saturating_mul(height) > MAX_GRID_PIXELS {
        return Err(Error::Data(format!(
            "the layer's {n} maps of {h}x{w} need a picture of {width}x{height} pixels, more than {MAX_GRID_PIXELS}: choose a smaller layer"
        )));
    }
    let values = Vec::<f32>::try_from(unit(maps)?.f_contiguous()?.f_flatten(0, -1)?)?;
    let (tile_w, tile_h) = (w * scale, h * scale);
    let mut out = RgbImage::new(width as u32, height as u32);
    for k in 0..n {
        let (x0, y0) = ((k % columns) * (tile_w + gap), (k / columns) * (tile_h + gap));
        for y in 0..tile_h {
            for x in 0..tile_w {
                let v = values[(k * h * w + (y / scale) * w + x / scale) as usize];
                out.put_pixel((x0 + x) as u32, (y0 + y) as u32, Rgb(heat(v)));
            }
        }
    }
    Ok(out)
}

/// The most pixels a picture of feature maps may hold (64 Mi, 192 MiB of RGB); a layer whose
/// maps need more even unscaled is refused before anything is allocated.
const MAX_GRID_PIXELS: u64 = 1 << 26;

/// The input (`[c, h, w]`), the map (`[h, w]`) and the map over the input, side by side, each
/// scaled up by whole pixels to at least 128 pixels high.
pub fn panels(input: &Tensor, map: &Tensor) -> Result<RgbImage> {
    let size = input.size();
    let (c, h, w) = (size[0], size[1] as u32, size[2] as u32);
    let shown = unit(input)?;
    let grey = if c == 3 {
        shown.shallow_clone()
    } else {
        shown.f_mean_dim(0, true, Kind::Float)?.f_expand([3, h as i64, w as i64], false)?
    };
    let grey = Vec::<f32>::try_from(grey.f_contiguous()?.f_flatten(0, -1)?)?;
    let map = Vec::<f32>::try_from(unit(map)?.f_flatten(0, -1)?)?;
    let scale = (128 / h.max(1)).max(1);
    let plane = (h * w) as usize;
    let mut out = RgbImage::new(3 * w * scale, h * scale);
    for y in 0..h * scale {
        for x in 0..w * scale {
            let p = ((y / scale) * w + x / scale) as usize;
            let rgb = [grey[p], grey[plane + p], grey[2 * plane + p]].map(|v| (v * 255.0).round() as u8);
            let hot = heat(map[p]);
            let over: [u8; 3] = std::array::from_fn(|k| ((rgb[k] as f32 * 0.5) + (hot[k] as f32 * 0.5)).round() as u8);
            out.put_pixel(x, y, Rgb(rgb));
            out.put_pixel(w * scale + x, y, Rgb(hot));
            out.put_pixel(2 * w * scale + x, y, Rgb(over));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_square_samples_are_drawn_as_squares() {
        assert_eq!(image_shape(&[64]), [1, 8, 8]);
        assert_eq!(image_shape(&[10]), [1, 1, 10]);
        assert_eq!(image_shape(&[3, 4, 5]), [3, 4, 5]);
    }

    #[test]
    fn the_heat_scale_runs_from_black_through_red_and_yellow_to_white() {
        assert_eq!(heat(0.0), [0, 0, 0]);
        assert_eq!(heat(1.0 / 3.0), [255, 0, 0]);
        assert_eq!(heat(2.0 / 3.0), [255, 255, 0]);
        assert_eq!(heat(1.0), [255, 255, 255]);
    }

    #[test]
    fn a_layers_maps_share_one_scale_in_a_square_grid() {
        // Five 2x3 maps: a 3 x 2 grid of 48 x 32 tiles, 2 pixels apart.
        let maps = Tensor::arange(30, (Kind::Float, tch::Device::Cpu)).view([1, 5, 2, 3]);
        let maps = feature_maps(&maps).unwrap();
        assert_eq!(maps.size(), [5, 2, 3]);
        let grid = feature_grid(&maps).unwrap();
        assert_eq!(grid.dimensions(), (3 * 48 + 2 * 2, 2 * 32 + 2));
        assert_eq!(grid.get_pixel(0, 0).0, [0, 0, 0], "the layer's smallest value");
        assert_eq!(grid.get_pixel(50 + 47, 34 + 31).0, [255, 255, 255], "map 4's last value, the largest");
        assert_eq!(grid.get_pixel(48, 0).0, [0, 0, 0], "the gap");
        assert_ne!(grid.get_pixel(50, 0).0, [0, 0, 0], "map 1 starts above the smallest value");
        assert_eq!(feature_maps(&Tensor::ones([1, 7], (Kind::Float, tch::Device::Cpu))).unwrap().size(), [7, 1, 1]);
        assert_eq!(feature_maps(&Tensor::ones([1, 4, 9], (Kind::Float, tch::Device::Cpu))).unwrap().size(), [1, 4, 9]);
    }

    #[test]
    fn large_layers_are_drawn_smaller_and_a_layer_too_large_to_draw_is_refused() {
        // 4096 maps of 64 x 64: 64 x 64 tiles unscaled, 4222 pixels a side.
        let many = Tensor::zeros([4096, 64, 64], (Kind::Float, tch::Device::Cpu));
        assert_eq!(feature_grid(&many).unwrap().dimensions(), (64 * 66 - 2, 64 * 66 - 2));
        // 2^22 units of a dense layer in a 2048 x 2048 grid: 48-pixel tiles would need 100,000
        // pixels a side; the largest that fit are 2 pixels (8190 a side, under 2^26 pixels).
        let dense = Tensor::zeros([1 << 22, 1, 1], (Kind::Float, tch::Device::Cpu));
        assert_eq!(feature_grid(&dense).unwrap().dimensions(), (2048 * 4 - 2, 2048 * 4 - 2));
        let huge = Tensor::zeros([1, 1, 1], (Kind::Float, tch::Device::Cpu)).expand([1, 20_000, 20_000], false);
        let e = feature_grid(&huge).unwrap_err().to_string();
        assert!(e.contains("20000x20000") && e.contains("smaller layer"), "{e}");
    }

    #[test]
    fn three_panels_of_the_scaled_input_side_by_side() {
        let input = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0]).view([1, 2, 2]);
        let map = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let p = panels(&input, &map).unwrap();
        assert_eq!(p.dimensions(), (3 * 128, 128));
        assert_eq!(p.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(p.get_pixel(127, 127).0, [255, 255, 255], "the input's largest value, white");
        assert_eq!(p.get_pixel(128 + 127, 127).0, [255, 255, 255], "the map's largest value, white");
        assert_eq!(p.get_pixel(128, 0).0, [0, 0, 0]);
    }
}
