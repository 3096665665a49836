#![no_main]
// The journal parser under libFuzzer; what it feeds is kcert_fuzz::journal (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::journal(data));
