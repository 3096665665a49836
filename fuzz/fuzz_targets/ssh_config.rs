#![no_main]
// The ssh_config parser under libFuzzer; what it feeds is kcert_fuzz::ssh_config (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::ssh_config(data));
