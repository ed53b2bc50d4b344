#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rtinfer_fuzz::mjpeg(data));
