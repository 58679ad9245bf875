//! rpmem: the initiator side of remote replication (librpmem's role).
//!
//! - [`RpmemPool`]: create/open a pool replica on a target, persist (one RMA write carrying
//!   the range as immediate data when both ends support it — protocol 1.1 — else RMA write +
//!   PERSIST on a lane), deep persist, flush + drain, read back, set attributes, close, and [`remove`].
//! - [`replica`]: a remote replica of a `pool` (its `Replica` trait over an `RpmemPool` that
//!   RMA-writes straight from the primary's mapping) and the connector for
//!   `pool::OpenOptions::remote`.
//! - [`Options`]: transport, provider, persist method, deadlines (with `from_env` for PMDK-style
//!   variables); [`PoolMemory`]: the local memory that is replicated.
//! - The control channel: target syntax ([`target`]), the basics of the user's SSH
//!   configuration ([`ssh_config`]) and the transports that start rpmemd on the target
//!   ([`transport`]): a local child process, the built-in SSH client, or an external ssh command.
//!
//! Invariants: every wait has a deadline; every failure is an [`Error`] variant that names the
//! step and says what to check; lanes are independent (one thread per lane, `&self` methods with a
//! lock per lane); the wire format is `rpmem_proto`'s alone.

mod error;
mod memory;
mod options;
mod pool;
pub mod replica;
pub mod ssh_config;
pub mod target;
pub mod transport;

pub use error::Error;
pub use memory::PoolMemory;
pub use options::Options;
pub use pool::{remove, PendingDrain, PersistFlags, RemoveFlags, RpmemPool};
pub use rpmem_proto::{PersistMethod, PoolAttr, Provider};
pub use target::{Target, TargetError};
pub use transport::{ControlChannel, RpmemdExit, SshOptions, Transport, TransportError};
