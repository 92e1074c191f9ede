//! Faults survived with the real binaries (issue 8, "Faults" and "Bad input"): the agent
//! killed with SIGKILL during import and upload, a hub instance killed during batch ingest
//! and key-grant upload, and every bad input at once. Kill instants come from a seeded
//! random source (`RENKEI_FAULT_SEED`); the number of runs grows with the `RENKEI_FAULT_*`
//! variables that `tests/faults/long.sh` sets for the long mode.

mod agent_kill;
mod bad_input;
mod hub_kill;
