//! poolset: parses, validates and prints PMDK poolset(5) files.
//!
//! The crate does no I/O beyond reading the one file handed to [`parse_file`]: it never stats,
//! opens or creates parts. Nothing here panics on any input (bytes that are not UTF-8 included);
//! every error names file, line and column. The grammar, the checks and every deliberate deviation
//! from PMDK are described in docs/POOLSET.md.
//!
//! ```
//! let text = b"PMEMPOOLSET\n32M /dev/shm/pool.part0\nREPLICA alice@node2:target.poolset\n";
//! let parsed = poolset::parse_bytes("pool.set", text, poolset::Mode::Initiator).unwrap();
//! assert_eq!(parsed.set.replicas.len(), 2);
//! assert_eq!(
//!     parsed.set.to_text(),
//!     "PMEMPOOLSET\n32M /dev/shm/pool.part0\nREPLICA alice@node2 target.poolset\n"
//! );
//! ```

mod error;
mod model;
mod node;
mod parse;
mod size;
mod write;

pub use error::{Diagnostic, Error, ErrorKind, SizeProblem, Warning, WarningKind};
pub use model::{LocalReplica, Options, Part, PoolSet, RemoteReplica, Replica};
pub use parse::{parse_bytes, parse_file, Mode, Parsed, MAX_FILE_BYTES, MIN_PART_BYTES};
pub use size::human_size;
