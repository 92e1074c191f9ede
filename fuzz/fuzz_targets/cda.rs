//! Fuzz target: `renkei_fuzz::agent::cda` (see fuzz/src/agent.rs for the properties).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| renkei_fuzz::agent::cda(data));
