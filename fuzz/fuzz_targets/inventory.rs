#![no_main]
// The inventory parser under libFuzzer; what it feeds is kcert_fuzz::inventory (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::inventory(data));
