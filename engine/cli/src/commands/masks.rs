//! `torchfit predict --masks DIR`: a segmentation model's per-pixel outputs as PNG masks named
//! after the inputs. Patches (sample names `file@top,left`, as `image_masks` names them) are put
//! back together after their reflected context (`border`) is cut off; each pixel is 255 where
//! its logit is above 0 (one output channel), or the index of its largest output (several).

use std::collections::BTreeMap;
use tch::{Kind, Tensor};
use torchfit_engine::{Error, Result};

/// One mask: its image's name and its pixels, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// The input's file name.
    pub name: String,
    /// Width and height.
    pub size: (u32, u32),
    /// Pixel values, row-major.
    pub pixels: Vec<u8>,
}

/// A sample's image name and the top-left corner of its patch (`0, 0` for a whole image).
fn place(name: &str) -> Result<(&str, i64, i64)> {
    let Some((file, at)) = name.rsplit_once('@') else { return Ok((name, 0, 0)) };
    let corner = at.split_once(',').and_then(|(t, l)| Some((t.parse().ok()?, l.parse().ok()?)));
    let (top, left) = corner.ok_or_else(|| Error::Data(format!("sample name {name:?}: expected file@top,left")))?;
    Ok((file, top, left))
}

/// The masks of per-pixel outputs `out` (`[n, channels, h, w]`) of samples `names`, each
/// without a border of `border` pixels.
pub fn stitch(out: &Tensor, names: &[String], border: i64) -> Result<Vec<Mask>> {
    let size = out.size();
    let [n, channels, h, w] = size[..] else {
        return Err(Error::Data(format!(
            "--masks needs per-pixel outputs [samples, channels, height, width]; this model gives {size:?}"
        )));
    };
    if n as usize != names.len() || h <= 2 * border || w <= 2 * border {
        return Err(Error::Data(format!("{n} outputs of {h}x{w} for {} names and a border of {border}", names.len())));
    }
    let inner = out.f_narrow(2, border, h - 2 * border)?.f_narrow(3, border, w - 2 * border)?;
    let labels = if channels == 1 {
        inner.f_gt(0.0)?.f_to_kind(Kind::Uint8)?.f_mul_scalar(255)?
    } else {
        inner.f_argmax(1, true)?.f_clamp(0, 255)?.f_to_kind(Kind::Uint8)?
    };
    let (ph, pw) = (h - 2 * border, w - 2 * border);
    let mut by_image: BTreeMap<&str, Vec<(usize, i64, i64)>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let (file, top, left) = place(name)?;
        by_image.entry(file).or_default().push((i, top, left));
    }
    let mut masks = Vec::new();
    for (file, patches) in by_image {
        let height = patches.iter().map(|p| p.1).max().unwrap_or(0) + ph;
        let width = patches.iter().map(|p| p.2).max().unwrap_or(0) + pw;
        let mut pixels = vec![0u8; (height * width) as usize];
        for (i, top, left) in patches {
            let patch = Vec::<u8>::try_from(labels.f_get(i as i64)?.f_flatten(0, -1)?)?;
            for r in 0..ph {
                let row = ((top + r) * width + left) as usize;
                pixels[row..row + pw as usize].copy_from_slice(&patch[(r * pw) as usize..((r + 1) * pw) as usize]);
            }
        }
        masks.push(Mask { name: file.to_owned(), size: (width as u32, height as u32), pixels });
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_put_back_in_place_without_their_context() {
        // Two 2x2 patches (4x4 with a border of 1) of one 2x4 image: logits positive on the
        // left patch's inner pixels only.
        let out = Tensor::full([2, 1, 4, 4], -1.0, (Kind::Float, tch::Device::Cpu));
        let _ = out.get(0).narrow(1, 1, 2).narrow(2, 1, 2).fill_(2.0);
        let _ = out.get(1).narrow(1, 0, 1).fill_(5.0); // context only: cut off
        let names = ["a.png@0,0".to_string(), "a.png@0,2".to_string()];
        let masks = stitch(&out, &names, 1).unwrap();
        assert_eq!(masks.len(), 1);
        assert_eq!(masks[0].size, (4, 2));
        assert_eq!(masks[0].pixels, [255, 255, 0, 0, 255, 255, 0, 0]);
    }

    #[test]
    fn whole_images_keep_their_names_and_several_channels_give_class_indices() {
        let out = Tensor::zeros([1, 3, 2, 2], (Kind::Float, tch::Device::Cpu));
        let _ = out.get(0).get(2).narrow(0, 1, 1).fill_(1.0);
        let masks = stitch(&out, &["b.png".into()], 0).unwrap();
        assert_eq!(masks[0].name, "b.png");
        assert_eq!(masks[0].pixels, [0, 0, 2, 2]);
        assert!(stitch(&Tensor::zeros([1, 10], (Kind::Float, tch::Device::Cpu)), &["c".into()], 0).is_err());
    }
}
