//! Any text as a config file, then as a `--set` assignment: an error or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchfit::config::Params;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(params) = Params::from_str(text, "fuzz.toml", ".".into()) {
        let _ = params.settings();
        let _ = params.to_toml();
    }
    let demo = "[module]\nname = \"mlp\"\n";
    let mut params = Params::from_str(demo, "demo.toml", ".".into()).expect("the demo parses");
    let _ = params.set_assignment(text);
});
