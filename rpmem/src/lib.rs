//! rpmem: the initiator side of remote replication (librpmem's role).
//!
//! What exists so far is the control channel: target syntax ([`target`]), the basics of the
//! user's SSH configuration ([`ssh_config`]) and the transports that start rpmemd on the target
//! ([`transport`]): a local child process, the built-in SSH client, or an external ssh command.
//! The session protocol and the libfabric data plane come with the rest of issue 4; until then this
//! crate offers no persist API, so no caller can mistake it for a working replica.

pub mod ssh_config;
pub mod target;
pub mod transport;

pub use target::{Target, TargetError};
pub use transport::{ControlChannel, RpmemdExit, SshOptions, Transport, TransportError};
