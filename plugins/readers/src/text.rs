//! `text`: short texts and their class labels, one per line, as token ids (the course
//! notebook's names): `label,text` (the first delimiter splits them; a line whose first field is
//! no whole number is a text without a label, `-1`, for prediction). Each text becomes its UTF-8
//! bytes `b` as ids `b + 1`, cut or padded with 0 to `max_length`: the ids a `text_cnn` with
//! `num_embeddings = 257` embeds.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | the file; `.gz` is decompressed |
//! | `delimiter` | `","` | one character between the label and the text |
//! | `max_length` | `32` | ids per sample (1 to 65,536): longer texts are cut, shorter padded with 0 |
//! | `lowercase` | `false` | lower-case the texts first |
//! | `header` | `false` | skip the first line |
//!
//! Samples are `[max_length]` int64 ids; targets the labels.

use crate::csv::read_text;
use serde::Deserialize;
use std::path::Path;
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{parse_config, BuildContext, DatasetReader, Error, Result, TensorDataset};

/// Settings of the `text` reader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// The file.
    pub path: String,
    /// Between label and text.
    #[serde(default = "comma")]
    pub delimiter: char,
    /// Ids per sample.
    #[serde(default = "thirty_two")]
    pub max_length: usize,
    /// Lower-case first.
    #[serde(default)]
    pub lowercase: bool,
    /// Skip the first line.
    #[serde(default)]
    pub header: bool,
}

fn comma() -> char {
    ','
}
fn thirty_two() -> usize {
    32
}

/// Builds the reader from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn DatasetReader>> {
    let cfg: TextConfig = parse_config(config)?;
    Ok(Box::new(read(&ctx.resolve(&cfg.path), &cfg)?))
}

/// The ids of `text` (pure): its UTF-8 bytes plus 1, cut or padded with 0 to `length`.
pub fn ids(text: &str, length: usize) -> Vec<i64> {
    let mut out: Vec<i64> = text.bytes().take(length).map(|b| b as i64 + 1).collect();
    out.resize(length, 0);
    out
}

/// Reads the whole file.
pub fn read(path: &Path, cfg: &TextConfig) -> Result<TensorDataset> {
    if !(1..=65_536).contains(&cfg.max_length) {
        return Err(Error::config("max_length", format!("must be 1 to 65536, got {}", cfg.max_length)));
    }
    let text = read_text(path)?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().skip(cfg.header as usize) {
        if line.trim().is_empty() {
            continue;
        }
        let (label, body) = match line.split_once(cfg.delimiter) {
            Some((l, t)) => match l.trim().parse::<i64>() {
                Ok(l) => (l, t),
                Err(_) => (-1, line),
            },
            None => (-1, line),
        };
        let body = body.trim();
        let body = if cfg.lowercase { body.to_lowercase() } else { body.to_owned() };
        x.extend(ids(&body, cfg.max_length));
        y.push(label);
    }
    if y.is_empty() {
        return Err(Error::data(format!("{}: no lines of text", path.display())));
    }
    let n = y.len() as i64;
    TensorDataset::new(&Tensor::from_slice(&x).f_view([n, cfg.max_length as i64])?, &Tensor::from_slice(&y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_become_their_bytes_plus_one_padded_or_cut() {
        assert_eq!(ids("ab", 4), [98, 99, 0, 0]);
        assert_eq!(ids("abcdef", 3), [98, 99, 100]);
        assert_eq!(ids("é", 3), [0xc3 + 1, 0xa9 + 1, 0]);
    }

    #[test]
    fn lines_give_labels_and_ids_and_a_line_without_a_label_is_unlabelled() {
        let path = std::env::temp_dir().join(format!("text-reader-{}.csv", std::process::id()));
        std::fs::write(&path, "1,Anna\n0, Bob\n\nClaire, Jr\n").unwrap();
        let cfg = TextConfig { path: String::new(), delimiter: ',', max_length: 4, lowercase: true, header: false };
        let mut d = read(&path, &cfg).unwrap();
        assert_eq!(d.len(), 3);
        let (x, y) = d.get(&[0, 1, 2]).unwrap();
        assert_eq!(Vec::<i64>::try_from(y).unwrap(), [1, 0, -1]);
        assert_eq!(Vec::<i64>::try_from(x.get(0)).unwrap(), ids("anna", 4));
        assert_eq!(Vec::<i64>::try_from(x.get(2)).unwrap(), ids("clai", 4));
        std::fs::remove_file(&path).unwrap();
    }
}
