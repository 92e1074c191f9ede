//! Hub tests: handlers through the router with a mocked connection identity on both
//! databases, the audit chain under tampering, and real mTLS on loopback.

mod flow;
mod harness;
mod mtls;
mod portal;
mod tamper;
