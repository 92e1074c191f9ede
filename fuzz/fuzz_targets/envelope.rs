//! Fuzz target: `renkei_fuzz::crypto::envelope` (see fuzz/src/crypto.rs for the properties).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| renkei_fuzz::crypto::envelope(data));
