//! The properties Renkei's fuzz targets check, one function per parser. The crates'
//! integration tests include these same files (`#[path]`) to replay the committed
//! corpus and bounded random cases under `cargo test`.

pub mod agent;
pub mod crypto;
