//! A million tensor crossings (lend, borrow, give, take) leave memory flat. In a test binary of
//! its own: RSS is per process, and concurrent tests would blur it.

use tch::{Device, Kind, Tensor};
use torchfit_sdk::ffi::RawTensor;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_million_crossings_keep_memory_flat() {
    let t = Tensor::ones([256], (Kind::Float, Device::Cpu));
    let cross = |n: usize| {
        for _ in 0..n {
            // SAFETY: lent and borrowed within the iteration; given once and taken once.
            let lent = unsafe { RawTensor::lend(&t).borrow() };
            let given = RawTensor::give(lent.shallow_clone());
            drop(unsafe { given.take() });
        }
    };
    cross(100_000); // warm up the allocator
    let before = rss_kib();
    cross(1_000_000);
    let after = rss_kib();
    // A leaked tensor handle costs at least 32 bytes: 32 MB over a million crossings.
    assert!(after < before + 4 * 1024, "RSS grew from {before} KiB to {after} KiB over a million crossings");
    assert_eq!(t.double_value(&[0]), 1.0, "the lender's tensor is intact");

    // The same measurement does catch a leak: give without take (run after, not beside, the
    // check above: RSS is per process).
    let before = rss_kib();
    for _ in 0..200_000 {
        let _leaked = RawTensor::give(t.shallow_clone());
    }
    let after = rss_kib();
    assert!(after > before + 2 * 1024, "200k leaked handles should show: {before} -> {after} KiB");
}
