//! The library API inside a distributed job: two ranks as two threads of this process, each
//! with its own `NeuralNet`, against one net on the whole batch.

use std::sync::Arc;
use std::time::Duration;
use tch::{Kind, Tensor};
use torchfit::distributed::{Distributed, DistributedConfig, Launch};
use torchfit_c10d::Store;

const SETTINGS: &[(&str, &str)] = &[
    ("module__hidden", "[64, 32]"),
    ("optimizer__name", "\"sgd\""),
    ("optimizer__lr", "0.1"),
    ("optimizer__momentum", "0.9"),
    ("max_epochs", "2"),
    ("threads", "1"),
    ("seed", "7"),
];

/// A net on the digits, the first 1600 for training and the rest for validation, at
/// `batch_size` per process; trained, it returns its parameters and history.
fn train(batch_size: usize, dist: Option<Distributed>) -> (Vec<(String, Vec<f64>)>, serde_json::Value) {
    train_with(batch_size, dist, &[])
}

fn train_with(
    batch_size: usize,
    dist: Option<Distributed>,
    extra: &[(&str, &str)],
) -> (Vec<(String, Vec<f64>)>, serde_json::Value) {
    let (x, y) = torchfit_tests::digits();
    let mut net = torchfit::classifier();
    net.registry_mut()
        .add("grad_watch", "0.0.1", "records gradient sums", torchfit_sdk::Constructor::Callback(grad_watch))
        .unwrap();
    net.set_params(SETTINGS).unwrap();
    net.set_params(extra).unwrap();
    net.set_param("iterator_train__batch_size", batch_size as i64).unwrap();
    net.set_param("callbacks__print_log", false).unwrap();
    net.set_distributed(dist.map(Arc::new));
    let n = x.size()[0];
    let (xt, yt, xv, yv) =
        (x.narrow(0, 0, 1600), y.narrow(0, 0, 1600), x.narrow(0, 1600, n - 1600), y.narrow(0, 1600, n - 1600));
    net.fit_with_valid(&xt, &yt, &xv, &yv).unwrap();
    let params = net
        .model()
        .unwrap()
        .parameters()
        .into_iter()
        .map(|(name, t)| (name, Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()))
        .collect();
    (params, net.history().to_json())
}

/// Records each training batch's gradient sum after its step (`grad_sum`).
struct GradWatch;
impl torchfit_sdk::Callback for GradWatch {
    fn on_batch_end(
        &mut self,
        h: &mut dyn torchfit_sdk::Host,
        o: &torchfit_sdk::BatchOutput<'_>,
    ) -> torchfit_sdk::Result<torchfit_sdk::Flow> {
        if o.batch.training {
            let sum: f64 = h.parameters().iter().map(|(_, p)| p.grad().sum(Kind::Double).double_value(&[])).sum();
            h.record_batch("grad_sum", sum.into())?;
        }
        Ok(torchfit_sdk::Flow::Continue)
    }
}

fn grad_watch(
    _config: &serde_json::Value,
    _ctx: &torchfit_sdk::BuildContext,
) -> torchfit_sdk::Result<Box<dyn torchfit_sdk::Callback>> {
    Ok(Box::new(GradWatch))
}

/// The largest difference between two sets of parameters of the same shapes.
fn max_diff(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for ((name, u), (_, v)) in a.iter().zip(b) {
        assert_eq!(u.len(), v.len(), "{name}");
        worst = u.iter().zip(v).fold(worst, |w, (x, y)| w.max((x - y).abs()));
    }
    worst
}

fn losses(h: &serde_json::Value, key: &str) -> Vec<f64> {
    h.as_array().unwrap().iter().map(|e| e[key].as_f64().unwrap()).collect()
}

/// Runs `f(rank, distributed)` on two ranks, each a thread of this process, with libtorch's
/// flight recorder off: it registers each process group in a map without a lock, so groups
/// used by several threads of one process may crash it (`engine/c10d/tests/collectives.rs`).
fn two_ranks<T: Send>(f: impl Fn(usize, Distributed) -> T + Sync) -> Vec<T> {
    static OFF: std::sync::Once = std::sync::Once::new();
    OFF.call_once(|| std::env::set_var("TORCH_FR_BUFFER_SIZE", "0"));
    let store = Store::serve("127.0.0.1", 0, 2, Duration::from_secs(60)).unwrap();
    let port = store.port();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let f = &f;
                s.spawn(move || {
                    let launch = Launch {
                        rank,
                        world_size: 2,
                        local_rank: rank,
                        local_world_size: 2,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        agent_store: true,
                        restart_count: 0,
                    };
                    let config = DistributedConfig { timeout: 60.0, ..DistributedConfig::default() };
                    f(rank, Distributed::join(launch, &config).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_processes_at_half_the_batch_equal_one_process_and_each_other() {
    let _serial = torchfit_tests::serial();
    let (one_params, one_history) = train(32, None);
    let ranks = two_ranks(|_, d| train(16, Some(d)));
    let (r0, r1) = (&ranks[0], &ranks[1]);
    assert!(r0.0 == r1.0, "the ranks' parameters differ by up to {}", max_diff(&r0.0, &r1.0));
    assert_eq!(losses(&r0.1, "train_loss"), losses(&r1.1, "train_loss"), "and so are their histories");
    let worst = max_diff(&one_params, &r0.0);
    assert!(worst < 1e-5, "parameters differ from one process's by {worst}");
    for key in ["train_loss", "valid_loss", "valid_acc"] {
        for (a, b) in losses(&one_history, key).iter().zip(losses(&r0.1, key)) {
            assert!(((a - b) / a).abs() < 1e-6, "{key}: one process {a}, two {b}");
        }
    }
    // Batch sizes in history are the global ones.
    let sizes = |h: &serde_json::Value| -> Vec<i64> {
        h[0]["batches"].as_array().unwrap().iter().filter_map(|b| b["train_batch_size"].as_i64()).collect()
    };
    assert_eq!(sizes(&one_history), sizes(&r0.1));
    assert_eq!(sizes(&r0.1).iter().sum::<i64>(), 1600);
}

#[test]
fn two_processes_accumulating_two_batches_equal_one_process_and_reduce_only_each_groups_last() {
    let _serial = torchfit_tests::serial();
    let accumulate = [("accumulate_grad_batches", "2"), ("callbacks__grads__type", "\"grad_watch\"")];
    let (one_params, one_history) = train_with(32, None, &accumulate);
    let ranks = two_ranks(|_, d| train_with(16, Some(d), &accumulate));
    let (r0, r1) = (&ranks[0], &ranks[1]);
    assert!(r0.0 == r1.0, "the ranks' parameters differ by up to {}", max_diff(&r0.0, &r1.0));
    let worst = max_diff(&one_params, &r0.0);
    assert!(worst < 1e-5, "parameters differ from one process's by {worst}");
    for (a, b) in losses(&one_history, "train_loss").iter().zip(losses(&r0.1, "train_loss")) {
        assert!(((a - b) / a).abs() < 1e-6, "train_loss: one process {a}, two {b}");
    }
    // The gradients after a group's first batch are each rank's own (no all-reduce), those
    // after its last batch the ranks' average, the same on both.
    let sums = |h: &serde_json::Value| -> Vec<f64> {
        h[0]["batches"].as_array().unwrap().iter().filter_map(|b| b["grad_sum"].as_f64()).collect()
    };
    let (s0, s1) = (sums(&r0.1), sums(&r1.1));
    assert_eq!(s0.len(), 50);
    for (i, (a, b)) in s0.iter().zip(&s1).enumerate() {
        match i % 2 {
            0 => assert_ne!(a, b, "batch {i} is a group's first: its gradients stay on their rank"),
            _ => assert_eq!(a, b, "batch {i} ends a group: its gradients are all-reduced"),
        }
    }
}

#[test]
fn validation_shared_by_two_ranks_is_one_process_validation_bit_for_bit() {
    // No training (lr 0): the parameters stay rank 0's initial ones, those of one process.
    let _serial = torchfit_tests::serial();
    let frozen = [("optimizer__lr", "0.0"), ("optimizer__momentum", "0.0"), ("iterator_valid__batch_size", "16")];
    let (_, one) = train_with(32, None, &frozen);
    let ranks = two_ranks(|_, d| train_with(16, Some(d), &frozen).1);
    let valid = |h: &serde_json::Value| -> Vec<serde_json::Value> {
        let batches = h[0]["batches"].as_array().unwrap();
        batches.iter().filter(|b| b.get("valid_loss").is_some()).cloned().collect()
    };
    for h in &ranks {
        assert_eq!(valid(h), valid(&one), "each validation batch, size and loss");
        for key in ["valid_loss", "valid_acc"] {
            assert_eq!(losses(h, key), losses(&one, key), "{key}");
        }
    }
}

#[test]
fn a_rank_whose_model_differs_is_refused_on_every_rank() {
    let _serial = torchfit_tests::serial();
    let errors = two_ranks(|rank, dist| {
        let mut net = torchfit::classifier();
        let hidden = if rank == 0 { "[16]" } else { "[17]" };
        net.set_params(&[("module__hidden", hidden), ("max_epochs", "1")]).unwrap();
        net.set_distributed(Some(Arc::new(dist)));
        let x = Tensor::zeros([8, 4], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::zeros([8], (Kind::Int64, tch::Device::Cpu));
        net.fit(&x, &y).map(|_| ()).unwrap_err().to_string()
    });
    assert!(errors[0].contains("another rank's model differs from rank 0's"), "{}", errors[0]);
    assert!(errors[1].contains("this rank's model differs from rank 0's"), "{}", errors[1]);
}
