//! The clonebd load generator's library: workload description, a
//! self-verifying block format, and latency reporting. The binary
//! `clonebd-load` drives any NBD export with it.

pub mod report;
pub mod verify;
pub mod workload;
