//! `npy` and `npz`: NumPy arrays, inputs and targets.
//!
//! `npy` reads two `.npy` files. The inputs file is streamed: its header is parsed here and each
//! batch reads its samples from disk, so inputs larger than memory train. `npz` reads two arrays
//! of one `.npz` archive (`np.savez` or `np.savez_compressed`) into memory.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `x`, `y` | required (`npy`: `y` may be left out for prediction); `"x"`, `"y"` (`npz`) | the inputs and targets: files for `npy`, array names for `npz` |
//! | `path` | required (`npz` only) | the archive |
//! | `scale` | `1.0` | inputs are divided by this (`255.0` for bytes) |
//! | `mean`, `std` | `0.0`, `1.0` | then `(x - mean) / std` |
//! | `shape` | the array's | the shape of one sample, e.g. `[1, 28, 28]` |
//! | `limit` | all | use only the first `limit` samples |
//!
//! Inputs of any numeric dtype become `f32`. Integer or boolean targets become `i64` class
//! indices, floating targets `f32` values. Errors name the file and what is wrong with it.

use crate::values::{Layout, Values};
use serde::Deserialize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result};

/// Settings of the `npy` reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpyConfig {
    /// Inputs file.
    pub x: String,
    /// Targets file.
    #[serde(default)]
    pub y: Option<String>,
    /// `scale` (default 1), `mean`, `std`, `shape`, `limit`, `allow_non_finite`.
    #[serde(flatten)]
    pub values: Values,
}

/// Settings of the `npz` reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpzConfig {
    /// The `.npz` archive, relative to the config file.
    pub path: String,
    /// Name of the inputs array.
    #[serde(default = "x_name")]
    pub x: String,
    /// Name of the targets array.
    #[serde(default = "y_name")]
    pub y: String,
    /// `scale` (default 1), `mean`, `std`, `shape`, `limit`, `allow_non_finite`.
    #[serde(flatten)]
    pub values: Values,
}

fn x_name() -> String {
    "x".into()
}
fn y_name() -> String {
    "y".into()
}

/// Element types of `.npy` files the streamed reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `|b1`.
    Bool,
    /// `|u1`.
    U8,
    /// `|i1`.
    I8,
    /// `<i2`.
    I16,
    /// `<i4`.
    I32,
    /// `<i8`.
    I64,
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
}

impl Dtype {
    fn parse(descr: &str) -> std::result::Result<Self, String> {
        Ok(match descr {
            "|b1" => Dtype::Bool,
            "|u1" => Dtype::U8,
            "|i1" => Dtype::I8,
            "<i2" => Dtype::I16,
            "<i4" => Dtype::I32,
            "<i8" => Dtype::I64,
            "<f4" => Dtype::F32,
            "<f8" => Dtype::F64,
            other => {
                return Err(format!(
                    "dtype '{other}' is not supported (little-endian bool, u1, i1, i2, i4, i8, f4 or f8)"
                ))
            }
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 => 2,
            Dtype::I32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::F64 => 8,
        }
    }

    /// The little-endian element at the start of `b`, as `f64`.
    fn value(self, b: &[u8]) -> f64 {
        match self {
            Dtype::Bool | Dtype::U8 => b[0] as f64,
            Dtype::I8 => b[0] as i8 as f64,
            Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            Dtype::I32 => i32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as f64,
            Dtype::I64 => i64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f64,
            Dtype::F32 => f32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as f64,
            Dtype::F64 => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        }
    }
}

/// A `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// Array shape, the first dimension being the samples.
    pub shape: Vec<usize>,
    /// Bytes before the data.
    pub len: usize,
}

/// Parses a `.npy` header (pure): the magic `\x93NUMPY`, the format version, the header length
/// (2 bytes in version 1, 4 in versions 2 and 3), then a Python dict literal with `descr`,
/// `fortran_order` and `shape`.
pub fn parse_npy_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic string)".into());
    }
    let (dict_at, dict_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize),
        v => return Err(format!("format version {v} is not supported")),
    };
    let dict = bytes.get(dict_at..dict_at + dict_len).ok_or("truncated header")?;
    let dict = std::str::from_utf8(dict).map_err(|_| "header is not text")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = dict.find(&format!("'{key}':")).ok_or(format!("header has no '{key}'"))?;
        Ok(dict[at + key.len() + 3..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr.strip_prefix('\'').and_then(|d| d.split('\'').next()).ok_or("bad 'descr'")?;
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported (save with np.ascontiguousarray)".into());
    }
    let shape = field("shape")?;
    let shape = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("bad 'shape'")?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|d| d.parse().map_err(|_| format!("bad dimension '{d}'")))
        .collect::<std::result::Result<Vec<usize>, _>>()?;
    if shape.is_empty() {
        return Err("a scalar array holds no samples".into());
    }
    Ok(NpyHeader { dtype: Dtype::parse(descr)?, shape, len: dict_at + dict_len })
}

/// Where the inputs come from.
enum Inputs {
    /// A `.npy` file read batch by batch.
    File { file: std::fs::File, header: NpyHeader },
    /// An array in memory (`f32`, one row per sample).
    Memory(Tensor),
}

/// The `npy` and `npz` reader.
pub struct Npy {
    inputs: Inputs,
    path: PathBuf,
    targets: Tensor,
    /// Whether `targets` were read (else they are zeros, and [`DatasetReader::targets`] errs).
    labelled: bool,
    sample: usize,
    layout: Layout,
}

/// Builds the `npy` reader from its config section.
pub fn build_npy(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: NpyConfig = parse_config(config)?;
    let y = cfg.y.as_ref().map(|y| ctx.resolve(y));
    Ok(Box::new(Npy::open_npy(&ctx.resolve(&cfg.x), y.as_deref(), &cfg.values)?))
}

/// Builds the `npz` reader from its config section.
pub fn build_npz(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: NpzConfig = parse_config(config)?;
    Ok(Box::new(Npy::open_npz(&ctx.resolve(&cfg.path), &cfg.x, &cfg.y, &cfg.values)?))
}

fn at(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::data(format!("{}: {message}", path.display()))
}

/// The first of the first `rows` rows of `t` that holds a non-finite value, and that value.
fn first_non_finite(t: &Tensor, rows: usize) -> Result<Option<(usize, f64)>> {
    if rows == 0 {
        return Ok(None);
    }
    let t = t.f_narrow(0, 0, rows as i64)?.f_reshape([rows as i64, -1])?;
    let finite = t.f_isfinite()?.f_all_dims(&[1i64][..], false)?;
    let Some(i) = Vec::<bool>::try_from(finite)?.iter().position(|f| !f) else { return Ok(None) };
    let row = Vec::<f64>::try_from(t.f_get(i as i64)?.f_to_kind(Kind::Double)?)?;
    Ok(Some((i, row.into_iter().find(|v| !v.is_finite()).unwrap_or(f64::NAN))))
}

/// Targets as the engine wants them: `i64` classes or `f32` values, on the CPU.
fn target_kind(y: Tensor, path: &Path) -> Result<Tensor> {
    if y.dim() == 0 {
        return Err(at(path, "the targets array is a scalar"));
    }
    Ok(if y.is_floating_point() { y.f_to_kind(Kind::Float)? } else { y.f_to_kind(Kind::Int64)? })
}

impl Npy {
    /// Opens the inputs file `x` (streamed) and the targets file `y` (read whole; without one
    /// the reader has no targets, for prediction only).
    pub fn open_npy(x: &Path, y: Option<&Path>, values: &Values) -> Result<Self> {
        let targets = y.map(|y| target_kind(Tensor::read_npy(y).map_err(|e| at(y, e))?, y)).transpose()?;
        let file = std::fs::File::open(x).map_err(|e| Error::io(x, e))?;
        let mut head = vec![0u8; 4096];
        let n = file.read_at(&mut head, 0).map_err(|e| Error::io(x, e))?;
        let header = parse_npy_header(&head[..n]).map_err(|m| at(x, m))?;
        let sample: usize = header.shape[1..].iter().product();
        let expected = header.len + header.shape[0] * sample * header.dtype.size();
        let actual = file.metadata().map_err(|e| Error::io(x, e))?.len() as usize;
        if actual < expected {
            return Err(at(x, format!("truncated: {actual} bytes, the header promises {expected}")));
        }
        let dims = header.shape.clone();
        let labelled = targets.is_some();
        let targets = match targets {
            Some(t) => t,
            None => Tensor::f_zeros([dims[0] as i64], (Kind::Int64, torchfit_sdk::tch::Device::Cpu))?,
        };
        let mut npy = Self::new(Inputs::File { file, header }, x, &dims, targets, y.unwrap_or(x), values)?;
        npy.labelled = labelled;
        Ok(npy)
    }

    /// Opens arrays `x` and `y` of the archive `path` into memory.
    pub fn open_npz(path: &Path, x: &str, y: &str, values: &Values) -> Result<Self> {
        let mut arrays = Tensor::read_npz(path).map_err(|e| at(path, e))?;
        let mut take = |name: &str| {
            let i = arrays.iter().position(|(n, _)| n == name).ok_or_else(|| {
                let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
                at(path, format!("no array '{name}' (it has {names:?})"))
            })?;
            Ok::<_, Error>(arrays.swap_remove(i).1)
        };
        let (xs, ys) = (take(x)?, take(y)?);
        let dims: Vec<usize> = xs.size().iter().map(|&d| d as usize).collect();
        if dims.is_empty() {
            return Err(at(path, format!("'{x}' is a scalar")));
        }
        let xs = xs.f_to_kind(Kind::Float)?.f_reshape([dims[0] as i64, -1])?.f_contiguous()?;
        Self::new(Inputs::Memory(xs), path, &dims, target_kind(ys, path)?, path, values)
    }

    fn new(inputs: Inputs, path: &Path, dims: &[usize], targets: Tensor, y_path: &Path, v: &Values) -> Result<Self> {
        let layout = v.layout(1.0, dims)?;
        let n = dims[0];
        if targets.size()[0] as usize != n {
            return Err(at(y_path, format!("{} targets for {n} samples in {}", targets.size()[0], path.display())));
        }
        let targets = targets.f_narrow(0, 0, layout.len as i64)?;
        if layout.finite_only && targets.is_floating_point() {
            if let Some((i, value)) = first_non_finite(&targets, layout.len)? {
                return Err(crate::values::non_finite(y_path, &format!("the target of sample {i}"), value));
            }
        }
        if let (Inputs::Memory(x), true) = (&inputs, layout.finite_only) {
            // In memory the whole array is checked at once; a streamed file batch by batch.
            if let Some((i, value)) = first_non_finite(x, layout.len)? {
                return Err(crate::values::non_finite(path, &format!("sample {i}"), value));
            }
        }
        Ok(Npy {
            inputs,
            path: path.to_path_buf(),
            targets,
            labelled: true,
            sample: dims[1..].iter().product(),
            layout,
        })
    }

    /// The scaled inputs of `indices`, one sample after another, written into `out`.
    fn inputs_into(&self, indices: &[i64], out: &mut [f32]) -> Result<()> {
        let l = &self.layout;
        match &self.inputs {
            Inputs::File { file, header } => {
                let row = self.sample * header.dtype.size();
                let mut bytes = vec![0u8; row];
                for (&i, o) in indices.iter().zip(out.chunks_mut(self.sample.max(1))) {
                    file.read_exact_at(&mut bytes, (header.len + i as usize * row) as u64)
                        .map_err(|e| Error::io(&self.path, e))?;
                    o.iter_mut()
                        .zip(bytes.chunks_exact(header.dtype.size()))
                        .for_each(|(o, v)| *o = l.value(header.dtype.value(v)));
                }
            }
            Inputs::Memory(x) => {
                let rows = Vec::<f32>::try_from(x.f_index_select(0, &Tensor::from_slice(indices))?.f_flatten(0, -1)?)?;
                out.iter_mut().zip(rows).for_each(|(o, v)| *o = l.value(v as f64));
            }
        }
        if let Inputs::File { .. } = &self.inputs {
            l.check_finite(&self.path, indices, out, self.sample)?;
        }
        Ok(())
    }
}

impl DatasetReader for Npy {
    fn len(&self) -> usize {
        self.layout.len
    }

    fn sample_shape(&self) -> Vec<i64> {
        self.layout.shape.clone()
    }

    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        if let Some(&i) = indices.iter().find(|&&i| i < 0 || i as usize >= self.layout.len) {
            return Err(at(&self.path, format!("sample {i} out of range")));
        }
        let x = crate::filled(indices.len(), &self.layout.shape, |out| self.inputs_into(indices, out))?;
        Ok((x, self.targets.f_index_select(0, &Tensor::from_slice(indices))?))
    }

    fn targets(&mut self) -> Result<Tensor> {
        match self.labelled {
            true => Ok(self.targets.shallow_clone()),
            false => Err(at(&self.path, "read without `y`, so it has no targets")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dict: &str) -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((dict.len() as u16).to_le_bytes());
        v.extend(dict.as_bytes());
        v
    }

    fn arrays(name: &str, x: &Tensor, y: &Tensor) -> (PathBuf, PathBuf, PathBuf) {
        let d = std::env::temp_dir().join(format!("torchfit-npy-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (xp, yp, zp) = (d.join("x.npy"), d.join("y.npy"), d.join("d.npz"));
        x.write_npy(&xp).unwrap();
        y.write_npy(&yp).unwrap();
        Tensor::write_npz(&[("x", x), ("y", y)], &zp).unwrap();
        (xp, yp, zp)
    }

    fn values(allow: bool) -> Values {
        parse_config(&serde_json::json!({ "allow_non_finite": allow })).unwrap()
    }

    #[test]
    fn non_finite_inputs_and_targets_name_the_file_and_sample_unless_allowed() {
        let x = Tensor::arange(12, (Kind::Float, torchfit_sdk::tch::Device::Cpu)).view([4, 3]);
        let _ = x.get(2).get(1).fill_(f64::NAN);
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let (xp, yp, zp) = arrays("inputs", &x, &y);
        let err = Npy::open_npz(&zp, "x", "y", &values(false)).err().unwrap().to_string();
        assert!(err.contains("d.npz") && err.contains("sample 2") && err.contains("allow_non_finite"), "{err}");
        let mut streamed = Npy::open_npy(&xp, Some(&yp), &values(false)).unwrap();
        assert!(streamed.get(&[0, 1]).is_ok(), "a file is checked batch by batch");
        let err = streamed.get(&[3, 2]).unwrap_err().to_string();
        assert!(err.contains("x.npy") && err.contains("sample 2"), "{err}");
        assert!(Npy::open_npy(&xp, Some(&yp), &values(true)).unwrap().get(&[2]).is_ok());
        let targets = Tensor::from_slice(&[0.5f32, f32::INFINITY, 1.0, 2.0]);
        let (xp, yp, _) = arrays("targets", &x.nan_to_num(0.0, None, None), &targets);
        let err = Npy::open_npy(&xp, Some(&yp), &values(false)).err().unwrap().to_string();
        assert!(err.contains("y.npy") && err.contains("target of sample 1"), "{err}");
        let mut unlabelled = Npy::open_npy(&xp, None, &values(false)).unwrap();
        assert_eq!(unlabelled.get(&[0, 3]).unwrap().0.size(), [2, 3]);
        assert!(unlabelled.targets().unwrap_err().to_string().contains("without `y`"));
    }

    #[test]
    fn numpy_headers_are_parsed() {
        let h = header("{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }      \n");
        assert_eq!(parse_npy_header(&h), Ok(NpyHeader { dtype: Dtype::F32, shape: vec![60000, 28, 28], len: h.len() }));
        let h = header("{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }\n");
        assert_eq!(parse_npy_header(&h).unwrap().shape, vec![7]);
    }

    #[test]
    fn unsupported_headers_are_explained() {
        let e = |d: &str| parse_npy_header(&header(d)).unwrap_err();
        assert!(e("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }").contains("'>f4'"));
        assert!(e("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }").contains("Fortran"));
        assert!(e("{'descr': '<f4', 'fortran_order': False, 'shape': (), }").contains("scalar"));
        assert!(e("{'descr': '<f4', 'fortran_order': False}").contains("'shape'"));
        assert!(parse_npy_header(b"PK\x03\x04 not numpy").unwrap_err().contains("magic"));
    }

    #[test]
    fn configs_refuse_unknown_keys_and_take_the_shared_ones() {
        let c: NpzConfig = parse_config(&serde_json::json!({"path": "d.npz", "scale": 255.0, "limit": 3})).unwrap();
        assert_eq!((c.x.as_str(), c.values.scale, c.values.limit), ("x", Some(255.0), Some(3)));
        let e =
            parse_config::<NpyConfig>(&serde_json::json!({"x": "a", "y": "b", "scael": 2.0})).unwrap_err().to_string();
        assert!(e.contains("scael"), "{e}");
    }

    #[test]
    fn elements_are_decoded_little_endian() {
        assert_eq!(Dtype::I16.value(&(-3i16).to_le_bytes()), -3.0);
        assert_eq!(Dtype::F64.value(&0.25f64.to_le_bytes()), 0.25);
        assert_eq!(Dtype::I8.value(&[0xff]), -1.0);
        assert_eq!(Dtype::I64.value(&(1i64 << 40).to_le_bytes()), (1u64 << 40) as f64);
    }
}
