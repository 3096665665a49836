#![no_main]
// The unit parser under libFuzzer; what it feeds is kcert_fuzz::unit (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::unit(data));
