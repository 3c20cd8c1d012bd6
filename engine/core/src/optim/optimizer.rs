//! The optimizer at run time: parameters assigned to groups, per-parameter state owned as
//! tensors (checkpointed and restored exactly), and the step.

use super::settings::{applies, Hyper, Implementation, OptimizerConfig, OptimizerName, HYPER_KEYS};
use super::{adam, multi_tensor, rmsprop, sgd};
use crate::{Error, Result};
use tch::Tensor;
use torchfit_sdk::glob::Glob;

/// One parameter group: its hyper-parameters and the indices of its parameters.
#[derive(Debug, Clone)]
pub struct Group {
    /// Hyper-parameters.
    pub hyper: Hyper,
    /// Indices into the optimizer's parameter list.
    pub params: Vec<usize>,
}

/// Per-parameter state: step count and named buffers (`momentum_buffer`, `exp_avg`, ...).
#[derive(Debug, Default)]
pub(super) struct ParamState {
    pub step: i64,
    pub buffers: Vec<(&'static str, Tensor)>,
    /// The fused Adam kernels' copy of `step`: a float32 scalar on the parameter's device that
    /// they increment and read themselves (made from `step` when first needed; not saved).
    pub device_step: Option<Tensor>,
}

impl ParamState {
    /// Buffer `name`, if the parameter has one yet.
    pub fn existing(&self, name: &str) -> Option<&Tensor> {
        self.buffers.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// Sets buffer `name`.
    pub fn set(&mut self, name: &'static str, value: Tensor) {
        match self.buffers.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.buffers.push((name, value)),
        }
    }

    pub fn buffer(&mut self, name: &'static str, init: impl FnOnce() -> Result<Tensor>) -> Result<&mut Tensor> {
        let i = match self.buffers.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.buffers.push((name, init()?));
                self.buffers.len() - 1
            }
        };
        Ok(&mut self.buffers[i].1)
    }
}

/// An optimizer over named parameters with tensor-owned state.
#[derive(Debug)]
pub struct Optimizer {
    name: OptimizerName,
    implementation: Implementation,
    params: Vec<(String, Tensor)>,
    groups: Vec<Group>,
    state: Vec<ParamState>,
    /// libtorch's own optimizer over the same parameters, used only to release their gradients:
    /// its `zero_grad` sets them to none, as `torch.optim` does by default, so that backward
    /// writes fresh gradients instead of zeroing and then accumulating into the old ones (two
    /// kernels per parameter per step). tch exposes no other way to reset a gradient to none.
    releaser: tch::COptimizer,
}

impl Optimizer {
    /// An optimizer over `params` (shallow handles to the model's parameters).
    pub fn new(config: &OptimizerConfig, params: Vec<(String, Tensor)>) -> Result<Self> {
        if config.name == OptimizerName::Rmsprop
            && matches!(config.implementation, Implementation::Foreach | Implementation::Fused)
        {
            return Err(Error::Config {
                origin: String::new(),
                key: "implementation".into(),
                message: "rmsprop runs as a for loop (`\"auto\"` or `\"for_loop\"`); `\"foreach\"` and `\"fused\"` are for sgd, adam and adamw".into(),
            });
        }
        let mut base = Hyper::defaults(config.name);
        base.apply(config.name, &config.hyper(), "")?;
        let mut assigned = vec![false; params.len()];
        let mut groups = Vec::new();
        for (g, gc) in config.param_groups.iter().enumerate() {
            let mut hyper = base.clone();
            hyper.apply(config.name, &gc.hyper(), &format!("param_groups[{g}]."))?;
            let key = format!("param_groups[{g}].params");
            let globs = gc
                .params
                .iter()
                .map(|p| Glob::new(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| Error::Config { origin: String::new(), key: key.clone(), message })?;
            let members: Vec<usize> =
                (0..params.len()).filter(|&i| !assigned[i] && globs.iter().any(|p| p.matches(&params[i].0))).collect();
            if members.is_empty() {
                return Err(Error::Config {
                    origin: String::new(),
                    key,
                    message: format!("{:?} matches no parameter that is not already in an earlier group", gc.params),
                });
            }
            members.iter().for_each(|&i| assigned[i] = true);
            groups.push(Group { hyper, params: members });
        }
        let rest: Vec<usize> = (0..params.len()).filter(|&i| !assigned[i]).collect();
        if !rest.is_empty() || groups.is_empty() {
            groups.push(Group { hyper: base, params: rest });
        }
        let state = params.iter().map(|_| ParamState::default()).collect();
        let mut releaser = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
        for (_, p) in &params {
            releaser.add_parameters(p, 0)?;
        }
        Ok(Self { name: config.name, implementation: config.implementation, params, groups, state, releaser })
    }

    /// The update rule.
    pub fn name(&self) -> OptimizerName {
        self.name
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Learning rate of group `group`.
    pub fn lr(&self, group: usize) -> Option<f64> {
        self.groups.get(group).map(|g| g.hyper.lr)
    }

    /// Sets the learning rate of group `group`; false if there is no such group.
    pub fn set_lr(&mut self, group: usize, lr: f64) -> bool {
        self.groups.get_mut(group).map(|g| g.hyper.lr = lr).is_some()
    }

    /// The parameter names of group `group`, in the group's order.
    pub fn group_parameters(&self, group: usize) -> Option<Vec<String>> {
        self.groups.get(group).map(|g| g.params.iter().map(|&i| self.params[i].0.clone()).collect())
    }

    /// Hyper-parameter `key` of group `group` by its `torch.optim` name, as JSON; the error
    /// says why there is none.
    pub fn hyper(&self, group: usize, key: &str) -> std::result::Result<serde_json::Value, String> {
        let g = self.groups.get(group).ok_or_else(|| format!("no parameter group {group}"))?;
        if !applies(key, self.name) {
            return Err(format!("{:?} has no hyper-parameter `{key}`", self.name).to_lowercase());
        }
        g.hyper.get(key).ok_or_else(|| format!("unknown hyper-parameter `{key}`"))
    }

    /// Sets hyper-parameter `key` of group `group` (see [`Optimizer::hyper`]).
    pub fn set_hyper(&mut self, group: usize, key: &str, value: &serde_json::Value) -> std::result::Result<(), String> {
        self.hyper(group, key)?;
        self.groups[group].hyper.set(key, value)
    }

    /// The parameters it updates.
    pub fn parameters(&self) -> impl Iterator<Item = &Tensor> {
        self.params.iter().map(|(_, t)| t)
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&mut self) {
        if self.releaser.zero_grad().is_err() {
            for (_, p) in &mut self.params {
                p.zero_grad();
            }
        }
    }

    /// One update of every parameter that requires a gradient and has one.
    pub fn step(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let Self { name, implementation, params, groups, state, .. } = self;
        for group in groups.iter() {
            let mut due = Vec::with_capacity(group.params.len());
            for &i in &group.params {
                let p = &params[i].1;
                if !p.requires_grad() {
                    continue;
                }
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                state[i].step += 1;
                due.push((i, grad));
            }
            let Some(&(first, _)) = due.first() else { continue };
            match implementation.resolve(params[first].1.device()) {
                Implementation::ForLoop | Implementation::Auto => for_loop(*name, &group.hyper, params, state, due)?,
                chosen => multi_tensor::step(chosen, *name, &group.hyper, params, state, due)?,
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors: `<param>.<buffer>` and `<param>.step`, plus each
    /// group's hyper-parameters, `group<i>.<name>` (callbacks may change them during a run).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            if st.step > 0 {
                out.push((format!("{name}.step"), Tensor::from(st.step)));
            }
            for (b, t) in &st.buffers {
                out.push((format!("{name}.{b}"), t.shallow_clone()));
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            for (key, _) in HYPER_KEYS.iter().filter(|(k, _)| applies(k, self.name)) {
                let values: Vec<f64> = match g.hyper.get(key) {
                    Some(serde_json::Value::Array(v)) => v.iter().filter_map(serde_json::Value::as_f64).collect(),
                    Some(serde_json::Value::Bool(b)) => vec![b as u8 as f64],
                    Some(v) => v.as_f64().into_iter().collect(),
                    None => continue,
                };
                let t = if key == &"betas" { Tensor::from_slice(&values) } else { Tensor::from(values[0]) };
                out.push((format!("group{i}.{key}"), t));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state_dict`] returned (copies, so the source may be dropped).
    pub fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let find = |key: &str| state.iter().find(|(k, _)| k == key).map(|(_, t)| t);
        let buffer_names: &[&'static str] = &["momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg", "grad_avg"];
        for ((name, p), st) in self.params.iter().zip(self.state.iter_mut()) {
            st.step = find(&format!("{name}.step")).map(|t| t.int64_value(&[])).unwrap_or(0);
            st.device_step = None;
            st.buffers.clear();
            for b in buffer_names {
                if let Some(t) = find(&format!("{name}.{b}")) {
                    st.buffers.push((b, t.f_to_device(p.device())?.f_detach_copy()?));
                }
            }
        }
        for (i, g) in self.groups.iter_mut().enumerate() {
            for (key, _) in HYPER_KEYS.iter().filter(|(k, _)| applies(k, self.name)) {
                let Some(t) = find(&format!("group{i}.{key}")) else { continue };
                let values = Vec::<f64>::try_from(t.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?)?;
                let value = match (*key, values.as_slice()) {
                    ("betas", [b1, b2]) => serde_json::json!([b1, b2]),
                    ("nesterov" | "centered", [v]) => serde_json::json!(*v != 0.0),
                    (_, [v]) => serde_json::json!(v),
                    _ => continue,
                };
                g.hyper.set(key, &value).map_err(|m| Error::Data(format!("optimizer state `group{i}.{key}`: {m}")))?;
            }
        }
        Ok(())
    }
}

/// The single-tensor update of one group's parameters `due` (index, gradient), in order.
fn for_loop(
    name: OptimizerName,
    hyper: &Hyper,
    params: &mut [(String, Tensor)],
    state: &mut [ParamState],
    due: Vec<(usize, Tensor)>,
) -> Result<()> {
    // SGD's `-lr` as a 0-dim tensor of the parameters' dtype, made once per group and step: not
    // once per parameter, and not cast again by every update (libtorch casts a scalar operand
    // of another dtype to the parameter's, the same value).
    let mut neg_lr: Option<Tensor> = None;
    for (i, grad) in due {
        let p = &mut params[i].1;
        let state = &mut state[i];
        match name {
            OptimizerName::Sgd => {
                let lr = match neg_lr.take() {
                    Some(t) if t.kind() == p.kind() => t,
                    _ => Tensor::from(-hyper.lr).f_to_kind(p.kind())?,
                };
                sgd::update(p, grad, state, hyper, &lr)?;
                neg_lr = Some(lr);
            }
            OptimizerName::Adam => adam::update(p, grad, state, hyper, false)?,
            OptimizerName::Adamw => adam::update(p, grad, state, hyper, true)?,
            OptimizerName::Rmsprop => rmsprop::update(p, grad, state, hyper)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_parameters_are_read_and_set_by_name_and_kept_in_the_state() {
        let w = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let config: OptimizerConfig = serde_json::from_value(serde_json::json!({"name": "adamw"})).unwrap();
        let mut opt = Optimizer::new(&config, vec![("w".into(), w)]).unwrap();
        assert_eq!(opt.hyper(0, "betas").unwrap(), serde_json::json!([0.9, 0.999]));
        opt.set_hyper(0, "betas", &serde_json::json!([0.85, 0.999])).unwrap();
        assert!(opt.hyper(0, "momentum").unwrap_err().contains("momentum"), "AdamW has no momentum");
        assert!(opt.set_hyper(0, "betas", &serde_json::json!([1.5, 0.9])).is_err());
        assert!(opt.hyper(1, "lr").is_err());
        assert_eq!(opt.group_parameters(0).unwrap(), ["w"]);
        let state = opt.state_dict();
        let w2 = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut restored = Optimizer::new(&config, vec![("w".into(), w2)]).unwrap();
        restored.load_state_dict(&state).unwrap();
        assert_eq!(restored.hyper(0, "betas").unwrap(), serde_json::json!([0.85, 0.999]));
    }
    use tch::{Device, Kind};

    fn config(toml_text: &str) -> OptimizerConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn params() -> Vec<(String, Tensor)> {
        ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]
            .iter()
            .map(|n| (n.to_string(), Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true)))
            .collect()
    }

    #[test]
    fn groups_take_matching_parameters_and_the_rest_go_last() {
        let opt =
            Optimizer::new(&config("name='sgd'\nlr=0.1\n[[param_groups]]\nparams='*.bias'\nlr=0.5"), params()).unwrap();
        assert_eq!(opt.groups().len(), 2);
        assert_eq!(opt.groups()[0].params, vec![1, 3]);
        assert_eq!(opt.lr(0), Some(0.5));
        assert_eq!(opt.lr(1), Some(0.1));
    }

    #[test]
    fn a_key_of_another_optimizer_is_refused_by_name() {
        for bad in ["momentum=-1", "weight_decay=-0.1", "lr=nan"] {
            let err = Optimizer::new(&config(bad), params()).unwrap_err().to_string();
            assert!(err.contains(bad.split('=').next().unwrap()) && err.contains(">= 0"), "{bad}: {err}");
        }
        let err = Optimizer::new(&config("name='adam'\nmomentum=0.9"), params()).unwrap_err();
        assert!(err.to_string().contains("momentum") && err.to_string().contains("adam"), "{err}");
    }

    #[test]
    fn a_group_that_matches_nothing_is_an_error() {
        let err = Optimizer::new(&config("[[param_groups]]\nparams=['conv.*']"), params()).unwrap_err();
        assert!(err.to_string().contains("param_groups[0].params"), "{err}");
    }

    #[test]
    fn frozen_parameters_are_not_updated() {
        let mut ps = params();
        let frozen = ps[0].1.set_requires_grad(false);
        ps[0].1 = frozen;
        let mut opt = Optimizer::new(&config("lr=1.0"), ps).unwrap();
        let loss = opt.params.iter().map(|(_, p)| p.sum(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b);
        loss.backward();
        opt.step().unwrap();
        assert_eq!(opt.params[0].1.double_value(&[0]), 1.0);
        assert_eq!(opt.params[1].1.double_value(&[0]), 0.0);
    }

    #[test]
    fn state_round_trips_through_a_state_dict() {
        let mut opt = Optimizer::new(&config("name='adam'\nlr=0.1"), params()).unwrap();
        for _ in 0..3 {
            opt.zero_grad();
            let loss = opt.params.iter().map(|(_, p)| (p * p).sum(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b);
            loss.backward();
            opt.step().unwrap();
        }
        let saved: Vec<(String, Tensor)> = opt.state_dict().into_iter().map(|(k, t)| (k, t.copy())).collect();
        assert!(saved.iter().any(|(k, _)| k == "l1.weight.exp_avg_sq"));
        let mut fresh = Optimizer::new(&config("name='adam'\nlr=0.5"), params()).unwrap();
        fresh.load_state_dict(&saved).unwrap();
        assert_eq!(fresh.lr(0), Some(0.1));
        for ((k1, a), (k2, b)) in opt.state_dict().iter().zip(fresh.state_dict().iter()) {
            assert_eq!(k1, k2);
            assert!(a.equal(b), "{k1} differs");
        }
    }

    /// Steps `steps` (global step numbers) of a quadratic whose first parameter takes part from
    /// step 2 on, so that it starts later than the others.
    fn quadratic(mut opt: Optimizer, steps: std::ops::Range<usize>) -> Optimizer {
        for s in steps {
            opt.zero_grad();
            let loss = opt
                .params
                .iter()
                .enumerate()
                .filter(|(i, _)| *i > 0 || s >= 2)
                .map(|(i, (_, p))| (p * (i as f64 + 1.0)).square().sum(Kind::Float))
                .fold(Tensor::from(0f32), |a, b| a + b);
            loss.backward();
            opt.step().unwrap();
        }
        opt
    }

    fn values(opt: &Optimizer) -> Vec<f32> {
        opt.params.iter().flat_map(|(_, p)| Vec::<f32>::try_from(p.detach()).unwrap()).collect()
    }

    #[test]
    fn foreach_and_fused_give_the_for_loops_result_with_late_parameters_and_across_a_state_round_trip() {
        for rule in
            ["name='sgd'\nmomentum=0.9\ndampening=0.5\nweight_decay=0.1", "name='adam'\nlr=0.1", "name='adamw'\nlr=0.1"]
        {
            let fresh = |text: &str| Optimizer::new(&config(text), params()).unwrap();
            let for_loop = format!("{rule}\nimplementation='for_loop'");
            let reference = values(&quadratic(fresh(&for_loop), 0..6));
            for implementation in ["foreach", "fused"] {
                let text = format!("{rule}\nimplementation='{implementation}'");
                let resolved = fresh(&text).implementation.resolve(Device::Cpu);
                assert_eq!(serde_json::to_value(resolved).unwrap(), serde_json::json!(implementation));
                // Three steps with the for loop, the state saved and loaded into this one.
                let first = quadratic(fresh(&for_loop), 0..3);
                let saved: Vec<(String, Tensor)> = first.state_dict().into_iter().map(|(k, t)| (k, t.copy())).collect();
                let shared = first.params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect();
                let mut resumed = Optimizer::new(&config(&text), shared).unwrap();
                resumed.load_state_dict(&saved).unwrap();
                for (name, got) in [("straight", quadratic(fresh(&text), 0..6)), ("resumed", quadratic(resumed, 3..6))]
                {
                    let got = values(&got);
                    for (a, b) in got.iter().zip(&reference) {
                        assert!(
                            (a - b).abs() <= 1e-5 * b.abs() + 1e-6,
                            "{rule} {implementation} {name}: {got:?} vs {reference:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rmsprop_refuses_the_multi_tensor_implementations_by_key() {
        for implementation in ["foreach", "fused"] {
            let err = Optimizer::new(&config(&format!("name='rmsprop'\nimplementation='{implementation}'")), params())
                .unwrap_err();
            assert!(err.to_string().contains("implementation"), "{err}");
        }
        assert_eq!(Implementation::Auto.resolve(Device::Cpu), Implementation::ForLoop);
        assert_eq!(Implementation::Auto.resolve(Device::Cuda(0)), Implementation::Foreach);
    }
}
