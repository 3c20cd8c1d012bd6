//! The `[optimizer]` section and each group's hyper-parameters: which keys exist, which update
//! rule each applies to (`torch.optim`'s names), their defaults, and how a value is read and set.

use crate::{Error, Result};
use serde::Deserialize;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// Stochastic gradient descent (momentum, dampening, Nesterov, weight decay).
    #[default]
    Sgd,
    /// Adam (L2 weight decay added to the gradient).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// RMSprop.
    Rmsprop,
}

/// How the update runs, with torch.optim's three implementations (`foreach` and `fused` are
/// `torch.optim`'s flags of the same names). The results are torch.optim's with the same flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Implementation {
    /// What PyTorch picks by default: `foreach` when the parameters are on CUDA, `for_loop`
    /// elsewhere.
    #[default]
    Auto,
    /// A few kernels per parameter (torch.optim's single-tensor path).
    ForLoop,
    /// A few kernels over all parameters of a device and dtype (`_foreach_*`; SGD, Adam, AdamW).
    Foreach,
    /// One kernel for the whole update (`_fused_sgd_`, `_fused_adam_`, `_fused_adamw_`).
    Fused,
}

impl Implementation {
    /// The implementation that runs for parameters on `device`.
    pub fn resolve(self, device: tch::Device) -> Self {
        match self {
            Implementation::Auto if device.is_cuda() => Implementation::Foreach,
            Implementation::Auto => Implementation::ForLoop,
            chosen => chosen,
        }
    }
}

/// Declares a config struct with the per-group hyper-parameter keys plus `$extra` fields, and
/// `hyper()` to read those keys back as a [`HyperConfig`]. (A macro rather than
/// `#[serde(flatten)]`, which would lose the key path in error messages.)
macro_rules! with_hyper_keys {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Learning rate.
            #[serde(default)]
            pub lr: Option<f64>,
            /// Weight decay.
            #[serde(default)]
            pub weight_decay: Option<f64>,
            /// Momentum (SGD, RMSprop).
            #[serde(default)]
            pub momentum: Option<f64>,
            /// Dampening (SGD).
            #[serde(default)]
            pub dampening: Option<f64>,
            /// Nesterov momentum (SGD).
            #[serde(default)]
            pub nesterov: Option<bool>,
            /// Adam's betas.
            #[serde(default)]
            pub betas: Option<[f64; 2]>,
            /// Denominator epsilon.
            #[serde(default)]
            pub eps: Option<f64>,
            /// RMSprop smoothing constant.
            #[serde(default)]
            pub alpha: Option<f64>,
            /// Centered RMSprop.
            #[serde(default)]
            pub centered: Option<bool>,
        }

        impl $name {
            /// The hyper-parameter keys that were set.
            pub fn hyper(&self) -> HyperConfig {
                HyperConfig {
                    lr: self.lr,
                    weight_decay: self.weight_decay,
                    momentum: self.momentum,
                    dampening: self.dampening,
                    nesterov: self.nesterov,
                    betas: self.betas,
                    eps: self.eps,
                    alpha: self.alpha,
                    centered: self.centered,
                }
            }
        }
    };
}

with_hyper_keys! {
    /// Hyper-parameters that may be set per group.
    pub struct HyperConfig {}
}

with_hyper_keys! {
    /// One `[[optimizer.param_groups]]` entry.
    pub struct GroupConfig {
        /// Glob pattern(s) over parameter names.
        #[serde(deserialize_with = "torchfit_sdk::config::one_or_many")]
        pub params: Vec<String>,
    }
}

with_hyper_keys! {
    /// The `[optimizer]` section.
    pub struct OptimizerConfig {
        /// The update rule.
        #[serde(default)]
        pub name: OptimizerName,
        /// How the update runs.
        #[serde(default)]
        pub implementation: Implementation,
        /// Parameter groups.
        #[serde(default)]
        pub param_groups: Vec<GroupConfig>,
    }
}

/// Resolved hyper-parameters of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Momentum.
    pub momentum: f64,
    /// Dampening.
    pub dampening: f64,
    /// Nesterov.
    pub nesterov: bool,
    /// Betas.
    pub betas: [f64; 2],
    /// Epsilon.
    pub eps: f64,
    /// Alpha.
    pub alpha: f64,
    /// Centered.
    pub centered: bool,
}

/// The hyper-parameters by their `torch.optim` names, and the optimizers each applies to.
pub(super) const HYPER_KEYS: &[(&str, &[OptimizerName])] = {
    use OptimizerName::*;
    &[
        ("lr", &[Sgd, Adam, Adamw, Rmsprop]),
        ("weight_decay", &[Sgd, Adam, Adamw, Rmsprop]),
        ("momentum", &[Sgd, Rmsprop]),
        ("dampening", &[Sgd]),
        ("nesterov", &[Sgd]),
        ("betas", &[Adam, Adamw]),
        ("eps", &[Adam, Adamw, Rmsprop]),
        ("alpha", &[Rmsprop]),
        ("centered", &[Rmsprop]),
    ]
};

/// Whether hyper-parameter `key` applies to optimizer `name`.
pub(super) fn applies(key: &str, name: OptimizerName) -> bool {
    HYPER_KEYS.iter().any(|(k, ok)| *k == key && ok.contains(&name))
}

impl Hyper {
    /// Hyper-parameter `key` as JSON (`betas` a pair).
    pub(super) fn get(&self, key: &str) -> Option<serde_json::Value> {
        use serde_json::json;
        Some(match key {
            "lr" => json!(self.lr),
            "weight_decay" => json!(self.weight_decay),
            "momentum" => json!(self.momentum),
            "dampening" => json!(self.dampening),
            "nesterov" => json!(self.nesterov),
            "betas" => json!(self.betas),
            "eps" => json!(self.eps),
            "alpha" => json!(self.alpha),
            "centered" => json!(self.centered),
            _ => return None,
        })
    }

    /// Sets hyper-parameter `key` from JSON; the error says what the value must be.
    pub(super) fn set(&mut self, key: &str, value: &serde_json::Value) -> std::result::Result<(), String> {
        let number =
            || value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| format!("`{key}` must be a finite number"));
        let flag = || value.as_bool().ok_or_else(|| format!("`{key}` must be true or false"));
        match key {
            "lr" => self.lr = number()?,
            "weight_decay" => self.weight_decay = number()?,
            "momentum" => self.momentum = number()?,
            "dampening" => self.dampening = number()?,
            "nesterov" => self.nesterov = flag()?,
            "betas" => {
                self.betas = serde_json::from_value::<[f64; 2]>(value.clone())
                    .ok()
                    .filter(|b| b.iter().all(|v| (0.0..1.0).contains(v)))
                    .ok_or("`betas` must be two numbers in [0, 1)")?
            }
            "eps" => self.eps = number()?,
            "alpha" => self.alpha = number()?,
            "centered" => self.centered = flag()?,
            _ => return Err(format!("unknown hyper-parameter `{key}`")),
        }
        Ok(())
    }

    pub(super) fn defaults(name: OptimizerName) -> Self {
        Hyper {
            lr: 0.01,
            weight_decay: if name == OptimizerName::Adamw { 0.01 } else { 0.0 },
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            betas: [0.9, 0.999],
            eps: 1e-8,
            alpha: 0.99,
            centered: false,
        }
    }

    pub(super) fn apply(&mut self, name: OptimizerName, c: &HyperConfig, at: &str) -> Result<()> {
        let allowed = |key: &str| -> Result<()> {
            if applies(key, name) {
                Ok(())
            } else {
                Err(Error::Config {
                    origin: String::new(),
                    key: format!("{at}{key}"),
                    message: format!("does not apply to {name:?}").to_lowercase(),
                })
            }
        };
        macro_rules! set {
            ($($field:ident),*) => {
                $(
                    if let Some(v) = c.$field {
                        allowed(stringify!($field))?;
                        self.$field = v;
                    }
                )*
            };
        }
        set!(lr, weight_decay, momentum, dampening, nesterov, betas, eps, alpha, centered);
        let bad = |key: &str, message: &str| {
            Err(Error::Config { origin: String::new(), key: format!("{at}{key}"), message: message.into() })
        };
        // torch.optim's own checks ("Invalid momentum value", ...).
        for (key, value) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("eps", self.eps),
            ("alpha", self.alpha),
        ] {
            if value.is_nan() || value < 0.0 {
                return bad(key, "must be >= 0");
            }
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return bad("nesterov", "needs momentum > 0 and dampening = 0 (as in torch.optim.SGD)");
        }
        if self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return bad("betas", "each must be in [0, 1)");
        }
        Ok(())
    }
}
