#![no_main]
// The known_hosts parser under libFuzzer; what it feeds is kcert_fuzz::known_hosts (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::known_hosts(data));
