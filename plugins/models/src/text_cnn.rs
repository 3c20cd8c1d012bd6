//! `text_cnn`: a convolutional network over token ids (the course notebook's text CNN over
//! names): an embedding of each id, 1-d convolution blocks over the sequence, the largest value
//! of each channel over the sequence, then dense layers.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `num_embeddings` | `257` | token ids are `0..num_embeddings` (the `text` reader's: 0 padding, a UTF-8 byte `b` as `b + 1`) |
//! | `embedding_dim` | `32` | size of each id's vector |
//! | `conv` | `[{ channels = 64, kernel = 3 }]` | 1-d blocks: convolution (`channels`, `kernel` = 3, `padding` = 0) → activation → max-pool (`pool`, 0 = none) |
//! | `dense` | `[]` | hidden dense sizes after the pooling over the sequence |
//! | `activation` | `"relu"` | as for `mlp` |
//! | `dropout` | `0.0` | dropout after the pooling and after each hidden dense layer |
//!
//! Samples are `[length]` integer ids. Parameters: `embedding.weight`, `conv.<i>.*`,
//! `dense.<i>.*`, `output.*`.

use crate::budget::Budget;
use crate::head::DenseHead;
use crate::probe::{probed_model, Probe};
use crate::{vars_model, Activation, Vars};
use serde::Deserialize;
use torchfit_sdk::tch::nn::{self, Module};
use torchfit_sdk::tch::{Kind, Tensor};
use torchfit_sdk::{parse_config, BuildContext, Error, Model, Result};

/// One 1-d block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block1d {
    /// Output channels.
    pub channels: i64,
    /// Kernel size.
    #[serde(default = "three")]
    pub kernel: i64,
    /// Zero padding on each side.
    #[serde(default)]
    pub padding: i64,
    /// Max-pool size and stride (0 = none).
    #[serde(default)]
    pub pool: i64,
}

fn three() -> i64 {
    3
}

/// Settings of the text CNN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextCnnConfig {
    /// Number of token ids.
    pub num_embeddings: i64,
    /// Embedding size.
    pub embedding_dim: i64,
    /// 1-d blocks.
    pub conv: Vec<Block1d>,
    /// Hidden dense sizes.
    pub dense: Vec<i64>,
    /// Activation.
    pub activation: Activation,
    /// Dropout.
    pub dropout: f64,
}

impl Default for TextCnnConfig {
    fn default() -> Self {
        TextCnnConfig {
            num_embeddings: 257,
            embedding_dim: 32,
            conv: vec![Block1d { channels: 64, kernel: 3, padding: 0, pool: 0 }],
            dense: Vec::new(),
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

/// The text CNN and its parameters.
#[derive(Debug)]
pub struct TextCnn {
    vars: Vars,
    embedding: nn::Embedding,
    convs: Vec<nn::Conv1D>,
    head: DenseHead,
    cfg: TextCnnConfig,
}

/// The sequence length after `blocks` (pure); an error when it vanishes.
pub fn sequence_length(blocks: &[Block1d], length: i64) -> std::result::Result<i64, String> {
    let mut n = length;
    for (i, b) in blocks.iter().enumerate() {
        n = n + 2 * b.padding - b.kernel + 1;
        if b.pool > 0 {
            n /= b.pool;
        }
        if n < 1 {
            return Err(format!("block {i} leaves a sequence of {n}"));
        }
    }
    Ok(n)
}

/// Builds a text CNN from its config section.
pub fn build(config: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Model>> {
    let cfg: TextCnnConfig = parse_config(config)?;
    let length = match ctx.input_shape.as_slice() {
        [l] => *l,
        other => {
            return Err(Error::config(
                "module",
                format!("text_cnn needs samples of token ids of shape [length], got {other:?}"),
            ))
        }
    };
    for (key, v) in [("num_embeddings", cfg.num_embeddings), ("embedding_dim", cfg.embedding_dim)] {
        if v < 1 {
            return Err(Error::config(key, format!("must be at least 1, got {v}")));
        }
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(Error::config("dropout", format!("must be in [0, 1), got {}", cfg.dropout)));
    }
    if cfg.conv.is_empty() {
        return Err(Error::config("conv", "needs at least one block"));
    }
    for (i, b) in cfg.conv.iter().enumerate() {
        for (k, v, min) in
            [("channels", b.channels, 1), ("kernel", b.kernel, 1), ("padding", b.padding, 0), ("pool", b.pool, 0)]
        {
            if v < min {
                return Err(Error::config(format!("conv[{i}].{k}"), format!("must be at least {min}, got {v}")));
            }
        }
    }
    DenseHead::check(&cfg.dense)?;
    sequence_length(&cfg.conv, length)
        .map_err(|m| Error::config("conv", format!("the blocks do not fit sequences of {length}: {m}")))?;
    let mut budget = Budget::of_machine();
    budget.take(&[cfg.num_embeddings, cfg.embedding_dim], |m| Error::config("num_embeddings", m))?;
    let mut channels = cfg.embedding_dim;
    for (i, b) in cfg.conv.iter().enumerate() {
        budget.take(&[b.channels, channels.saturating_mul(b.kernel).saturating_add(1)], |m| {
            Error::config(format!("conv[{i}].channels"), m)
        })?;
        channels = b.channels;
    }
    DenseHead::budget(&mut budget, channels, &cfg.dense, ctx.n_outputs)?;
    let vs = nn::VarStore::new(ctx.device);
    let root = vs.root();
    let embedding = nn::embedding(&root / "embedding", cfg.num_embeddings, cfg.embedding_dim, Default::default());
    let (mut convs, mut channels) = (Vec::new(), cfg.embedding_dim);
    for (i, b) in cfg.conv.iter().enumerate() {
        let c = nn::ConvConfig { padding: b.padding, ..Default::default() };
        convs.push(nn::conv1d(&root / "conv" / i, channels, b.channels, b.kernel, c));
        channels = b.channels;
    }
    let head = DenseHead::new(&root, channels, &cfg.dense, ctx.n_outputs);
    Ok(Box::new(TextCnn { vars: Vars::new(vs), embedding, convs, head, cfg }))
}

impl TextCnn {
    fn forward_probed(&self, x: &Tensor, train: bool, probe: &Probe<'_>) -> Result<Tensor> {
        let ids = x.f_to_kind(Kind::Int64)?;
        let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
        if lo < 0 || hi >= self.cfg.num_embeddings {
            return Err(Error::data(format!(
                "token ids {lo}..={hi} are outside the embedding's 0..{} (num_embeddings)",
                self.cfg.num_embeddings
            )));
        }
        // [n, length, dim] -> [n, dim, length]: the embedding's dimensions are the channels.
        let mut h = probe.layer(|| "embedding".into(), self.embedding.forward(&ids)).f_transpose(1, 2)?;
        for (i, (conv, b)) in self.convs.iter().zip(&self.cfg.conv).enumerate() {
            h = probe.activate(self.cfg.activation, &probe.layer(|| format!("conv.{i}"), conv.forward(&h)))?;
            if b.pool > 0 {
                h = h.f_max_pool1d([b.pool], [b.pool], [0], [1], false)?;
            }
        }
        // The largest value of each channel over the sequence.
        h = h.f_amax(2, false)?.f_dropout(self.cfg.dropout, train)?;
        self.head.forward(h, self.cfg.activation, self.cfg.dropout, train, probe)
    }
}

impl Model for TextCnn {
    probed_model!();

    vars_model!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::Device;

    fn ctx(shape: &[i64]) -> BuildContext {
        BuildContext { input_shape: shape.to_vec(), n_outputs: 2, ..torchfit_sdk::testing::context("module") }
    }

    #[test]
    fn token_ids_give_one_row_of_outputs_and_the_parameters_are_named() {
        let m = build(
            &serde_json::json!({"embedding_dim": 8, "conv": [{"channels": 16, "kernel": 3, "pool": 2}], "dense": [10]}),
            &ctx(&[12]),
        )
        .unwrap();
        let x = Tensor::from_slice(&[5i64; 24]).view([2, 12]);
        assert_eq!(m.forward(&x, false).unwrap().size(), [2, 2]);
        let names: Vec<String> = m.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "conv.0.bias",
                "conv.0.weight",
                "dense.0.bias",
                "dense.0.weight",
                "embedding.weight",
                "output.bias",
                "output.weight"
            ]
        );
        let count: i64 = m.parameters().iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(count, 257 * 8 + (8 * 3 * 16 + 16) + (16 * 10 + 10) + (10 * 2 + 2));
    }

    #[test]
    fn ids_outside_the_embedding_and_sequences_too_short_are_refused() {
        let m = build(&serde_json::json!({}), &ctx(&[4])).unwrap();
        let x = Tensor::from_slice(&[1i64, 2, 300, 4]).view([1, 4]);
        assert!(m.forward(&x, false).err().unwrap().to_string().contains("num_embeddings"));
        let e =
            build(&serde_json::json!({"conv": [{"channels": 4, "kernel": 9}]}), &ctx(&[4])).err().unwrap().to_string();
        assert!(e.contains("conv"), "{e}");
        assert!(build(&serde_json::json!({}), &ctx(&[2, 4])).is_err());
        let _ = Device::Cpu;
    }
}
