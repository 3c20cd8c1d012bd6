//! Any bytes as a CSV file for classification and regression: an error or a data set whose
//! samples can all be read, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchfit::readers::csv;
use torchfit_sdk::{DatasetReader, Task};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("torchfit-fuzz-{}.csv", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    let cfg: csv::CsvConfig = torchfit_sdk::parse_config(&serde_json::json!({"path": "x"})).expect("config");
    for task in [Task::Classification, Task::Regression] {
        if let Ok(mut ds) = csv::read(&path, &cfg, task) {
            let all: Vec<i64> = (0..ds.len() as i64).collect();
            let _ = ds.get(&all);
            let _ = ds.targets();
        }
    }
});
