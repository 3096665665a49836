#![no_main]
// The playbook parser under libFuzzer; what it feeds is kcert_fuzz::playbook (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::playbook(data));
