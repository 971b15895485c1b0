#![no_main]
//! See tests/fuzz/README.md; the body is `vworkspace_operator::fuzz::validate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vworkspace_operator::fuzz::validate(data));
