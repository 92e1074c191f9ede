//! Fuzz target: `renkei_fuzz::crypto::crypto_text` (see fuzz/src/crypto.rs for the properties).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| renkei_fuzz::crypto::crypto_text(data));
