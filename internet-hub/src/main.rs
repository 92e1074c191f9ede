//! `internet-hub`: the command line (`cli.rs`) over the `renkei_hub` library.

mod cli;
mod demo;

fn main() -> std::process::ExitCode {
    cli::main()
}
