//! poolset: parses, validates and prints PMDK poolset(5) files.
//!
//! The crate does no I/O beyond reading the one file handed to [`parse_file`]: it never stats,
//! opens or creates parts. Nothing here panics on any input (bytes that are not UTF-8 included);
//! every error names file, line and column. The grammar, the checks and every deliberate deviation
//! from PMDK are described in docs/POOLSET.md.

mod model;

pub use model::{LocalReplica, Options, Part, PoolSet, RemoteReplica, Replica};
