#![no_main]
// The plan parser under libFuzzer; what it feeds is kcert_fuzz::plan (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::plan(data));
