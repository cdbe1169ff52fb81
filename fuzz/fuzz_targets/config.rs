//! The configuration file: any YAML is either a configuration or a clear error, never
//! a panic (the steps of `Config::load` after reading the file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return;
    };
    let _ = Config::from_tree(tree);
});
