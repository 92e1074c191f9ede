//! `internet-hub`: the command line (`cli.rs`) over the `internet_hub` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
