//! `internet-hub`: the command line (`cli.rs`) over the `renkei_hub` library.

mod cli;
mod demo;

/// jemalloc rather than glibc's malloc: under read load the hub spends 12–17 % less CPU per
/// read, and an idle connection holds 12 % less memory (docs/benchmarks.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
