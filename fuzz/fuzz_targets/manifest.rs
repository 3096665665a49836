#![no_main]
// The manifest parser under libFuzzer; what it feeds is kcert_fuzz::manifest (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::manifest(data));
