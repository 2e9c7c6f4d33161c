//! fastlog's Rust core: record-batch validation and CRC32C, and (in later modules) the partition log.
//!
//! Everything here is plain Rust, testable with `cargo test --no-default-features`; the Python
//! binding lives in `python.rs` alone and only converts arguments and delegates.

pub mod batch;
pub mod error;

#[cfg(feature = "python")]
mod python;
pub mod checkpoint;
pub mod files;
pub mod index;
pub mod log;
pub mod flusher;
pub mod segment;
pub mod spares;
pub mod compression;
pub mod producer_state;
pub mod txn_index;
pub mod cleaner;
pub mod produce;
pub mod partition_metrics;
pub mod quorum;
pub mod schema_ids;
pub mod wire;
