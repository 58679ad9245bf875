//! rpmemd library: the parts of the target daemon that are testable without a network.
//!
//! - [`config`]: the configuration (PMDK rpmemd(1) keys) from files and the command line;
//! - [`paths`]: confinement of pool descriptors to `poolset-dir`.
//!
//! The daemon itself (control loop, pool registration, lanes) lives in the binary and is written
//! on top of these; nothing here touches the network or a pool.

pub mod config;
pub mod paths;
