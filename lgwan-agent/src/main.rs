//! `lgwan-agent`: the command line over the `lgwan_agent` library.
fn main() {}
