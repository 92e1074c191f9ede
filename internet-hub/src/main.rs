//! `internet-hub`: the command line (`cli.rs`) over the `renkei_hub` library.

/// `println!` and `print!` for the command line: a closed pipe (`internet-hub … | head`)
/// ends the process quietly with status 141, as SIGPIPE would, instead of a panic; any
/// other write error is reported once.
macro_rules! println {
    () => {
        $crate::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod cli;
mod demo;

/// Writes to stdout for [`println!`]: see there.
fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("internet-hub: writing output: {e}");
        }
        let code = if e.kind() == std::io::ErrorKind::BrokenPipe {
            141
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// jemalloc rather than glibc's malloc: an idle connection holds ~13 % less memory, and reads
/// cost no more CPU (less in paired runs; docs/benchmarks.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
