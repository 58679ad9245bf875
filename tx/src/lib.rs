//! tx: undo-logged transactions and the typed object API users write apps with.
//!
//! Layers, bottom up (each only uses the one below it and `palloc`):
//! - [`undo`]: the per-lane undo log (old bytes saved before a change, rolled back at abort and
//!   at open), in the lane's extra area and overflow blocks.
//! - [`tx`]: [`Tx`], one transaction on one lane: snapshots, allocations published at commit,
//!   deferred frees, flat nesting, hooks.
//! - [`obj`]: [`ObjPool`] (an open pool of objects: recovery, pool identity, reads) and
//!   [`PoolTyped`] (the same, typed by its root), [`PPtr`] and the [`PType`] bound.
//! - [`lock`]: [`PMutex`] and [`PRwLock`], locks stored in persistent memory that a crash can
//!   never leave locked.
//!
//! # Isolation
//! None beyond locks, exactly as libpmemobj: a transaction makes its changes in place, so
//! another thread reading the same object sees them before commit (and sees them disappear on
//! abort). Transactions on different lanes run in parallel; two threads that touch the same
//! object must serialize with a [`PMutex`]/[`PRwLock`] (or any volatile lock) held across the
//! whole transaction. What a transaction guarantees is atomicity and durability under a crash.
//!
//! Architecture invariants: every byte of the pool is written through `pool::Persister` (so a
//! pool with replicas replicates transactions); every change of allocation state goes through
//! `palloc`'s redo log; no Rust reference into the mapping is ever created (reads copy out).

pub mod lock;
pub mod obj;
mod retire;
pub mod tx;
pub mod undo;

pub use lock::{PMutex, PMutexGuard, PRwLock, PRwLockReadGuard, PRwLockWriteGuard};
pub use obj::{
    type_num, ObjPool, PPtr, PType, PoolTyped, TxOptions, OBJ_MAGIC, OBJ_MAGIC_V1, OBJ_MAGIC_V2,
};
/// The pool type [`PoolTyped`] uses by default (a file or poolset mapping with replicas).
pub use pool::Pool;
pub use tx::{SnapFlags, Tx};
pub use undo::{UndoRecovered, UndoState};
/// The zerocopy version `tx` is built with, so that apps derive its traits without depending on
/// it themselves: `#[derive(tx::zerocopy::FromBytes, ...)]` plus
/// `#[zerocopy(crate = "tx::zerocopy")]`.
pub use zerocopy;

use pool::persist::PersistError;

/// Errors of transactions and typed objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A heap error (out of memory, bad offset, ...).
    #[error(transparent)]
    Heap(#[from] palloc::Error),
    /// Flushing failed.
    #[error("tx persist: {0}")]
    Persist(#[from] PersistError),
    /// Opening the pool file failed.
    #[error(transparent)]
    Pool(#[from] pool::Error),
    /// A pointer of another pool.
    #[error("pointer {off:#x} belongs to pool {ptr_pool:#018x}, this is pool {this_pool:#018x}")]
    ForeignPointer {
        /// The pointer's offset.
        off: u64,
        /// The pool id stored in the pointer.
        ptr_pool: u64,
        /// This pool's id.
        this_pool: u64,
    },
    /// A null pointer was dereferenced.
    #[error("null pointer dereferenced")]
    Null,
    /// The object has another type.
    #[error("object {off:#x} has type number {stored:#x}, expected {expected:#x} ({type_name})")]
    TypeMismatch {
        /// Object offset.
        off: u64,
        /// Type number in the allocation header.
        stored: u64,
        /// Type number of the pointer's type.
        expected: u64,
        /// Rust name of the pointer's type.
        type_name: &'static str,
    },
    /// The object is too small for the type or range.
    #[error("object {off:#x} has {usable} usable bytes, the access needs {needed}")]
    TooSmall {
        /// Object offset.
        off: u64,
        /// Usable bytes.
        usable: u64,
        /// Bytes the access needs.
        needed: u64,
    },
    /// The object was freed earlier in this transaction.
    #[error("object {off:#x} was freed earlier in this transaction")]
    FreedInTx {
        /// Object offset.
        off: u64,
    },
    /// A nested transaction aborted; the whole transaction was rolled back.
    #[error("a nested transaction aborted, so the whole transaction was rolled back")]
    NestedAborted,
    /// `tx` called while this thread already runs a transaction on this pool.
    #[error("this thread already runs a transaction on this pool; use Tx::nested")]
    AlreadyInTx,
    /// The pool holds no object store (or another format).
    #[error("not an object pool: {0}")]
    NotObjPool(String),
    /// The root object has another type than the pool is opened with.
    #[error("root object has type number {stored:#x}, {type_name} has {expected:#x}")]
    RootType {
        /// Stored type number.
        stored: u64,
        /// Expected type number.
        expected: u64,
        /// Rust name of the root type.
        type_name: &'static str,
    },
    /// Pool metadata is inconsistent.
    #[error("object pool corrupt: {0}")]
    Corrupt(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The transaction **is committed** — on the primary, and every replica acknowledged its
    /// commit record — but a persist after the commit point failed (in practice a replica
    /// failing under the fail-stop policy while the committed redo log was applied). After a
    /// reopen the transaction is there. Its on-commit hooks ran. Every other error of
    /// [`ObjPool::tx`] means the transaction is absent (see "Errors" in [`crate::tx`]).
    #[error("transaction committed, but a persist after the commit point failed: {0}")]
    CommittedReplicationFailed(#[source] palloc::Error),
    /// Whether the transaction is committed is decided by the next open, as after a crash:
    /// the primary's own persistence failed while the transaction was being undone. The lane
    /// is unusable until the pool is reopened; no hooks ran.
    #[error("transaction outcome unknown until the pool is reopened: {0}")]
    OutcomeUnknown(String),
}
