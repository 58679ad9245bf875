//! rpmem: the initiator side of remote replication (librpmem's role).
//!
//! Not implemented yet (issue 4). This crate will start rpmemd on a target over SSH (or as a local
//! child process), negotiate lanes, and carry persists over libfabric. Until then it exports nothing,
//! so no caller can mistake it for a working replica.
