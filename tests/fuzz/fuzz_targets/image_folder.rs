//! Any bytes as the one image of an image folder (as PNG and as JPEG): an error or a sample,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchfit::readers::image_folder;

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("torchfit-fuzz-{}-images", std::process::id()));
    let class = root.join("a");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&class).expect("create the folder");
    for name in ["x.png", "x.jpg"] {
        std::fs::write(class.join(name), data).expect("write the image");
        let ctx = torchfit_sdk::BuildContext { base_dir: root.clone(), ..torchfit_sdk::testing::context("dataset") };
        if let Ok(mut ds) = image_folder::build(&serde_json::json!({"root": root}), &ctx) {
            let _ = ds.get(&[0]);
        }
        let _ = std::fs::remove_file(class.join(name));
    }
});
