//! pool: local persistent memory (mapping, flushing, headers, local replicas).
//!
//! Layers, bottom up:
//! - [`persist`]: the hardware persistence primitives (cache-line flushes chosen by CPUID, fences,
//!   non-temporal copies, `msync`).
//! - [`region`]: the one persistence trait [`region::Persister`] and the hardware region.
//! - [`crash`]: a recording `Persister` that enumerates the crash images x86 allows.
//! - [`image`]: a plain in-memory `Persister` holding a copy of a data area, to run recovery on a
//!   copy of a replica or crash image without touching the original.
//! - [`header`]: the on-media part header and its crash-safe double-slot update.
//! - [`map`]: contiguous multi-part mappings, `MAP_SYNC`, the is-pmem decision.
//! - [`pool`]: create/open with every check, file locks, replicas and fan-out, failure
//!   policies (fail-stop, degraded with durable stale marks).
//! - [`resync`](mod@resync): bring stale or missing replicas back from the primary.
//! - [`verify`](mod@verify): read-only check of every part and replica (headers, links, sizes,
//!   stale marks, replica data), all problems collected.
//! - [`transform`](mod@transform): add or remove replicas of an existing pool, crash-safely.
//!
//! Architecture invariant: `pool` never touches the network; remote replicas plug in through a
//! trait implemented elsewhere.

pub mod crash;
pub mod header;
pub mod image;
pub mod map;
pub mod persist;
pub mod pool;
pub mod region;
pub mod resync;
pub mod transform;
pub mod verify;

pub use pool::{
    Drained, Error, FailurePolicy, OpenOptions, PendingDrain, Pool, PrimaryMemory, RemoteSpec,
    Replica, ReplicaDiff, ReplicaHealth,
};
pub use region::Persister;
pub use resync::{resync, ResyncMode, ResyncProgress, ResyncReport, ResyncedReplica};
pub use transform::{transform, Plan, TransformOptions, TransformReport, TransformStep};
pub use verify::{
    verify, verify_with, DataCheck, Problem, ProblemKind, Repair, Verification, VerifyOptions,
};
