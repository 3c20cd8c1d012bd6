//! A look inside a forward pass ([`Model::forward_inspected`]): a model's forward runs with a
//! [`Probe`], which hands back each named layer's output unchanged (keeping the one asked for)
//! and applies the activation, as guided ReLU when asked. A plain forward runs with
//! [`Probe::none`], which does nothing else.
//!
//! [`Model::forward_inspected`]: torchfit_sdk::Model::forward_inspected

use crate::Activation;
use std::cell::RefCell;
use std::ffi::c_char;
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{Error, Inspected, Inspection, Result};

extern "C" {
    fn torchfit_guided_relu(x: *const torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> *mut c_char;
}

/// What a forward pass is asked to show.
pub(crate) struct Probe<'a> {
    guided_relu: bool,
    capture: Option<&'a str>,
    /// The captured output, and the names of the layers passed (for the error when the name
    /// asked for is none of them).
    seen: RefCell<(Option<Tensor>, Vec<String>)>,
}

impl Probe<'static> {
    /// A plain forward pass.
    pub(crate) fn none() -> Self {
        Probe { guided_relu: false, capture: None, seen: RefCell::new((None, Vec::new())) }
    }
}

impl<'a> Probe<'a> {
    /// The probe `inspection` asks for.
    pub(crate) fn new(inspection: &'a Inspection) -> Self {
        Probe {
            guided_relu: inspection.guided_relu,
            capture: inspection.capture.as_deref(),
            seen: RefCell::new((None, Vec::new())),
        }
    }

    /// `h`, the output of the layer `name` (a closure, so a plain pass formats no name).
    pub(crate) fn layer(&self, name: impl FnOnce() -> String, h: Tensor) -> Tensor {
        let Some(wanted) = self.capture else { return h };
        let name = name();
        let mut seen = self.seen.borrow_mut();
        if name == wanted {
            seen.0 = Some(h.shallow_clone());
        }
        seen.1.push(name);
        h
    }

    /// `activation` of `h`; guided when the probe asks for guided ReLUs, which only a ReLU
    /// network can give.
    pub(crate) fn activate(&self, activation: Activation, h: &Tensor) -> Result<Tensor> {
        match (self.guided_relu, activation) {
            (false, _) => activation.apply(h),
            (true, Activation::Relu) => guided_relu(h),
            (true, other) => Err(Error::msg(format!(
                "guided backpropagation follows ReLU's gradient; this model's activation is `{}`",
                other.name()
            ))),
        }
    }

    /// What the pass gives: its `output` and the layer it was asked to keep; an error listing
    /// the layers when the name asked for is none of them.
    pub(crate) fn finish(self, output: Tensor) -> Result<Inspected> {
        let (captured, names) = self.seen.into_inner();
        match (self.capture, captured) {
            (Some(wanted), None) => {
                Err(Error::msg(format!("the model has no layer `{wanted}`; its layers are {}", names.join(", "))))
            }
            (_, captured) => Ok(Inspected { output, captured }),
        }
    }
}

/// Implements [`torchfit_sdk::Model`]'s `forward` and `forward_inspected` through the model's
/// `forward_probed(&self, x, train, probe)`: a plain pass with [`Probe::none`], an inspected one
/// in evaluation mode with the probe the inspection asks for.
macro_rules! probed_model {
    () => {
        fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
            self.forward_probed(x, train, &$crate::probe::Probe::none())
        }

        fn forward_inspected(
            &self,
            x: &Tensor,
            inspection: &torchfit_sdk::Inspection,
        ) -> Result<torchfit_sdk::Inspected> {
            let probe = $crate::probe::Probe::new(inspection);
            let output = self.forward_probed(x, false, &probe)?;
            probe.finish(output)
        }
    };
}
pub(crate) use probed_model;

/// ReLU of `x` whose backward passes only the positive part of the incoming gradient (the C++
/// side: `cpp/guided_relu.cpp`).
pub(crate) fn guided_relu(x: &Tensor) -> Result<Tensor> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    // SAFETY: `x` is a live tensor for the call; on success `out` is a new `at::Tensor*` whose
    // ownership passes to the `Tensor` made from it.
    let error = unsafe { torchfit_guided_relu(x.as_ptr(), &mut out) };
    // SAFETY: the entry point's answer, read once.
    unsafe { crate::shim::take_error(error) }.map_err(|m| Error::msg(format!("guided ReLU: {m}")))?;
    // SAFETY: see above.
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchfit_sdk::tch::{Device, Kind};

    #[test]
    fn guided_relu_passes_back_only_positive_gradients_where_the_input_was_positive() {
        let x = Tensor::from_slice(&[-1.0f32, 2.0, 3.0, 4.0]).set_requires_grad(true);
        let y = guided_relu(&x).unwrap();
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), [0.0, 2.0, 3.0, 4.0], "relu's values");
        let upstream = Tensor::from_slice(&[5.0f32, -6.0, 7.0, 0.5]);
        let g = Tensor::run_backward(&[(&y * &upstream).sum(Kind::Float)], &[&x], false, false);
        // Plain ReLU would give [0, -6, 7, 0.5]; guided drops the negative -6 as well.
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), [0.0, 0.0, 7.0, 0.5]);
    }

    #[test]
    fn a_capture_of_no_layer_names_the_layers_there_are() {
        let inspection = Inspection { guided_relu: false, capture: Some("conv.9".into()) };
        let probe = Probe::new(&inspection);
        let h = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let h = probe.layer(|| "conv.0".into(), h);
        let h = probe.layer(|| "output".into(), h);
        let e = probe.finish(h).unwrap_err().to_string();
        assert!(e.contains("`conv.9`") && e.contains("conv.0, output"), "{e}");
    }

    fn ctx(shape: &[i64], outputs: i64) -> torchfit_sdk::BuildContext {
        torchfit_sdk::BuildContext {
            input_shape: shape.to_vec(),
            n_outputs: outputs,
            ..torchfit_sdk::testing::context("module")
        }
    }

    fn param(model: &dyn torchfit_sdk::Model, name: &str) -> Tensor {
        model.parameters().into_iter().find(|(n, _)| n == name).unwrap().1.detach()
    }

    #[test]
    fn an_mlps_guided_gradient_is_the_backward_pass_with_negative_gradients_cut_at_each_relu() {
        torchfit_sdk::tch::manual_seed(3);
        let model = crate::mlp::build(&serde_json::json!({"hidden": [16]}), &ctx(&[6], 4)).unwrap();
        let x = Tensor::randn([1, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let target = 2;
        let guided = Inspection { guided_relu: true, capture: None };
        let out = model.forward_inspected(&x, &guided).unwrap().output;
        assert!(out.allclose(&model.forward(&x, false).unwrap(), 0.0, 0.0, false), "the outputs do not change");
        let got = Tensor::run_backward(&[out.select(1, target).sum(Kind::Float)], &[&x], false, false);
        // By hand: the output row's weights reach the hidden ReLUs; only their positive part
        // passes, where the pre-activation was positive, then back through the first layer.
        let (w1, b1, w2) = (
            param(model.as_ref(), "hidden.0.weight"),
            param(model.as_ref(), "hidden.0.bias"),
            param(model.as_ref(), "output.weight"),
        );
        let pre = x.detach().matmul(&w1.tr()) + &b1;
        let upstream = w2.select(0, target).unsqueeze(0);
        let gate = pre.gt(0.0).to_kind(Kind::Float);
        let want = (upstream.clamp_min(0.0) * &gate).matmul(&w1);
        assert!(got[0].allclose(&want, 1e-5, 1e-6, false), "{} against {want}", got[0]);
        let plain = (upstream * gate).matmul(&w1);
        assert!(!got[0].allclose(&plain, 1e-5, 1e-6, false), "guided differs from the plain gradient here");
    }

    #[test]
    fn a_cnn_keeps_the_convolutions_output_as_a_forward_hook_on_it_would_see_it() {
        let model = crate::cnn::build(
            &serde_json::json!({"conv": [{"channels": 3, "padding": 1, "pool": 2}, {"channels": 5, "batch_norm": true}], "dense": [7]}),
            &ctx(&[1, 8, 8], 10),
        )
        .unwrap();
        let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let capture = |name: &str| {
            let inspection = Inspection { guided_relu: false, capture: Some(name.into()) };
            model.forward_inspected(&x, &inspection)
        };
        let conv0 = capture("conv.0").unwrap().captured.unwrap();
        let want = x.conv2d(
            &param(model.as_ref(), "conv.0.weight"),
            Some(param(model.as_ref(), "conv.0.bias")),
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        );
        assert!(conv0.allclose(&want, 1e-5, 1e-6, false));
        assert_eq!(capture("conv_bn.1").unwrap().captured.unwrap().size(), [2, 5, 2, 2]);
        assert_eq!(capture("dense.0").unwrap().captured.unwrap().size(), [2, 7]);
        let e = capture("conv.7").unwrap_err().to_string();
        assert!(e.contains("conv.0, conv.1, conv_bn.1, dense.0, output"), "{e}");
    }

    #[test]
    fn guided_backpropagation_is_refused_for_a_network_without_relus() {
        let model = crate::mlp::build(&serde_json::json!({"activation": "selu"}), &ctx(&[6], 4)).unwrap();
        let x = Tensor::randn([1, 6], (Kind::Float, Device::Cpu));
        let e = model.forward_inspected(&x, &Inspection { guided_relu: true, capture: None }).unwrap_err();
        assert!(e.to_string().contains("`selu`"), "{e}");
    }

    #[test]
    fn a_resnet_shows_its_blocks_under_torchvisions_module_names() {
        let model =
            crate::resnet::build_small(&serde_json::json!({"widths": [2, 4], "blocks": [1, 1]}), &ctx(&[1, 8, 8], 3))
                .unwrap();
        let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let capture =
            |name: &str| model.forward_inspected(&x, &Inspection { guided_relu: true, capture: Some(name.into()) });
        let block = capture("layer2.0").unwrap();
        assert_eq!(block.captured.unwrap().size(), [2, 4, 4, 4], "the second stage halves the resolution");
        assert!(block.output.allclose(&model.forward(&x, false).unwrap(), 0.0, 0.0, false));
        let e = capture("layer3.0").unwrap_err().to_string();
        let listed = "conv1, bn1, layer1.0.conv1, layer1.0.bn1, layer1.0.conv2, layer1.0.bn2, layer1.0, layer2.0.conv1";
        assert!(e.contains(listed) && e.contains("layer2.0.downsample.1, layer2.0, fc"), "{e}");
    }

    #[test]
    fn a_unet_shows_its_levels_under_their_parameter_names() {
        let model =
            crate::unet::build(&serde_json::json!({"depth": 2, "base_channels": 2}), &ctx(&[1, 8, 8], 1)).unwrap();
        let x = Tensor::randn([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let capture =
            |name: &str| model.forward_inspected(&x, &Inspection { guided_relu: true, capture: Some(name.into()) });
        assert_eq!(capture("conv2.1").unwrap().captured.unwrap().size(), [1, 4, 4, 4], "the second level, halved");
        assert_eq!(capture("up1").unwrap().captured.unwrap().size(), [1, 2, 8, 8], "back to the input's size");
        let e = capture("nope").unwrap_err().to_string();
        assert!(e.contains("conv1.0, conv1_bn.0, conv1.1") && e.contains("up2, dec2.0") && e.ends_with("final"), "{e}");
    }
}
