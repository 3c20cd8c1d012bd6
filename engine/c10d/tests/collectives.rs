//! Two ranks as two threads of this process, on a store served on a free port of loopback, with
//! libtorch's flight recorder off (see `groups_in_threads`).

use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torchfit_c10d::{ProcessGroup, Reducer, Store, BUCKET_BYTES};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Several process groups in one process need libtorch's flight recorder off: it registers each
/// group in a map without a lock at the group's first collective (SIGSEGV in 9 of 80 runs of this
/// file with it on). Every test calls this before it makes a group.
fn groups_in_threads() {
    static OFF: std::sync::Once = std::sync::Once::new();
    OFF.call_once(|| std::env::set_var("TORCH_FR_BUFFER_SIZE", "0"));
}

/// Runs `f(rank, group)` on two ranks, each on its own thread, and returns their results.
fn two_ranks<T: Send>(f: impl Fn(usize, ProcessGroup) -> T + Sync) -> Vec<T> {
    groups_in_threads();
    let server = Store::serve("127.0.0.1", 0, 2, TIMEOUT).unwrap();
    let port = server.port();
    assert_ne!(port, 0, "a store served on port 0 reports the port it took");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let f = &f;
                s.spawn(move || {
                    let store = Store::connect("127.0.0.1", port, TIMEOUT).unwrap().prefixed("test").unwrap();
                    f(rank, ProcessGroup::gloo(&store, rank, 2, TIMEOUT).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn all_reduce_sums_over_ranks_and_broadcast_copies_the_root() {
    let out = two_ranks(|rank, pg| {
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]) * (rank as f64 + 1.0);
        pg.all_reduce_sum(&mut t).unwrap();
        let b = Tensor::full([3], rank as f64 + 7.0, (Kind::Float, Device::Cpu));
        let c = Tensor::full([2, 2], -(rank as f64), (Kind::Double, Device::Cpu));
        pg.broadcast(&[&b, &c], BUCKET_BYTES, 1).unwrap();
        pg.barrier().unwrap();
        (Vec::<f32>::try_from(t).unwrap(), Vec::<f32>::try_from(b).unwrap(), c.sum(Kind::Double).double_value(&[]))
    });
    for (sum, b, c) in out {
        assert_eq!(sum, [3.0, 6.0]);
        assert_eq!(b, [8.0, 8.0, 8.0]);
        assert_eq!(c, -4.0);
    }
}

#[test]
fn the_reducer_averages_gradients_like_one_process_on_the_whole_batch() {
    tch::manual_seed(3);
    let x = Tensor::randn([8, 5], (Kind::Double, Device::Cpu));
    let w0 = Tensor::randn([3, 5], (Kind::Double, Device::Cpu));
    // Tensors are not Sync: each rank rebuilds them from the values.
    let (xs, ws) = (Vec::<f64>::try_from(x.flatten(0, -1)).unwrap(), Vec::<f64>::try_from(w0.flatten(0, -1)).unwrap());
    // One process on all 8 rows.
    let w = w0.copy().set_requires_grad(true);
    x.matmul(&w.tr()).tanh().pow_tensor_scalar(2).mean(Kind::Double).backward();
    let expected = w.grad();
    let grads = two_ranks(|rank, pg| {
        let x = Tensor::from_slice(&xs).reshape([8, 5]);
        let w = Tensor::from_slice(&ws).reshape([3, 5]).set_requires_grad(true);
        let reducer = Reducer::new(&pg, &[("w".to_owned(), w.shallow_clone())], BUCKET_BYTES).unwrap();
        for _ in 0..2 {
            // Two steps: the second runs on buckets rebuilt in gradient-ready order.
            let _ = w.grad().f_zero_();
            reducer.prepare_for_forward().unwrap();
            let loss = x.narrow(0, 4 * rank as i64, 4).matmul(&w.tr()).tanh().pow_tensor_scalar(2).mean(Kind::Double);
            reducer.prepare_for_backward(&[&loss]).unwrap();
            loss.f_backward().unwrap();
        }
        Vec::<f64>::try_from(w.grad().flatten(0, -1)).unwrap()
    });
    for g in grads {
        let g = Tensor::from_slice(&g).reshape([3, 5]);
        let diff = (&g - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "averaged gradient differs from one process's by {diff}");
    }
}

#[test]
fn ddps_logger_times_the_reducers_sampled_iterations() {
    let stats = two_ranks(|rank, pg| {
        let w = Tensor::ones([256, 256], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let reducer = Reducer::new(&pg, &[("w".to_owned(), w.shallow_clone())], BUCKET_BYTES).unwrap();
        let before = reducer.stats().unwrap();
        for _ in 0..4 {
            // The times of a sampled step are taken at the next step's forward, as in DDP.
            reducer.prepare_for_forward().unwrap();
            let x = Tensor::full([64, 256], 1.0 + rank as f64, (Kind::Float, Device::Cpu));
            let loss = x.matmul(&w).tanh().sum(Kind::Float);
            reducer.prepare_for_backward(&[&loss]).unwrap();
            loss.f_backward().unwrap();
        }
        (before, reducer.stats().unwrap())
    });
    for (before, after) in stats {
        assert_eq!(before, None, "nothing timed before the first step");
        let s = after.expect("timed after four steps");
        assert!(s.iteration >= 1 && s.backward_compute > Duration::ZERO && s.backward_comm > Duration::ZERO, "{s:?}");
        assert!(s.forward_compute > Duration::ZERO, "{s:?}");
    }
}

#[test]
fn a_missing_peer_is_an_error_after_the_timeout_not_a_hang() {
    groups_in_threads();
    let server = Store::serve("127.0.0.1", 0, 2, Duration::from_secs(2)).unwrap();
    let store = Store::connect("127.0.0.1", server.port(), Duration::from_secs(2)).unwrap();
    let started = std::time::Instant::now();
    let e = ProcessGroup::gloo(&store, 0, 2, Duration::from_secs(2)).err().expect("no peer joined");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!e.0.is_empty());
}

#[test]
fn store_counters_and_keys_are_shared_by_clients() {
    let server = Store::serve("127.0.0.1", 0, 1, TIMEOUT).unwrap();
    let a = Store::connect("127.0.0.1", server.port(), TIMEOUT).unwrap().prefixed("p").unwrap();
    let b = Store::connect("127.0.0.1", server.port(), TIMEOUT).unwrap().prefixed("p").unwrap();
    assert_eq!(a.add("n", 2).unwrap(), 2);
    assert_eq!(b.add("n", 3).unwrap(), 5);
    assert!(!b.contains("k").unwrap());
    a.set("k", b"v").unwrap();
    // `set` does not wait for the server; a round trip on the same connection orders it.
    a.add("n", 0).unwrap();
    assert!(b.contains("k").unwrap());
    assert!(!server.contains("k").unwrap(), "the prefix keeps keys apart");
}
