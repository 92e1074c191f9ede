//! `lgwan-agent`: the command line (`cli.rs`) over the `lgwan_agent` library.
//!
//! Outbound connections only; this binary never listens on a port.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
