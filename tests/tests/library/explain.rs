//! `NeuralNet::input_gradient`, the source of `torchfit explain`'s maps, on the digits: for a
//! model without hidden layers the gradient of output k is that output's weight row for every
//! sample, and computing it changes no parameter's gradient.

use torchfit_tests::{digits, serial};

#[test]
fn a_linear_models_input_gradient_is_its_weight_row_and_leaves_the_parameters_alone() {
    let _serial = serial();
    let (x, y) = digits();
    let mut net = torchfit::classifier();
    net.set_params(&[("module__hidden", "[]"), ("max_epochs", "2"), ("callbacks__print_log", "false")]).unwrap();
    net.fit(&x, &y).unwrap();
    let model = net.model().unwrap();
    let weight = model.parameters().into_iter().find(|(n, _)| n == "output.weight").unwrap().1.copy();
    let grads_before: Vec<bool> = model.parameters().iter().map(|(_, p)| p.grad().defined()).collect();
    let samples = x.narrow(0, 0, 3);
    for k in [0, 7] {
        let g = net.input_gradient(&samples, k).unwrap();
        assert_eq!(g.size(), samples.size());
        for i in 0..3 {
            let diff = (g.get(i) - weight.get(k)).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "sample {i}, output {k}: {diff}");
        }
    }
    let grads_after: Vec<bool> = net.model().unwrap().parameters().iter().map(|(_, p)| p.grad().defined()).collect();
    assert_eq!(grads_before, grads_after);
    assert!(net.input_gradient(&samples, 10).unwrap_err().to_string().contains("10"));
}
