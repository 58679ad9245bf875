//! palloc: the persistent heap (redo log, zones, chunks, runs), in the folder `alloc/`.
//!
//! Layers, bottom up:
//! - [`ulog`]: a redo log of 8-byte stores applied all-or-nothing (also used by `tx`).
//! - [`layout`]: the on-media byte maps of the heap (documented in `docs/FORMAT.md`).
//! - [`heap`]: the allocator: zones of chunks, runs with bitmaps for small sizes, whole-chunk
//!   spans for large ones, reservations and atomic publish, per-lane arenas.
//! - [`check`](mod@check): a read-only consistency checker (used by `pmempool check`).
//!
//! Everything persistent goes through a [`pool::Persister`], so the same code runs on a real
//! pool and on `pool::crash::Recorder`, which enumerates crash images.
//!
//! Architecture invariants: the heap never writes outside its persister; every change of
//! allocated state goes through a lane's redo log; volatile indexes are rebuilt from media at
//! open and never trusted across a crash.

pub mod check;
pub mod heap;
pub mod layout;
pub mod lock;
pub mod ulog;

pub use check::{check, CheckReport};
pub use heap::{
    is_internal_type, Action, AllocClasses, CreateOptions, Heap, Lane, ObjectInfo, Objects,
    Options, Reservation, Stats, StoreGuard, INTERNAL_TYPE_MIN, REDO_EXT_TYPE,
};
pub use ulog::{Entry, Poison, Recovered, Ulog, UlogError};

use pool::persist::PersistError;

/// Errors of the heap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The persister holds no heap (zero signature).
    #[error("no heap here (heap header signature is zero)")]
    NoHeap,
    /// The heap header does not decode.
    #[error("heap header field `{field}` invalid: {detail}")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Heap metadata is inconsistent.
    #[error("heap metadata corrupt: {0}")]
    Corrupt(String),
    /// The persister is too small for a heap with these parameters.
    #[error("{len} bytes is too small for a heap (need at least {need})")]
    TooSmall {
        /// Bytes available.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// Invalid create options or allocation classes.
    #[error("invalid heap configuration: {0}")]
    Config(String),
    /// No free space for the request (the heap is unchanged).
    #[error("out of memory: no room for {requested} bytes")]
    OutOfMemory {
        /// Requested bytes.
        requested: u64,
    },
    /// Size zero was requested.
    #[error("allocation of zero bytes")]
    ZeroSize,
    /// The offset is not the start of a live object.
    #[error("offset {off:#x} is not a live object")]
    NotAllocated {
        /// The offset.
        off: u64,
    },
    /// A destination of a value set is not writable through the heap.
    #[error("destination {off:#x} refused: {reason}")]
    BadDestination {
        /// The offset.
        off: u64,
        /// Why.
        reason: &'static str,
    },
    /// The batch needs more redo entries than a lane's log holds even after growing it (an
    /// internal invariant: publish grows the log to the batch's size first).
    #[error("publish needs {entries} redo entries, a lane holds {capacity}")]
    TooManyActions {
        /// Entries needed.
        entries: usize,
        /// Capacity.
        capacity: usize,
    },
    /// A reservation from another heap (or another open of this one).
    #[error("reservation belongs to another heap instance")]
    ForeignReservation,
    /// The reservation was already published or cancelled.
    #[error("reservation at {off:#x} is no longer reserved")]
    StaleReservation {
        /// Its offset.
        off: u64,
    },
    /// No lane can be taken by the calling thread without risking a deadlock: it already holds
    /// `held` of the heap's `lanes` lanes (e.g. a heap call inside a transaction, which holds
    /// its lane throughout) and every other lane stayed busy for `waited_ms` ms (0 when this
    /// thread holds them all, e.g. `lane_count = 1`). Nothing was changed.
    #[error(
        "no lane free for this thread: it holds {held} of the heap's {lanes} lanes and the \
         others stayed busy for {waited_ms} ms (a heap call inside a transaction needs a \
         second lane)"
    )]
    NoLane {
        /// Lanes of the heap.
        lanes: usize,
        /// Lanes the calling thread holds.
        held: usize,
        /// How long the others were waited for, in milliseconds.
        waited_ms: u64,
    },
    /// A redo log error.
    #[error(transparent)]
    Ulog(#[from] UlogError),
    /// Flushing failed.
    #[error("heap persist: {0}")]
    Persist(#[from] PersistError),
}

impl Error {
    /// True when the operation took effect despite the error: its commit point passed (the
    /// redo log was durable on the primary and every replica), and a persist after it failed
    /// ([`UlogError::Committed`]). Any other error from a publish, alloc or free means the
    /// operation did not take effect (except [`is_unknown`](Self::is_unknown)).
    pub fn is_committed(&self) -> bool {
        matches!(self, Error::Ulog(e) if e.is_committed())
    }

    /// True when whether the operation took effect is left to the next open, as after a
    /// crash: the primary's own persistence failed while undoing it ([`UlogError::Unknown`]).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Error::Ulog(e) if e.is_unknown())
    }

    fn from_header(e: layout::HeaderError) -> Error {
        match e {
            layout::HeaderError::NoHeap => Error::NoHeap,
            layout::HeaderError::Field(field, detail) => Error::BadHeader { field, detail },
        }
    }
}
