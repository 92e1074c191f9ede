//! The harness behind `bench/run.sh`: a throw-away PKI and hub processes, nginx as the
//! reference server, a keep-alive mTLS load generator, synthetic sealed records, and the
//! JSON parts the report merges. Benchmark code: any error aborts the run, since a
//! half-run benchmark measures nothing, so errors are `anyhow` throughout.

pub mod hub;
pub mod load;
pub mod nginx;
pub mod parts;
pub mod proc;
pub mod records;
pub mod stats;

/// The wall clock, read once at a benchmark binary's edge (certificates, registry).
pub fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    #[expect(
        clippy::disallowed_methods,
        reason = "a benchmark binary's edge reads the clock"
    )]
    chrono::Utc::now()
}
