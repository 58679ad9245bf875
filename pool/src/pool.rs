//! Pools: create and open from a single file or a poolset, with every open check, a file lock
//! per part, and persistence fanned out to every replica.
//!
//! A [`Pool`] is a [`Persister`] over its usable bytes (`0..len()`). Stores go to the primary
//! replica; [`Persister::flush`] flushes the primary and copies the range to every other
//! replica (copy + flush), and [`Persister::drain`] drains them all, so after `persist` the
//! bytes are durable in every replica. At open the primary is authoritative: every range where a
//! replica differs from it is copied from the primary (see [`OpenOptions::skip_data_verify`]).
//! Replicas other than the primary are behind the [`Replica`] trait so that remote replicas (implemented outside this crate; `pool` never
//! touches the network) plug in through [`OpenOptions::remote`].

use crate::header::{self, HeaderRead, PartHeader, RegionError, Uuid, HEADER_REGION_BYTES};
use crate::map::{self, Reservation};
use crate::persist::{Flags, Flusher, PersistError};
use crate::region::{MappedRegion, Persister};
use poolset::{PoolSet, RemoteReplica};
use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Smallest part, as PMDK (2 MiB).
pub const MIN_PART_BYTES: u64 = poolset::MIN_PART_BYTES;

/// Errors of creating or opening a pool; each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// OS error.
        source: io::Error,
    },
    /// The poolset file does not parse or validate.
    #[error("{0}")]
    Poolset(String),
    /// Directory parts are not implemented yet.
    #[error("{path}: directory parts are not supported yet")]
    DirectoryPart {
        /// The directory.
        path: PathBuf,
    },
    /// A remote replica and no way to reach it was given.
    #[error("replica {replica} is remote ({node}); the pool crate cannot reach it without a remote connector")]
    RemoteReplica {
        /// Replica index.
        replica: usize,
        /// user@host of the replica.
        node: String,
    },
    /// A replica is stale (marked in the primary's header by an earlier degraded session) and
    /// the failure policy is fail-stop.
    #[error("replica {replica} ({description}) is stale: {why}; open with FailurePolicy::Degraded to work without it, or resync it (pool::resync, pmempool sync)")]
    StaleReplica {
        /// Replica index.
        replica: usize,
        /// Where it is.
        description: String,
        /// Why it is stale.
        why: String,
    },
    /// A replica failed in degraded mode and could not be marked stale, so the pool cannot go
    /// on without it.
    #[error(
        "replica {replica} ({description}) failed ({why}) and cannot be marked stale: {reason}"
    )]
    CannotMarkStale {
        /// Replica index.
        replica: usize,
        /// Where it is.
        description: String,
        /// Its failure.
        why: String,
        /// Why the mark could not be written.
        reason: String,
    },
    /// A remote connector failed.
    #[error("replica {replica} (remote): {message}")]
    Remote {
        /// Replica index.
        replica: usize,
        /// What went wrong.
        message: String,
    },
    /// A part is a character device (Device DAX or anything else): not supported yet.
    #[error("{path}: is a character device{}; Device DAX is not supported yet (pool parts must be regular files)", if *dax { " (Device DAX)" } else { "" })]
    CharDevice {
        /// The device.
        path: PathBuf,
        /// Whether sysfs says it is a Device DAX instance.
        dax: bool,
    },
    /// A part is below the minimum size.
    #[error("{path}: part of {size} bytes is smaller than the minimum of {min} bytes (2 MiB)")]
    PartTooSmall {
        /// Part file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// A part size is not a multiple of the page size.
    #[error("{path}: part size {size} is not a multiple of the page size {page}")]
    PartNotAligned {
        /// Part file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Page size.
        page: u64,
    },
    /// The file is shorter than the poolset (or header) says.
    #[error("{path}: file too small: {actual} bytes, expected {expected}")]
    FileTooSmall {
        /// Part file.
        path: PathBuf,
        /// Actual length.
        actual: u64,
        /// Expected length.
        expected: u64,
    },
    /// The file size differs from what the poolset or header records.
    #[error("{path}: size mismatch: file has {actual} bytes, {what} says {expected}")]
    SizeMismatch {
        /// Part file.
        path: PathBuf,
        /// Actual.
        actual: u64,
        /// Expected.
        expected: u64,
        /// Who expects it ("poolset", "header").
        what: &'static str,
    },
    /// The blocks of a new part could not be allocated (typically a full file system).
    #[error("{path}: cannot allocate {size} bytes for the part: {source}")]
    Allocate {
        /// Part file.
        path: PathBuf,
        /// Bytes asked for.
        size: u64,
        /// OS error (ENOSPC: the file system is full).
        source: io::Error,
    },
    /// Creation would overwrite an existing file.
    #[error("{path}: file already exists (refusing to overwrite it; if it holds no pool, remove it and create again, or create a single-file pool with size 0 to make the pool inside it)")]
    Exists {
        /// Part file.
        path: PathBuf,
    },
    /// A file opened as a pool has no pool header at all: no header was ever written to it.
    #[error("{path}: not a pool: its header region is all zero (no pool here). Either it is not a pool file, or its creation was interrupted before the header was written (this version creates a single-file pool under a temporary name and renames it only when complete, so such a file comes from an older version, another program, or an interrupted in-place create with size 0). If it should become a pool, remove it and create the pool again (or create with size 0 to make the pool inside it)")]
    NotAPool {
        /// Part file.
        path: PathBuf,
    },
    /// A pool cannot be created inside this existing file (create with size 0).
    #[error("{path}: cannot create the pool inside this existing file (size 0 asks to use the file as it is): {why}")]
    InPlace {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// Another process has the pool open.
    #[error("{path}: pool is in use by another process (file lock held)")]
    Locked {
        /// Part file.
        path: PathBuf,
    },
    /// The header region does not decode.
    #[error("{path}: header: {error}")]
    Header {
        /// Part file.
        path: PathBuf,
        /// Why.
        error: RegionError,
    },
    /// A header field disagrees with the pool set or with other headers.
    #[error("{path}: header {field}: expected {expected}, found {found}")]
    Mismatch {
        /// Part file.
        path: PathBuf,
        /// Field (e.g. `part_index`, `next_part_uuid`, `layout`).
        field: &'static str,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// The header has read-only-compatible feature flags this build does not know: the pool
    /// could only be opened read-only, and there is no read-only open yet.
    #[error("{path}: ro_compat: unknown read-only-compatible feature flags {unknown:#x}; the pool may only be opened read-only, which this build does not support")]
    RoCompat {
        /// Part file.
        path: PathBuf,
        /// The unknown bits.
        unknown: u32,
    },
    /// A replica is smaller than the pool.
    #[error("replica {replica}: {size} usable bytes, smaller than the pool's {pool_size}")]
    ReplicaTooSmall {
        /// Replica index.
        replica: usize,
        /// Its data size.
        size: u64,
        /// The pool size.
        pool_size: u64,
    },
    /// The layout name cannot be stored.
    #[error("layout name {0:?} is longer than 63 bytes or contains NUL")]
    LayoutName(String),
    /// Persisting failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

pub(crate) fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// A range of the pool where a replica's data differs from the primary's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDiff {
    /// Replica index (numbered over the whole pool set, 0 = primary).
    pub replica: usize,
    /// First byte of the range (pool offset).
    pub offset: u64,
    /// Length of the range in bytes.
    pub len: u64,
}

/// A replica other than the primary: the target of fan-out.
///
/// The pool calls, for each flush, either [`write_flush`](Self::write_flush) (with the
/// primary's bytes) or, when [`reads_primary`](Self::reads_primary) is true,
/// [`flush_from_primary`](Self::flush_from_primary); for each drain it calls
/// [`drain_begin`](Self::drain_begin) on every replica before waiting on any of the returned
/// handles, so remote replicas make their ranges durable in parallel.
pub trait Replica: Send + Sync {
    /// Human description ("local /a,/b", "remote user@host:desc").
    fn describe(&self) -> String;
    /// Usable bytes.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Read bytes at `off`.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError>;
    /// Copy `data` to `off` and flush it (not yet drained). A replica that
    /// [`reads_primary`](Self::reads_primary) may require `data` to be the primary's bytes at
    /// `off` (which is all the pool ever passes).
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError>;
    /// Make every earlier `write_flush` durable.
    fn drain(&self) -> Result<(), PersistError>;
    /// True when the replica takes its bytes straight from the primary's memory (given to its
    /// connector in [`RemoteSpec::primary`]), e.g. a remote replica whose RMA writes read the
    /// primary's mapping: the pool then calls `flush_from_primary` instead of copying.
    fn reads_primary(&self) -> bool {
        false
    }
    /// Start making `[off, off+len)` of the primary's memory durable on this replica (not yet
    /// drained). Only called when [`reads_primary`](Self::reads_primary) is true.
    fn flush_from_primary(&self, off: usize, len: usize) -> Result<(), PersistError> {
        let _ = (off, len);
        Err(PersistError::Replica {
            replica: 0,
            message: format!(
                "{}: flush_from_primary called on a replica that does not read the primary",
                self.describe()
            ),
        })
    }
    /// Order every earlier flush before every later one on this replica, without waiting for
    /// durability (see `Persister::barrier`); the next [`drain`](Self::drain) waits for it and
    /// reports its errors. The default drains.
    fn barrier(&self) -> Result<(), PersistError> {
        self.drain()
    }
    /// Start a drain; the returned handle's [`PendingDrain::wait`] finishes it. The default
    /// drains at once.
    fn drain_begin(&self) -> Result<Box<dyn PendingDrain + '_>, PersistError> {
        self.drain()?;
        Ok(Box::new(Drained))
    }
}

/// A drain started by [`Replica::drain_begin`] and not yet known to be complete.
pub trait PendingDrain {
    /// Wait until the drain is complete.
    fn wait(self: Box<Self>) -> Result<(), PersistError>;
}

/// A drain that is already complete.
pub struct Drained;

impl PendingDrain for Drained {
    fn wait(self: Box<Self>) -> Result<(), PersistError> {
        Ok(())
    }
}

/// The primary replica's data area, handed to remote connectors so that a remote replica can
/// replicate straight from it (one RMA write per persist, no copy).
///
/// The pool guarantees that `[as_ptr(), as_ptr()+len())` stays mapped, readable and writable
/// for as long as the [`Replica`] the connector returns exists (the pool drops its replicas
/// before unmapping the primary). The bytes change under any reader (the application stores
/// to them); use raw copies only, never Rust references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryMemory {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

// SAFETY: a plain address range; the guarantee above is what makes using it sound, and it does
// not depend on the thread.
unsafe impl Send for PrimaryMemory {}
// SAFETY: as above.
unsafe impl Sync for PrimaryMemory {}

impl PrimaryMemory {
    /// Start of the primary's data area (pool offset 0).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    /// Bytes of the pool (`Pool::len`).
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty pool (never, for a pool that opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a pool does when a replica other than the primary fails (chosen per open in
/// [`OpenOptions::failure_policy`]). A failure of the primary is always an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The operation returns an error naming the replica; a persist that returned `Ok` is
    /// durable on every replica. Open refuses a pool with a replica marked stale.
    #[default]
    FailStop,
    /// The failed replica is marked stale in the part-0 header of the primary and of every
    /// healthy local replica (crash-safe double-slot update, durable before the operation
    /// returns), is no longer written, and work continues; [`Pool::replica_health`] tells which
    /// replicas are healthy and [`resync`](crate::resync::resync) brings stale ones back.
    Degraded,
}

/// Health of one replica, as [`Pool::replica_health`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// Replica index in the pool set (0 = primary).
    pub replica: usize,
    /// Where it is ("local /a,/b", "remote user@host:desc").
    pub description: String,
    /// `None` when healthy (written by every persist); otherwise why it is stale.
    pub stale: Option<String>,
}

impl ReplicaHealth {
    /// True when the replica receives every persist.
    pub fn is_healthy(&self) -> bool {
        self.stale.is_none()
    }
}

/// What a remote connector is told about the replica it connects.
///
/// Replicas are numbered over the whole pool set, local and remote, in poolset order (0 = the
/// primary), and the replica UUID ring (`prev_repl_uuid`/`next_repl_uuid` of part 0 of each
/// replica) runs over all of them. The UUIDs are `None` with `OPTION NOHDRS`, and at open for a
/// neighbour that is itself remote (only local headers are read by this crate); the connector
/// stores them at create and checks them at open (e.g. in the remote pool's attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Index of this replica in the pool set.
    pub replica: usize,
    /// Replicas in the pool set.
    pub replica_count: usize,
    /// Usable bytes of the pool.
    pub pool_size: u64,
    /// Whether the remote pool is being created.
    pub create: bool,
    /// The pool set UUID.
    pub poolset_uuid: Option<Uuid>,
    /// The UUID of this replica's part 0 (as its neighbours link to it).
    pub uuid: Option<Uuid>,
    /// Part-0 UUID of the previous replica (cyclic).
    pub prev_repl_uuid: Option<Uuid>,
    /// Part-0 UUID of the next replica (cyclic).
    pub next_repl_uuid: Option<Uuid>,
    /// The primary's data area (`pool_size` bytes), for replicas that replicate straight from
    /// it (see [`Replica::reads_primary`]).
    pub primary: Option<PrimaryMemory>,
    /// The replica is being resynchronised ([`crate::resync::resync`]). With `create` too, this
    /// is resync's rebuild request for a stale replica whose data will be overwritten from the
    /// primary: the connector may create it when missing, rewrite attributes that disagree, and
    /// remove and recreate an unusable pool — or another pool set's — at that place (the stale
    /// mark in this pool set's metadata plus the operator's resync are the consent). Without
    /// `create`, resync is reconnecting a healthy replica (its data is current and is not
    /// copied) to store ring UUIDs derived since open (see [`crate::resync()`]); such an open
    /// never removes anything.
    pub resync: bool,
}

/// Connects a remote replica. Implemented by the rpmem crate.
pub type RemoteConnector<'a> =
    &'a dyn Fn(&RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String>;

/// Options for create and open.
#[derive(Clone, Copy, Default)]
pub struct OpenOptions<'a> {
    /// Use this flusher instead of deciding by `MAP_SYNC`/`PMEM_IS_PMEM_FORCE` (tests).
    pub flusher: Option<Flusher>,
    /// Force the "is persistent memory" decision in-process, as `PMEM_IS_PMEM_FORCE=1`/`0`
    /// would (`None`: the environment variable, else `MAP_SYNC`, decides).
    pub is_pmem_force: Option<bool>,
    /// Skip the comparison of replica data at open (headers are always compared).
    ///
    /// Without it, open reads the whole pool from the primary and from every replica (twice the
    /// pool size in reads, over the network for remote replicas) and copies every range where a
    /// replica differs from the primary to that replica. With it, a replica may differ from the
    /// primary in ranges that were stored but never flushed before a crash, until those ranges
    /// are written again (the recovery of the layers above rewrites what they rely on) or a
    /// later open synchronises them; [`Pool::verify_replicas`] reports such ranges.
    pub skip_data_verify: bool,
    /// How to reach remote replicas.
    pub remote: Option<RemoteConnector<'a>>,
    /// What to do when a replica other than the primary fails (default: fail-stop).
    pub failure_policy: FailurePolicy,
}

// Drop order matters: fields drop in declaration order, and the file holding the `flock` must
// go last, after every mapping of the part is unmapped; otherwise another process could open
// the pool while this one still has it mapped.
pub(crate) struct LocalPart {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) hdr: Option<MappedRegion>,
    /// Whether the header mapping got `MAP_SYNC` (true when there is no header).
    pub(crate) hdr_sync: bool,
    /// Kept open for the lifetime of the pool: holds the `flock`. Declared last (see above).
    pub(crate) lock_file: File,
}

/// A replica whose parts are local files, mapped contiguously.
pub struct LocalReplica {
    /// Index in the pool set (local and remote replicas counted).
    pub(crate) index: usize,
    /// Unmapped before `parts` drops the files holding the locks (declaration order).
    pub(crate) data: MappedRegion,
    is_pmem: bool,
    pub(crate) parts: Vec<LocalPart>,
}

impl LocalReplica {
    /// Index of this replica in the pool set (0 = primary; remote replicas counted).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether this replica is persistent memory (cache flushes) or not (`msync`).
    pub fn is_pmem(&self) -> bool {
        self.is_pmem
    }

    /// The data region.
    pub fn region(&self) -> &MappedRegion {
        &self.data
    }

    /// The part files.
    pub fn part_paths(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|p| p.path.clone()).collect()
    }
}

impl Replica for LocalReplica {
    fn describe(&self) -> String {
        let paths: Vec<String> = self
            .parts
            .iter()
            .map(|p| p.path.display().to_string())
            .collect();
        format!("local {}", paths.join(","))
    }
    fn len(&self) -> usize {
        self.data.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        self.data.read(off, buf);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.data.memcpy_persist(off, data, Flags::NO_DRAIN)
    }
    fn drain(&self) -> Result<(), PersistError> {
        self.data.drain()
    }
}

/// A replica other than the primary, with its index in the pool set.
pub(crate) struct Other {
    pub(crate) index: usize,
    pub(crate) rep: Rep,
    /// Set (after the mark is durable) when the replica was marked stale at run time; it is
    /// then skipped by fan-out.
    pub(crate) stale: AtomicBool,
}

/// A local replica keeps its concrete type (its part-0 header carries the stale marks).
pub(crate) enum Rep {
    Local(LocalReplica),
    Remote(Box<dyn Replica>),
}

impl Other {
    pub(crate) fn new(index: usize, rep: Rep) -> Other {
        Other {
            index,
            rep,
            stale: AtomicBool::new(false),
        }
    }
    pub(crate) fn rep(&self) -> &dyn Replica {
        match &self.rep {
            Rep::Local(l) => l,
            Rep::Remote(r) => r.as_ref(),
        }
    }
    fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }
}

/// The replica UUID ring of a pool set: pool set UUID and part-0 UUID of every replica (by
/// poolset index), where known.
#[derive(Clone)]
pub(crate) struct Ring {
    pub(crate) poolset_uuid: Option<Uuid>,
    pub(crate) part0: Vec<Option<Uuid>>,
}

impl Ring {
    /// Nothing known (NOHDRS).
    fn unknown(set: &PoolSet) -> Ring {
        Ring {
            poolset_uuid: None,
            part0: vec![None; set.replicas.len()],
        }
    }

    /// Give every replica whose part-0 UUID is unknown the derived one (the derivation of
    /// [`crate::transform()`], from the pool set UUID and the replica's place and description,
    /// so every run computes the same ring). Returns the indices filled, in order. Without a
    /// pool set UUID (NOHDRS) there is no ring and nothing is filled.
    pub(crate) fn complete(&mut self, set: &PoolSet) -> Vec<usize> {
        let Some(poolset_uuid) = self.poolset_uuid else {
            return Vec::new();
        };
        assert_eq!(
            self.part0.len(),
            set.replicas.len(),
            "ring of another pool set"
        );
        let mut filled = Vec::new();
        for (r, u) in self.part0.iter_mut().enumerate() {
            // A nil entry came from a nil link (only an earlier build's resync wrote them);
            // no replica can have a nil UUID, so the place is unknown.
            if u.is_none() || u.is_some_and(|u| u.is_nil()) {
                *u = Some(crate::transform::derived_part0(poolset_uuid.0, set, r));
                filled.push(r);
            }
        }
        filled
    }
}

/// A replica found stale at open or resync: (index, description, why).
pub(crate) type StaleNote = (usize, String, String);

/// An open pool.
///
/// Field order is drop order: the other replicas (a remote one may be replicating straight from
/// the primary's mapping) go before the primary.
pub struct Pool {
    pub(crate) others: Vec<Other>,
    pub(crate) primary: LocalReplica,
    pub(crate) len: usize,
    header: Option<PartHeader>,
    repaired: Vec<String>,
    pub(crate) policy: FailurePolicy,
    pub(crate) ring: Ring,
    pub(crate) no_hdrs: bool,
    /// Health of every replica by index (the primary's is always healthy); the lock also
    /// serialises updates of the stale marks in the headers.
    pub(crate) health: Mutex<Vec<ReplicaHealth>>,
}

fn lock(file: &File, path: &Path) -> Result<(), Error> {
    // A lock held by this very process can linger for a moment after the pool was dropped: a
    // child being spawned (fork, then exec) shares the open file description, and so the
    // `flock`, until its exec closes the descriptor. So a busy lock is retried for a short,
    // bounded time before it is reported as held by another process.
    const BUSY_RETRY: std::time::Duration = std::time::Duration::from_millis(200);
    let started = std::time::Instant::now();
    loop {
        // SAFETY: flock on a valid descriptor owned by `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::Io {
                path: path.to_path_buf(),
                op: "flock",
                source: e,
            });
        }
        if started.elapsed() >= BUSY_RETRY {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Allocate every block of a new part (as PMDK's `util_file_create`), so that a full file
/// system is an error here rather than a SIGBUS at some later store into a sparse hole, then
/// make the size and allocation durable.
pub(crate) fn allocate(file: &File, path: &Path, size: u64) -> Result<(), Error> {
    let len = libc::off_t::try_from(size).map_err(|_| Error::Allocate {
        path: path.to_path_buf(),
        size,
        source: io::Error::new(io::ErrorKind::InvalidInput, "size does not fit off_t"),
    })?;
    // SAFETY: posix_fallocate on a valid descriptor owned by `file`; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        // posix_fallocate returns the error number instead of setting errno.
        return Err(Error::Allocate {
            path: path.to_path_buf(),
            size,
            source: io::Error::from_raw_os_error(rc),
        });
    }
    file.sync_all().map_err(io_err(path, "fsync"))
}

/// fsync the directories holding `paths` (each once), so that new directory entries are
/// durable.
pub(crate) fn sync_parent_dirs<'a>(paths: impl Iterator<Item = &'a Path>) -> Result<(), Error> {
    let mut done: Vec<PathBuf> = Vec::new();
    for p in paths {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if done.contains(&dir) {
            continue;
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir, "fsync directory"))?;
        done.push(dir);
    }
    Ok(())
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// After header writes: fsync every part selected by `written(replica, part)` whose header
/// mapping is not `MAP_SYNC`. The header stores were flushed with the replica's flusher, which
/// makes them durable only on a `MAP_SYNC` mapping (or via `msync`, which does not cover the
/// file system metadata of the page on fsdax); fsync covers both.
pub(crate) fn sync_headers(
    locals: &[LocalReplica],
    written: impl Fn(usize, usize) -> bool,
) -> Result<(), Error> {
    for (r, l) in locals.iter().enumerate() {
        for (i, part) in l.parts.iter().enumerate() {
            if part.hdr.is_some() && !part.hdr_sync && written(r, i) {
                part.lock_file
                    .sync_all()
                    .map_err(io_err(&part.path, "fsync"))?;
            }
        }
    }
    Ok(())
}

/// A header region with a stale slot: (replica, part, what was read).
type StaleHeader = (usize, usize, HeaderRead);

/// Which parts have a header region.
pub(crate) fn has_header(set: &PoolSet, part: usize) -> bool {
    !set.options.no_hdrs && (part == 0 || !set.options.single_hdr)
}

/// Open (or, when `created` is `Some`, create) and map one local replica. Every file this call
/// creates is pushed to `created` right after its creation, before anything can fail.
pub(crate) fn map_replica(
    set: &PoolSet,
    parts: &[poolset::Part],
    mut created: Option<&mut Vec<PathBuf>>,
    opts: OpenOptions<'_>,
) -> Result<LocalReplica, Error> {
    let page = map::page_size() as u64;
    let mut files = Vec::new();
    let mut total = 0u64;
    for (i, p) in parts.iter().enumerate() {
        if p.is_directory {
            return Err(Error::DirectoryPart {
                path: p.path.clone(),
            });
        }
        if map::is_char_device(&p.path) {
            // Device DAX needs its size from sysfs and 2 MiB-aligned mappings; until that is
            // implemented, refuse clearly instead of failing later with a misleading size.
            return Err(Error::CharDevice {
                path: p.path.clone(),
                dax: map::is_device_dax(&p.path),
            });
        }
        if p.size < MIN_PART_BYTES {
            return Err(Error::PartTooSmall {
                path: p.path.clone(),
                size: p.size,
                min: MIN_PART_BYTES,
            });
        }
        if p.size % page != 0 {
            return Err(Error::PartNotAligned {
                path: p.path.clone(),
                size: p.size,
                page,
            });
        }
        let file = if let Some(created) = created.as_deref_mut() {
            let f = FsOpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&p.path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Error::Exists {
                            path: p.path.clone(),
                        }
                    } else {
                        io_err(&p.path, "create")(e)
                    }
                })?;
            created.push(p.path.clone());
            lock(&f, &p.path)?;
            allocate(&f, &p.path, p.size)?;
            f
        } else {
            let f = FsOpenOptions::new()
                .read(true)
                .write(true)
                .open(&p.path)
                .map_err(io_err(&p.path, "open"))?;
            lock(&f, &p.path)?;
            let actual = f.metadata().map_err(io_err(&p.path, "stat"))?.len();
            if actual < p.size {
                return Err(Error::FileTooSmall {
                    path: p.path.clone(),
                    actual,
                    expected: p.size,
                });
            }
            if actual != p.size {
                return Err(Error::SizeMismatch {
                    path: p.path.clone(),
                    actual,
                    expected: p.size,
                    what: "poolset",
                });
            }
            f
        };
        let hdr_bytes = if has_header(set, i) {
            HEADER_REGION_BYTES as u64
        } else {
            0
        };
        total += p.size - hdr_bytes;
        files.push((file, hdr_bytes));
    }
    let total_len = usize::try_from(total).map_err(|_| Error::Io {
        path: parts[0].path.clone(),
        op: "map",
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "replica larger than the address space",
        ),
    })?;
    let res =
        Reservation::new(total_len).map_err(io_err(&parts[0].path, "reserve address range"))?;
    let mut off = 0usize;
    let mut all_sync = true;
    let mut local = Vec::new();
    for ((file, hdr_bytes), p) in files.into_iter().zip(parts) {
        let len = (p.size - hdr_bytes) as usize;
        let sync = res
            .map_at(off, &file, hdr_bytes, len)
            .map_err(io_err(&p.path, "mmap"))?;
        all_sync &= sync;
        off += len;
        local.push((file, hdr_bytes, p));
    }
    // Character devices (Device DAX) were refused above, so MAP_SYNC alone decides.
    let force = opts.is_pmem_force.or_else(map::is_pmem_force);
    let is_pmem = map::decide_is_pmem_with(force, all_sync, false);
    let flusher = opts.flusher;
    let fl = flusher.unwrap_or_else(|| Flusher::detect(is_pmem));
    let mut out_parts = Vec::new();
    for (file, hdr_bytes, p) in local {
        let (hdr, hdr_sync) = if hdr_bytes > 0 {
            // The header gets MAP_SYNC when the data did: on fsdax, a cache flush of a
            // MAP_SYNC page also makes the file system metadata behind it (block allocation)
            // durable; without MAP_SYNC only fsync does (see `sync_headers`).
            let m = map::FileMapping::new(&file, 0, HEADER_REGION_BYTES, all_sync)
                .map_err(io_err(&p.path, "mmap header"))?;
            let sync = m.is_sync();
            // SAFETY: the mapping is moved into the region's owner and lives as long as it; the
            // file stays open and is not truncated while the pool exists (we hold its lock);
            // the bytes are only accessed through the region's raw pointer.
            let region = unsafe { MappedRegion::new(m.addr(), m.len(), fl, Box::new(m)) };
            // Headers are made durable the same way as the data of their replica.
            (Some(region), sync)
        } else {
            (None, true)
        };
        out_parts.push(LocalPart {
            path: p.path.clone(),
            size: p.size,
            hdr,
            hdr_sync,
            lock_file: file,
        });
    }
    let base = res.addr();
    // SAFETY: the whole reservation is now mapped read/write by parts; `res` is moved into the
    // region's owner so the range lives exactly as long as the region.
    let data = unsafe { MappedRegion::new(base, total_len, fl, Box::new(res)) };
    Ok(LocalReplica {
        index: 0, // set by `Pool::map_all`
        parts: out_parts,
        data,
        is_pmem,
    })
}

/// "local /a,/b" or "remote user@host:desc" for replica `r` of `set`.
pub(crate) fn describe_replica(set: &PoolSet, r: usize) -> String {
    match set.replicas.get(r) {
        Some(poolset::Replica::Local(l)) => {
            let paths: Vec<String> = l
                .parts
                .iter()
                .map(|p| p.path.display().to_string())
                .collect();
            format!("local {}", paths.join(","))
        }
        Some(poolset::Replica::Remote(rr)) => {
            format!("remote {}:{}", node_name(rr), rr.descriptor.display())
        }
        None => format!("replica {r} (not in the pool set)"),
    }
}

/// `[user@]host[:port]` of a remote replica (IPv6 hosts in brackets).
pub(crate) fn node_name(rr: &RemoteReplica) -> String {
    let host = if rr.host.contains(':') {
        format!("[{}]", rr.host)
    } else {
        rr.host.clone()
    };
    let mut s = match &rr.user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    };
    if let Some(p) = rr.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// Position in `locals` of the replica an open check error is about (by the file it names, or
/// the replica index), if any.
fn culprit(e: &Error, locals: &[LocalReplica]) -> Option<usize> {
    let path = match e {
        Error::Io { path, .. }
        | Error::PartTooSmall { path, .. }
        | Error::PartNotAligned { path, .. }
        | Error::FileTooSmall { path, .. }
        | Error::SizeMismatch { path, .. }
        | Error::Locked { path }
        | Error::Header { path, .. }
        | Error::NotAPool { path }
        | Error::Mismatch { path, .. }
        | Error::RoCompat { path, .. } => path,
        Error::ReplicaTooSmall { replica, .. } => {
            return locals.iter().position(|l| l.index == *replica)
        }
        _ => return None,
    };
    locals
        .iter()
        .position(|l| l.parts.iter().any(|p| &p.path == path))
}

fn remote_spec(
    ring: &Ring,
    r: usize,
    nrep: usize,
    pool_size: u64,
    create: bool,
    resync: bool,
    primary: &LocalReplica,
) -> RemoteSpec {
    RemoteSpec {
        replica: r,
        replica_count: nrep,
        pool_size,
        create,
        poolset_uuid: ring.poolset_uuid,
        uuid: ring.part0[r],
        prev_repl_uuid: ring.part0[(r + nrep - 1) % nrep],
        next_repl_uuid: ring.part0[(r + 1) % nrep],
        primary: Some(PrimaryMemory {
            ptr: primary.data.as_ptr(),
            len: pool_size as usize,
        }),
        resync,
    }
}

/// Set or clear replicas `rs` in the stale bitmap of `l`'s part-0 header (double-slot update,
/// then fsync unless the header mapping is `MAP_SYNC`).
pub(crate) fn write_part0_marks(l: &LocalReplica, rs: &[usize], stale: bool) -> Result<(), Error> {
    let part = &l.parts[0];
    let Some(region) = part.hdr.as_ref() else {
        return Ok(());
    };
    let read = header::read_region(region, 0).map_err(|error| Error::Header {
        path: part.path.clone(),
        error,
    })?;
    let mut h = read.header.clone();
    for &r in rs {
        h.set_replica_stale(r, stale);
    }
    if h.stale_replicas == read.header.stale_replicas && read.stale.is_empty() {
        return Ok(());
    }
    // The slot in force has the highest valid seq (slot 0 is never above it), so seq+1 keeps
    // write_region's precondition.
    header::write_region(region, 0, &h, read.header.seq.get() + 1)?;
    if !part.hdr_sync {
        part.lock_file
            .sync_all()
            .map_err(io_err(&part.path, "fsync"))?;
    }
    Ok(())
}

fn parse_set(path: &Path) -> Result<PoolSet, Error> {
    poolset::parse_file(path, poolset::Mode::Initiator)
        .map(|p| p.set)
        .map_err(|e| Error::Poolset(e.to_string()))
}

fn single_file_set(path: &Path, size: u64) -> PoolSet {
    PoolSet {
        options: poolset::Options::default(),
        replicas: vec![poolset::Replica::Local(poolset::LocalReplica {
            parts: vec![poolset::Part {
                size,
                path: path.to_path_buf(),
                is_directory: false,
                line: 0,
            }],
            line: 0,
        })],
    }
}

fn check_layout(layout: &str) -> Result<(), Error> {
    if layout.len() > header::LAYOUT_MAX || layout.as_bytes().contains(&0) {
        return Err(Error::LayoutName(layout.to_string()));
    }
    Ok(())
}

/// The error of a header region that does not decode: [`Error::NotAPool`] when no header was
/// ever written there (both slots have an all-zero signature), else [`Error::Header`].
fn header_error(path: &Path, error: RegionError) -> Error {
    let never_written = |e: &header::HeaderError| matches!(e, header::HeaderError::Signature { found } if *found == [0u8; 8]);
    if never_written(&error.slot0) && never_written(&error.slot1) {
        Error::NotAPool {
            path: path.to_path_buf(),
        }
    } else {
        Error::Header {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// The one part of a pool set made of a single local replica with a single part (a
/// single-file pool), if it is one.
fn single_part(set: &PoolSet) -> Option<&poolset::Part> {
    match set.replicas.as_slice() {
        [poolset::Replica::Local(l)] if l.parts.len() == 1 => l.parts.first(),
        _ => None,
    }
}

/// `set` (a single-file pool set) with its part at `path` and `size` bytes.
fn with_single_part(set: &PoolSet, path: &Path, size: u64) -> PoolSet {
    let mut s = set.clone();
    if let Some(poolset::Replica::Local(l)) = s.replicas.first_mut() {
        if let Some(p) = l.parts.first_mut() {
            p.path = path.to_path_buf();
            p.size = size;
        }
    }
    s
}

/// Makes temporary names unique among the creates of one process.
static STAGE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Longest part of the final file name kept in a temporary name, so that the temporary name
/// stays below `NAME_MAX` (255 bytes) with its prefix and suffix.
const STAGE_NAME_MAX: usize = 200;

/// The directory of `dest` and the prefix of the temporary names of its creates
/// (`.<name>.creating-`).
fn stage_prefix(dest: &Path) -> Result<(PathBuf, Vec<u8>), Error> {
    use std::os::unix::ffi::OsStrExt;
    let name = dest.file_name().ok_or_else(|| Error::Io {
        path: dest.to_path_buf(),
        op: "create",
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let bytes = name.as_bytes();
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(&bytes[..bytes.len().min(STAGE_NAME_MAX)]);
    prefix.extend_from_slice(b".creating-");
    Ok((dir, prefix))
}

/// A fresh temporary name for a create of `dest`, in the same directory (so that the final
/// rename stays within one file system): `.<name>.creating-<pid>-<seq>`.
pub fn stage_path(dest: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, mut name) = stage_prefix(dest)?;
    let seq = STAGE_SEQ.fetch_add(1, Ordering::Relaxed);
    name.extend_from_slice(format!("{}-{seq}", std::process::id()).as_bytes());
    Ok(dir.join(std::ffi::OsStr::from_bytes(&name)))
}

/// Whether process `pid` exists (a zombie counts: its parent has not reaped it yet).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temporary files that creates of `dest` left behind (a create killed before its
/// rename); returns the files removed.
///
/// A temporary file is removed only when the process named in it is gone **and** nobody holds
/// its file lock (its creator locks it right after making it, and a lock dies with its
/// holder). The temporary files of a create running right now, in this or another process,
/// are left alone: its rename, which never replaces a file, decides which create wins.
pub fn remove_stale_stages(dest: &Path) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, prefix) = stage_prefix(dest)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // No directory: no leftovers (the create fails later, naming the path).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir, "read directory")(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&dir, "read directory"))?;
        let name = entry.file_name();
        let Some(rest) = name.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        // `<pid>-<seq>`, both decimal; anything else is not ours.
        let Some((pid, seq)) = std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.split_once('-'))
        else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), seq.parse::<u64>()) else {
            continue;
        };
        if pid == std::process::id() || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        let Ok(f) = File::open(&path) else { continue };
        // SAFETY: flock on a valid descriptor owned by `f`.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "remove leftover temporary file")(e)),
        }
    }
    if !removed.is_empty() {
        sync_parent_dirs(std::iter::once(dest))?;
    }
    Ok(removed)
}

/// Rename `from` to `to` unless `to` exists (then `AlreadyExists`), atomically:
/// `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where the file system does not support
/// the flag.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: both paths are NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            // link() fails with EEXIST rather than replace: as atomic as the flag.
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

/// A single-file pool created under a temporary name ([`Pool::create_staged`]); the pool
/// appears at its final path only at [`Staged::publish`]. Dropped without a publish, it
/// removes the temporary file.
#[derive(Debug)]
#[must_use = "dropping a Staged without publish removes the new pool"]
pub struct Staged {
    temp: PathBuf,
    dest: PathBuf,
    published: bool,
}

impl Staged {
    /// Where the pool is until it is published.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Where the pool appears at publish.
    pub fn dest_path(&self) -> &Path {
        &self.dest
    }

    /// Make the pool appear at its final path: fsync the temporary file (so that whatever was
    /// stored into the pool since create is durable before its name is), rename it to the
    /// final path (never replacing a file: [`Error::Exists`] if one appeared meanwhile, and the
    /// temporary file is removed), fsync the directory.
    pub fn publish(mut self) -> Result<(), Error> {
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&self.temp, "fsync"))?;
        rename_noreplace(&self.temp, &self.dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: self.dest.clone(),
                }
            } else {
                io_err(&self.dest, "rename the complete pool into place")(e)
            }
        })?;
        self.published = true;
        // The rename is the commit point; until the directory is synced a crash may still undo
        // it, leaving no pool (never a partial one).
        sync_parent_dirs(std::iter::once(self.dest.as_path()))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl Pool {
    /// Create a pool in a new single file of `size` bytes.
    pub fn create_file(path: &Path, size: u64, layout: &str) -> Result<Pool, Error> {
        Pool::create(&single_file_set(path, size), layout, OpenOptions::default())
    }

    /// Create a pool in a new single file of `size` bytes that appears at `path` only when
    /// the returned [`Staged`] is published: a layer that lays out more (a heap, a root object)
    /// publishes after that, so a crash in between leaves no file at `path`.
    pub fn create_file_staged(
        path: &Path,
        size: u64,
        layout: &str,
    ) -> Result<(Pool, Staged), Error> {
        Pool::create_staged(&single_file_set(path, size), layout, OpenOptions::default())
    }

    /// Open a single-file pool; `layout`, when given, must match.
    pub fn open_file(path: &Path, layout: Option<&str>) -> Result<Pool, Error> {
        let size = std::fs::metadata(path).map_err(io_err(path, "stat"))?.len();
        Pool::open(&single_file_set(path, size), layout, OpenOptions::default())
    }

    /// Create a pool from a poolset file.
    pub fn create_poolset(set_file: &Path, layout: &str) -> Result<Pool, Error> {
        Pool::create(&parse_set(set_file)?, layout, OpenOptions::default())
    }

    /// Open a pool from a poolset file.
    pub fn open_poolset(set_file: &Path, layout: Option<&str>) -> Result<Pool, Error> {
        Pool::open(&parse_set(set_file)?, layout, OpenOptions::default())
    }

    /// Create a pool: create every part file (which must not exist), allocate its blocks
    /// (`posix_fallocate`; a full file system fails here with [`Error::Allocate`]), fsync it and
    /// its directory, map, write headers.
    /// On failure, part files this call created are removed again.
    ///
    /// A single-file pool (one local replica of one part) is created atomically: under a
    /// temporary name, renamed into place once complete (see [`Pool::create_staged`]), so a
    /// crash leaves either no file or a complete pool. With a part size of 0 the part file must
    /// exist and the pool is made inside it, as it is (see [`Pool::create_in_place`]). The parts
    /// of a larger pool set are created in place (none may exist).
    pub fn create(set: &PoolSet, layout: &str, opts: OpenOptions<'_>) -> Result<Pool, Error> {
        check_layout(layout)?;
        if let Some(part) = single_part(set) {
            if part.size == 0 {
                return Pool::create_in_place(set, layout, opts);
            }
            let dest = part.path.clone();
            let (mut pool, staged) = Pool::create_staged(set, layout, opts)?;
            staged.publish()?;
            pool.primary.parts[0].path = dest;
            let description = pool.primary.describe();
            if let Some(h) = pool
                .health
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .first_mut()
            {
                h.description = description;
            }
            return Ok(pool);
        }
        // Only files this call actually created (create_new succeeded) are removed on failure:
        // a file that appeared meanwhile belongs to someone else.
        let mut created = Vec::new();
        let res = Pool::create_inner(set, layout, opts, &mut created);
        if res.is_err() {
            for p in &created {
                let _ = std::fs::remove_file(p);
            }
        }
        res
    }

    /// Create a single-file pool (`set` is one local replica of one part, of a size other than
    /// 0) under a temporary name in the directory of its part, `.<name>.creating-<pid>-<seq>`:
    /// the file is made, its blocks allocated, its headers written and everything fsynced
    /// there. The final path does not exist until [`Staged::publish`], so a layer above can
    /// lay out its own metadata first (`pmempool create` writes the heap) and the pool still
    /// appears only once complete. The returned pool keeps the temporary name in its part
    /// paths; dropping the [`Staged`] unpublished removes the file.
    ///
    /// Before creating, temporary files of earlier creates of the same path whose process is
    /// gone are removed; [`Pool::repaired`] lists them.
    pub fn create_staged(
        set: &PoolSet,
        layout: &str,
        opts: OpenOptions<'_>,
    ) -> Result<(Pool, Staged), Error> {
        check_layout(layout)?;
        let Some(part) = single_part(set) else {
            return Err(Error::Poolset(
                "a staged create needs a pool set of one local replica with one part".into(),
            ));
        };
        let dest = part.path.clone();
        if part.is_directory {
            return Err(Error::DirectoryPart { path: dest });
        }
        if map::is_char_device(&dest) {
            return Err(Error::CharDevice {
                dax: map::is_device_dax(&dest),
                path: dest,
            });
        }
        if part.size < MIN_PART_BYTES {
            return Err(Error::PartTooSmall {
                path: dest,
                size: part.size,
                min: MIN_PART_BYTES,
            });
        }
        // A file (or dangling symlink) at the final path is never replaced; checked here to
        // fail before the work, and again atomically by the rename.
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::Exists { path: dest });
        }
        let removed = remove_stale_stages(&dest)?;
        let temp = stage_path(&dest)?;
        let staged = Staged {
            temp: temp.clone(),
            dest: dest.clone(),
            published: false,
        };
        let mut created = Vec::new();
        let res = Pool::create_inner(
            &with_single_part(set, &temp, part.size),
            layout,
            opts,
            &mut created,
        );
        match res {
            Ok(mut pool) => {
                for r in removed {
                    pool.repaired.push(format!(
                        "{}: removed the temporary file of an interrupted create of {}",
                        r.display(),
                        dest.display()
                    ));
                }
                Ok((pool, staged))
            }
            // `staged` removes the temporary file when it goes out of scope.
            Err(e) => Err(e),
        }
    }

    /// Create a single-file pool inside the existing file of `set`'s one part (given with size
    /// 0, as PMDK's create with a pool size of 0): the file's size is used, and its header
    /// region (first 4 KiB) must be all zero — create never overwrites data, and a file that
    /// already holds a pool is reported as such. The file keeps its inode, owner and mode.
    ///
    /// This create is not atomic (the file exists throughout): a crash while the header is
    /// written can leave the header region neither zero nor a valid header, which a later
    /// create refuses, naming the fix. On a failure after the header was written, the header
    /// region is zeroed again.
    pub fn create_in_place(
        set: &PoolSet,
        layout: &str,
        opts: OpenOptions<'_>,
    ) -> Result<Pool, Error> {
        check_layout(layout)?;
        let Some(part) = single_part(set) else {
            return Err(Error::Poolset(
                "an in-place create needs a pool set of one local replica with one part".into(),
            ));
        };
        let path = part.path.clone();
        let in_place = |why: String| Error::InPlace {
            path: path.clone(),
            why,
        };
        if part.is_directory {
            return Err(Error::DirectoryPart { path });
        }
        if map::is_char_device(&path) {
            return Err(Error::CharDevice {
                dax: map::is_device_dax(&path),
                path,
            });
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(in_place(
                    "it does not exist; give a size to create a new pool file".into(),
                ))
            }
            Err(e) => return Err(io_err(&path, "stat")(e)),
        };
        if !meta.is_file() {
            return Err(in_place("it is not a regular file".into()));
        }
        let size = meta.len();
        if size < MIN_PART_BYTES {
            return Err(in_place(format!(
                "it has {size} bytes, less than a part's minimum of {MIN_PART_BYTES} (2 MiB); \
                 give it its size first (e.g. fallocate -l 64M FILE), or remove it and create \
                 the pool with a size"
            )));
        }
        let set = with_single_part(set, &path, size);
        // Mapped as an existing part (locked, size checked), then checked under the lock.
        let primary = Pool::map_primary(&set, None, opts)?;
        let lp = &primary.parts[0];
        if let Some(region) = lp.hdr.as_ref() {
            let mut buf = vec![0u8; HEADER_REGION_BYTES];
            region.read(0, &mut buf);
            if buf.iter().any(|&b| b != 0) {
                let why = match header::decode_region(&buf) {
                    Ok(r) => format!(
                        "it already holds a pool (layout {:?}); open it, or remove it first \
                         (pmempool rm) to create a new one",
                        r.header.layout_name()
                    ),
                    Err(_) => "its header region (the first 4096 bytes) is not zero and holds \
                     no valid pool header: it holds other data, or an in-place create \
                     was interrupted; create never overwrites data: zero those bytes \
                     (dd if=/dev/zero of=FILE bs=4096 count=1 conv=notrunc) or remove \
                     the file, then create again"
                        .into(),
                };
                return Err(in_place(why));
            }
        }
        allocate(&lp.lock_file, &lp.path, size)?;
        let res = Pool::finish_create(&set, vec![primary], Vec::new(), layout, opts);
        if res.is_err() && !set.options.no_hdrs {
            // Put back what was there (a zero header region) so that the file is again what it
            // was before this create; best effort, the create's error is what is reported.
            if let Ok(f) = FsOpenOptions::new().write(true).open(&path) {
                use std::os::unix::fs::FileExt;
                let _ = f.write_all_at(&[0u8; HEADER_REGION_BYTES], 0);
                let _ = f.sync_all();
            }
        }
        res
    }

    fn create_inner(
        set: &PoolSet,
        layout: &str,
        opts: OpenOptions<'_>,
        created: &mut Vec<PathBuf>,
    ) -> Result<Pool, Error> {
        let primary = Pool::map_primary(set, Some(created), opts)?;
        let (rest, remote_specs, _) = Pool::map_others(set, Some(created), opts, &[], false)?;
        let mut locals = vec![primary];
        locals.extend(rest);
        // Every part file is allocated and fsynced (map_replica); make their directory entries
        // durable too.
        let parts: Vec<&Path> = locals
            .iter()
            .flat_map(|l| l.parts.iter().map(|p| p.path.as_path()))
            .collect();
        sync_parent_dirs(parts.into_iter())?;
        Pool::finish_create(set, locals, remote_specs, layout, opts)
    }

    /// The part of create after every local part is mapped: headers, then the pool.
    fn finish_create(
        set: &PoolSet,
        locals: Vec<LocalReplica>,
        remote_specs: Vec<(usize, RemoteReplica)>,
        layout: &str,
        opts: OpenOptions<'_>,
    ) -> Result<Pool, Error> {
        let pool_size = locals[0].len() as u64;
        Pool::check_replica_sizes(&locals, pool_size)?;
        let ring = if set.options.no_hdrs {
            Ring::unknown(set)
        } else {
            let ring = Pool::write_headers(set, &locals, layout, pool_size)?;
            sync_headers(&locals, |_, _| true)?;
            ring
        };
        Pool::assemble(
            set,
            locals,
            remote_specs,
            pool_size,
            true,
            opts,
            Vec::new(),
            ring,
            Vec::new(),
        )
    }

    /// Open a pool and check everything (see `docs/FORMAT.md`, "Checks at open").
    ///
    /// With [`FailurePolicy::FailStop`] any failing replica fails the open, and so does a
    /// replica marked stale by an earlier degraded session ([`Error::StaleReplica`]). With
    /// [`FailurePolicy::Degraded`] a replica other than the primary that cannot be opened or
    /// whose headers or attributes disagree is marked stale and left out (see
    /// [`Pool::replica_health`]); replicas already marked stale are not opened at all.
    pub fn open(set: &PoolSet, layout: Option<&str>, opts: OpenOptions<'_>) -> Result<Pool, Error> {
        let degraded = opts.failure_policy == FailurePolicy::Degraded;
        let primary = Pool::map_primary(set, None, opts)?;
        // The primary's part-0 header says which replicas are stale: those are not opened.
        let marked = match primary.parts[0].hdr.as_ref() {
            Some(region) => header::read_region(region, 0)
                .map_err(|error| header_error(&primary.parts[0].path, error))?
                .header
                .stale_replicas(),
            None => Vec::new(),
        };
        let marked_notes: Vec<StaleNote> = marked
            .iter()
            .map(|&r| {
                (
                    r,
                    describe_replica(set, r),
                    "marked stale in the primary's header (it missed updates; resync it)".into(),
                )
            })
            .collect();
        if !degraded {
            if let Some((replica, description, why)) = marked_notes.first().cloned() {
                return Err(Error::StaleReplica {
                    replica,
                    description,
                    why,
                });
            }
        }
        let (rest, remote_specs, mut newly) = Pool::map_others(set, None, opts, &marked, degraded)?;
        let mut locals = vec![primary];
        locals.extend(rest);
        let mut repaired = Vec::new();
        // In degraded mode a check failing on a replica other than the primary drops that
        // replica (it becomes stale) and the checks run again over the rest; bounded by the
        // number of replicas.
        let (pool_size, stale, ring) = loop {
            if set.options.no_hdrs {
                break (locals[0].len() as u64, Vec::new(), Ring::unknown(set));
            }
            let checked = Pool::check_headers(set, &locals, layout).and_then(|c| {
                Pool::check_replica_sizes(&locals, c.0)?;
                Ok(c)
            });
            match checked {
                Ok(c) => break c,
                Err(e) => match culprit(&e, &locals) {
                    Some(k) if degraded && k > 0 => {
                        let l = locals.remove(k);
                        newly.push((l.index, l.describe(), e.to_string()));
                    }
                    _ => return Err(e),
                },
            }
        };
        if set.options.no_hdrs {
            Pool::check_replica_sizes(&locals, pool_size)?;
        }
        // Every check has passed: only now may a stale header slot be rewritten.
        Pool::repair_headers(&locals, &stale, &mut repaired)?;
        sync_headers(&locals, |r, i| stale.iter().any(|s| s.0 == r && s.1 == i))?;
        let mut all_stale = marked_notes;
        all_stale.extend(newly);
        Pool::assemble(
            set,
            locals,
            remote_specs,
            pool_size,
            false,
            opts,
            repaired,
            ring,
            all_stale,
        )
    }

    /// Map the primary replica (which must be local).
    fn map_primary(
        set: &PoolSet,
        created: Option<&mut Vec<PathBuf>>,
        opts: OpenOptions<'_>,
    ) -> Result<LocalReplica, Error> {
        match set.replicas.first() {
            Some(poolset::Replica::Local(l)) => {
                let mut m = map_replica(set, &l.parts, created, opts)?;
                m.index = 0;
                Ok(m)
            }
            Some(poolset::Replica::Remote(rr)) => Err(Error::RemoteReplica {
                replica: 0,
                node: rr.host.clone(),
            }),
            None => Err(Error::Poolset("pool set has no local replica".into())),
        }
    }

    #[allow(clippy::type_complexity)]
    /// Map every local replica but the primary, except those in `skip`; list the remote ones
    /// (except those in `skip`). `created` is `Some` at create (new files are recorded in it
    /// as soon as they exist). With `tolerate`, a local replica that fails to map is returned
    /// as a stale note instead of failing the call.
    pub(crate) fn map_others(
        set: &PoolSet,
        mut created: Option<&mut Vec<PathBuf>>,
        opts: OpenOptions<'_>,
        skip: &[usize],
        tolerate: bool,
    ) -> Result<
        (
            Vec<LocalReplica>,
            Vec<(usize, RemoteReplica)>,
            Vec<StaleNote>,
        ),
        Error,
    > {
        let mut locals = Vec::new();
        let mut remotes = Vec::new();
        let mut failed = Vec::new();
        for (r, rep) in set.replicas.iter().enumerate().skip(1) {
            if skip.contains(&r) {
                continue;
            }
            match rep {
                poolset::Replica::Local(l) => {
                    match map_replica(set, &l.parts, created.as_deref_mut(), opts) {
                        Ok(mut m) => {
                            m.index = r;
                            locals.push(m);
                        }
                        Err(e) if tolerate => {
                            failed.push((r, describe_replica(set, r), e.to_string()))
                        }
                        Err(e) => return Err(e),
                    }
                }
                poolset::Replica::Remote(rr) => remotes.push((r, rr.clone())),
            }
        }
        Ok((locals, remotes, failed))
    }

    fn check_replica_sizes(locals: &[LocalReplica], pool_size: u64) -> Result<(), Error> {
        for l in locals {
            if (l.len() as u64) < pool_size {
                return Err(Error::ReplicaTooSmall {
                    replica: l.index,
                    size: l.len() as u64,
                    pool_size,
                });
            }
        }
        Ok(())
    }

    /// Write every local header; returns the ring (pool set UUID, part-0 UUID of every replica
    /// of the pool set, remote ones included).
    fn write_headers(
        set: &PoolSet,
        locals: &[LocalReplica],
        layout: &str,
        pool_size: u64,
    ) -> Result<Ring, Error> {
        let uuid = || {
            Uuid::new_v4()
                .map(|u| u.0)
                .map_err(io_err(Path::new("/dev/urandom"), "getrandom"))
        };
        let poolset_uuid = uuid()?;
        // UUIDs of every part of every replica of the pool set, by poolset index; a remote
        // replica gets one for its part 0 (its place in the ring), handed to its connector.
        let mut uuids: Vec<Vec<[u8; 16]>> = Vec::new();
        for rep in &set.replicas {
            let n = match rep {
                poolset::Replica::Local(l) => l.parts.len(),
                poolset::Replica::Remote(_) => 1,
            };
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(uuid()?);
            }
            uuids.push(v);
        }
        let nrep = set.replicas.len();
        let crtime = now_secs();
        for l in locals {
            let r = l.index;
            let hdr_parts: Vec<usize> =
                (0..l.parts.len()).filter(|&i| has_header(set, i)).collect();
            let np = hdr_parts.len();
            for (k, &i) in hdr_parts.iter().enumerate() {
                let part = &l.parts[i];
                let mut h = PartHeader::zeroed();
                h.signature = header::SIGNATURE;
                h.major.set(header::MAJOR);
                if set.options.single_hdr {
                    h.incompat.set(header::INCOMPAT_SINGLEHDR);
                }
                h.poolset_uuid = poolset_uuid;
                h.uuid = uuids[r][i];
                h.prev_part_uuid = uuids[r][hdr_parts[(k + np - 1) % np]];
                h.next_part_uuid = uuids[r][hdr_parts[(k + 1) % np]];
                h.prev_repl_uuid = uuids[(r + nrep - 1) % nrep][0];
                h.next_repl_uuid = uuids[(r + 1) % nrep][0];
                h.crtime.set(crtime);
                h.set_arch();
                h.set_layout(layout)
                    .map_err(|_| Error::LayoutName(layout.into()))?;
                h.part_size.set(part.size);
                h.pool_size.set(pool_size);
                // The part's index and the replica's part count in the pool set, headerless
                // parts included (SINGLEHDR: part 0 of n parts says 0 of n), as FORMAT.md.
                h.part_index.set(i as u32);
                h.part_count.set(l.parts.len() as u32);
                h.replica_index.set(r as u32);
                h.replica_count.set(nrep as u32);
                let region = part
                    .hdr
                    .as_ref()
                    .expect("has_header parts have a header mapping");
                header::write_region(region, 0, &h, 1)?;
            }
        }
        Ok(Ring {
            poolset_uuid: Some(Uuid(poolset_uuid)),
            part0: uuids.iter().map(|v| Some(Uuid(v[0]))).collect(),
        })
    }

    /// Rewrite the stale header slots found by `check_headers` (called once every open check
    /// has passed).
    fn repair_headers(
        locals: &[LocalReplica],
        stale: &[StaleHeader],
        repaired: &mut Vec<String>,
    ) -> Result<(), Error> {
        for (r, i, read) in stale {
            let part = &locals[*r].parts[*i];
            let region = part
                .hdr
                .as_ref()
                .expect("stale headers are only recorded for parts with a header mapping");
            header::repair_region(region, 0, read)?;
            repaired.push(format!(
                "{}: rewrote header slot(s) {:?}",
                part.path.display(),
                read.stale
            ));
        }
        Ok(())
    }

    /// Check every header; returns the pool size and the header regions with a stale slot
    /// (to be repaired once every check has passed).
    fn check_headers(
        set: &PoolSet,
        locals: &[LocalReplica],
        layout: Option<&str>,
    ) -> Result<(u64, Vec<StaleHeader>, Ring), Error> {
        let mut stale = Vec::new();
        // Headers by replica, only for parts that have one.
        let mut hdrs: Vec<Vec<(usize, PartHeader)>> = Vec::new();
        for (r, l) in locals.iter().enumerate() {
            let mut v = Vec::new();
            for (i, part) in l.parts.iter().enumerate() {
                let Some(region) = &part.hdr else { continue };
                let read: HeaderRead = header::read_region(region, 0)
                    .map_err(|error| header_error(&part.path, error))?;
                if !read.stale.is_empty() {
                    // Rewritten only after every check has passed (see `repair_headers`): a
                    // header of the wrong pool, layout or index must not be written to.
                    stale.push((r, i, read.clone()));
                }
                v.push((i, read.header));
            }
            hdrs.push(v);
        }
        let first = &hdrs[0][0].1;
        let nrep = set.replicas.len();
        let pool_size = first.pool_size.get();
        // Part-0 UUID of every replica of the pool set: read for local replicas; for a remote
        // one, taken from the link of a local neighbour (every local link is then checked
        // against it, so two local neighbours that disagree are caught).
        let mut part0: Vec<Option<[u8; 16]>> = vec![None; nrep];
        for (lr, v) in hdrs.iter().enumerate() {
            part0[locals[lr].index] = Some(v[0].1.uuid);
        }
        for (lr, v) in hdrs.iter().enumerate() {
            let (r, h0) = (locals[lr].index, &v[0].1);
            for (nb, link) in [
                ((r + 1) % nrep, h0.next_repl_uuid),
                ((r + nrep - 1) % nrep, h0.prev_repl_uuid),
            ] {
                if part0[nb].is_none() {
                    part0[nb] = Some(link);
                }
            }
        }
        let mismatch = |path: &Path, field, expected: String, found: String| Error::Mismatch {
            path: path.to_path_buf(),
            field,
            expected,
            found,
        };
        // A part or replica of another pool is reported as such (on its own file) before any
        // link check, which would otherwise name a neighbour that is fine.
        for (lr, v) in hdrs.iter().enumerate() {
            for (i, h) in v {
                if h.poolset_uuid != first.poolset_uuid {
                    return Err(mismatch(
                        &locals[lr].parts[*i].path,
                        "poolset_uuid",
                        Uuid(first.poolset_uuid).to_string(),
                        Uuid(h.poolset_uuid).to_string(),
                    ));
                }
            }
        }
        for (lr, v) in hdrs.iter().enumerate() {
            let np = v.len();
            let r = locals[lr].index;
            for (k, (i, h)) in v.iter().enumerate() {
                let part = &locals[lr].parts[*i];
                let path = part.path.as_path();
                let eq_u = |field, exp: [u8; 16], got: [u8; 16]| {
                    if exp == got {
                        Ok(())
                    } else {
                        Err(mismatch(
                            path,
                            field,
                            Uuid(exp).to_string(),
                            Uuid(got).to_string(),
                        ))
                    }
                };
                let eq_n = |field, exp: u64, got: u64| {
                    if exp == got {
                        Ok(())
                    } else {
                        Err(mismatch(path, field, exp.to_string(), got.to_string()))
                    }
                };
                let unknown_ro = h.ro_compat.get() & !header::RO_COMPAT_KNOWN;
                if unknown_ro != 0 {
                    return Err(Error::RoCompat {
                        path: path.to_path_buf(),
                        unknown: unknown_ro,
                    });
                }
                if let Some(want) = layout {
                    if h.layout_name() != want {
                        return Err(mismatch(
                            path,
                            "layout",
                            format!("{want:?}"),
                            format!("{:?}", h.layout_name()),
                        ));
                    }
                }
                eq_n("replica_index", r as u64, h.replica_index.get().into())?;
                eq_n("replica_count", nrep as u64, h.replica_count.get().into())?;
                eq_n("part_index", *i as u64, h.part_index.get().into())?;
                eq_n(
                    "part_count",
                    locals[lr].parts.len() as u64,
                    h.part_count.get().into(),
                )?;
                eq_u("poolset_uuid", first.poolset_uuid, h.poolset_uuid)?;
                eq_n("pool_size", pool_size, h.pool_size.get())?;
                eq_n(
                    "incompat SINGLEHDR",
                    u64::from(set.options.single_hdr),
                    u64::from(h.incompat.get() & header::INCOMPAT_SINGLEHDR != 0),
                )?;
                if h.part_size.get() != part.size {
                    return Err(Error::SizeMismatch {
                        path: path.to_path_buf(),
                        actual: part.size,
                        expected: h.part_size.get(),
                        what: "header",
                    });
                }
                eq_u("next_part_uuid", v[(k + 1) % np].1.uuid, h.next_part_uuid)?;
                eq_u(
                    "prev_part_uuid",
                    v[(k + np - 1) % np].1.uuid,
                    h.prev_part_uuid,
                )?;
                // Every neighbour's entry is set: local ones read, remote ones derived above
                // from the links of their local neighbour(s).
                let ring = |at: usize| part0[at].unwrap_or_default();
                eq_u("next_repl_uuid", ring((r + 1) % nrep), h.next_repl_uuid)?;
                eq_u(
                    "prev_repl_uuid",
                    ring((r + nrep - 1) % nrep),
                    h.prev_repl_uuid,
                )?;
            }
        }
        let ring = Ring {
            poolset_uuid: Some(Uuid(first.poolset_uuid)),
            part0: part0.into_iter().map(|u| u.map(Uuid)).collect(),
        };
        Ok((pool_size, stale, ring))
    }

    /// The spec handed to the connector of remote replica `r`.
    pub(crate) fn remote_spec(
        &self,
        r: usize,
        replica_count: usize,
        create: bool,
        resync: bool,
    ) -> RemoteSpec {
        remote_spec(
            &self.ring,
            r,
            replica_count,
            self.len as u64,
            create,
            resync,
            &self.primary,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        set: &PoolSet,
        mut locals: Vec<LocalReplica>,
        remotes: Vec<(usize, RemoteReplica)>,
        pool_size: u64,
        create: bool,
        opts: OpenOptions<'_>,
        repaired: Vec<String>,
        ring: Ring,
        mut stale: Vec<StaleNote>,
    ) -> Result<Pool, Error> {
        let degraded = opts.failure_policy == FailurePolicy::Degraded;
        let primary = locals.remove(0);
        let header = primary.parts[0]
            .hdr
            .as_ref()
            .and_then(|h| header::read_region(h, 0).ok())
            .map(|r| r.header);
        let nrep = set.replicas.len();
        let mut others: Vec<Other> = Vec::new();
        for l in locals {
            others.push(Other::new(l.index, Rep::Local(l)));
        }
        for (r, rr) in remotes {
            let node = node_name(&rr);
            let Some(connect) = opts.remote else {
                let e = Error::RemoteReplica { replica: r, node };
                if degraded && !create {
                    stale.push((r, describe_replica(set, r), e.to_string()));
                    continue;
                }
                return Err(e);
            };
            let spec = remote_spec(&ring, r, nrep, pool_size, create, false, &primary);
            let rep = connect(&rr, &spec)
                .map_err(|message| Error::Remote {
                    replica: r,
                    message,
                })
                .and_then(|rep| {
                    if (rep.len() as u64) < pool_size {
                        return Err(Error::ReplicaTooSmall {
                            replica: r,
                            size: rep.len() as u64,
                            pool_size,
                        });
                    }
                    Ok(rep)
                });
            match rep {
                Ok(rep) => others.push(Other::new(r, Rep::Remote(rep))),
                // A replica being created is never left out: create makes every replica.
                Err(e) if degraded && !create => {
                    stale.push((r, describe_replica(set, r), e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        // Fan-out, drains and reports go in poolset order.
        others.sort_by_key(|o| o.index);
        let health = (0..nrep)
            .map(|r| ReplicaHealth {
                replica: r,
                description: describe_replica(set, r),
                stale: None,
            })
            .collect();
        let pool = Pool {
            others,
            primary,
            len: pool_size as usize,
            header,
            repaired,
            policy: opts.failure_policy,
            ring,
            no_hdrs: set.options.no_hdrs,
            health: Mutex::new(health),
        };
        pool.record_stale(&stale)?;
        let mut pool = pool;
        if !create && !opts.skip_data_verify {
            // The primary is authoritative (as PMDK): data that differs in a replica (a store
            // that reached the primary's media but was never flushed, so never fanned out, or a
            // crash between the primary's copy and a replica's) is copied from the primary.
            let notes = pool.sync_replicas_from_primary()?;
            pool.repaired.extend(notes);
        }
        Ok(pool)
    }

    /// Record replicas found stale at open: durable marks for those not yet marked, and their
    /// health. Fails (with the first replica's reason) when the marks cannot be written.
    fn record_stale(&self, stale: &[StaleNote]) -> Result<(), Error> {
        if stale.is_empty() {
            return Ok(());
        }
        let mut health = self.lock_health();
        let marked = self.marked_in_primary()?;
        let new: Vec<usize> = stale
            .iter()
            .map(|s| s.0)
            .filter(|r| !marked.contains(r))
            .collect();
        if !new.is_empty() {
            self.write_marks(&new, true).map_err(|reason| {
                let (replica, description, why) = stale
                    .iter()
                    .find(|s| new.contains(&s.0))
                    .cloned()
                    .unwrap_or_default();
                Error::CannotMarkStale {
                    replica,
                    description,
                    why,
                    reason: reason.to_string(),
                }
            })?;
        }
        for (r, _, why) in stale {
            health[*r].stale = Some(why.clone());
        }
        Ok(())
    }

    fn lock_health(&self) -> MutexGuard<'_, Vec<ReplicaHealth>> {
        // A panic while holding the lock cannot leave the vector inconsistent (single stores).
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replicas marked stale in the primary's part-0 header (empty with NOHDRS).
    pub(crate) fn marked_in_primary(&self) -> Result<Vec<usize>, Error> {
        let part = &self.primary.parts[0];
        match part.hdr.as_ref() {
            None => Ok(Vec::new()),
            Some(region) => Ok(header::read_region(region, 0)
                .map_err(|error| Error::Header {
                    path: part.path.clone(),
                    error,
                })?
                .header
                .stale_replicas()),
        }
    }

    /// Mark (`stale`) or clear replicas `rs` in the part-0 header of the primary and of every
    /// healthy local replica not in `rs`, each with the crash-safe double-slot update, fsynced
    /// where the header mapping is not `MAP_SYNC`: durable on return. The primary is written
    /// first; its header decides at open. The caller holds the health lock (one update at a
    /// time).
    pub(crate) fn write_marks(&self, rs: &[usize], stale: bool) -> Result<(), Error> {
        if self.no_hdrs {
            return Err(Error::Poolset(
                "the pool set has OPTION NOHDRS: there is no header to record a stale replica in"
                    .into(),
            ));
        }
        if let Some(&r) = rs.iter().find(|&&r| r >= header::STALE_REPLICAS_MAX) {
            return Err(Error::Poolset(format!(
                "replica {r}: only replicas 0..{} can be recorded stale",
                header::STALE_REPLICAS_MAX
            )));
        }
        let mut targets: Vec<&LocalReplica> = vec![&self.primary];
        for o in &self.others {
            if let Rep::Local(l) = &o.rep {
                if !o.is_stale() && !rs.contains(&o.index) {
                    targets.push(l);
                }
            }
        }
        for l in targets {
            write_part0_marks(l, rs, stale)?;
        }
        Ok(())
    }

    /// A replica other than the primary failed with `e`. Fail-stop: the error, naming the
    /// replica. Degraded: mark it stale (durably) and carry on; an error only when the mark
    /// cannot be written.
    fn replica_failed(&self, o: &Other, e: PersistError) -> Result<(), PersistError> {
        let why = match e {
            PersistError::Replica { replica, message } if replica == o.index => message,
            e => e.to_string(),
        };
        let desc = o.rep().describe();
        if self.policy == FailurePolicy::FailStop {
            return Err(PersistError::Replica {
                replica: o.index,
                message: format!("{desc}: {why}"),
            });
        }
        let mut health = self.lock_health();
        if o.is_stale() {
            return Ok(());
        }
        self.write_marks(&[o.index], true)
            .map_err(|m| PersistError::Replica {
                replica: o.index,
                message: format!("{desc}: {why}; marking it stale failed: {m}"),
            })?;
        // Only now (the mark is durable) is the replica skipped: a persist that skipped it can
        // be acknowledged.
        o.stale.store(true, Ordering::Release);
        health[o.index].stale = Some(why);
        Ok(())
    }

    /// Resync, once the ring is complete and before any stale mark is cleared: rewrite the
    /// replica links (`prev_repl_uuid`/`next_repl_uuid`) of every header of the primary and
    /// the healthy local replicas that disagree with the ring (double-slot update, fsync unless
    /// `MAP_SYNC`). Open checked every such link against the ring, and the ring took its
    /// entries from them, so a link can only disagree when it is nil (a nil link is read as an
    /// unknown place and derived, because a restored replica cannot have a nil UUID) — which
    /// only an earlier build's resync wrote. Returns what was rewritten.
    pub(crate) fn relink_local_headers(&mut self, set: &PoolSet) -> Result<Vec<String>, Error> {
        let n = set.replicas.len();
        let ring: Vec<[u8; 16]> = match self.ring.part0.iter().map(|u| u.map(|u| u.0)).collect() {
            Some(r) => r,
            None => return Ok(Vec::new()),
        };
        let mut done = Vec::new();
        let mut targets: Vec<&LocalReplica> = vec![&self.primary];
        for o in &self.others {
            if let Rep::Local(l) = &o.rep {
                if !o.is_stale() {
                    targets.push(l);
                }
            }
        }
        let mut primary_changed = false;
        for l in targets {
            let r = l.index;
            let (prev, next) = (ring[(r + n - 1) % n], ring[(r + 1) % n]);
            for part in &l.parts {
                let Some(region) = part.hdr.as_ref() else {
                    continue;
                };
                let read = header::read_region(region, 0).map_err(|error| Error::Header {
                    path: part.path.clone(),
                    error,
                })?;
                if read.header.prev_repl_uuid == prev && read.header.next_repl_uuid == next {
                    continue;
                }
                let mut h = read.header.clone();
                h.prev_repl_uuid = prev;
                h.next_repl_uuid = next;
                // The slot in force has the highest valid seq, so seq+1 keeps write_region's
                // precondition; the old slot survives a torn write.
                header::write_region(region, 0, &h, read.header.seq.get() + 1)?;
                if !part.hdr_sync {
                    part.lock_file
                        .sync_all()
                        .map_err(io_err(&part.path, "fsync"))?;
                }
                primary_changed |= r == 0;
                done.push(format!(
                    "{}: replica links {} / {} rewritten to {} / {}",
                    part.path.display(),
                    Uuid(read.header.prev_repl_uuid),
                    Uuid(read.header.next_repl_uuid),
                    Uuid(prev),
                    Uuid(next)
                ));
            }
        }
        if primary_changed {
            self.header = self.primary.parts[0]
                .hdr
                .as_ref()
                .and_then(|h| header::read_region(h, 0).ok())
                .map(|r| r.header);
        }
        Ok(done)
    }

    /// Add healthy replica `o` to the fan-out (resync: a remote replica reconnected to rewrite
    /// its attributes).
    pub(crate) fn attach(&mut self, o: Other) {
        debug_assert!(self.others.iter().all(|x| x.index != o.index));
        self.others.push(o);
        self.others.sort_by_key(|o| o.index);
    }

    /// Resync's last step for replica `o` (its data and headers are durable): clear its stale
    /// mark in the primary's and the healthy local replicas' headers, then add it to the
    /// fan-out as healthy.
    pub(crate) fn clear_mark_and_attach(&mut self, o: Other) -> Result<(), Error> {
        let r = o.index;
        {
            let mut health = self.lock_health();
            self.write_marks(&[r], false)?;
            health[r].stale = None;
        }
        self.others.push(o);
        self.others.sort_by_key(|o| o.index);
        Ok(())
    }

    /// Health of every replica of the pool set, in index order (the primary first, always
    /// healthy). A stale replica is not written by persists; [`crate::resync::resync`] brings
    /// it back.
    pub fn replica_health(&self) -> Vec<ReplicaHealth> {
        self.lock_health().clone()
    }

    /// The policy this pool was opened with.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    /// Compare every replica's data with the primary's and report where they differ, changing
    /// nothing (for `pmempool check` and tests). Reads the whole pool from the primary and from
    /// every replica (a network read of the whole pool for a remote replica).
    ///
    /// Each returned range covers the first to the last differing byte of one 1 MiB comparison
    /// chunk (bytes inside it may be equal), adjacent ranges merged; ranges are in replica order,
    /// then offset order.
    pub fn verify_replicas(&self) -> Result<Vec<ReplicaDiff>, Error> {
        let mut out = Vec::new();
        for o in self.others.iter().filter(|o| !o.is_stale()) {
            self.diff_replica(o.index, o.rep(), &mut out)
                .map_err(|e| Error::Persist(name_replica(o.index, e)))?;
        }
        Ok(out)
    }

    /// Append the ranges where `rep` differs from the primary to `out`.
    pub(crate) fn diff_replica(
        &self,
        replica: usize,
        rep: &dyn Replica,
        out: &mut Vec<ReplicaDiff>,
    ) -> Result<(), PersistError> {
        self.diff_range(replica, rep, 0, self.len, out)
    }

    /// As [`diff_replica`](Self::diff_replica) over `[from, to)` only.
    pub(crate) fn diff_range(
        &self,
        replica: usize,
        rep: &dyn Replica,
        from: usize,
        to: usize,
        out: &mut Vec<ReplicaDiff>,
    ) -> Result<(), PersistError> {
        const CHUNK: usize = 1 << 20;
        let mut a = vec![0u8; CHUNK.min(to - from)];
        let mut b = vec![0u8; CHUNK.min(to - from)];
        let mut off = from;
        while off < to {
            let n = (to - off).min(CHUNK);
            self.primary.data.read(off, &mut a[..n]);
            rep.read(off, &mut b[..n])?;
            let (x, y) = (&a[..n], &b[..n]);
            if x != y {
                // Both positions exist because the slices differ.
                let first = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(0);
                let last = x.iter().zip(y).rposition(|(p, q)| p != q).unwrap_or(n - 1);
                let (start, end) = ((off + first) as u64, (off + last + 1) as u64);
                match out.last_mut() {
                    Some(d) if d.replica == replica && d.offset + d.len == start => {
                        d.len = end - d.offset
                    }
                    _ => out.push(ReplicaDiff {
                        replica,
                        offset: start,
                        len: end - start,
                    }),
                }
            }
            off += n;
        }
        Ok(())
    }

    /// Copy `[off, off+len)` from the primary to `rep` and flush it there (not drained):
    /// straight from the primary's memory when the replica reads it, else through `buf`.
    pub(crate) fn copy_from_primary(
        &self,
        rep: &dyn Replica,
        off: usize,
        len: usize,
        buf: &mut [u8],
    ) -> Result<(), PersistError> {
        if rep.reads_primary() {
            return rep.flush_from_primary(off, len);
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            self.primary.data.read(off + done, &mut buf[..n]);
            rep.write_flush(off + done, &buf[..n])?;
            done += n;
        }
        Ok(())
    }

    /// Open-time synchronisation: copy every range where a replica differs from the primary
    /// from the primary to that replica and make it durable there. Returns one line per
    /// replica that was changed (for [`repaired`](Self::repaired)). A replica that fails is
    /// handled by the failure policy.
    fn sync_replicas_from_primary(&self) -> Result<Vec<String>, Error> {
        let mut notes = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        for o in self.others.iter().filter(|o| !o.is_stale()) {
            let (replica, rep) = (o.index, o.rep());
            let one = |buf: &mut [u8]| -> Result<Option<String>, PersistError> {
                let mut diffs = Vec::new();
                self.diff_replica(replica, rep, &mut diffs)?;
                if diffs.is_empty() {
                    return Ok(None);
                }
                let mut bytes = 0u64;
                for d in &diffs {
                    self.copy_from_primary(rep, d.offset as usize, d.len as usize, buf)?;
                    bytes += d.len;
                }
                // The copied ranges must be durable in the replica before the pool is used.
                rep.drain()?;
                Ok(Some(format!(
                    "replica {replica} ({}): differed from the primary in {} range(s), first at \
                     offset {}; copied {bytes} bytes from the primary",
                    rep.describe(),
                    diffs.len(),
                    diffs[0].offset
                )))
            };
            match one(&mut buf) {
                Ok(Some(n)) => notes.push(n),
                Ok(None) => {}
                Err(e) => self.replica_failed(o, e).map_err(Error::Persist)?,
            }
        }
        Ok(notes)
    }

    /// The primary's part-0 header (None with NOHDRS).
    pub fn header(&self) -> Option<&PartHeader> {
        self.header.as_ref()
    }

    /// Whether the primary replica is persistent memory.
    pub fn is_pmem(&self) -> bool {
        self.primary.is_pmem
    }

    /// Number of replicas, the primary included.
    pub fn replica_count(&self) -> usize {
        1 + self.others.len()
    }

    /// The primary replica.
    pub fn primary(&self) -> &LocalReplica {
        &self.primary
    }

    /// Repairs done at open: stale header slots rewritten, replica ranges copied from the
    /// primary.
    pub fn repaired(&self) -> &[String] {
        &self.repaired
    }

    /// Shared handle (convenience for callers that share a pool between threads).
    pub fn into_arc(self) -> Arc<Pool> {
        Arc::new(self)
    }
}

/// Cache line size of the flush instructions (and of the crash model).
const CACHE_LINE: usize = 64;

/// `[off, off+len)` widened to whole cache lines, clipped to a region of `size` bytes.
fn cache_line_span(off: usize, len: usize, size: usize) -> (usize, usize) {
    let start = off & !(CACHE_LINE - 1);
    let end = (off + len).next_multiple_of(CACHE_LINE).min(size);
    (start, end - start)
}

impl Pool {
    /// The replicas' part of a `write_flush` on the primary: its streaming stores are made
    /// visible first (a fence; only with replicas), since replicas copy the bytes from the
    /// primary, remote ones possibly on the fabric's own thread.
    fn fan_out_streamed(&self, off: usize, len: usize) -> Result<(), PersistError> {
        if self.others.is_empty() {
            return Ok(());
        }
        self.primary.data.drain()?;
        self.flush_others(off, len)
    }

    /// The replicas' part of a flush of `[off, off+len)` (the primary's is done).
    fn flush_others(&self, off: usize, len: usize) -> Result<(), PersistError> {
        if self.others.is_empty() || len == 0 {
            return Ok(());
        }
        // A flush makes whole cache lines durable on the primary (x86 writes lines back, and the
        // crash model says so), so callers may store two words of a line and flush only one:
        // the replicas must get the same whole lines.
        let (off, len) = cache_line_span(off, len, self.len);
        // Fan out. Replicas that read the primary (remote ones) first: their RMA writes are
        // posted without waiting, so the network works while the local copies below run.
        for o in &self.others {
            if !o.is_stale() && o.rep().reads_primary() {
                if let Err(e) = o.rep().flush_from_primary(off, len) {
                    self.replica_failed(o, e)?;
                }
            }
        }
        if !self
            .others
            .iter()
            .any(|o| !o.is_stale() && !o.rep().reads_primary())
        {
            return Ok(());
        }
        // The others get a copy of the flushed range from the primary (flushed there, drained
        // by `drain`).
        const CHUNK: usize = 64 << 10;
        // Small flushes (the common case) copy through the stack, not a fresh allocation.
        let mut stack = [0u8; 4096];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len.min(CHUNK), 0);
            &mut heap
        };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.primary.data.read(off + done, &mut buf[..n]);
            for o in &self.others {
                if o.is_stale() || o.rep().reads_primary() {
                    continue;
                }
                if let Err(e) = o.rep().write_flush(off + done, &buf[..n]) {
                    self.replica_failed(o, e)?;
                }
            }
            done += n;
        }
        Ok(())
    }
}

impl Persister for Pool {
    fn len(&self) -> usize {
        self.len
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        crate::region::check_bounds(off, buf.len(), self.len);
        self.primary.data.read(off, buf)
    }
    fn write(&self, off: usize, data: &[u8]) {
        crate::region::check_bounds(off, data.len(), self.len);
        self.primary.data.write(off, data)
    }
    fn fill(&self, off: usize, byte: u8, len: usize) {
        crate::region::check_bounds(off, len, self.len);
        self.primary.data.fill(off, byte, len)
    }
    fn write_u64(&self, off: usize, v: u64) {
        crate::region::check_bounds(off, 8, self.len);
        self.primary.data.write_u64(off, v)
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        crate::region::check_bounds(off, data.len(), self.len);
        self.primary.data.write_flush(off, data)?;
        self.fan_out_streamed(off, data.len())
    }
    fn streams(&self) -> bool {
        self.primary.data.streams()
    }
    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        crate::region::check_bounds(off, len, self.len);
        self.primary.data.flush(off, len)?;
        self.flush_others(off, len)
    }
    fn drain(&self) -> Result<(), PersistError> {
        self.primary.data.drain()?;
        if self.others.is_empty() {
            return Ok(());
        }
        // Every replica's drain is started before any is waited for: remote replicas send
        // their PERSIST messages now and answer in parallel. Remote ones first, so local
        // drains overlap with their round trips.
        let mut pending = Vec::with_capacity(self.others.len());
        let mut first_err = None;
        for remote_pass in [true, false] {
            for o in &self.others {
                if o.is_stale() || matches!(o.rep, Rep::Remote(_)) != remote_pass {
                    continue;
                }
                match o.rep().drain_begin() {
                    Ok(p) => pending.push((o, p)),
                    Err(e) => {
                        if let Err(e) = self.replica_failed(o, e) {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        // Every pending drain is waited for even after a failure, so no lane is left with an
        // answer in flight.
        for (o, p) in pending {
            if let Err(e) = p.wait() {
                if let Err(e) = self.replica_failed(o, e) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn barrier(&self) -> Result<(), PersistError> {
        self.primary.data.drain()?;
        // Each replica orders on its own: local ones drain (a fence), remote ones send their
        // persist without waiting for the answer.
        for o in &self.others {
            if o.is_stale() {
                continue;
            }
            if let Err(e) = o.rep().barrier() {
                self.replica_failed(o, e)?;
            }
        }
        Ok(())
    }
    fn memcpy_persist(&self, off: usize, data: &[u8], flags: Flags) -> Result<(), PersistError> {
        crate::region::check_bounds(off, data.len(), self.len);
        if flags.contains(Flags::NO_FLUSH) {
            self.primary.data.write(off, data);
            return Ok(());
        }
        // Primary with the hardware fast path, then the same bytes to every replica.
        self.primary
            .data
            .memcpy_persist(off, data, flags | Flags::NO_DRAIN)?;
        if self
            .others
            .iter()
            .any(|o| !o.is_stale() && o.rep().reads_primary())
        {
            // Remote replicas read the primary, possibly on the fabric's own thread: the
            // primary's copy may have used streaming stores, which need a fence to be seen.
            self.primary.data.drain()?;
        }
        for o in &self.others {
            if o.is_stale() {
                continue;
            }
            let r = if o.rep().reads_primary() {
                o.rep().flush_from_primary(off, data.len())
            } else {
                o.rep().write_flush(off, data)
            };
            if let Err(e) = r {
                self.replica_failed(o, e)?;
            }
        }
        if !flags.contains(Flags::NO_DRAIN) {
            self.drain()?;
        }
        Ok(())
    }
}

/// `e` as an error of replica `replica` (unchanged when it already names it).
pub(crate) fn name_replica(replica: usize, e: PersistError) -> PersistError {
    match e {
        PersistError::Replica { replica: r, .. } if r == replica => e,
        e => PersistError::Replica {
            replica,
            message: e.to_string(),
        },
    }
}
