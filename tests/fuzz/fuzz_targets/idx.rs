//! Any bytes as an IDX images file (and, split at the first byte, a labels file): an error or a
//! data set whose samples can all be read, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchfit::readers::idx;
use torchfit_sdk::DatasetReader;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (images, labels) = rest.split_at((split as usize).min(rest.len()));
    let dir = std::env::temp_dir();
    let (ip, lp) = (
        dir.join(format!("torchfit-fuzz-{}-i", std::process::id())),
        dir.join(format!("torchfit-fuzz-{}-l", std::process::id())),
    );
    std::fs::write(&ip, images).expect("write the images");
    std::fs::write(&lp, labels).expect("write the labels");
    let cfg: idx::IdxConfig = torchfit_sdk::parse_config(&serde_json::json!({"images": "i"})).expect("config");
    for labels in [Some(lp.as_path()), None] {
        if let Ok(mut ds) = idx::Idx::open(&ip, labels, cfg.clone()) {
            let n = ds.len().min(64) as i64;
            let _ = ds.get(&(0..n).collect::<Vec<_>>());
            let _ = ds.targets();
        }
    }
});
