#![no_main]
// The kubeconfig parser under libFuzzer; what it feeds is kcert_fuzz::kubeconfig (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcert_fuzz::kubeconfig(data));
