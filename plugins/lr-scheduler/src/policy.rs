//! Learning-rate policies as pure functions of the step count, each equal to its
//! `torch.optim.lr_scheduler` namesake (momentum cycling excepted).

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Which policy, with its settings (torch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", deny_unknown_fields)]
pub enum Policy {
    /// `StepLR`: multiply by `gamma` every `step_size` steps.
    StepLR {
        /// Steps between decays.
        step_size: u64,
        /// Decay factor.
        #[serde(default = "tenth")]
        gamma: f64,
    },
    /// `MultiStepLR`: multiply by `gamma` at each milestone.
    MultiStepLR {
        /// Steps at which to decay (increasing).
        milestones: Vec<u64>,
        /// Decay factor.
        #[serde(default = "tenth")]
        gamma: f64,
    },
    /// `ExponentialLR`: multiply by `gamma` every step.
    ExponentialLR {
        /// Decay factor.
        gamma: f64,
    },
    /// `CosineAnnealingLR`: half a cosine from the base rate to `eta_min` over `t_max` steps.
    CosineAnnealingLR {
        /// Steps of the half period.
        t_max: u64,
        /// Lowest rate.
        #[serde(default)]
        eta_min: f64,
    },
    /// `CosineAnnealingWarmRestarts` (skorch's WarmRestartLR): cosine periods of `t_0`, then
    /// `t_0 * t_mult`, ... steps, each restarting at the base rate.
    WarmRestart {
        /// First period.
        t_0: u64,
        /// Period growth factor.
        #[serde(default = "one")]
        t_mult: u64,
        /// Lowest rate.
        #[serde(default)]
        eta_min: f64,
    },
    /// `CyclicLR` (`cycle_momentum = False`): between `base_lr` and `max_lr`.
    CyclicLR {
        /// Lower bound (replaces the optimizer's rate).
        base_lr: f64,
        /// Upper bound.
        max_lr: f64,
        /// Steps of the rising half.
        #[serde(default = "two_thousand")]
        step_size_up: u64,
        /// Steps of the falling half (default: `step_size_up`).
        #[serde(default)]
        step_size_down: Option<u64>,
        /// `triangular`, `triangular2` or `exp_range`.
        #[serde(default)]
        mode: CyclicMode,
        /// Decay of `exp_range`.
        #[serde(default = "one_f")]
        gamma: f64,
        /// Cycle the momentum (SGD, RMSprop) or beta1 (Adam, AdamW) inversely to the rate,
        /// between `max_momentum` (at `base_lr`) and `base_momentum` (at `max_lr`).
        #[serde(default = "yes")]
        cycle_momentum: bool,
        /// Lowest momentum.
        #[serde(default = "eight_tenths")]
        base_momentum: f64,
        /// Highest momentum.
        #[serde(default = "nine_tenths")]
        max_momentum: f64,
    },
    /// `OneCycleLR`.
    OneCycleLR {
        /// Peak rate.
        max_lr: f64,
        /// Total steps; as torch, `epochs` x `steps_per_epoch` when not given, and when neither
        /// is given the run's own ([`Policy::needs_total`]: `max_epochs`, times the training
        /// batches per epoch with `step_every = "batch"`).
        #[serde(default)]
        total_steps: Option<u64>,
        /// Epochs of the cycle (torch's `epochs`), with `steps_per_epoch`.
        #[serde(default)]
        epochs: Option<u64>,
        /// Steps per epoch (torch's `steps_per_epoch`), with `epochs`.
        #[serde(default)]
        steps_per_epoch: Option<u64>,
        /// Fraction of steps rising.
        #[serde(default = "three_tenths")]
        pct_start: f64,
        /// `cos` or `linear`.
        #[serde(default)]
        anneal_strategy: Anneal,
        /// `initial_lr = max_lr / div_factor`.
        #[serde(default = "twenty_five")]
        div_factor: f64,
        /// `min_lr = initial_lr / final_div_factor`.
        #[serde(default = "ten_thousand")]
        final_div_factor: f64,
        /// torch's `three_phase`.
        #[serde(default)]
        three_phase: bool,
        /// Cycle the momentum (SGD, RMSprop) or beta1 (Adam, AdamW) inversely to the rate,
        /// between `max_momentum` and `base_momentum`.
        #[serde(default = "yes")]
        cycle_momentum: bool,
        /// Momentum at the peak rate.
        #[serde(default = "eighty_five_hundredths")]
        base_momentum: f64,
        /// Momentum at the start and the end.
        #[serde(default = "ninety_five_hundredths")]
        max_momentum: f64,
    },
}

fn tenth() -> f64 {
    0.1
}
fn one() -> u64 {
    1
}
fn one_f() -> f64 {
    1.0
}
fn two_thousand() -> u64 {
    2000
}
fn three_tenths() -> f64 {
    0.3
}
fn twenty_five() -> f64 {
    25.0
}
fn ten_thousand() -> f64 {
    1e4
}
fn yes() -> bool {
    true
}
fn eight_tenths() -> f64 {
    0.8
}
fn nine_tenths() -> f64 {
    0.9
}
fn eighty_five_hundredths() -> f64 {
    0.85
}
fn ninety_five_hundredths() -> f64 {
    0.95
}

/// `CyclicLR` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CyclicMode {
    /// Constant amplitude.
    #[default]
    Triangular,
    /// Amplitude halved each cycle.
    Triangular2,
    /// Amplitude scaled by `gamma^step`.
    ExpRange,
}

/// `OneCycleLR` annealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anneal {
    /// Cosine.
    #[default]
    Cos,
    /// Linear.
    Linear,
}

impl CyclicMode {
    /// The factor on the cycle's height: 1, halved each cycle, or `gamma^step`.
    fn amplitude(self, cycle: f64, gamma: f64, step: f64) -> f64 {
        match self {
            CyclicMode::Triangular => 1.0,
            CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
            CyclicMode::ExpRange => gamma.powf(step),
        }
    }
}

/// The start and end values of a `OneCycleLR` phase.
struct Ends {
    lr: (f64, f64),
    momentum: (f64, f64),
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

impl Policy {
    /// The rate after `step` steps for a group whose initial rate is `base`.
    pub fn lr(&self, base: f64, step: u64) -> f64 {
        let t = step as f64;
        match self {
            Policy::StepLR { step_size, gamma } => base * gamma.powi((step / step_size.max(&1)) as i32),
            Policy::MultiStepLR { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= step).count() as i32)
            }
            Policy::ExponentialLR { gamma } => base * gamma.powf(t),
            Policy::CosineAnnealingLR { t_max, eta_min } => {
                eta_min + (base - eta_min) * (1.0 + (PI * t / *t_max as f64).cos()) / 2.0
            }
            Policy::WarmRestart { t_0, t_mult, eta_min } => {
                let (mut t_cur, mut t_i) = (step, *t_0);
                while t_cur >= t_i {
                    t_cur -= t_i;
                    t_i *= *t_mult.max(&1);
                }
                eta_min + (base - eta_min) * (1.0 + (PI * t_cur as f64 / t_i as f64).cos()) / 2.0
            }
            Policy::CyclicLR { base_lr, max_lr, mode, gamma, .. } => {
                let (cycle, scale) = self.cyclic_position(step);
                base_lr + (max_lr - base_lr) * scale * mode.amplitude(cycle, *gamma, t)
            }
            Policy::OneCycleLR { .. } => self.one_cycle(step, |p| p.lr),
        }
    }

    /// The momentum (beta1 for Adam and AdamW) after `step` steps, for the policies that cycle
    /// it (`CyclicLR` and `OneCycleLR` with `cycle_momentum`, as `torch.optim.lr_scheduler`).
    pub fn momentum(&self, step: u64) -> Option<f64> {
        match self {
            Policy::CyclicLR { cycle_momentum: true, base_momentum, max_momentum, mode, gamma, .. } => {
                let (cycle, scale) = self.cyclic_position(step);
                Some(max_momentum - (max_momentum - base_momentum) * scale * mode.amplitude(cycle, *gamma, step as f64))
            }
            Policy::OneCycleLR { cycle_momentum: true, .. } => Some(self.one_cycle(step, |p| p.momentum)),
            _ => None,
        }
    }

    /// `CyclicLR`'s cycle (from 1) and the position in it as a fraction of the height (0 at the
    /// base, 1 at the peak).
    fn cyclic_position(&self, step: u64) -> (f64, f64) {
        let Policy::CyclicLR { step_size_up, step_size_down, .. } = self else { return (1.0, 0.0) };
        let t = step as f64;
        let up = *step_size_up as f64;
        let total = up + step_size_down.unwrap_or(*step_size_up) as f64;
        let ratio = up / total;
        let cycle = (1.0 + t / total).floor();
        let x = 1.0 + t / total - cycle;
        (cycle, if x <= ratio { x / ratio } else { (x - 1.0) / (ratio - 1.0) })
    }

    /// `OneCycleLR`'s value after `step` steps of the quantity `of` picks from each phase's
    /// start and end (the rate or the momentum), annealed within the phase.
    fn one_cycle(&self, step: u64, of: fn(&Ends) -> (f64, f64)) -> f64 {
        let Policy::OneCycleLR {
            max_lr,
            total_steps,
            pct_start,
            anneal_strategy,
            div_factor,
            final_div_factor,
            three_phase,
            base_momentum,
            max_momentum,
            ..
        } = self
        else {
            return f64::NAN;
        };
        let initial = max_lr / div_factor;
        let min = initial / final_div_factor;
        // Unresolved only before the run tells it (see `needs_total`); step 0 is the initial rate.
        let Some(total) = total_steps.map(|t| t as f64) else {
            return of(&Ends { lr: (initial, 0.0), momentum: (*max_momentum, 0.0) }).0;
        };
        let (lo, hi) = (*base_momentum, *max_momentum);
        let phases: Vec<(f64, Ends)> = if *three_phase {
            vec![
                (pct_start * total - 1.0, Ends { lr: (initial, *max_lr), momentum: (hi, lo) }),
                (2.0 * pct_start * total - 2.0, Ends { lr: (*max_lr, initial), momentum: (lo, hi) }),
                (total - 1.0, Ends { lr: (initial, min), momentum: (hi, hi) }),
            ]
        } else {
            vec![
                (pct_start * total - 1.0, Ends { lr: (initial, *max_lr), momentum: (hi, lo) }),
                (total - 1.0, Ends { lr: (*max_lr, min), momentum: (lo, hi) }),
            ]
        };
        let anneal = |(s, e): (f64, f64), p: f64| match anneal_strategy {
            Anneal::Cos => cos_anneal(s, e, p),
            Anneal::Linear => (e - s) * p + s,
        };
        let t = step as f64;
        let mut start_step = 0.0;
        for (i, (end_step, ends)) in phases.iter().enumerate() {
            if t <= *end_step || i == phases.len() - 1 {
                return anneal(of(ends), (t - start_step) / (end_step - start_step));
            }
            start_step = *end_step;
        }
        unreachable!("the last phase always returns")
    }

    /// Checks settings torch would refuse; `(key, message)` on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        match self {
            Policy::StepLR { step_size: 0, .. } => bad("step_size", "must be at least 1"),
            Policy::MultiStepLR { milestones, .. } if milestones.windows(2).any(|w| w[0] >= w[1]) => {
                bad("milestones", "must increase")
            }
            Policy::CosineAnnealingLR { t_max: 0, .. } => bad("t_max", "must be at least 1"),
            Policy::WarmRestart { t_0: 0, .. } => bad("t_0", "must be at least 1"),
            Policy::WarmRestart { t_mult: 0, .. } => bad("t_mult", "must be at least 1"),
            Policy::CyclicLR { step_size_up: 0, .. } => bad("step_size_up", "must be at least 1"),
            Policy::OneCycleLR { total_steps: Some(0), .. } => bad("total_steps", "must be at least 1"),
            Policy::OneCycleLR { epochs: Some(0), .. } => bad("epochs", "must be at least 1"),
            Policy::OneCycleLR { steps_per_epoch: Some(0), .. } => bad("steps_per_epoch", "must be at least 1"),
            Policy::OneCycleLR { total_steps: None, epochs, steps_per_epoch, .. }
                if epochs.is_some() != steps_per_epoch.is_some() =>
            {
                let missing = if epochs.is_none() { "epochs" } else { "steps_per_epoch" };
                bad(missing, "give epochs and steps_per_epoch together (or total_steps, or neither for the run's own)")
            }
            Policy::OneCycleLR { pct_start, .. } if !(0.0..=1.0).contains(pct_start) => {
                bad("pct_start", "must be in [0, 1]")
            }
            _ => Ok(()),
        }
    }

    /// Refuses a step torch's scheduler would refuse: `OneCycleLR` is defined for `total_steps`
    /// steps, and torch raises on the step after them rather than go on with a rate it never
    /// planned; `(key, message)` on error.
    pub fn check_step(&self, step: u64) -> Result<(), (String, String)> {
        match self {
            Policy::OneCycleLR { total_steps: Some(total_steps), .. } if step > *total_steps => Err((
                "total_steps".to_owned(),
                format!(
                    "OneCycleLR stepped {step} times, more than its total_steps = {total_steps} (torch refuses \
                     it too): set it to the epochs the run takes, or its training batches with step_every = \"batch\""
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the policy waits for the run's length: a `OneCycleLR` given neither `total_steps`
    /// nor `epochs` and `steps_per_epoch` (torch's two ways), until [`Policy::set_total`].
    pub fn needs_total(&self) -> bool {
        matches!(self, Policy::OneCycleLR { total_steps: None, epochs: None, .. })
    }

    /// Resolves a `OneCycleLR`'s total steps: `epochs` x `steps_per_epoch` when given, else
    /// `run` (the run's steps, see [`Policy::needs_total`]); the other policies are unchanged.
    pub fn set_total(&mut self, run: u64) {
        if let Policy::OneCycleLR { total_steps: total @ None, epochs, steps_per_epoch, .. } = self {
            *total = Some(match (epochs, steps_per_epoch) {
                (Some(e), Some(s)) => e.saturating_mul(*s),
                _ => run.max(1),
            });
        }
    }

    /// Forgets a `OneCycleLR`'s resolved total steps (for a new run to set its own).
    pub fn clear_total(&mut self) {
        if let Policy::OneCycleLR { total_steps, .. } = self {
            *total_steps = None;
        }
    }

    /// A `OneCycleLR`'s total steps once resolved.
    pub fn total(&self) -> Option<u64> {
        match self {
            Policy::OneCycleLR { total_steps, .. } => *total_steps,
            _ => None,
        }
    }

    /// Whether the policy sets its own lower bound instead of the optimizer's rate.
    pub fn overrides_base(&self) -> Option<f64> {
        match self {
            Policy::CyclicLR { base_lr, .. } => Some(*base_lr),
            Policy::OneCycleLR { max_lr, div_factor, .. } => Some(max_lr / div_factor),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each policy's closed form at the steps where it is known by hand; the whole sequences are
    //! compared with `torch.optim.lr_scheduler` in `tests/tests/parity/lr_scheduler.rs`.
    use super::*;

    fn policy(json: serde_json::Value) -> Policy {
        torchfit_sdk::parse_config(&json).unwrap()
    }

    fn rates(p: &Policy, base: f64, steps: u64) -> Vec<f64> {
        (0..=steps).map(|s| p.lr(base, s)).collect()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn step_and_multistep_decay_at_their_steps() {
        close(
            &rates(&policy(serde_json::json!({"policy": "StepLR", "step_size": 3, "gamma": 0.5})), 1.0, 6),
            &[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25],
        );
        let multi = policy(serde_json::json!({"policy": "MultiStepLR", "milestones": [2, 5]}));
        close(&rates(&multi, 1.0, 5), &[1.0, 1.0, 0.1, 0.1, 0.1, 0.01]);
        close(&rates(&policy(serde_json::json!({"policy": "ExponentialLR", "gamma": 0.9})), 2.0, 2), &[2.0, 1.8, 1.62]);
    }

    #[test]
    fn cosine_falls_from_the_base_to_eta_min_over_t_max() {
        let p = policy(serde_json::json!({"policy": "CosineAnnealingLR", "t_max": 10, "eta_min": 0.1}));
        close(&[p.lr(1.1, 0), p.lr(1.1, 5), p.lr(1.1, 10)], &[1.1, 0.6, 0.1]);
    }

    #[test]
    fn warm_restarts_go_back_to_the_base_with_longer_periods() {
        let p = policy(serde_json::json!({"policy": "WarmRestart", "t_0": 2, "t_mult": 2}));
        // Periods of 2 and 4 steps: restarts at steps 2 and 6; halfway down at 1 and 4.
        let half = |x: f64| (1.0 + x.cos()) / 2.0;
        let pi = std::f64::consts::PI;
        close(&rates(&p, 1.0, 6), &[1.0, 0.5, 1.0, half(pi / 4.0), 0.5, half(3.0 * pi / 4.0), 1.0]);
    }

    #[test]
    fn cyclic_rises_and_falls_between_its_bounds() {
        let p = policy(serde_json::json!({"policy": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "step_size_up": 2}));
        close(&rates(&p, 0.5, 4), &[0.1, 0.55, 1.0, 0.55, 0.1]);
        let halved = policy(
            serde_json::json!({"policy": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "step_size_up": 2, "mode": "triangular2"}),
        );
        close(&[halved.lr(0.5, 2), halved.lr(0.5, 6)], &[1.0, 0.55]);
        assert_eq!(p.overrides_base(), Some(0.1), "the cycle starts at base_lr, not the optimizer's rate");
    }

    #[test]
    fn one_cycle_starts_at_max_over_div_and_ends_at_its_minimum() {
        let p = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "total_steps": 11}));
        let r = rates(&p, 0.04, 10);
        close(&[r[0], r[10]], &[0.04, 0.04 / 1e4]);
        assert!(r.iter().all(|&x| x <= 1.0) && r.iter().cloned().fold(0.0, f64::max) > 0.9, "{r:?}");
        assert_eq!(p.overrides_base(), Some(0.04));
    }

    #[test]
    fn momentum_cycles_against_the_rate_unless_switched_off() {
        let p = policy(serde_json::json!({"policy": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "step_size_up": 2}));
        let m: Vec<f64> = (0..=4).map(|s| p.momentum(s).unwrap()).collect();
        close(&m, &[0.9, 0.85, 0.8, 0.85, 0.9]);
        let one = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "total_steps": 11}));
        close(&[one.momentum(0).unwrap(), one.momentum(10).unwrap()], &[0.95, 0.95]);
        assert!((0..=10).all(|s| one.momentum(s).unwrap() >= 0.85));
        let off =
            policy(serde_json::json!({"policy": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "cycle_momentum": false}));
        assert_eq!(off.momentum(3), None);
        assert_eq!(policy(serde_json::json!({"policy": "StepLR", "step_size": 1})).momentum(0), None);
    }

    #[test]
    fn settings_torch_refuses_are_refused_by_key() {
        let key = |json| policy(json).validate().unwrap_err().0;
        assert_eq!(key(serde_json::json!({"policy": "StepLR", "step_size": 0})), "step_size");
        assert_eq!(key(serde_json::json!({"policy": "MultiStepLR", "milestones": [5, 2]})), "milestones");
        assert_eq!(
            key(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "total_steps": 10, "pct_start": 1.5})),
            "pct_start"
        );
        assert_eq!(key(serde_json::json!({"policy": "WarmRestart", "t_0": 1, "t_mult": 0})), "t_mult");
        assert!(torchfit_sdk::parse_config::<Policy>(&serde_json::json!({"policy": "StepLr", "step_size": 1})).is_err());
    }

    #[test]
    fn one_cycle_takes_epochs_times_steps_per_epoch_or_the_runs_length() {
        let given = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "total_steps": 12}));
        let mut split =
            policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "epochs": 3, "steps_per_epoch": 4}));
        assert!(!split.needs_total());
        split.set_total(99);
        assert_eq!(split.total(), Some(12), "torch: epochs x steps_per_epoch");
        assert_eq!(rates(&split, 0.04, 12), rates(&given, 0.04, 12));
        let mut run = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0}));
        assert!(run.needs_total() && run.validate().is_ok());
        assert!((run.lr(0.04, 0) - 0.04).abs() < 1e-12, "step 0 is the initial rate before the length is known");
        run.set_total(12);
        assert_eq!(rates(&run, 0.04, 12), rates(&given, 0.04, 12));
        let half = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "epochs": 3}));
        assert_eq!(half.validate().unwrap_err().0, "steps_per_epoch");
    }

    #[test]
    fn one_cycle_takes_total_steps_steps_and_refuses_the_next_as_torch_does() {
        // torch: `total_steps = 3` gives a rate for step 3 and raises "Tried to step 4 times".
        let p = policy(serde_json::json!({"policy": "OneCycleLR", "max_lr": 1.0, "total_steps": 3}));
        assert!((0..=3).all(|step| p.check_step(step).is_ok()));
        let (key, message) = p.check_step(4).unwrap_err();
        assert_eq!(key, "total_steps");
        assert!(message.contains("stepped 4 times") && message.contains("total_steps = 3"), "{message}");
        let step = policy(serde_json::json!({"policy": "StepLR", "step_size": 1}));
        assert!(step.check_step(u64::MAX).is_ok(), "the other policies go on for ever");
    }
}
