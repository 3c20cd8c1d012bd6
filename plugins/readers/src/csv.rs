//! The `csv` dataset reader: numeric CSV files (optionally gzip-compressed) read into memory.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | the file, relative to the config file; `.gz` is decompressed |
//! | `target` | `-1` | column of the target (negative counts from the end) |
//! | `header` | `false` | skip the first line |
//! | `delimiter` | `","` | field separator (one character) |
//! | `scale` | `1.0` | every feature is divided by this (not 0) |
//! | `shape` | `[]` | reshape each sample's features (e.g. `[1, 8, 8]` for a CNN); empty keeps a flat vector |
//! | `allow_non_finite` | `false` | keep `nan` and `inf` fields; by default they are an error naming the line and field |

use serde::Deserialize;
use std::io::Read;
use std::path::Path;
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::TensorDataset;
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result, Task};

/// Settings of the CSV reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The CSV file (`.gz` read compressed), relative to the config file.
    pub path: String,
    /// Target column.
    #[serde(default = "default_target")]
    pub target: i64,
    /// Skip a header line.
    #[serde(default)]
    pub header: bool,
    /// Field separator.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Divide features by this.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Per-sample shape.
    #[serde(default)]
    pub shape: Vec<i64>,
    /// Keep non-finite fields (`nan`, `inf`).
    #[serde(default)]
    pub allow_non_finite: bool,
}

fn default_target() -> i64 {
    -1
}
fn default_delimiter() -> char {
    ','
}
fn default_scale() -> f64 {
    1.0
}

/// Builds the reader from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: CsvConfig = parse_config(config)?;
    Ok(Box::new(read(&ctx.resolve(&cfg.path), &cfg, ctx.task)?))
}

/// The text of `path`, decompressed when it ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
        return Ok(text);
    }
    String::from_utf8(raw).map_err(|e| Error::data(format!("{}: not UTF-8 text: {e}", path.display())))
}

/// Reads the whole file into a [`TensorDataset`].
pub fn read(path: &Path, cfg: &CsvConfig, task: Task) -> Result<TensorDataset> {
    if cfg.scale == 0.0 {
        return Err(Error::config("scale", "must not be 0"));
    }
    let text = read_text(path)?;
    let bad = |line: usize, what: String| Error::data(format!("{}:{line}: {what}", path.display()));
    let (mut features, mut targets, mut width) = (Vec::<f32>::new(), Vec::<f64>::new(), None);
    for (i, line) in text.lines().enumerate().skip(cfg.header as usize) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(cfg.delimiter).map(str::trim).collect();
        let n = fields.len() as i64;
        let t = if cfg.target < 0 { n + cfg.target } else { cfg.target };
        if !(0..n).contains(&t) {
            return Err(bad(i + 1, format!("target column {} out of range for {n} fields", cfg.target)));
        }
        match width {
            None => width = Some(fields.len()),
            Some(w) if w != fields.len() => return Err(bad(i + 1, format!("{} fields, expected {w}", fields.len()))),
            _ => {}
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| bad(i + 1, format!("field {} is not a number: {f:?}", j + 1)))?;
            // Every value is kept as float32: one beyond its range would be infinite.
            let kept = if j as i64 == t { v } else { v / cfg.scale };
            if !cfg.allow_non_finite && !(kept as f32).is_finite() {
                let why = if kept.is_finite() { "beyond float32's range" } else { "not finite" };
                let what = format!("field {} is {why} ({f}); set allow_non_finite = true to keep such values", j + 1);
                return Err(bad(i + 1, what));
            }
            if j as i64 == t {
                targets.push(v);
            } else {
                features.push((v / cfg.scale) as f32);
            }
        }
    }
    let Some(width) = width else { return Err(Error::data(format!("{}: no data rows", path.display()))) };
    let n = targets.len() as i64;
    let mut shape = vec![n];
    if cfg.shape.is_empty() {
        shape.push(width as i64 - 1);
    } else {
        if cfg.shape.iter().product::<i64>() != width as i64 - 1 {
            return Err(Error::config("shape", format!("{:?} does not hold {} features", cfg.shape, width - 1)));
        }
        shape.extend_from_slice(&cfg.shape);
    }
    let x = Tensor::from_slice(&features).f_view(shape.as_slice())?;
    let y = match task {
        Task::Classification => {
            if let Some(v) = targets.iter().find(|v| v.fract() != 0.0 || **v < 0.0) {
                return Err(Error::data(format!("{}: class label {v} is not a non-negative integer", path.display())));
            }
            Tensor::from_slice(&targets.iter().map(|&v| v as i64).collect::<Vec<_>>())
        }
        Task::Regression => {
            Tensor::from_slice(&targets.iter().map(|&v| v as f32).collect::<Vec<_>>()).f_view([n, 1])?
        }
    };
    TensorDataset::new(&x, &y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(path: &str) -> CsvConfig {
        parse_config(&serde_json::json!({ "path": path })).unwrap()
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("torchfit-csv-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_features_and_the_last_column_as_labels() {
        let p = write("ok.csv", "1,2,0\n3,4,1\n\n5,6,2\n");
        let mut ds = read(&p, &cfg("x"), Task::Classification).unwrap();
        assert_eq!(ds.len(), 3);
        let (x, y) = ds.get(&[2]).unwrap();
        assert_eq!(Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), vec![5.0, 6.0]);
        assert_eq!(Vec::<i64>::try_from(y).unwrap(), vec![2]);
    }

    #[test]
    fn a_bad_field_names_the_file_line_and_field() {
        let p = write("bad.csv", "1,2,0\n3,x,1\n");
        let err = read(&p, &cfg("x"), Task::Classification).unwrap_err().to_string();
        assert!(err.contains("bad.csv:2") && err.contains("field 2"), "{err}");
    }

    #[test]
    fn a_non_finite_field_names_the_line_unless_allowed() {
        let p = write("nan.csv", "1,2,0\n3,nan,1\ninf,4,1\n");
        let err = read(&p, &cfg("x"), Task::Classification).unwrap_err().to_string();
        assert!(err.contains("nan.csv:2") && err.contains("field 2") && err.contains("allow_non_finite"), "{err}");
        let allowed: CsvConfig = parse_config(&serde_json::json!({ "path": "x", "allow_non_finite": true })).unwrap();
        let mut ds = read(&p, &allowed, Task::Classification).unwrap();
        let (x, _) = ds.get(&[1, 2]).unwrap();
        let v = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        assert!(v[1].is_nan() && v[2].is_infinite());
    }

    #[test]
    fn a_value_beyond_float32s_range_is_refused_as_a_non_finite_one_is() {
        let p = write("huge.csv", "1,2,0\n3,3e39,1\n");
        let err = read(&p, &cfg("x"), Task::Classification).unwrap_err().to_string();
        assert!(err.contains("huge.csv:2") && err.contains("field 2 is beyond float32's range (3e39)"), "{err}");
        let p = write("huge-target.csv", "1,2,0\n3,4,-1e300\n");
        let err = read(&p, &cfg("x"), Task::Regression).unwrap_err().to_string();
        assert!(err.contains("huge-target.csv:2") && err.contains("field 3"), "{err}");
    }

    #[test]
    fn a_zero_scale_is_refused_naming_the_key_even_where_non_finite_values_are_allowed() {
        let p = write("scale.csv", "1,2,0\n0,4,1\n");
        for allow in [false, true] {
            let zero: CsvConfig =
                parse_config(&serde_json::json!({ "path": "x", "scale": 0.0, "allow_non_finite": allow })).unwrap();
            let err = read(&p, &zero, Task::Classification).unwrap_err().to_string();
            assert!(err.contains("scale") && err.contains("must not be 0"), "{err}");
        }
    }

    #[test]
    fn ragged_rows_are_refused() {
        let p = write("ragged.csv", "1,2,0\n3,1\n");
        assert!(read(&p, &cfg("x"), Task::Classification).unwrap_err().to_string().contains(":2"));
    }

    #[test]
    fn fractional_class_labels_are_refused() {
        let p = write("frac.csv", "1,2,0.5\n");
        assert!(read(&p, &cfg("x"), Task::Classification).is_err());
        assert!(read(&p, &cfg("x"), Task::Regression).is_ok());
    }
}
