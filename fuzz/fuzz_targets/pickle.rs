//! Fuzz the non-executing pickle reader: any bytes must give a value or an error, never a
//! panic, a hang or an allocation beyond what the input justifies (libFuzzer's -rss_limit_mb and
//! -malloc_limit_mb catch those). The reader's two files are included by path so that the
//! target builds without polars and the rest of routerdc.
#![no_main]

#[path = "../../src/io/pickle/teardown.rs"]
mod teardown;
#[allow(dead_code)]
#[path = "../../src/io/pickle/vm.rs"]
mod vm;
#[allow(dead_code)]
#[path = "../../src/io/pickle/pandas.rs"]
mod pandas;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pickle) = vm::parse(data) {
        let _ = pandas::read_frame(&pickle.root, &mut pandas::Budget::for_input(data.len(), 4));
    }
});
