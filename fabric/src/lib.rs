//! fabric: a small safe wrapper over `libfabric-sys` for connected MSG endpoints with RMA.
//!
//! What it owns: provider choice (`tcp` by default, `sockets` on request, `verbs` when built with
//! the `verbs` feature), `fi_getinfo` (`Info`), the fabric/domain/EQ/CQ handles, listening and
//! connecting with private connection data (the rpmem session secret travels in the CM request and
//! the listener can refuse it), memory registration (`MemoryRegion`, `OwnedRegion`, `RemoteKey`),
//! RMA write/read, RMA write with remote CQ data (`Endpoint::write_with_data`: one operation that
//! lands the bytes and hands the peer a 64-bit value, seen by `Endpoint::recv_any_into`) and small
//! send/receive messages (injected, without a completion wait, when they fit `inject_max`).
//!
//! Invariants:
//! - Every wait has a deadline (`std::time::Instant`) and ends with `Error::Timeout` at the
//!   latest; waits poll (yielding the core between polls) for `EndpointConfig::spin`, then block
//!   in slices of at most 50 ms, checking the endpoint's event queue for a peer shutdown (and
//!   the transmit queue for failed unsignaled operations) between slices. Posting looks at the
//!   event queue at most once a millisecond (it costs the tcp provider a system call).
//! - Handles close child-first whatever the drop order: endpoints, CQs and MRs hold the domain
//!   (`Arc`), the domain and EQs hold the fabric.
//! - Every offset and length given to an RMA call is checked against both regions before
//!   libfabric sees it.
//! - This crate never sets socket options (TCP_NODELAY stays as the tcp provider sets it: on).
//! - It knows nothing of rpmem's protocol; it moves bytes.

mod domain;
mod ep;
mod error;
mod info;
mod mr;
mod sockaddr;

pub use domain::{Completion, CompletionQueue, Domain, EventQueue, Fabric};
pub use ep::{
    transfer_spin, ConnRequest, Endpoint, EndpointConfig, Incoming, PassiveEndpoint, Signal,
    CM_DATA_BYTES_MIN, DEFAULT_SPIN,
};
pub use error::{Error, Result};
pub use info::{provider_available, Hints, Info, Provider};
pub use mr::{Access, MemoryRegion, OwnedRegion, RemoteKey};
