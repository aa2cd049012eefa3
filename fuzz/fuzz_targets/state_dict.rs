//! Fuzz the `pytorch_model.bin` layer: a state dict's `data.pkl` through the pickle machine and
//! the state-dict reader, with one storage's bytes for every storage key. Any bytes must give
//! tensors or an error within the budget, never a panic, a hang, a stack overflow or an
//! allocation past the budget (libFuzzer's -rss_limit_mb and -malloc_limit_mb catch those).
#![no_main]

#[path = "../../src/io/pickle/teardown.rs"]
mod teardown;
#[allow(dead_code)]
#[path = "../../src/io/pickle/vm.rs"]
mod vm;
#[allow(dead_code)]
#[path = "../../src/io/pickle/state_dict.rs"]
mod state_dict;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes split the input: the pickle, then the storage.
    let Some((head, rest)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (pickle, storage) = rest.split_at(split);
    if let Ok(parsed) = vm::parse(pickle) {
        let budget = (data.len() as u64).saturating_mul(2).saturating_add(1 << 20);
        let _ = state_dict::tensors(&parsed.root, &mut |_key: &str| Ok(storage.to_vec()), budget);
    }
});
