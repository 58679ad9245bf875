//! Object pools: [`ObjPool`] (open/recover, pool identity, reads, transactions), [`PoolTyped`]
//! (typed by its root object), the typed persistent pointer [`PPtr`] and the [`PType`] bound.
//!
//! # What may live in a pool
//! `T: PType` requires zerocopy's `FromBytes + IntoBytes + Immutable + KnownLayout`: no
//! references, no pointers, no padding, any bit pattern valid — all checked at compile time by
//! zerocopy's derives. Persistent pointers are [`PPtr`] (an offset and the pool's id), never
//! addresses. Objects are read by copy ([`ObjPool::read`], [`Tx::read`]) and written only inside
//! a transaction ([`Tx::write`], [`Tx::update`], [`Tx::set_field`]), which saves what it changes.
//!
//! # Pool metadata (heap user slots, see `docs/FORMAT.md`)
//! Slot 0: magic and version; slot 1: pool id; slot 2: root object offset; slot 3: run
//! generation (incremented at every open, it invalidates persistent locks).

use crate::lock::LockTable;
use crate::retire::Retirements;
use crate::tx::{SnapFlags, Target, Tx};
use crate::undo::{self, Layout, UndoLog, UndoRecovered};
use crate::Error;
use palloc::lock::{CacheAligned, FenceGuard, FenceLock};
use palloc::{Action, CreateOptions, Heap, Options};
use pool::{Persister, Pool};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Slot 0 value: "RSTXOBJ" and format version 3 in the last byte. Version 3 adds commit
/// records (redo entries), two slots per lane area and the `retired` word (docs/FORMAT.md,
/// "Transactions (undo log)").
pub const OBJ_MAGIC: u64 = u64::from_le_bytes(*b"RSTXOBJ\x03");
/// Slot 0 value of format version 2 (undo entries bound to their position, no commit records).
/// Recovered under its own rules, then upgraded to [`OBJ_MAGIC`].
pub const OBJ_MAGIC_V2: u64 = u64::from_le_bytes(*b"RSTXOBJ\x02");
/// Slot 0 value of format version 1 (undo entries checked without their position). Opened only
/// when no transaction was in flight, and then upgraded to [`OBJ_MAGIC`].
pub const OBJ_MAGIC_V1: u64 = u64::from_le_bytes(*b"RSTXOBJ\x01");
/// User slot holding [`OBJ_MAGIC`].
pub const SLOT_MAGIC: usize = 0;
/// User slot holding the pool id.
pub const SLOT_POOL_ID: usize = 1;
/// User slot holding the root object's offset (0: none yet).
pub const SLOT_ROOT: usize = 2;
/// User slot holding the run generation.
pub const SLOT_RUN_GEN: usize = 3;
/// Layout name of pools made by [`PoolTyped::create`].
pub const LAYOUT: &str = "rs-tx-obj";

/// A type number derived from a name (FNV-1a, top bit cleared: numbers with the top bit set
/// are reserved for the library). Use a name that is stable across renames of the Rust type,
/// e.g. `type_num("myapp::Node v1")`; [`ptype!`](crate::ptype) uses the module path.
pub const fn type_num(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let h = h >> 1;
    if h == 0 {
        1
    } else {
        h
    }
}

/// `Err(Error::Config)` for a type number with the top bit set: those are the library's own
/// (`palloc::INTERNAL_TYPE_MIN`; tx's undo overflow blocks are [`crate::undo::OVERFLOW_TYPE`]),
/// never a user type's. `what` names the type or call for the message.
pub(crate) fn refuse_internal_type(type_num: u64, what: &str) -> Result<(), Error> {
    if palloc::is_internal_type(type_num) {
        return Err(Error::Config(format!(
            "{what}: type number {type_num:#x} has the top bit set, reserved for the library's \
             own blocks (undo overflow, redo extensions)"
        )));
    }
    Ok(())
}

/// A type that may be stored in a pool. Implement it with [`ptype!`](crate::ptype) or by hand
/// with a stable [`type_num`].
pub trait PType: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    /// The type number stored in the allocation header of every object of this type.
    const TYPE_NUM: u64;
}

/// Implement [`PType`] for a type, its type number derived from its module path and name
/// (`ptype!(Node)`), or from an explicit stable name (`ptype!(Node, "myapp::Node v1")`).
#[macro_export]
macro_rules! ptype {
    ($t:ty) => {
        impl $crate::PType for $t {
            const TYPE_NUM: u64 = $crate::type_num(concat!(module_path!(), "::", stringify!($t)));
        }
    };
    ($t:ty, $name:expr) => {
        impl $crate::PType for $t {
            const TYPE_NUM: u64 = $crate::type_num($name);
        }
    };
}

ptype!(u8, "u8");
ptype!(u16, "u16");
ptype!(u32, "u32");
ptype!(u64, "u64");
ptype!(i64, "i64");

impl<const N: usize> PType for [u8; N] {
    const TYPE_NUM: u64 = type_num("[u8; N]") ^ (N as u64) << 8;
}
impl<const N: usize> PType for [u64; N] {
    const TYPE_NUM: u64 = type_num("[u64; N]") ^ (N as u64) << 8;
}

/// A typed persistent pointer: the object's offset in the pool and the pool's id (16 bytes,
/// little-endian, storable in objects). Null when both are zero. Using it on another pool
/// fails with [`Error::ForeignPointer`]; the object's type number is checked at every use.
///
/// Byte map: offset 0 `off` u64, offset 8 `pool` u64 (little-endian).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct PPtr<T> {
    // [off, pool]; one array field so that the type is `repr(transparent)`, which zerocopy
    // can prove padding-free for every `T`.
    raw: [u64; 2],
    _t: PhantomData<T>,
}

impl<T: PType> PType for PPtr<T> {
    const TYPE_NUM: u64 = type_num("PPtr") ^ T::TYPE_NUM;
}

impl<T> Clone for PPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PPtr<T> {}
impl<T> PartialEq for PPtr<T> {
    fn eq(&self, o: &Self) -> bool {
        self.raw == o.raw
    }
}
impl<T> Eq for PPtr<T> {}
impl<T> std::hash::Hash for PPtr<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.raw.hash(h)
    }
}
impl<T> std::fmt::Debug for PPtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_null() {
            write!(f, "PPtr::null")
        } else {
            write!(f, "PPtr({:#x} in pool {:#x})", self.off(), self.pool_id())
        }
    }
}
impl<T> Default for PPtr<T> {
    fn default() -> Self {
        PPtr::null()
    }
}

impl<T> PPtr<T> {
    /// The null pointer.
    pub const fn null() -> Self {
        PPtr {
            raw: [0, 0],
            _t: PhantomData,
        }
    }

    /// True for the null pointer.
    pub fn is_null(&self) -> bool {
        self.raw[0] == 0
    }

    /// Offset of the object in the pool.
    pub fn off(&self) -> u64 {
        u64::from_le(self.raw[0])
    }

    /// Id of the pool the pointer belongs to.
    pub fn pool_id(&self) -> u64 {
        u64::from_le(self.raw[1])
    }

    /// `Some(self)` unless null.
    pub fn non_null(self) -> Option<Self> {
        (!self.is_null()).then_some(self)
    }
}

/// Options of [`ObjPool::create_in`].
#[derive(Clone, Debug, Default)]
pub struct TxOptions {
    /// Heap layout (lanes, chunk size, per-lane undo area = `lane_extra_bytes`).
    pub heap: CreateOptions,
    /// Heap run-time options.
    pub runtime: Options,
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process; mix in time and the address space.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// An open pool of objects: the heap, one undo log per lane, the pool's identity.
pub struct ObjPool<P: Persister + ?Sized = Pool> {
    heap: Heap<P>,
    id: u64,
    run_gen: u64,
    instance: u64,
    undo: Vec<CacheAligned<FenceLock<UndoLog>>>,
    recovered: Vec<UndoRecovered>,
    pub(crate) locks: LockTable,
    pub(crate) retire: Arc<Retirements>,
}

impl<P: Persister + ?Sized> Drop for ObjPool<P> {
    /// Retire the committed logs still pending, so that a clean close leaves every log idle
    /// (best effort: if it fails, the next open rolls them forward, which is as good).
    fn drop(&mut self) {
        let p = self.heap.persister();
        let mut stored = false;
        for lane in 0..self.undo.len() {
            let gen = self.retire.pending(lane);
            if gen == 0 {
                continue;
            }
            let base = self.heap.header().lane_extra_off(lane);
            if p.read_u64(base + undo::STATE_WORD) == gen << 1 | 1 {
                p.write_u64(base + undo::STATE_WORD, gen << 1);
                stored |= p.flush(base + undo::STATE_WORD, 8).is_ok();
            }
            self.retire.clear_own(lane);
        }
        if stored {
            let _ = p.drain();
        }
    }
}

/// Opens a format-1 pool as format 2: possible when no lane has a transaction in flight (an
/// active v1 undo log would not check under v2's CRCs, so it could not be rolled back); then
/// the magic is rewritten, durably, before anything else runs.
fn upgrade_v1<P: Persister + ?Sized>(
    heap: &Heap<P>,
    area: usize,
    magic_slot: usize,
) -> Result<(), Error> {
    let hdr = heap.header();
    let p = heap.persister();
    let active: Vec<usize> = (0..hdr.lane_count as usize)
        .filter(|&i| area >= MIN_EXTRA && undo::is_active(&**p, hdr.lane_extra_off(i)))
        .collect();
    if !active.is_empty() {
        return Err(Error::NotObjPool(format!(
            "pool format 1 (\"RSTXOBJ\" v1) with a transaction in flight on lane(s) {active:?}: \
             this version cannot roll it back; open the pool once with the version that wrote \
             it, then with this one"
        )));
    }
    p.write_u64(magic_slot, OBJ_MAGIC_V2);
    p.persist(magic_slot, 8)?;
    Ok(())
}

/// Upgrades a format-2 pool whose logs are all idle (recovered under format 2's rules) to
/// format 3: every `retired` word zeroed and durable, then the magic.
fn upgrade_v2<P: Persister + ?Sized>(
    heap: &Heap<P>,
    area: usize,
    magic_slot: usize,
) -> Result<(), Error> {
    let hdr = heap.header();
    let p = heap.persister();
    if let Some(w) = Layout::new(3, area).retired_word(area) {
        for i in 0..hdr.lane_count as usize {
            p.write_u64(hdr.lane_extra_off(i) + w, 0);
            p.flush(hdr.lane_extra_off(i) + w, 8)?;
        }
        p.drain()?;
    }
    p.write_u64(magic_slot, OBJ_MAGIC);
    p.persist(magic_slot, 8)?;
    Ok(())
}

fn lock_undo(m: &FenceLock<UndoLog>) -> FenceGuard<'_, UndoLog> {
    // A panic while holding an undo log released it; the lane's transaction was then dropped
    // (and rolled back) while unwinding, so the log itself is consistent.
    m.lock()
}

impl<P: Persister + ?Sized> ObjPool<P> {
    /// Create an object pool over the whole persister (its contents are overwritten).
    pub fn create_in(p: Arc<P>, opts: &TxOptions) -> Result<ObjPool<P>, Error> {
        check_extra(&opts.heap)?;
        let heap = Heap::create(p, &opts.heap, opts.runtime.clone())?;
        ObjPool::attach(heap)
    }

    /// Open the object pool in a persister: recover the heap's redo logs, roll back any
    /// transaction in flight, reset persistent locks.
    pub fn open_in(p: Arc<P>, opts: Options) -> Result<ObjPool<P>, Error> {
        let heap = Heap::open(p, opts)?;
        ObjPool::attach(heap)
    }

    fn attach(heap: Heap<P>) -> Result<ObjPool<P>, Error> {
        let hdr = *heap.header();
        let p = heap.persister().clone();
        let area = hdr.lane_extra_bytes as usize;
        let slot = |i| heap.user_slot(i) as usize;
        let magic = p.read_u64(slot(SLOT_MAGIC));
        if magic == OBJ_MAGIC_V1 {
            upgrade_v1(&heap, area, slot(SLOT_MAGIC))?;
        }
        let magic = p.read_u64(slot(SLOT_MAGIC));
        let version = match magic {
            OBJ_MAGIC_V2 => 2,
            0 | OBJ_MAGIC => 3,
            _ => {
                return Err(Error::NotObjPool(format!(
                    "user slot 0 holds {magic:#018x}, expected {OBJ_MAGIC:#018x} (\"RSTXOBJ\" \
                     v3) or {OBJ_MAGIC_V2:#018x} (v2)"
                )))
            }
        };
        if area < MIN_EXTRA {
            return Err(Error::Config(format!(
                "heap lanes have {area} extra bytes, the undo log needs at least {MIN_EXTRA}"
            )));
        }
        let mut recovered = Vec::new();
        let layout = Layout::new(version, area);
        for i in 0..hdr.lane_count as usize {
            let base = hdr.lane_extra_off(i);
            recovered.push(undo::recover(&*p, base, area, layout)?);
            if version == 2 {
                // Retires a generation a crash may have half-used, at format 2's first slot
                // (see `UndoLog::open`; format 3 logs are opened once, below).
                UndoLog::open(&*p, base, area, layout)?;
            }
        }
        if version == 2 {
            upgrade_v2(&heap, area, slot(SLOT_MAGIC))?;
        }
        let layout = Layout::new(3, area);
        let mut undo = Vec::new();
        let mut words = Vec::new();
        for i in 0..hdr.lane_count as usize {
            let base = hdr.lane_extra_off(i);
            undo.push(CacheAligned(FenceLock::new(UndoLog::open(
                &*p, base, area, layout,
            )?)));
            words.push(layout.retired_word(area).map(|w| base + w));
        }
        let retire = Arc::new(Retirements::new(words));
        let guard = retire.clone();
        // Retired durably before palloc's operation stores anything: its first fence may be its
        // commit point (a one-word free, a one-fence redo batch). The range (an object lookup,
        // for a free) is asked for only when some log is pending.
        heap.set_store_guard(Box::new(move |p: &P, range| {
            if guard.any_pending() && guard.retire(p, None, range())? {
                p.barrier()?;
            }
            Ok(())
        }));
        if magic == 0 {
            if let Some(o) = heap.objects().next() {
                return Err(Error::NotObjPool(format!(
                    "heap has objects (first at {:#x}) but no object-pool metadata",
                    o.off
                )));
            }
            heap.publish(vec![
                Action::Set {
                    off: slot(SLOT_POOL_ID) as u64,
                    value: random_id(),
                },
                Action::Set {
                    off: slot(SLOT_MAGIC) as u64,
                    value: OBJ_MAGIC,
                },
            ])?;
        }
        let id = p.read_u64(slot(SLOT_POOL_ID));
        if id == 0 {
            return Err(Error::Corrupt("pool id is zero".into()));
        }
        let run_gen = p.read_u64(slot(SLOT_RUN_GEN)).wrapping_add(1);
        p.write_u64(slot(SLOT_RUN_GEN), run_gen);
        // Durable before any lock is taken in this run: a crash must never bring back a
        // generation whose lock words may say "locked".
        p.persist(slot(SLOT_RUN_GEN), 8)?;
        Ok(ObjPool {
            heap,
            id,
            run_gen,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            undo,
            recovered,
            locks: LockTable::new(),
            retire,
        })
    }

    /// The heap (for statistics, iteration and the checker; allocate through transactions).
    pub fn heap(&self) -> &Heap<P> {
        &self.heap
    }

    /// The persister the pool lives in.
    pub fn persister(&self) -> &Arc<P> {
        self.heap.persister()
    }

    /// This pool's id (stored in every [`PPtr`] made here).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This open's run generation (persistent locks of older runs count as unlocked).
    pub fn run_generation(&self) -> u64 {
        self.run_gen
    }

    /// What undo recovery did in each lane at open.
    pub fn recovered(&self) -> &[UndoRecovered] {
        &self.recovered
    }

    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }

    pub(crate) fn undo_log(&self, lane: usize) -> FenceGuard<'_, UndoLog> {
        lock_undo(&self.undo[lane])
    }

    /// Offset of the root object (0 when there is none).
    pub fn root_off(&self) -> u64 {
        self.persister()
            .read_u64(self.heap.user_slot(SLOT_ROOT) as usize)
    }

    /// A typed pointer to the object at `off` in this pool, after checking that it is a live
    /// object of type `T`.
    pub fn ptr_at<T: PType>(&self, off: u64) -> Result<PPtr<T>, Error> {
        let p = self.make_ptr(off);
        self.check_live::<T>(&p)?;
        Ok(p)
    }

    pub(crate) fn make_ptr<T>(&self, off: u64) -> PPtr<T> {
        PPtr {
            raw: [off.to_le(), self.id.to_le()],
            _t: PhantomData,
        }
    }

    pub(crate) fn check_ptr<T>(&self, ptr: &PPtr<T>) -> Result<u64, Error> {
        if ptr.is_null() {
            return Err(Error::Null);
        }
        if ptr.pool_id() != self.id {
            return Err(Error::ForeignPointer {
                off: ptr.off(),
                ptr_pool: ptr.pool_id(),
                this_pool: self.id,
            });
        }
        Ok(ptr.off())
    }

    pub(crate) fn check_live<T: PType>(&self, ptr: &PPtr<T>) -> Result<u64, Error> {
        refuse_internal_type(T::TYPE_NUM, std::any::type_name::<T>())?;
        let off = self.check_ptr(ptr)?;
        let o = self.heap.object(off)?;
        if o.type_num != T::TYPE_NUM {
            return Err(Error::TypeMismatch {
                off,
                stored: o.type_num,
                expected: T::TYPE_NUM,
                type_name: std::any::type_name::<T>(),
            });
        }
        let needed = std::mem::size_of::<T>() as u64;
        if o.usable_size < needed {
            return Err(Error::TooSmall {
                off,
                usable: o.usable_size,
                needed,
            });
        }
        Ok(off)
    }

    /// A copy of the object `ptr` points to.
    ///
    /// Takes no lock, so it may run while another thread's transaction writes the same object
    /// (isolation is none beyond locks, as libpmemobj). That race is sound — every `Persister`
    /// must allow concurrent reads and stores, the hardware region through word-atomic
    /// accesses — and its outcome is defined per aligned 8-byte word: each word of the copy is
    /// whole, as the writer (or its roll-back) left it, but the copy may mix old and new words.
    /// Hold a persistent lock ([`crate::PMutex`], [`crate::PRwLock`]) for a consistent copy.
    pub fn read<T: PType>(&self, ptr: &PPtr<T>) -> Result<T, Error> {
        let off = self.check_live(ptr)?;
        let mut v = T::new_zeroed();
        self.persister().read(off as usize, v.as_mut_bytes());
        Ok(v)
    }

    /// Run `f` with a shared reference to a copy of the object.
    pub fn with<T: PType, R>(&self, ptr: &PPtr<T>, f: impl FnOnce(&T) -> R) -> Result<R, Error> {
        Ok(f(&self.read(ptr)?))
    }

    /// Run `f` as a transaction on the calling thread's lane. `Ok` commits (then the on-commit
    /// hooks run); `Err(e)` — or a panic, or a nested transaction that failed — rolls back
    /// every change (then the on-abort hooks run) and returns the error. Error types convert
    /// from [`Error`], so `?` works on every operation inside.
    ///
    /// A second `tx` on the same pool from inside `f` fails with [`Error::AlreadyInTx`] (use
    /// [`Tx::nested`]).
    pub fn tx<'a, R, E>(&'a self, f: impl FnOnce(&mut Tx<'a, P>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<Error>,
    {
        let mut tx = Tx::begin(self)?;
        let r = f(&mut tx);
        let r = match r {
            Ok(v) if !tx.failed() => match tx.commit() {
                Ok(hooks) => {
                    drop(tx);
                    hooks.into_iter().for_each(|h| h());
                    return Ok(v);
                }
                Err(e) if tx.is_finished() => {
                    // Committed despite the error (CommittedReplicationFailed: its on-commit
                    // hooks run), or left to the next open (no hooks): nothing to roll back.
                    let hooks = tx.hooks_after_commit_error();
                    drop(tx);
                    hooks.into_iter().for_each(|h| h());
                    return Err(E::from(e));
                }
                Err(e) => Err(E::from(e)),
            },
            Ok(_) => Err(E::from(Error::NestedAborted)),
            Err(e) => Err(e),
        };
        // Abort. A failure here poisons the lane (recovery at the next open rolls back); the
        // caller's error is still the one returned.
        let hooks = tx.abort().unwrap_or_default();
        drop(tx);
        hooks.into_iter().for_each(|h| h());
        r
    }
}

/// Smallest lane extra area: header, one entry header and a minimal piece.
pub const MIN_EXTRA: usize = undo::SEG_HEADER_BYTES + undo::ENTRY_HEADER_BYTES + 64;

fn check_extra(c: &CreateOptions) -> Result<(), Error> {
    if (c.lane_extra_bytes as usize) < MIN_EXTRA {
        return Err(Error::Config(format!(
            "lane_extra_bytes {} is below the undo log's minimum {MIN_EXTRA}",
            c.lane_extra_bytes
        )));
    }
    Ok(())
}

/// Typed operations of a transaction.
impl<'a, P: Persister + ?Sized> Tx<'a, P> {
    fn typed_target<T: PType>(
        &self,
        ptr: &PPtr<T>,
        rel: u64,
        len: u64,
    ) -> Result<(u64, Target), Error> {
        let off = self.pool.check_ptr(ptr)?;
        let t = self.check_target(
            off,
            Some((T::TYPE_NUM, std::any::type_name::<T>())),
            rel,
            len,
        )?;
        Ok((off, t))
    }

    /// A copy of the object (sees this transaction's own writes and allocations).
    pub fn read<T: PType>(&self, ptr: &PPtr<T>) -> Result<T, Error> {
        let (off, _) = self.typed_target(ptr, 0, std::mem::size_of::<T>() as u64)?;
        let mut v = T::new_zeroed();
        self.pool.persister().read(off as usize, v.as_mut_bytes());
        Ok(v)
    }

    /// Replace the object with `value` (old bytes saved first).
    pub fn write<T: PType>(&mut self, ptr: &PPtr<T>, value: T) -> Result<(), Error> {
        self.write_with(ptr, value, SnapFlags::NONE)
    }

    /// [`write`](Self::write) with snapshot flags.
    pub fn write_with<T: PType>(
        &mut self,
        ptr: &PPtr<T>,
        value: T,
        flags: SnapFlags,
    ) -> Result<(), Error> {
        let (off, t) = self.typed_target(ptr, 0, std::mem::size_of::<T>() as u64)?;
        self.write_checked(t, off, 0, value.as_bytes(), flags)
    }

    /// Read the object, let `f` change the copy, write back the bytes that changed (only those
    /// are saved and written). Returns what `f` returns.
    pub fn update<T: PType, R>(
        &mut self,
        ptr: &PPtr<T>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, Error> {
        let (off, t) = self.typed_target(ptr, 0, std::mem::size_of::<T>() as u64)?;
        let mut v = T::new_zeroed();
        self.pool.persister().read(off as usize, v.as_mut_bytes());
        let mut old = T::new_zeroed();
        old.as_mut_bytes().copy_from_slice(v.as_bytes());
        let r = f(&mut v);
        let (a, b) = (old.as_bytes(), v.as_bytes());
        if let (Some(first), Some(last)) = (
            a.iter().zip(b).position(|(x, y)| x != y),
            a.iter().zip(b).rposition(|(x, y)| x != y),
        ) {
            self.write_checked(t, off, first as u64, &b[first..=last], SnapFlags::NONE)?;
        }
        Ok(r)
    }

    /// Set one field (or array element) of the object: `field` picks it from a reference to
    /// the object, e.g. `tx.set_field(&node, |n| &n.next, next)`. Only that field is saved.
    ///
    /// Panics when `field` returns a reference outside the object it was given (a programmer
    /// error).
    pub fn set_field<T: PType, F: IntoBytes + Immutable>(
        &mut self,
        ptr: &PPtr<T>,
        field: impl FnOnce(&T) -> &F,
        value: F,
    ) -> Result<(), Error> {
        let rel = crate::lock::field_offset(field);
        let size = std::mem::size_of::<F>();
        let (off, t) = self.typed_target(ptr, rel, size as u64)?;
        self.write_checked(t, off, rel, value.as_bytes(), SnapFlags::NONE)
    }

    /// Save the whole object now (with `flags`), e.g. before a series of writes.
    pub fn snapshot<T: PType>(&mut self, ptr: &PPtr<T>, flags: SnapFlags) -> Result<(), Error> {
        let len = std::mem::size_of::<T>() as u64;
        let (off, t) = self.typed_target(ptr, 0, len)?;
        self.snapshot_checked(t, off, len, flags)
    }

    /// Allocate a zeroed `T`; persistent at commit, gone on abort.
    pub fn alloc<T: PType>(&mut self) -> Result<PPtr<T>, Error> {
        let off = self.alloc_raw(std::mem::size_of::<T>().max(1) as u64, T::TYPE_NUM, true)?;
        Ok(self.pool.make_ptr(off))
    }

    /// Allocate a `T` holding `value`.
    pub fn alloc_value<T: PType>(&mut self, value: T) -> Result<PPtr<T>, Error> {
        let off = self.alloc_raw(std::mem::size_of::<T>().max(1) as u64, T::TYPE_NUM, false)?;
        let ptr = self.pool.make_ptr(off);
        self.write_checked(Target::Fresh, off, 0, value.as_bytes(), SnapFlags::NONE)?;
        Ok(ptr)
    }

    /// Free the object at commit (at once if this transaction allocated it).
    pub fn free<T: PType>(&mut self, ptr: PPtr<T>) -> Result<(), Error> {
        let (off, _) = self.typed_target(&ptr, 0, 0)?;
        self.free_raw(off)
    }
}

/// A pool typed by its root object: the root exists from the first open on (zeroed), and
/// [`root`](Self::root) points to it.
pub struct PoolTyped<Root: PType, P: Persister + ?Sized = Pool> {
    pool: ObjPool<P>,
    root: PPtr<Root>,
}

impl<Root: PType, P: Persister + ?Sized> std::ops::Deref for PoolTyped<Root, P> {
    type Target = ObjPool<P>;
    fn deref(&self) -> &ObjPool<P> {
        &self.pool
    }
}

impl<Root: PType> PoolTyped<Root, Pool> {
    /// Create a single-file pool of `size` bytes at `path` (which must not exist). The file
    /// appears at `path` only once the heap and the root object are laid out: a crash during
    /// create leaves no pool file (at most a temporary one the next create removes).
    pub fn create(path: &Path, size: u64) -> Result<Self, Error> {
        let (p, staged) = Pool::create_file_staged(path, size, LAYOUT)?;
        let pool = PoolTyped::create_in(Arc::new(p), &TxOptions::default())?;
        staged.publish()?;
        Ok(pool)
    }

    /// Open the single-file pool at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let p = Pool::open_file(path, Some(LAYOUT))?;
        PoolTyped::open_in(Arc::new(p), Options::default())
    }

    /// Open the pool at `path`, creating it with `size` bytes if the file does not exist.
    pub fn open_or_create(path: &Path, size: u64) -> Result<Self, Error> {
        if path.exists() {
            PoolTyped::open(path)
        } else {
            PoolTyped::create(path, size)
        }
    }

    /// Create a pool from a poolset file (local parts and replicas).
    pub fn create_poolset(set: &Path) -> Result<Self, Error> {
        let p = Pool::create_poolset(set, LAYOUT)?;
        PoolTyped::create_in(Arc::new(p), &TxOptions::default())
    }

    /// Open a pool from a poolset file.
    pub fn open_poolset(set: &Path) -> Result<Self, Error> {
        let p = Pool::open_poolset(set, Some(LAYOUT))?;
        PoolTyped::open_in(Arc::new(p), Options::default())
    }
}

impl<Root: PType, P: Persister + ?Sized> PoolTyped<Root, P> {
    /// Create in a persister (overwriting it).
    pub fn create_in(p: Arc<P>, opts: &TxOptions) -> Result<Self, Error> {
        PoolTyped::with_root(ObjPool::create_in(p, opts)?)
    }

    /// Open in a persister.
    pub fn open_in(p: Arc<P>, opts: Options) -> Result<Self, Error> {
        PoolTyped::with_root(ObjPool::open_in(p, opts)?)
    }

    /// Type an open object pool by its root, creating the (zeroed) root if there is none.
    pub fn with_root(pool: ObjPool<P>) -> Result<Self, Error> {
        let slot = pool.heap().user_slot(SLOT_ROOT);
        let mut off = pool.root_off();
        if off == 0 {
            let size = std::mem::size_of::<Root>().max(1) as u64;
            off = pool.heap().zalloc(size, Root::TYPE_NUM, Some(slot))?;
        }
        let root = pool.make_ptr(off);
        match pool.check_live(&root) {
            Ok(_) => {}
            Err(Error::TypeMismatch {
                stored, expected, ..
            }) => {
                return Err(Error::RootType {
                    stored,
                    expected,
                    type_name: std::any::type_name::<Root>(),
                })
            }
            Err(e) => return Err(e),
        }
        Ok(PoolTyped { pool, root })
    }

    /// The root object.
    pub fn root(&self) -> PPtr<Root> {
        self.root
    }

    /// The untyped pool.
    pub fn into_inner(self) -> ObjPool<P> {
        self.pool
    }
}
