//! Any bytes as a `.npy` inputs file, with a fixed targets file, and as a header alone: an error
//! or a data set whose samples can all be read, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchfit::readers::npy;
use torchfit_sdk::DatasetReader;

fuzz_target!(|data: &[u8]| {
    let _ = npy::parse_npy_header(data);
    let path = std::env::temp_dir().join(format!("torchfit-fuzz-{}.npy", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    let values = torchfit_sdk::parse_config(&serde_json::json!({})).expect("values");
    if let Ok(mut ds) = npy::Npy::open_npy(&path, None, &values) {
        let n = ds.len().min(64) as i64;
        let _ = ds.get(&(0..n).collect::<Vec<_>>());
    }
});
