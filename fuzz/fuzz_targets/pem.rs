#![no_main]
// The pem parser under libFuzzer; what it feeds is kcert_fuzz::pem (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::pem(data));
