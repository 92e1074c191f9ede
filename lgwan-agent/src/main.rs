//! `lgwan-agent`: the command line (`cli.rs`) over the `lgwan_agent` library.
//!
//! Outbound connections only; this binary never listens on a port.

mod cli;

/// jemalloc rather than glibc's malloc: the import is ~19 % faster (the parse, seal and
/// spool make many short-lived buffers), for ~10 MiB more peak memory (docs/benchmarks.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
