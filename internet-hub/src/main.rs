//! `internet-hub`: the command line (`cli.rs`) over the `renkei_hub` library.

mod cli;
mod demo;

/// jemalloc rather than glibc's malloc: an idle connection holds ~13 % less memory, and reads
/// cost no more CPU (less in paired runs; docs/benchmarks.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
