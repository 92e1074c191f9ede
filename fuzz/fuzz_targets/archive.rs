//! Fuzz target: `renkei_fuzz::agent::Files::archive`, the bytes written to a scratch file
//! (see fuzz/src/agent.rs for the properties).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use renkei_fuzz::agent::Files;

static FILES: LazyLock<Files> = LazyLock::new(Files::new);

fuzz_target!(|data: &[u8]| FILES.archive(data));
