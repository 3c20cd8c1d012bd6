//! Which training samples an epoch draws: all of them once, in the order `shuffle` says (the
//! default), or, with `iterator_train.sampler`, as many draws with replacement as there are
//! training samples, each sample drawn with a probability proportional to its weight, as
//! PyTorch's `WeightedRandomSampler(weights, len(train), replacement=True)` draws:
//!
//! - `"balanced"`: the weight of a sample is one over the count of its class among the training
//!   samples, so every class is drawn equally often (the class-balancing use of the sampler);
//! - `{ class_weights = [w0, w1, ...] }`: the weight of a sample is its class's;
//! - `{ weights = [...] }`: one weight per sample of the training data set, by its index in it.
//!
//! The draws of epoch `e` depend on `(seed, e)` alone, so a resumed run draws as the
//! uninterrupted one did.

use super::rng::{SplitMix64, Stream};
use serde::Deserialize;

/// `iterator_train.sampler`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(untagged)]
pub enum SamplerConfig {
    /// `"random"` (every sample once per epoch; the default) or `"balanced"`.
    Named(SamplerName),
    /// Weights per class.
    ClassWeights {
        /// Weight of class `i` at index `i`.
        class_weights: Vec<f64>,
    },
    /// Weights per sample of the training data set.
    Weights {
        /// Weight of sample `i` at index `i`.
        weights: Vec<f64>,
    },
    /// No key: every sample once per epoch.
    #[default]
    #[serde(skip)]
    Unset,
}

/// The named samplers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerName {
    /// Every training sample once per epoch, shuffled as `shuffle` says.
    Random,
    /// Draws weighted by one over the count of each sample's class.
    Balanced,
}

impl SamplerConfig {
    /// Whether the labels of the training samples are needed to weigh them.
    pub fn needs_labels(&self) -> bool {
        matches!(self, SamplerConfig::Named(SamplerName::Balanced) | SamplerConfig::ClassWeights { .. })
    }

    /// The weights of the training samples `train` (indices into a data set of `len` samples
    /// whose class labels are `labels`, when [`Self::needs_labels`]); `None` when every sample
    /// is taken once. The error says what is wrong with the setting.
    pub fn weights(&self, train: &[i64], len: usize, labels: Option<&[i64]>) -> Result<Option<Vec<f64>>, String> {
        let label = |i: i64| labels.map(|l| l[i as usize]).ok_or("needs class labels");
        let weights: Vec<f64> = match self {
            SamplerConfig::Unset | SamplerConfig::Named(SamplerName::Random) => return Ok(None),
            SamplerConfig::Named(SamplerName::Balanced) => {
                let classes: Vec<i64> = train.iter().map(|&i| label(i)).collect::<Result<_, _>>()?;
                let mut counts = std::collections::HashMap::new();
                classes.iter().for_each(|c| *counts.entry(*c).or_insert(0usize) += 1);
                classes.iter().map(|c| 1.0 / counts[c] as f64).collect()
            }
            SamplerConfig::ClassWeights { class_weights } => {
                check(class_weights, "class_weights")?;
                let mut out = Vec::with_capacity(train.len());
                for &i in train {
                    let c = label(i)?;
                    let w = usize::try_from(c).ok().and_then(|c| class_weights.get(c)).ok_or_else(|| {
                        format!(
                            "class_weights has {} entries, but a training sample is of class {c}",
                            class_weights.len()
                        )
                    })?;
                    out.push(*w);
                }
                out
            }
            SamplerConfig::Weights { weights } => {
                check(weights, "weights")?;
                if weights.len() != len {
                    return Err(format!("weights has {} entries for a data set of {len} samples", weights.len()));
                }
                train.iter().map(|&i| weights[i as usize]).collect()
            }
        };
        if !weights.iter().any(|w| *w > 0.0) {
            return Err("gives every training sample a weight of 0".into());
        }
        Ok(Some(weights))
    }
}

fn check(weights: &[f64], key: &str) -> Result<(), String> {
    match weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        Some(w) => Err(format!("{key}: {w} is not a finite weight >= 0")),
        None => Ok(()),
    }
}

/// Epoch `epoch`'s draws: `train.len()` samples of `train`, with replacement, sample `j` with
/// probability `weights[j] / sum(weights)`.
pub fn draw(train: &[i64], weights: &[f64], seed: u64, epoch: u64) -> Vec<i64> {
    let mut total = 0.0;
    let cumulative: Vec<f64> = weights
        .iter()
        .map(|w| {
            total += w;
            total
        })
        .collect();
    let mut rng = SplitMix64::new(seed, Stream::Sampler, epoch);
    (0..train.len())
        .map(|_| {
            let u = rng.unit() * total;
            // The first sample whose cumulative weight exceeds u: a sample of weight 0 never.
            let j = cumulative.partition_point(|c| *c <= u).min(train.len() - 1);
            train[j]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(toml_text: &str) -> SamplerConfig {
        #[derive(Deserialize)]
        struct It {
            sampler: SamplerConfig,
        }
        toml::from_str::<It>(toml_text).unwrap().sampler
    }

    /// 900 samples of class 0 and 100 of class 1.
    fn imbalanced() -> (Vec<i64>, Vec<i64>) {
        let labels: Vec<i64> = (0..1000).map(|i| i64::from(i % 10 == 0)).collect();
        ((0..1000).collect(), labels)
    }

    #[test]
    fn balanced_draws_every_class_about_equally_often() {
        let (train, labels) = imbalanced();
        let w = sampler("sampler = 'balanced'").weights(&train, 1000, Some(&labels)).unwrap().unwrap();
        let drawn = draw(&train, &w, 0, 1);
        assert_eq!(drawn.len(), 1000);
        let minority = drawn.iter().filter(|&&i| labels[i as usize] == 1).count();
        assert!((430..570).contains(&minority), "{minority} of 1000 draws from the 10 % class");
    }

    #[test]
    fn a_sample_of_weight_zero_is_never_drawn() {
        let (train, labels) = imbalanced();
        let w =
            sampler("sampler = { class_weights = [0.0, 1.0] }").weights(&train, 1000, Some(&labels)).unwrap().unwrap();
        assert!(draw(&train, &w, 3, 2).iter().all(|&i| labels[i as usize] == 1));
        let per_sample: Vec<f64> = (0..1000).map(|i| if i == 7 { 1.0 } else { 0.0 }).collect();
        let c = SamplerConfig::Weights { weights: per_sample };
        let w = c.weights(&train[5..10], 1000, None).unwrap().unwrap();
        assert!(draw(&train[5..10], &w, 3, 2).iter().all(|&i| i == 7));
    }

    #[test]
    fn draws_depend_on_seed_and_epoch_alone() {
        let (train, labels) = imbalanced();
        let w = sampler("sampler = 'balanced'").weights(&train, 1000, Some(&labels)).unwrap().unwrap();
        assert_eq!(draw(&train, &w, 5, 3), draw(&train, &w, 5, 3));
        assert_ne!(draw(&train, &w, 5, 3), draw(&train, &w, 5, 4));
    }

    #[test]
    fn random_takes_every_sample_once_and_bad_weights_are_refused() {
        let (train, labels) = imbalanced();
        assert_eq!(sampler("sampler = 'random'").weights(&train, 1000, None), Ok(None));
        assert!(sampler("sampler = { class_weights = [1.0] }")
            .weights(&train, 1000, Some(&labels))
            .unwrap_err()
            .contains("class 1"));
        assert!(sampler("sampler = { class_weights = [1.0, -1.0] }")
            .weights(&train, 1000, Some(&labels))
            .unwrap_err()
            .contains("-1"));
        assert!(sampler("sampler = { weights = [1.0] }").weights(&train, 1000, None).unwrap_err().contains("1000"));
        assert!(sampler("sampler = { class_weights = [0.0, 0.0] }")
            .weights(&train, 1000, Some(&labels))
            .unwrap_err()
            .contains("0"));
    }
}
