//! `idx`: images and labels in the IDX format of MNIST, plain or gzip-compressed.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `images` | required | the images file (`train-images-idx3-ubyte`, optionally `.gz`) |
//! | `labels` | required | the labels file |
//! | `scale` | `255.0` | pixels are divided by this (torchvision's `ToTensor` for bytes) |
//! | `mean` | `0.0` | then this is subtracted |
//! | `std` | `1.0` | and the result divided by this (MNIST's usual: 0.1307 and 0.3081) |
//! | `shape` | the file's | the shape of one sample, e.g. `[1, 28, 28]` for a CNN or `[784]` |
//! | `limit` | all | use only the first `limit` samples |
//!
//! A gzip-compressed file is decompressed into memory once, as bytes (47 MB for MNIST's training
//! images, a quarter of the floats). A plain file is streamed: each batch reads its samples
//! from the file, so a data set larger than memory trains. Labels are read whole (one byte each).
//! Errors name the file and what is wrong with its header.

use crate::values::{ByteConversion, Layout, Values};
use serde::Deserialize;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result};

/// Settings of the IDX reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdxConfig {
    /// Images file.
    pub images: String,
    /// Labels file; without it the reader has no targets (prediction only: training refuses it).
    #[serde(default)]
    pub labels: Option<String>,
    /// `scale` (default 255), `mean`, `std`, `shape`, `limit`.
    #[serde(flatten)]
    pub values: Values,
}

/// An IDX header: the dimensions of an unsigned-byte array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Dimensions, the first being the number of samples.
    pub dims: Vec<usize>,
    /// Bytes before the data.
    pub len: usize,
}

/// Parses an IDX header (pure): magic `0, 0, 0x08 (unsigned byte), ndims`, then one big-endian
/// u32 per dimension.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic number)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x} is not supported (only 0x08, unsigned bytes)", bytes[2]));
    }
    let n = bytes[3] as usize;
    let len = 4 + 4 * n;
    if n == 0 || bytes.len() < len {
        return Err("truncated header".into());
    }
    let dims: Vec<usize> =
        (0..n).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize).collect();
    if let Some(i) = dims.iter().skip(1).position(|&d| d == 0) {
        return Err(format!("dimension {} is 0: the samples {dims:?} hold no values", i + 1));
    }
    Ok(Header { dims, len })
}

/// Where the image bytes come from.
enum Source {
    Memory(Vec<u8>),
    File(std::fs::File),
}

/// An IDX images file and its labels file, read sample by sample (plain or gzip-compressed).
pub struct Idx {
    source: Source,
    path: PathBuf,
    header: Header,
    labels: Option<Vec<i64>>,
    sample: usize,
    layout: Layout,
    conversion: ByteConversion,
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(f.read(&mut magic).map_err(|e| Error::io(path, e))? == 2 && magic == [0x1f, 0x8b])
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| Error::io(path, e))?;
        return Ok(out);
    }
    Ok(raw)
}

/// The first `used` of the `n` labels in the IDX file `path` (for `images`).
fn read_labels(path: &Path, n: usize, images: &Path, used: usize) -> Result<Vec<i64>> {
    let bytes = read_all(path)?;
    let h = header_of(path, &bytes)?;
    if h.dims.len() != 1 || h.dims[0] != n {
        return Err(Error::data(format!(
            "{}: {:?} labels for {n} images in {}",
            path.display(),
            h.dims,
            images.display()
        )));
    }
    if bytes.len() < h.len + n {
        return Err(Error::data(format!("{}: truncated: {} bytes for {n} labels", path.display(), bytes.len())));
    }
    Ok(bytes[h.len..h.len + used].iter().map(|&b| b as i64).collect())
}

fn header_of(path: &Path, bytes: &[u8]) -> Result<Header> {
    parse_header(bytes).map_err(|m| Error::data(format!("{}: {m}", path.display())))
}

/// Builds the reader from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: IdxConfig = parse_config(config)?;
    let labels = cfg.labels.as_ref().map(|l| ctx.resolve(l));
    Ok(Box::new(Idx::open(&ctx.resolve(&cfg.images), labels.as_deref(), cfg)?))
}

impl Idx {
    /// Opens `images` and `labels` (if any) with `cfg`'s settings.
    pub fn open(images: &Path, labels: Option<&Path>, cfg: IdxConfig) -> Result<Self> {
        let (source, header) = if is_gzip(images)? {
            let bytes = read_all(images)?;
            let h = header_of(images, &bytes)?;
            (Source::Memory(bytes), h)
        } else {
            let f = std::fs::File::open(images).map_err(|e| Error::io(images, e))?;
            let mut head = vec![0u8; 4 + 4 * 4];
            let n = f.read_at(&mut head, 0).map_err(|e| Error::io(images, e))?;
            let h = header_of(images, &head[..n])?;
            (Source::File(f), h)
        };
        let n = header.dims[0];
        let sample: usize = header.dims[1..].iter().product();
        let expected = header.len + n * sample;
        let actual = match &source {
            Source::Memory(b) => b.len(),
            Source::File(f) => f.metadata().map_err(|e| Error::io(images, e))?.len() as usize,
        };
        if actual < expected {
            return Err(Error::data(format!(
                "{}: truncated: {actual} bytes for {n} samples of {sample}",
                images.display()
            )));
        }
        let layout = cfg.values.layout(255.0, &header.dims)?;
        let labels = labels.map(|l| read_labels(l, n, images, layout.len)).transpose()?;
        Ok(Idx {
            source,
            path: images.to_path_buf(),
            header,
            labels,
            sample,
            conversion: layout.byte_conversion(),
            layout,
        })
    }

    /// Where sample `i`'s bytes start in the file, if `i` is in range.
    fn offset(&self, i: i64) -> Option<usize> {
        usize::try_from(i).ok().filter(|&i| i < self.layout.len).map(|i| self.header.len + i * self.sample)
    }

    /// Starts loading sample `i`'s bytes into the cache, when they are in memory and `i` is in
    /// range (an index out of range is reported when its turn comes).
    fn prefetch(&self, i: i64) {
        if let (Source::Memory(bytes), Some(start)) = (&self.source, self.offset(i)) {
            crate::prefetch(&bytes[start..start + self.sample]);
        }
    }

    /// Sample `i`'s bytes: a slice of the decompressed file, or read from the file into `buf`.
    fn sample_bytes<'a>(&'a self, i: i64, buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        let start =
            self.offset(i).ok_or_else(|| Error::data(format!("{}: sample {i} out of range", self.path.display())))?;
        match &self.source {
            Source::Memory(b) => Ok(&b[start..start + self.sample]),
            Source::File(f) => {
                buf.resize(self.sample, 0);
                f.read_exact_at(buf, start as u64).map_err(|e| Error::io(&self.path, e))?;
                Ok(buf)
            }
        }
    }
}

impl DatasetReader for Idx {
    fn len(&self) -> usize {
        self.layout.len
    }

    fn sample_shape(&self) -> Vec<i64> {
        self.layout.shape.clone()
    }

    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        // Each sample's bytes are converted straight into the batch tensor, while the next
        // sample's bytes are on their way into the cache (samples come in random order).
        let x = crate::filled(indices.len(), &self.layout.shape, |out| {
            let mut buf = Vec::new();
            for (k, (row, &i)) in out.chunks_mut(self.sample).zip(indices).enumerate() {
                if let Some(&next) = indices.get(k + 1) {
                    self.prefetch(next);
                }
                self.conversion.convert(self.sample_bytes(i, &mut buf)?, row);
            }
            Ok(())
        })?;
        let y: Vec<i64> = match &self.labels {
            Some(labels) => indices.iter().map(|&i| labels[i as usize]).collect(),
            None => vec![0; indices.len()],
        };
        Ok((x, Tensor::from_slice(&y)))
    }

    fn targets(&mut self) -> Result<Tensor> {
        match &self.labels {
            Some(labels) => Ok(Tensor::from_slice(labels)),
            None => Err(Error::data(format!("{}: read without `labels`, so it has no targets", self.path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
        v.extend(data);
        v
    }

    fn files(name: &str, gz: bool) -> (PathBuf, PathBuf) {
        let d = std::env::temp_dir().join(format!("torchfit-idx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let images = idx(&[3, 2, 2], &[0, 255, 0, 255, 10, 20, 30, 40, 1, 2, 3, 4]);
        let labels = idx(&[3], &[7, 1, 4]);
        let write = |p: &Path, bytes: &[u8]| {
            let mut f = std::fs::File::create(p).unwrap();
            if gz {
                let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
                e.write_all(bytes).unwrap();
                e.finish().unwrap();
            } else {
                f.write_all(bytes).unwrap();
            }
        };
        let (i, l) = (d.join("images"), d.join("labels"));
        write(&i, &images);
        write(&l, &labels);
        (i, l)
    }

    fn cfg(extra: serde_json::Value) -> IdxConfig {
        let mut c = serde_json::json!({"images": "i", "labels": "l"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_config(&c).unwrap()
    }

    #[test]
    fn headers_are_parsed_and_bad_ones_explained() {
        assert_eq!(parse_header(&idx(&[60000, 28, 28], &[])), Ok(Header { dims: vec![60000, 28, 28], len: 16 }));
        assert!(parse_header(b"PK\x03\x04").unwrap_err().contains("magic"));
        assert!(parse_header(&[0, 0, 0x0d, 1, 0, 0, 0, 1]).unwrap_err().contains("0x0d"));
        assert!(parse_header(&[0, 0, 8, 2, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap_err().contains("dimension 1 is 0"));
        assert_eq!(
            parse_header(&[0, 0, 8, 1, 0, 0, 0, 0]).unwrap().dims,
            [0],
            "no samples is a size, not an error here"
        );
        assert!(parse_header(&[0, 0, 8, 3, 0, 0]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn plain_and_gzip_files_give_the_same_scaled_samples() {
        for gz in [false, true] {
            let (i, l) = files(if gz { "gz" } else { "plain" }, gz);
            let mut r = Idx::open(&i, Some(&l), cfg(serde_json::json!({"shape": [1, 2, 2]}))).unwrap();
            assert!(matches!(r.source, Source::Memory(_)) == gz, "gzip in memory, plain streamed");
            assert_eq!((r.len(), r.sample_shape()), (3, vec![1, 2, 2]));
            let (x, y) = r.get(&[2, 0]).unwrap();
            assert_eq!(x.size(), [2, 1, 2, 2]);
            let v = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
            assert_eq!(v, [1.0 / 255.0, 2.0 / 255.0, 3.0 / 255.0, 4.0 / 255.0, 0.0, 1.0, 0.0, 1.0]);
            assert_eq!(Vec::<i64>::try_from(y).unwrap(), [4, 7]);
            // Out of range at any place in the batch (the next sample is prefetched first).
            for bad in [[0, 3], [0, -1], [-1, 0], [0, i64::MAX]] {
                let e = r.get(&bad).err().unwrap().to_string();
                assert!(e.contains("out of range"), "{bad:?}: {e}");
            }
        }
    }

    #[test]
    fn normalisation_limits_and_mismatches() {
        let (i, l) = files("norm", false);
        let mut r =
            Idx::open(&i, Some(&l), cfg(serde_json::json!({"scale": 1.0, "mean": 10.0, "std": 2.0, "limit": 2})))
                .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(Vec::<f32>::try_from(r.get(&[1]).unwrap().0.flatten(0, -1)).unwrap(), [0.0, 5.0, 10.0, 15.0]);
        assert!(r.get(&[2]).is_err(), "beyond the limit");
        let e = Idx::open(&i, Some(&i), cfg(serde_json::json!({}))).err().unwrap().to_string();
        assert!(e.contains("labels for 3 images"), "{e}");
        let e = Idx::open(&i, Some(&l), cfg(serde_json::json!({"shape": [5]}))).err().unwrap().to_string();
        assert!(e.contains("shape"), "{e}");
    }

    #[test]
    fn without_labels_it_reads_samples_for_prediction_and_has_no_targets() {
        let (i, _) = files("unlabelled", false);
        let mut r = Idx::open(&i, None, cfg(serde_json::json!({}))).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&[1]).unwrap().0.size(), [1, 2, 2]);
        let e = r.targets().unwrap_err().to_string();
        assert!(e.contains("without `labels`"), "{e}");
    }
}
