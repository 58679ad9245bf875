//! The heap: zones of chunks, runs of small blocks, spans of whole chunks, and the volatile
//! indexes rebuilt at open.
//!
//! # Crash consistency
//! Every change of *allocated state* (a run bitmap word, a chunk header turning a span into a
//! used object, a run, or back to free) and every user pointer set with it goes through one
//! lane's redo log ([`crate::ulog`]) in one commit. Bytes that are not yet reachable (the
//! allocation header of a reserved block, a new run's header and bitmap, zeroed object bytes)
//! are written and flushed beforehand; the commit's first fence makes them durable before the
//! state that makes them reachable. The only metadata written outside the log is the split of a
//! free span into two free spans, which is ordered so that every intermediate image scans the
//! same free chunks (see `Heap::take_chunks`).
//!
//! # Fast paths
//! Allocating or freeing one run block (with no destination, or one in a user slot or a
//! lane's extra area; also a publish of just that) skips the general publish: the chunk stays
//! locked from choosing the bit to the commit, nothing is allocated or sorted, and the new
//! bitmap word comes from `RunState::pbits`, a volatile copy of the bitmap as written to media
//! (kept under the chunk lock by every path that writes a bitmap word), so media is never
//! re-read. Without a destination the commit is the redo log's one-entry case: one aligned
//! 8-byte streaming store (`Persister::write_u64_flush`) + fence, i.e. one fence per alloc
//! (when the block's header already holds the right bytes) and one per free — the minimum for
//! an operation that is durable on return. A free without a destination takes no lane at all.
//!
//! # Concurrency
//! Each lane has an arena: the arena owns a redo log and, per allocation class, one active run.
//! A thread takes the first free lane trying round-robin from its home lane (`THREAD_NO %
//! lanes`) and never waits for a lane it holds itself: a thread-local record lists the lanes it
//! holds, so a heap call inside a transaction (which holds its lane throughout) takes a second
//! lane, and a thread holding a lane waits for another only for a bounded time
//! ([`Error::NoLane`]), since that lane's holder may be waiting for it. The fast path locks the
//! arena (uncontended while threads find different free lanes) and the chunk's own lock;
//! there is no heap-wide lock. Arena and chunk locks are [`FenceLock`]s: the fast paths leave
//! them right after their fence, and a `Mutex`'s locked-instruction unlock would wait there
//! for the write-back to finish (see [`crate::lock`]). The free-span index and the per-class lists of runs with free
//! blocks are shared and locked only on slow paths. Lock order: arena (a second one only as
//! above: try-lock, or a bounded wait) → chunk (ascending index when several) → class list →
//! free spans.
//! [`Heap::object`] (the pointer check on every typed access in `tx`) takes no lock at all: a
//! per-chunk atomic `info` word, stored under the chunk lock whenever the chunk becomes or
//! stops being a run or a live span, gives the geometry; the bitmap word and allocation header
//! are then read from media and the `info` word re-checked.
//!
//! # Growing redo logs
//! A publish with more entries than a lane's log area holds first grows the lane's log with
//! extensions (spans of [`REDO_EXT_TYPE`], allocated and linked in one redo batch; see
//! [`crate::ulog`]), then commits as usual; batch building is indexed (hash maps), so a
//! publish of 10 000 actions costs linear time.

use crate::layout::{self, HeapHeader, RunGeom, Zone, ALLOC_HEADER_BYTES, CHUNK_FREE, CHUNK_RUN};
use crate::lock::{CacheAligned, FenceGuard, FenceLock};
use crate::ulog::{Entry, Poison, Recovered, Ulog, UlogError};
use crate::Error;
use pool::Persister;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Layout parameters chosen at create (stored in the heap header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Chunk size: a power of two, at least 4 KiB. Default 256 KiB.
    pub chunk_size: u64,
    /// Maximum chunks per zone. Default 65528 (PMDK's).
    pub zone_max_chunks: u32,
    /// Lanes (arenas, redo logs). Default 16.
    pub lane_count: u32,
    /// Bytes of each lane's redo log (multiple of 64). Default 4096 (252 entries).
    pub lane_redo_bytes: u32,
    /// Bytes per lane reserved for upper layers (multiple of 64). Default 8192.
    pub lane_extra_bytes: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            chunk_size: layout::CHUNK_SIZE_DEFAULT,
            zone_max_chunks: layout::ZONE_MAX_CHUNKS_DEFAULT,
            lane_count: 16,
            lane_redo_bytes: 4096,
            lane_extra_bytes: 8192,
        }
    }
}

/// Type number of the heap blocks that extend a lane's redo log (reserved: `alloc`, `reserve`
/// and `realloc` refuse it). Such blocks are live objects on media (the checker counts them, and
/// so do [`Stats`]) but [`Heap::objects`] skips them and [`Heap::object`] and `free` refuse them.
pub const REDO_EXT_TYPE: u64 = u64::MAX - 2;

/// Type numbers from here up (the top bit set) are internal: blocks of the heap itself
/// ([`REDO_EXT_TYPE`]) and of upper layers' own structures (allocated with
/// [`Lane::reserve_internal`], e.g. tx's undo overflow blocks). `alloc`, `reserve` and
/// `realloc` refuse them; [`Heap::objects`] skips such blocks and [`Heap::object`], `free` and
/// `publish`'s frees refuse them (they are not user objects), while the checker and [`Stats`]
/// count them as live.
pub const INTERNAL_TYPE_MIN: u64 = 1 << 63;

/// Whether `type_num` is internal (see [`INTERNAL_TYPE_MIN`]).
pub fn is_internal_type(type_num: u64) -> bool {
    type_num >= INTERNAL_TYPE_MIN
}

/// Most bytes one redo log extension takes (a batch needing more chains several).
const REDO_EXT_MAX_BYTES: u64 = 4 << 20;

/// Per-chunk word read without the chunk lock ([`Heap::object`]): what the chunk is as far as
/// live objects go. Written under the chunk lock whenever the chunk's state changes.
mod info {
    /// Not the start of an object, nor a run.
    pub const NONE: u64 = 0;
    /// A run; the low 32 bits index `Heap::run_geoms`.
    pub const RUN: u64 = 1 << 62;
    /// The first chunk of a live span; the low 32 bits are its chunk count.
    pub const SPAN: u64 = 2 << 62;
    /// With `SPAN`: a redo log extension (not a user object).
    pub const INTERNAL: u64 = 1 << 61;
    /// The tag bits.
    pub const TAG: u64 = 3 << 62;
}

/// Allocation classes: the block sizes (allocation header included) served from runs.
/// Larger requests take whole chunks. Not stored on media: runs record their own block size,
/// so a heap can be reopened with different classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocClasses {
    block_sizes: Vec<u64>,
}

impl AllocClasses {
    /// Sixteen-byte steps up to 256 bytes, then eight steps per doubling, up to an eighth of
    /// a chunk.
    pub fn default_for(chunk_size: u64) -> AllocClasses {
        let max = chunk_size / 8;
        let mut v: Vec<u64> = (32..256).step_by(16).collect();
        let mut p = 256u64;
        while p <= max {
            for k in 0..8 {
                let s = p + k * p / 8;
                if s <= max {
                    v.push(s);
                }
            }
            p *= 2;
        }
        AllocClasses { block_sizes: v }
    }

    /// Explicit block sizes (header included): ascending, multiples of 16, at least 32, each
    /// leaving room for at least two blocks in a chunk.
    pub fn new(block_sizes: Vec<u64>, chunk_size: u64) -> Result<AllocClasses, Error> {
        if block_sizes.is_empty() {
            return Err(Error::Config("no allocation classes".into()));
        }
        for w in block_sizes.windows(2) {
            if w[0] >= w[1] {
                return Err(Error::Config(format!(
                    "allocation classes not strictly ascending at {} >= {}",
                    w[0], w[1]
                )));
            }
        }
        for &b in &block_sizes {
            if RunGeom::new(b, chunk_size).is_none() {
                return Err(Error::Config(format!(
                    "allocation class {b}: need a multiple of 16, >= 32, two blocks per {chunk_size}-byte chunk"
                )));
            }
        }
        Ok(AllocClasses { block_sizes })
    }

    /// The block sizes.
    pub fn block_sizes(&self) -> &[u64] {
        &self.block_sizes
    }
}

/// Run-time options of an open heap.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Allocation classes; `None` means [`AllocClasses::default_for`] the heap's chunk size.
    pub classes: Option<AllocClasses>,
}

/// A live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// Offset of the object's first usable byte.
    pub off: u64,
    /// Type number given at allocation.
    pub type_num: u64,
    /// Usable bytes.
    pub usable_size: u64,
}

/// Heap statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Sum of the usable sizes of live objects.
    pub allocated_bytes: u64,
    /// Live objects.
    pub objects: u64,
    /// Chunks that are runs.
    pub runs: u64,
    /// Free chunks.
    pub free_chunks: u64,
    /// All chunks.
    pub total_chunks: u64,
}

/// A reserved, not yet published, allocation ([`Heap::reserve`]). Publish it with
/// [`Action::Alloc`] or release it with [`Heap::cancel`]; dropping it keeps the block reserved
/// until the heap is reopened (nothing persistent refers to it).
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    heap: u64,
    off: u64,
    usable: u64,
    type_num: u64,
    kind: ResKind,
    /// Its header (or zeroed bytes) was flushed without a fence
    /// ([`Lane::reserve_unfenced`]): [`Heap::cancel`] fences before the block can be
    /// reserved again.
    unfenced: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResKind {
    Block { chunk: usize, bit: u32 },
    Span { chunk: usize, n: u32 },
}

impl ResKind {
    fn chunk(&self) -> usize {
        match *self {
            ResKind::Block { chunk, .. } | ResKind::Span { chunk, .. } => chunk,
        }
    }
}

impl Reservation {
    /// Offset the object will have.
    pub fn off(&self) -> u64 {
        self.off
    }
    /// Usable bytes.
    pub fn usable_size(&self) -> u64 {
        self.usable
    }
    /// Type number.
    pub fn type_num(&self) -> u64 {
        self.type_num
    }
}

/// One element of an atomic publish ([`Heap::publish`]).
#[derive(Debug)]
pub enum Action {
    /// Make a reservation a live object.
    Alloc(Reservation),
    /// Free the object at this offset.
    Free(u64),
    /// Store an 8-byte value (a user slot, a lane's extra area, or inside a live object or one
    /// allocated by the same publish).
    Set {
        /// Destination (8-byte aligned).
        off: u64,
        /// Value.
        value: u64,
    },
}

struct RunState {
    geom: RunGeom,
    class: Option<usize>,
    /// Allocated or reserved blocks (the persistent bitmap plus reservations).
    bits: Vec<u64>,
    /// The run's bitmap as last written to media (every bitmap store goes through this
    /// chunk's lock and updates it), so no operation re-reads media for it. Always a subset
    /// of `bits`.
    pbits: Vec<u64>,
    /// No word of `bits` before this one has a zero bit (where the next search starts).
    hint: usize,
    free: u32,
    owner: Option<usize>,
    in_avail: bool,
}

enum ChunkState {
    /// Free, or not the first chunk of anything.
    Free,
    /// First chunk of a span of `n` chunks holding one object (`used`) or reserved for one.
    Span {
        n: u32,
        used: bool,
    },
    /// A later chunk of the span starting at `start`.
    Interior {
        start: usize,
    },
    Run(Box<RunState>),
}

struct FreeSpans {
    by_start: BTreeMap<usize, usize>,
    by_size: BTreeSet<(usize, usize)>,
    zone_first: Vec<usize>,
    free_chunks: usize,
}

impl FreeSpans {
    fn zone(&self, c: usize) -> usize {
        self.zone_first.partition_point(|&f| f <= c) - 1
    }

    fn insert(&mut self, mut start: usize, mut len: usize) {
        self.free_chunks += len;
        let z = self.zone(start);
        if let Some((&ps, &pl)) = self.by_start.range(..start).next_back() {
            if ps + pl == start && self.zone(ps) == z {
                self.by_start.remove(&ps);
                self.by_size.remove(&(pl, ps));
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.by_start.get(&(start + len)) {
            if self.zone(start + len) == z {
                self.by_start.remove(&(start + len));
                self.by_size.remove(&(nl, start + len));
                len += nl;
            }
        }
        self.by_start.insert(start, len);
        self.by_size.insert((len, start));
    }

    fn take_best(&mut self, n: usize) -> Option<(usize, usize)> {
        let &(len, start) = self.by_size.range((n, 0)..).next()?;
        self.by_size.remove(&(len, start));
        self.by_start.remove(&start);
        self.free_chunks -= len;
        Some((start, len))
    }
}

struct Arena {
    ulog: Ulog,
    active: Vec<Option<usize>>,
}

/// One shard of the statistics. Each thread updates the shard of its home lane, so two
/// threads allocating at once do not bounce one cache line between their cores (shared
/// counters made 2-thread alloc+free slower than 1 thread); a shard may go "negative" (an
/// object allocated on one shard and freed on another), so values wrap and only their sum
/// over all shards means anything.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    allocated_bytes: AtomicU64,
    objects: AtomicU64,
    runs: AtomicU64,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);
thread_local! {
    static THREAD_NO: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    /// `(heap id, lane index)` of every [`Lane`] this thread holds (a `Lane` is not `Send`, so
    /// it is dropped on the thread that took it and removes its own record).
    static HELD_LANES: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
}

/// How long a thread that already holds a lane waits for another one before giving up with
/// [`Error::NoLane`]: the holders may be waiting for something this thread holds (a lock taken
/// inside its transaction), so it must not wait for ever.
const LANE_WAIT_WHILE_HOLDING_MS: u64 = 500;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread while holding a heap lock is a bug that already reported
    // itself; the volatile state it guards is still memory-safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An open heap inside a persister's byte range.
pub struct Heap<P: Persister + ?Sized> {
    p: Arc<P>,
    hdr: HeapHeader,
    zones: Vec<Zone>,
    chunks: Vec<CacheAligned<FenceLock<ChunkState>>>,
    /// One `info` word per chunk (see the `info` module).
    info: Vec<AtomicU64>,
    /// Geometries of runs: the classes' (same indexes as `geoms`), then any other found at open.
    run_geoms: Vec<RunGeom>,
    classes: AllocClasses,
    geoms: Vec<RunGeom>,
    avail: Vec<Mutex<Vec<usize>>>,
    spans: Mutex<FreeSpans>,
    arenas: Vec<CacheAligned<FenceLock<Arena>>>,
    id: u64,
    counters: Box<[Counters]>,
    recovered: Vec<Recovered>,
    /// Shared by every lane's redo log: set once any log (or the upper layer's own log, see
    /// [`Heap::poison_until_reopen`]) is left undecided; every commit path refuses from then on.
    poison: Poison,
    /// The upper layer's hook run before every free and every store into a caller-named word
    /// (see [`Heap::set_store_guard`]).
    store_guard: std::sync::OnceLock<StoreGuard<P>>,
}

/// A hook run before the heap frees bytes or stores into a caller-named word, given the heap's
/// persister and a function returning the byte range (None: unknown, any bytes), called only
/// when the hook needs it: see [`Heap::set_store_guard`].
pub type StoreGuard<P> =
    Box<dyn Fn(&P, &mut dyn FnMut() -> Option<(u64, u64)>) -> Result<(), Error> + Send + Sync>;

/// Exclusive use of one lane: its redo log, its extra area, and heap operations that run on
/// it. Obtained with [`Heap::lane`]; upper layers (transactions) hold it for a whole
/// transaction. Not `Send` (it holds a lock guard): released on the thread that took it.
pub struct Lane<'h, P: Persister + ?Sized> {
    heap: &'h Heap<P>,
    index: usize,
    arena: FenceGuard<'h, Arena>,
}

impl<P: Persister + ?Sized> Drop for Lane<'_, P> {
    fn drop(&mut self) {
        let me = (self.heap.id, self.index);
        // `try_with`: during thread teardown the record may already be gone with the thread.
        let _ = HELD_LANES.try_with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&x| x == me) {
                h.swap_remove(i);
            }
        });
    }
}

impl<P: Persister + ?Sized> Heap<P> {
    /// Create a heap over the whole persister (overwriting whatever is there), then open it.
    pub fn create(p: Arc<P>, c: &CreateOptions, opts: Options) -> Result<Heap<P>, Error> {
        let hdr = HeapHeader {
            heap_size: p.len() as u64,
            chunk_size: c.chunk_size,
            zone_max_chunks: c.zone_max_chunks,
            lane_count: c.lane_count,
            lane_redo_bytes: c.lane_redo_bytes,
            lane_extra_bytes: c.lane_extra_bytes,
        };
        hdr.validate()
            .map_err(|(f, m)| Error::Config(format!("{f}: {m}")))?;
        let zones = hdr.zones();
        if zones.is_empty() {
            return Err(Error::TooSmall {
                len: p.len() as u64,
                need: (hdr.zones_off() + layout::PAGE + c.chunk_size as usize) as u64,
            });
        }
        // A crash before the last step leaves "no heap here", never a half-made heap.
        p.fill(0, 0, layout::HEAP_HEADER_AREA);
        p.persist(0, layout::HEAP_HEADER_AREA)?;
        for i in 0..hdr.lane_count as usize {
            Ulog::format(&*p, hdr.lane_off(i), hdr.lane_redo_bytes as usize)?;
            let extra = hdr.lane_extra_off(i);
            p.fill(extra, 0, hdr.lane_extra_bytes as usize);
            p.flush(extra, hdr.lane_extra_bytes as usize)?;
        }
        for z in &zones {
            p.write(z.off, &z.encode_header());
            p.fill(z.chunk_header_off(0), 0, 8 * z.chunks);
            p.write_u64(
                z.chunk_header_off(0),
                layout::chunk_header(CHUNK_FREE, z.chunks as u32),
            );
            p.flush(z.off, layout::ZONE_HEADER_BYTES + 8 * z.chunks)?;
        }
        // Lanes and zones durable before the header that makes them a heap.
        p.drain()?;
        p.write(0, &hdr.encode());
        p.persist(0, layout::HEAP_HEADER_BYTES)?;
        Heap::open(p, opts)
    }

    /// Open the heap: recover every lane's redo log, then rebuild the volatile indexes.
    pub fn open(p: Arc<P>, opts: Options) -> Result<Heap<P>, Error> {
        let len = p.len() as u64;
        if len < layout::HEAP_HEADER_AREA as u64 {
            return Err(Error::TooSmall {
                len,
                need: layout::HEAP_HEADER_AREA as u64,
            });
        }
        let mut raw = [0u8; layout::HEAP_HEADER_BYTES];
        p.read(0, &mut raw);
        let hdr = HeapHeader::decode(&raw, len).map_err(Error::from_header)?;
        let classes = match opts.classes {
            Some(c) => AllocClasses::new(c.block_sizes, hdr.chunk_size)?,
            None => AllocClasses::default_for(hdr.chunk_size),
        };
        let geoms: Vec<RunGeom> = classes
            .block_sizes
            .iter()
            .map(|&b| RunGeom::new(b, hdr.chunk_size).expect("classes validated above"))
            .collect();
        let mut arenas = Vec::new();
        let mut recovered = Vec::new();
        let poison = Poison::default();
        for i in 0..hdr.lane_count as usize {
            let (mut ulog, rec) = Ulog::open(&*p, hdr.lane_off(i), hdr.lane_redo_bytes as usize)?;
            ulog.share_poison(&poison);
            recovered.push(rec);
            arenas.push(CacheAligned(FenceLock::new(Arena {
                ulog,
                active: vec![None; geoms.len()],
            })));
        }
        let zones = hdr.zones();
        let total: usize = zones.iter().map(|z| z.chunks).sum();
        let mut states: Vec<ChunkState> = (0..total).map(|_| ChunkState::Free).collect();
        let mut spans = FreeSpans {
            by_start: BTreeMap::new(),
            by_size: BTreeSet::new(),
            zone_first: zones.iter().map(|z| z.first_chunk).collect(),
            free_chunks: 0,
        };
        let counters: Box<[Counters]> = (0..arenas.len().max(1))
            .map(|_| Counters::default())
            .collect();
        let counters_at_open = &counters[0];
        let mut avail: Vec<Vec<usize>> = vec![Vec::new(); geoms.len()];
        let mut infos: Vec<u64> = vec![info::NONE; total];
        let mut run_geoms = geoms.clone();
        for (zi, z) in zones.iter().enumerate() {
            let mut zh = [0u8; layout::ZONE_HEADER_BYTES];
            p.read(z.off, &mut zh);
            if zh != z.encode_header() {
                return Err(Error::Corrupt(format!(
                    "zone {zi} header at {:#x} is not a zone of {} chunks",
                    z.off, z.chunks
                )));
            }
            let mut i = 0;
            while i < z.chunks {
                let g = z.first_chunk + i;
                let w = p.read_u64(z.chunk_header_off(i));
                let (kind, flags, size) = layout::decode_chunk_header(w);
                let size = size as usize;
                if flags != 0 || size == 0 || i + size > z.chunks {
                    return Err(Error::Corrupt(format!(
                        "zone {zi} chunk {i}: header {w:#018x} invalid"
                    )));
                }
                match kind {
                    CHUNK_FREE => spans.insert(g, size),
                    layout::CHUNK_USED => {
                        states[g] = ChunkState::Span {
                            n: size as u32,
                            used: true,
                        };
                        let internal = is_internal_type(p.read_u64(z.chunk_off(i) + 8));
                        infos[g] =
                            info::SPAN | size as u64 | if internal { info::INTERNAL } else { 0 };
                        for s in &mut states[g + 1..g + size] {
                            *s = ChunkState::Interior { start: g };
                        }
                        counters_at_open.objects.fetch_add(1, Ordering::Relaxed);
                        counters_at_open.allocated_bytes.fetch_add(
                            size as u64 * hdr.chunk_size - ALLOC_HEADER_BYTES,
                            Ordering::Relaxed,
                        );
                    }
                    CHUNK_RUN if size == 1 => {
                        let off = z.chunk_off(i);
                        let mut rh = [0u8; layout::RUN_HEADER_BYTES];
                        p.read(off, &mut rh);
                        let geom = RunGeom::decode(&rh, hdr.chunk_size)
                            .map_err(|m| Error::Corrupt(format!("zone {zi} chunk {i}: {m}")))?;
                        let bits = read_bitmap(&*p, off, &geom);
                        if tail_bits(&bits, geom.nblocks) != 0 {
                            return Err(Error::Corrupt(format!(
                                "zone {zi} chunk {i}: bitmap has bits past block {}",
                                geom.nblocks
                            )));
                        }
                        let used: u32 = bits.iter().map(|w| w.count_ones()).sum();
                        let class = geoms.iter().position(|c| *c == geom);
                        let gi = match run_geoms.iter().position(|c| *c == geom) {
                            Some(gi) => gi,
                            None => {
                                run_geoms.push(geom);
                                run_geoms.len() - 1
                            }
                        };
                        infos[g] = info::RUN | gi as u64;
                        let free = geom.nblocks - used;
                        if free > 0 {
                            if let Some(c) = class {
                                avail[c].push(g);
                            }
                        }
                        counters_at_open
                            .objects
                            .fetch_add(used as u64, Ordering::Relaxed);
                        counters_at_open.allocated_bytes.fetch_add(
                            used as u64 * (geom.block_size - ALLOC_HEADER_BYTES),
                            Ordering::Relaxed,
                        );
                        counters_at_open.runs.fetch_add(1, Ordering::Relaxed);
                        states[g] = ChunkState::Run(Box::new(RunState {
                            geom,
                            class,
                            pbits: bits.clone(),
                            bits,
                            hint: 0,
                            free,
                            owner: None,
                            in_avail: free > 0 && class.is_some(),
                        }));
                    }
                    _ => {
                        return Err(Error::Corrupt(format!(
                            "zone {zi} chunk {i}: header {w:#018x} has unknown type or run size"
                        )))
                    }
                }
                i += size;
            }
        }
        Ok(Heap {
            p,
            hdr,
            zones,
            chunks: states
                .into_iter()
                .map(|st| CacheAligned(FenceLock::new(st)))
                .collect(),
            info: infos.into_iter().map(AtomicU64::new).collect(),
            run_geoms,
            classes,
            geoms,
            avail: avail.into_iter().map(Mutex::new).collect(),
            spans: Mutex::new(spans),
            arenas,
            id: NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed),
            counters,
            recovered,
            poison,
            store_guard: std::sync::OnceLock::new(),
        })
    }

    /// The persister the heap lives in.
    pub fn persister(&self) -> &Arc<P> {
        &self.p
    }

    /// The stored layout parameters.
    pub fn header(&self) -> &HeapHeader {
        &self.hdr
    }

    /// The allocation classes in use.
    pub fn classes(&self) -> &AllocClasses {
        &self.classes
    }

    /// What recovery did in each lane at open.
    pub fn recovered(&self) -> &[Recovered] {
        &self.recovered
    }

    /// Refuse every commit of this heap until it is reopened: an upper layer's own log at
    /// `base` was left undecided (the primary's persistence failed while it mattered), so the
    /// next open may replay or roll back its absolute values over anything committed after
    /// now. The first call's reason is kept.
    pub fn poison_until_reopen(&self, base: usize, why: String) {
        self.poison.set(base, why);
    }

    /// Set (once; later calls are ignored) a hook that runs on the calling thread before any
    /// store of the operation, ahead of every free (the object's usable bytes: they may be
    /// reused by anyone; None when the object is not found, and the free then fails) and every
    /// store into a word the caller named (an allocation's or publish's `dest`/`Set`: its 8
    /// bytes). An upper layer that may still rewrite such bytes at recovery (tx's committed
    /// logs awaiting retirement) gives up that claim there, durably before it returns (the
    /// operation's first fence may be its commit point). An `Err` fails the operation before
    /// anything changed.
    pub fn set_store_guard(&self, guard: StoreGuard<P>) {
        let _ = self.store_guard.set(guard);
    }

    fn guard_store(&self, mut range: impl FnMut() -> Option<(u64, u64)>) -> Result<(), Error> {
        match self.store_guard.get() {
            Some(g) => g(&self.p, &mut range),
            None => Ok(()),
        }
    }

    /// [`guard_store`](Self::guard_store) for the 8-byte word at `off`.
    fn guard_word(&self, off: u64) -> Result<(), Error> {
        self.guard_store(|| Some((off, off.saturating_add(8))))
    }

    /// [`guard_store`](Self::guard_store) for every free and `Set` among `actions` (the
    /// general publish path; the one-block paths guard in `commit_bit`).
    fn guard_actions(&self, actions: &[Action]) -> Result<(), Error> {
        for a in actions {
            match *a {
                Action::Free(off) => self.guard_store(|| {
                    self.object(off)
                        .ok()
                        .map(|o| (off, off.saturating_add(o.usable_size)))
                })?,
                Action::Set { off, .. } => self.guard_word(off)?,
                Action::Alloc(_) => {}
            }
        }
        Ok(())
    }

    /// `Err` ([`UlogError::Poisoned`]) once a log of this heap was left undecided: no commit
    /// (of the heap or of an upper layer writing through it) may take place until reopen.
    pub fn check_usable(&self) -> Result<(), Error> {
        Ok(self.poison.check()?)
    }

    /// Offset of user slot `i` (0..8): an 8-byte word upper layers own, settable with
    /// [`Action::Set`] (e.g. the root object's offset). Panics when `i >= 8`.
    pub fn user_slot(&self, i: usize) -> u64 {
        assert!(i < layout::USER_SLOTS, "user slot {i} out of 0..8");
        (layout::USER_SLOTS_OFF + 8 * i) as u64
    }

    /// The lane the calling thread tries first (its arena when lanes are not contended).
    pub fn home_lane(&self) -> usize {
        THREAD_NO.with(|n| *n) % self.arenas.len()
    }

    /// Take a lane for the calling thread: the first free one, trying every lane round-robin
    /// from the thread's [home lane](Self::home_lane) and skipping those this thread already
    /// holds (a heap call inside a transaction, which holds its lane throughout, uses another
    /// lane instead of waiting for its own). When every lane is busy:
    /// - if this thread holds none, it waits for its home lane (the holders never wait for it);
    /// - if it holds some, it retries the others for a bounded time, then returns
    ///   [`Error::NoLane`] — immediately when it holds them all (e.g. `lane_count = 1`) —
    ///   since a holder may be waiting for something this thread holds.
    pub fn lane(&self) -> Result<Lane<'_, P>, Error> {
        let lanes = self.arenas.len();
        let home = self.home_lane();
        let held: Vec<usize> = HELD_LANES.with(|h| {
            h.borrow()
                .iter()
                .filter(|&&(id, _)| id == self.id)
                .map(|&(_, i)| i)
                .collect()
        });
        let try_all = || {
            (0..lanes)
                .map(|k| (home + k) % lanes)
                .filter(|i| !held.contains(i))
                .find_map(|i| self.arenas[i].try_lock().map(|g| (i, g)))
        };
        if let Some((i, g)) = try_all() {
            return Ok(self.hold(i, g));
        }
        if held.is_empty() {
            return Ok(self.hold(home, self.arenas[home].lock()));
        }
        let no_lane = |waited_ms| Error::NoLane {
            lanes,
            held: held.len(),
            waited_ms,
        };
        if held.len() >= lanes {
            return Err(no_lane(0));
        }
        let started = std::time::Instant::now();
        let mut pause_us = 10u64;
        // Bounded: ends at the deadline.
        loop {
            let waited = started.elapsed();
            if waited >= std::time::Duration::from_millis(LANE_WAIT_WHILE_HOLDING_MS) {
                return Err(no_lane(waited.as_millis() as u64));
            }
            std::thread::sleep(std::time::Duration::from_micros(pause_us));
            pause_us = (pause_us * 2).min(2_000);
            if let Some((i, g)) = try_all() {
                return Ok(self.hold(i, g));
            }
        }
    }

    /// Record lane `index` (whose arena `arena` guards) as held by this thread.
    fn hold<'h>(&'h self, index: usize, arena: FenceGuard<'h, Arena>) -> Lane<'h, P> {
        HELD_LANES.with(|h| h.borrow_mut().push((self.id, index)));
        Lane {
            heap: self,
            index,
            arena,
        }
    }

    /// Allocate `size` bytes of type `type_num`; the object's offset is stored at `dest` (if
    /// any) in the same atomic step.
    pub fn alloc(&self, size: u64, type_num: u64, dest: Option<u64>) -> Result<u64, Error> {
        self.lane()?.alloc(size, type_num, dest, false)
    }

    /// As [`alloc`](Self::alloc), with the usable bytes zeroed.
    pub fn zalloc(&self, size: u64, type_num: u64, dest: Option<u64>) -> Result<u64, Error> {
        self.lane()?.alloc(size, type_num, dest, true)
    }

    /// Free the object at `off`; `dest` (if any) is set to 0 in the same atomic step.
    pub fn free(&self, off: u64, dest: Option<u64>) -> Result<(), Error> {
        match dest {
            // A run block with no destination needs no lane: the commit is one 8-byte store.
            None => {
                if self.free_block(off, None)? {
                    return Ok(());
                }
            }
            Some(d) if self.is_plain_dest(d) => {
                let mut lane = self.lane()?;
                let set = Entry { off: d, value: 0 };
                if self.free_block(off, Some((set, &mut lane.arena.ulog)))? {
                    return Ok(());
                }
                return lane.publish(vec![Action::Free(off), Action::Set { off: d, value: 0 }]);
            }
            Some(_) => {}
        }
        let mut acts = vec![Action::Free(off)];
        if let Some(d) = dest {
            acts.push(Action::Set { off: d, value: 0 });
        }
        self.lane()?.publish(acts)
    }

    /// Resize: returns the new offset (the same one if the object already has room). The
    /// contents up to the smaller size are kept; the old object is freed, the new one
    /// allocated and `dest` set in one atomic step. `off == 0` allocates; `size == 0` frees
    /// (and returns 0).
    pub fn realloc(
        &self,
        off: u64,
        size: u64,
        type_num: u64,
        dest: Option<u64>,
    ) -> Result<u64, Error> {
        let mut lane = self.lane()?;
        if off == 0 {
            return lane.alloc(size, type_num, dest, false);
        }
        let old = self.object(off)?;
        if size == 0 {
            let mut acts = vec![Action::Free(off)];
            if let Some(d) = dest {
                acts.push(Action::Set { off: d, value: 0 });
            }
            lane.publish(acts)?;
            return Ok(0);
        }
        if size <= old.usable_size && type_num == old.type_num {
            if let Some(d) = dest {
                lane.publish(vec![Action::Set { off: d, value: off }])?;
            }
            return Ok(off);
        }
        let r = lane.reserve_inner(size, type_num, false)?;
        let new = r.off;
        // The new block is unreachable until the publish; copy into it and make the copy
        // durable first (the publish's log covers only its own entries).
        let n = old.usable_size.min(size) as usize;
        let mut buf = vec![0u8; n.min(64 << 10)];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len());
            self.p.read(off as usize + done, &mut buf[..k]);
            self.p.write(new as usize + done, &buf[..k]);
            done += k;
        }
        if let Err(e) = self.p.persist(new as usize, n) {
            self.release(&r);
            return Err(e.into());
        }
        let mut acts = vec![Action::Alloc(r), Action::Free(off)];
        if let Some(d) = dest {
            acts.push(Action::Set { off: d, value: new });
        }
        lane.publish(acts)?;
        Ok(new)
    }

    /// Reserve an object (not yet persistent; see [`Reservation`]).
    pub fn reserve(&self, size: u64, type_num: u64) -> Result<Reservation, Error> {
        self.lane()?.reserve_inner(size, type_num, false)
    }

    /// Publish `actions` in one atomic step. On an error nothing is published and every
    /// reservation among `actions` is cancelled.
    pub fn publish(&self, actions: Vec<Action>) -> Result<(), Error> {
        self.lane()?.publish(actions)
    }

    /// Release the reservations among `actions` (the other actions are dropped).
    ///
    /// A reservation from [`Lane::reserve_unfenced`] whose header was flushed without a fence
    /// is released only after a fence ([`Persister::drain`]) on the calling thread — call
    /// `cancel` on the thread that reserved it. If that fence fails, such reservations stay
    /// reserved until the heap is reopened (a volatile leak; see `reserve_unfenced` for why
    /// releasing them unfenced is not safe).
    pub fn cancel(&self, actions: Vec<Action>) {
        // A failed fence is not the caller's error here: the blocks stay reserved (see
        // `try_cancel`), which only leaks them until the next open.
        let _ = self.try_cancel(actions);
    }

    /// [`cancel`](Self::cancel), reporting a failure of the fence that unfenced headers need:
    /// then those reservations stay reserved until the next open (a volatile leak) and the
    /// error — typically a replica that failed — is returned, so that a caller in the middle
    /// of an operation (a transaction freeing what it allocated) fails instead of going on
    /// as if every copy of the pool had kept up.
    pub fn try_cancel(&self, actions: Vec<Action>) -> Result<(), Error> {
        let mine: Vec<Reservation> = actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Alloc(r) if r.heap == self.id => Some(r),
                _ => None,
            })
            .collect();
        // The unfenced headers durable (this thread's flushes, and every replica's copy of
        // them) before another reservation of the same blocks may trust them or write its own.
        let fenced = if mine.iter().any(|r| r.unfenced) {
            self.p.drain()
        } else {
            Ok(())
        };
        for r in mine.iter().filter(|r| fenced.is_ok() || !r.unfenced) {
            self.release(r);
        }
        fenced.map_err(Error::from)
    }

    /// The live object at `off`, or [`Error::NotAllocated`]. Takes no lock: the chunk's
    /// `info` word (kept under the chunk lock by every change of chunk state) gives the run
    /// geometry or span, then the run's bitmap word and the allocation header are read from
    /// media; the `info` word is read again afterwards and the lookup repeated if it changed.
    /// An object freed concurrently may be reported either way (as with any racing free).
    ///
    /// The unlocked media reads race with stores of other lanes into the same run (publish,
    /// free); they are sound because every `Persister` must allow that (its "Concurrency"
    /// contract: the hardware region reads and writes the mapping as atomic 8-byte words), so
    /// the bitmap word and the type word are each read whole, as one store left them.
    pub fn object(&self, off: u64) -> Result<ObjectInfo, Error> {
        let not = Error::NotAllocated { off };
        let c = self.chunk_of(off).ok_or(not)?;
        // Bounded: a chunk changing state under every lookup is not a state worth waiting for.
        for _ in 0..16 {
            let w = self.info[c].load(Ordering::Acquire);
            let got = self.object_by_info(c, w, off);
            // Seqlock-style re-check: the media reads above must not move after the second
            // `info` load (an acquire load alone only keeps later accesses after it).
            std::sync::atomic::fence(Ordering::Acquire);
            if self.info[c].load(Ordering::Acquire) == w {
                return got;
            }
        }
        let _g = self.chunks[c].lock();
        self.object_by_info(c, self.info[c].load(Ordering::Acquire), off)
    }

    fn object_by_info(&self, c: usize, w: u64, off: u64) -> Result<ObjectInfo, Error> {
        let not = Error::NotAllocated { off };
        match w & info::TAG {
            info::RUN => {
                let g = self.run_geoms[w as u32 as usize];
                let data = self.chunk_off(c) + g.data_off as u64;
                let rel = off
                    .checked_sub(data + ALLOC_HEADER_BYTES)
                    .ok_or(Error::NotAllocated { off })?;
                let idx = rel / g.block_size;
                if rel % g.block_size != 0 || idx >= g.nblocks as u64 {
                    return Err(not);
                }
                let idx = idx as u32;
                if self.p.read_u64(self.bitmap_word_off(c, idx)) & (1 << (idx % 64)) == 0 {
                    return Err(not);
                }
                let type_num = self.p.read_u64(off as usize - 8);
                if is_internal_type(type_num) {
                    return Err(not);
                }
                Ok(ObjectInfo {
                    off,
                    type_num,
                    usable_size: g.block_size - ALLOC_HEADER_BYTES,
                })
            }
            info::SPAN
                if w & info::INTERNAL == 0 && off == self.chunk_off(c) + ALLOC_HEADER_BYTES =>
            {
                Ok(self.span_info(c, w as u32))
            }
            _ => Err(not),
        }
    }

    /// Usable bytes of the live object at `off`.
    pub fn usable_size(&self, off: u64) -> Result<u64, Error> {
        Ok(self.object(off)?.usable_size)
    }

    /// Every live object, in offset order (one chunk locked at a time: objects allocated or
    /// freed concurrently may or may not be seen).
    pub fn objects(&self) -> Objects<'_, P> {
        Objects {
            heap: self,
            next_chunk: 0,
            buf: VecDeque::new(),
            type_num: None,
        }
    }

    /// Live objects of one type.
    pub fn objects_of_type(&self, type_num: u64) -> Objects<'_, P> {
        Objects {
            type_num: Some(type_num),
            ..self.objects()
        }
    }

    /// The statistics shard of the calling thread (its home lane's).
    fn counters(&self) -> &Counters {
        &self.counters[THREAD_NO.with(|n| *n) % self.counters.len()]
    }

    /// The sum of one counter over every shard (each shard's value wraps, the sum does not).
    fn sum_counters(&self, field: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.counters.iter().fold(0u64, |a, c| {
            a.wrapping_add(field(c).load(Ordering::Relaxed))
        })
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        Stats {
            allocated_bytes: self.sum_counters(|c| &c.allocated_bytes),
            objects: self.sum_counters(|c| &c.objects),
            runs: self.sum_counters(|c| &c.runs),
            free_chunks: lock(&self.spans).free_chunks as u64,
            total_chunks: self.chunks.len() as u64,
        }
    }

    // ----- geometry helpers -----

    fn zone_of(&self, c: usize) -> &Zone {
        let zi = self.zones.partition_point(|z| z.first_chunk <= c) - 1;
        &self.zones[zi]
    }

    fn chunk_off(&self, c: usize) -> u64 {
        let z = self.zone_of(c);
        z.chunk_off(c - z.first_chunk) as u64
    }

    fn chunk_hdr_off(&self, c: usize) -> u64 {
        let z = self.zone_of(c);
        z.chunk_header_off(c - z.first_chunk) as u64
    }

    fn chunk_of(&self, off: u64) -> Option<usize> {
        let off = off as usize;
        let zi = self
            .zones
            .partition_point(|z| z.off <= off)
            .checked_sub(1)?;
        let z = &self.zones[zi];
        let first = z.chunk_off(0);
        (off >= first && off < z.end()).then(|| z.first_chunk + (off - first) / z.chunk_size)
    }

    fn bitmap_word_off(&self, c: usize, idx: u32) -> usize {
        self.chunk_off(c) as usize + layout::RUN_HEADER_BYTES + 8 * (idx as usize / 64)
    }

    /// (block index, block start) of the block containing `off` in run chunk `c`.
    fn block_at(&self, c: usize, rs: &RunState, off: u64) -> Option<(u32, u64)> {
        let data = self.chunk_off(c) + rs.geom.data_off as u64;
        let idx = off.checked_sub(data)? / rs.geom.block_size;
        (idx < rs.geom.nblocks as u64).then(|| (idx as u32, data + idx * rs.geom.block_size))
    }

    fn span_info(&self, c: usize, n: u32) -> ObjectInfo {
        let start = self.chunk_off(c);
        ObjectInfo {
            off: start + ALLOC_HEADER_BYTES,
            type_num: self.p.read_u64(start as usize + 8),
            usable_size: n as u64 * self.hdr.chunk_size - ALLOC_HEADER_BYTES,
        }
    }

    fn class_for(&self, block: u64) -> Option<usize> {
        let i = self.classes.block_sizes.partition_point(|&b| b < block);
        (i < self.classes.block_sizes.len()).then_some(i)
    }

    fn in_lane_extra(&self, off: u64) -> bool {
        let off = off as usize;
        if self.hdr.lane_extra_bytes == 0 || off < layout::HEAP_HEADER_AREA {
            return false;
        }
        let rel = off - layout::HEAP_HEADER_AREA;
        let lane = rel / self.hdr.lane_bytes();
        lane < self.hdr.lane_count as usize
            && rel % self.hdr.lane_bytes() >= self.hdr.lane_redo_bytes as usize
    }

    fn is_user_slot(&self, off: u64) -> bool {
        let s = layout::USER_SLOTS_OFF as u64;
        off >= s && off < s + 8 * layout::USER_SLOTS as u64
    }

    // ----- slow paths -----

    /// Take `n` contiguous free chunks. A free span longer than `n` is split persistently
    /// first (remainder header, fence, then the first header, fence), so every crash image
    /// scans the same set of free chunks. On exhaustion, empty runs are reclaimed once.
    fn take_chunks(&self, arena: &mut Arena, n: usize) -> Result<usize, Error> {
        for attempt in 0..2 {
            {
                let mut sp = lock(&self.spans);
                if let Some((start, len)) = sp.take_best(n) {
                    if len > n {
                        let rest = (len - n) as u32;
                        let h = self.chunk_hdr_off(start + n) as usize;
                        self.p.write_u64(h, layout::chunk_header(CHUNK_FREE, rest));
                        // The remainder's header durable before the first header shrinks.
                        let r = self.p.persist(h, 8).and_then(|_| {
                            let h0 = self.chunk_hdr_off(start) as usize;
                            self.p
                                .write_u64(h0, layout::chunk_header(CHUNK_FREE, n as u32));
                            self.p.persist(h0, 8)
                        });
                        if let Err(e) = r {
                            sp.insert(start, len);
                            return Err(e.into());
                        }
                        sp.insert(start + n, len - n);
                    }
                    return Ok(start);
                }
            }
            if attempt == 0 {
                self.reclaim(arena)?;
            }
        }
        Err(Error::OutOfMemory {
            requested: n as u64 * self.hdr.chunk_size,
        })
    }

    /// Turn every empty run nobody owns back into a free chunk (one redo commit each).
    fn reclaim(&self, arena: &mut Arena) -> Result<(), Error> {
        for slot in arena.active.iter_mut() {
            if let Some(c) = *slot {
                let mut g = self.chunks[c].lock();
                if let ChunkState::Run(rs) = &mut *g {
                    if rs.free == rs.geom.nblocks {
                        rs.owner = None;
                        *slot = None;
                    }
                }
            }
        }
        for c in 0..self.chunks.len() {
            let mut g = self.chunks[c].lock();
            let ChunkState::Run(rs) = &*g else { continue };
            if rs.owner.is_some() || rs.free != rs.geom.nblocks {
                continue;
            }
            arena.ulog.commit(
                &*self.p,
                &[Entry {
                    off: self.chunk_hdr_off(c),
                    value: layout::chunk_header(CHUNK_FREE, 1),
                }],
            )?;
            *g = ChunkState::Free;
            self.info[c].store(info::NONE, Ordering::Release);
            self.counters().runs.fetch_sub(1, Ordering::Relaxed);
            lock(&self.spans).insert(c, 1);
        }
        Ok(())
    }

    fn make_run(&self, arena: &mut Arena, ai: usize, c: usize, class: usize) -> Result<(), Error> {
        let geom = self.geoms[class];
        let off = self.chunk_off(c) as usize;
        self.p.write(off, &geom.encode());
        let bm = 8 * geom.bitmap_words();
        self.p.fill(off + layout::RUN_HEADER_BYTES, 0, bm);
        // Durable (own fence) before the redo log that makes the chunk a run is written: a
        // log can be complete in a crash image while bytes merely flushed with it are not.
        let r = self
            .p
            .persist(off, layout::RUN_HEADER_BYTES + bm)
            .map_err(UlogError::from)
            .and_then(|_| {
                arena.ulog.commit(
                    &*self.p,
                    &[Entry {
                        off: self.chunk_hdr_off(c),
                        value: layout::chunk_header(CHUNK_RUN, 1),
                    }],
                )
            });
        if let Err(e) = r {
            lock(&self.spans).insert(c, 1);
            return Err(e.into());
        }
        let mut g = self.chunks[c].lock();
        self.info[c].store(info::RUN | class as u64, Ordering::Release);
        *g = ChunkState::Run(Box::new(RunState {
            geom,
            class: Some(class),
            bits: vec![0; geom.bitmap_words()],
            pbits: vec![0; geom.bitmap_words()],
            hint: 0,
            free: geom.nblocks,
            owner: Some(ai),
            in_avail: false,
        }));
        self.counters().runs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    // ----- fast paths (one run block) -----

    /// A destination the fast paths accept without looking at any chunk: an aligned user
    /// slot or a word of a lane's extra area (the general path accepts these unconditionally
    /// too).
    fn is_plain_dest(&self, d: u64) -> bool {
        d % 8 == 0 && (self.is_user_slot(d) || self.in_lane_extra(d))
    }

    /// Make a reserved block's allocation header (and, with `zero`, its usable bytes) durable
    /// with this thread's own fence. A redo log is all-or-nothing only for its own entries, so
    /// bytes it makes reachable must be durable before it is (and a publish may run on another
    /// thread, whose fence would not order this thread's flushes). A header that already holds
    /// the right bytes is durable (only this step and redo commits write headers, both
    /// persisting), so a reused block of the same type costs no store, flush or fence.
    ///
    /// With `fence == false` the bytes are flushed but not fenced: the caller owes a fence on
    /// this thread before the block is published. Returns whether anything was flushed.
    fn prepare_block(
        &self,
        start: u64,
        usable: u64,
        type_num: u64,
        zero: bool,
        fence: bool,
    ) -> Result<bool, Error> {
        let start = start as usize;
        let want = layout::alloc_header(usable + ALLOC_HEADER_BYTES, type_num);
        let mut have = [0u8; ALLOC_HEADER_BYTES as usize];
        self.p.read(start, &mut have);
        let mut dirty = None;
        if have != want {
            self.p.write(start, &want);
            dirty = Some((start, ALLOC_HEADER_BYTES as usize));
        }
        if zero {
            self.p
                .fill(start + ALLOC_HEADER_BYTES as usize, 0, usable as usize);
            dirty = Some((start, (ALLOC_HEADER_BYTES + usable) as usize));
        }
        if let Some((off, len)) = dirty {
            self.p.flush(off, len)?;
            if fence {
                self.p.drain()?;
            }
        }
        Ok(dirty.is_some())
    }

    /// Set (`alloc`) or clear block `bit`'s bit in run `c`'s persistent bitmap, computing the
    /// word from the volatile copy `pbits` (media is not read), and store `set` (if any) in
    /// the same atomic step. Alone, the word is one aligned 8-byte streaming store + fence (the
    /// redo log's one-entry path); with `set`, a two-entry commit of that redo log. The
    /// caller holds the chunk's lock. `pbits` changes only on success: after a failure the
    /// next commit of this word writes the old state of this bit again, which matches the
    /// volatile state callers keep on failure (reserved or still allocated: a leak at worst).
    fn commit_bit(
        &self,
        c: usize,
        rs: &mut RunState,
        bit: u32,
        alloc: bool,
        set: Option<(Entry, &mut Ulog)>,
    ) -> Result<(), Error> {
        let wi = bit as usize / 64;
        let m = 1u64 << (bit % 64);
        let value = if alloc {
            rs.pbits[wi] | m
        } else {
            rs.pbits[wi] & !m
        };
        let w = self.bitmap_word_off(c, bit);
        debug_assert_eq!(
            self.p.read_u64(w),
            rs.pbits[wi],
            "volatile copy of the bitmap word at {w:#x} differs from media"
        );
        // Freed bytes may be reused by anyone, and `set` stores into a caller-named word.
        if !alloc {
            self.guard_store(|| {
                let start =
                    self.chunk_off(c) + rs.geom.data_off as u64 + bit as u64 * rs.geom.block_size;
                Some((start + ALLOC_HEADER_BYTES, start + rs.geom.block_size))
            })?;
        }
        if let Some((e, _)) = &set {
            self.guard_word(e.off)?;
        }
        let r = match set {
            // On a failure the old word is stored back (see `ulog::store_word`); a failure
            // of that too leaves the word undecided: the heap is poisoned.
            None => self.poison.check().and_then(|_| {
                let r = crate::ulog::replace_word(&*self.p, w, rs.pbits[wi], value);
                if let Err(UlogError::Unknown { undo, .. }) = &r {
                    self.poison.set(
                        w,
                        format!("undoing a failed one-store commit failed: {undo}"),
                    );
                }
                r
            }),
            Some((e, ulog)) => ulog.commit(
                &*self.p,
                &[
                    Entry {
                        off: w as u64,
                        value,
                    },
                    e,
                ],
            ),
        };
        // A batch committed despite its error changed the word too.
        if r.as_ref().map_or_else(UlogError::is_committed, |_| true) {
            rs.pbits[wi] = value;
        }
        Ok(r?)
    }

    /// The fast path of freeing `off` when it is in a run, with `set` (a plain destination's
    /// store) in the same atomic step. `Ok(false)` when `off` is not in a run chunk: the
    /// caller takes the general path (spans, and the errors for everything else).
    fn free_block(&self, off: u64, set: Option<(Entry, &mut Ulog)>) -> Result<bool, Error> {
        let Some(c) = self.chunk_of(off) else {
            return Ok(false);
        };
        let mut g = self.chunks[c].lock();
        let ChunkState::Run(rs) = &mut *g else {
            return Ok(false);
        };
        let bit = match self.block_at(c, rs, off) {
            Some((bit, start))
                if start + ALLOC_HEADER_BYTES == off
                    && rs.pbits[bit as usize / 64] & (1 << (bit % 64)) != 0
                    && !is_internal_type(self.p.read_u64(off as usize - 8)) =>
            {
                bit
            }
            _ => return Err(Error::NotAllocated { off }),
        };
        let r = self.commit_bit(c, rs, bit, false, set);
        if r.as_ref().is_err_and(|e| !e.is_committed()) {
            return r.map(|_| false);
        }
        // Freed (also when a committed batch reports a later replica failure).
        self.unset_block(c, rs, bit);
        self.counters().objects.fetch_sub(1, Ordering::Relaxed);
        self.counters()
            .allocated_bytes
            .fetch_sub(rs.geom.block_size - ALLOC_HEADER_BYTES, Ordering::Relaxed);
        r.map(|_| true)
    }

    /// Undo a reservation's volatile effect.
    fn release(&self, r: &Reservation) {
        match r.kind {
            ResKind::Block { chunk, bit } => {
                let mut g = self.chunks[chunk].lock();
                if let ChunkState::Run(rs) = &mut *g {
                    self.unset_block(chunk, rs, bit);
                }
            }
            ResKind::Span { chunk, n } => {
                *self.chunks[chunk].lock() = ChunkState::Free;
                self.free_span_volatile(chunk, n as usize);
            }
        }
    }

    /// Clear a block's volatile bit; offer the run to other arenas when it gains space.
    fn unset_block(&self, chunk: usize, rs: &mut RunState, bit: u32) {
        let m = 1u64 << (bit % 64);
        if rs.bits[bit as usize / 64] & m == 0 {
            return;
        }
        rs.bits[bit as usize / 64] &= !m;
        rs.hint = rs.hint.min(bit as usize / 64);
        rs.free += 1;
        if rs.owner.is_none() && !rs.in_avail {
            if let Some(class) = rs.class {
                rs.in_avail = true;
                lock(&self.avail[class]).push(chunk);
            }
        }
    }

    /// Interiors back to free and the span into the index (the first chunk's state is
    /// already `Free`; called with no chunk lock held).
    fn free_span_volatile(&self, chunk: usize, n: usize) {
        for c in chunk + 1..chunk + n {
            *self.chunks[c].lock() = ChunkState::Free;
        }
        lock(&self.spans).insert(chunk, n);
    }
}

fn read_bitmap<P: Persister + ?Sized>(p: &P, chunk_off: usize, geom: &RunGeom) -> Vec<u64> {
    (0..geom.bitmap_words())
        .map(|w| p.read_u64(chunk_off + layout::RUN_HEADER_BYTES + 8 * w))
        .collect()
}

/// Bits set at or past `nblocks`.
pub(crate) fn tail_bits(bits: &[u64], nblocks: u32) -> u64 {
    let mut t = 0;
    for (w, &v) in bits.iter().enumerate() {
        let first = w as u32 * 64;
        if first >= nblocks {
            t |= v;
        } else if nblocks - first < 64 {
            t |= v & !((1u64 << (nblocks - first)) - 1);
        }
    }
    t
}

impl<'h, P: Persister + ?Sized> Lane<'h, P> {
    /// Index of this lane.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `(offset, length)` of this lane's area reserved for upper layers.
    pub fn extra_area(&self) -> (usize, usize) {
        (
            self.heap.hdr.lane_extra_off(self.index),
            self.heap.hdr.lane_extra_bytes as usize,
        )
    }

    /// This lane's redo log, for upper layers' own all-or-nothing batches.
    pub fn redo_log(&mut self) -> &mut Ulog {
        &mut self.arena.ulog
    }

    /// Reserve on this lane (see [`Heap::reserve`]); `zero` zeroes the usable bytes.
    pub fn reserve(&mut self, size: u64, type_num: u64, zero: bool) -> Result<Reservation, Error> {
        self.reserve_inner(size, type_num, zero)
    }

    /// Reserve an *internal* block (type `type_num` >= [`INTERNAL_TYPE_MIN`], other than
    /// [`REDO_EXT_TYPE`]) for an upper layer's own structure on this lane, e.g. tx's undo
    /// overflow blocks; publish it as any reservation. Once published it is live (checker,
    /// [`Stats`]) but not a user object: [`Heap::objects`] skips it and `object`/`free` refuse
    /// it, so it can only be lost by the layer that links it.
    pub fn reserve_internal(
        &mut self,
        size: u64,
        type_num: u64,
        zero: bool,
    ) -> Result<Reservation, Error> {
        if !is_internal_type(type_num) || type_num == REDO_EXT_TYPE {
            return Err(Error::Config(format!(
                "type number {type_num:#x} is not an upper layer's internal type \
                 (top bit set, other than {REDO_EXT_TYPE:#x})"
            )));
        }
        self.reserve_any(size, type_num, zero)
    }

    /// As [`reserve`](Self::reserve), but the allocation header (and, with `zero`, the zeroed
    /// bytes) are only *flushed*, not fenced. Returns the reservation and whether a fence is
    /// owed: when `true`, the caller must fence ([`Persister::drain`]) **on this thread**
    /// before publishing the reservation — a redo log makes only its own entries
    /// all-or-nothing, so the bytes a publish makes reachable must already be durable. Lets a
    /// transaction pay one fence for all its allocations and written bytes at commit instead
    /// of one per allocation. A reused block whose header already holds the right bytes owes
    /// nothing (`false`, when `zero` is off). Cancel it on this thread too.
    ///
    /// # Reuse after a cancel (why [`Heap::cancel`] fences first)
    /// Publishing is not the only way the unfenced header can matter. `prepare_block` skips
    /// the store, flush and fence when a header already holds the right bytes, trusting that
    /// every header write is persisted before anything else happens. A cancelled unfenced
    /// reservation would break that trust: the header is in the cache (loads see it) but not
    /// guaranteed on media, and the block is free again in the volatile state. The next
    /// reservation of the block with the same type and size — on this lane or, once the run is
    /// offered to other arenas, on another lane and thread, whose fence does not order this
    /// thread's flush — writes nothing, and its publish makes the block allocated while media
    /// may still hold the block's old header (zeros, or another size's): after a crash a live
    /// object with an invalid header (`tests/unfenced.rs` shows it with crash images). With a
    /// different header the next writer stores, flushes and fences its own, but on a pool
    /// with remote replicas this thread's flush may still be in flight on its own connection
    /// and land after it. So `cancel` releases an unfenced reservation only after a drain on
    /// the reserving thread (and keeps it reserved if the drain fails). A publish needs no
    /// such step: the caller's owed fence comes first, by this method's contract.
    pub fn reserve_unfenced(
        &mut self,
        size: u64,
        type_num: u64,
        zero: bool,
    ) -> Result<(Reservation, bool), Error> {
        refuse_reserved_type(type_num)?;
        let r = self.reserve_unprepared(size, type_num)?;
        match self
            .heap
            .prepare_block(r.off - ALLOC_HEADER_BYTES, r.usable, type_num, zero, false)
        {
            Ok(owed) => Ok((
                Reservation {
                    unfenced: owed,
                    ..r
                },
                owed,
            )),
            // The header was stored but its flush failed: it is in the cache, maybe not on
            // media, so the block stays reserved until reopen (see "Reuse after a cancel").
            Err(e) => Err(e),
        }
    }

    fn alloc(
        &mut self,
        size: u64,
        type_num: u64,
        dest: Option<u64>,
        zero: bool,
    ) -> Result<u64, Error> {
        let h = self.heap;
        refuse_reserved_type(type_num)?;
        // Fast path: one block of a run, and a destination (if any) that needs no lookup.
        let class = size
            .checked_add(ALLOC_HEADER_BYTES)
            .filter(|_| size > 0)
            .and_then(|b| h.class_for(b));
        if let Some(class) = class {
            if dest.map_or(true, |d| h.is_plain_dest(d)) {
                return self.alloc_block(size, class, type_num, dest, zero);
            }
        }
        let r = self.reserve_inner(size, type_num, zero)?;
        let off = r.off;
        let mut acts = vec![Action::Alloc(r)];
        if let Some(d) = dest {
            acts.push(Action::Set { off: d, value: off });
        }
        self.publish(acts)?;
        Ok(off)
    }

    /// The fast path of [`alloc`](Self::alloc) for a run block: the chunk stays locked from
    /// choosing the bit to the commit (so the reservation cannot go stale and needs no
    /// re-validation), the new bitmap word comes from the volatile copy of the persistent
    /// bitmap, and the commit is one 8-byte streaming store + fence (two entries through the
    /// redo log with a destination).
    fn alloc_block(
        &mut self,
        size: u64,
        class: usize,
        type_num: u64,
        dest: Option<u64>,
        zero: bool,
    ) -> Result<u64, Error> {
        let h = self.heap;
        let (c, bit, mut g) = self.take_block(class).map_err(|e| match e {
            Error::OutOfMemory { .. } => Error::OutOfMemory { requested: size },
            e => e,
        })?;
        let ChunkState::Run(rs) = &mut *g else {
            unreachable!("take_block returns a run")
        };
        let start = h.chunk_off(c) + rs.geom.data_off as u64 + bit as u64 * rs.geom.block_size;
        let usable = rs.geom.block_size - ALLOC_HEADER_BYTES;
        let off = start + ALLOC_HEADER_BYTES;
        // On an error the header was stored but maybe not made durable: the block stays
        // reserved until reopen, so that no later reservation trusts those bytes.
        h.prepare_block(start, usable, type_num, zero, true)?;
        let set = dest.map(|d| (Entry { off: d, value: off }, &mut self.arena.ulog));
        // On a persistence failure the bit stays reserved until the next open (a leak at
        // worst), as in `publish`; a committed batch's error leaves it allocated.
        let r = h.commit_bit(c, rs, bit, true, set);
        if r.as_ref().is_err_and(|e| !e.is_committed()) {
            return r.map(|_| off);
        }
        h.counters().objects.fetch_add(1, Ordering::Relaxed);
        h.counters()
            .allocated_bytes
            .fetch_add(usable, Ordering::Relaxed);
        r.map(|_| off)
    }

    fn reserve_inner(
        &mut self,
        size: u64,
        type_num: u64,
        zero: bool,
    ) -> Result<Reservation, Error> {
        refuse_reserved_type(type_num)?;
        self.reserve_any(size, type_num, zero)
    }

    /// Add extensions to this lane's redo log until one commit holds `need` entries. Each
    /// extension is a span of [`REDO_EXT_TYPE`], allocated in the same redo batch that links
    /// it (see `Ulog::extend`); it stays attached to the lane for later batches.
    fn grow_redo(&mut self, need: usize) -> Result<(), Error> {
        let h = self.heap;
        let cs = h.hdr.chunk_size;
        let max_chunks = (REDO_EXT_MAX_BYTES / cs)
            .max(1)
            .min(h.hdr.zone_max_chunks as u64);
        while self.arena.ulog.total_capacity() < need {
            let missing = (need - self.arena.ulog.total_capacity()) as u64;
            let bytes = ALLOC_HEADER_BYTES
                + crate::ulog::EXT_HEADER_BYTES as u64
                + missing * crate::ulog::ENTRY_BYTES as u64;
            let n = bytes.div_ceil(cs).min(max_chunks);
            let r = self.reserve_any(n * cs - ALLOC_HEADER_BYTES, REDO_EXT_TYPE, false)?;
            let ResKind::Span { chunk, n } = r.kind else {
                unreachable!("a request of whole chunks is a span")
            };
            let alloc = Entry {
                off: h.chunk_hdr_off(chunk),
                value: layout::chunk_header(layout::CHUNK_USED, n),
            };
            let mut extended =
                self.arena
                    .ulog
                    .extend(&*h.p, r.off as usize, r.usable as usize, &[alloc]);
            if let Err(e) = extended {
                if !e.is_committed() {
                    h.release(&r);
                    return Err(e.into());
                }
                // Linked and allocated although a replica failed after the commit point: the
                // volatile state follows, then the error is returned.
                extended = Err(e);
            }
            let mut g = h.chunks[chunk].lock();
            h.info[chunk].store(info::SPAN | info::INTERNAL | n as u64, Ordering::Release);
            *g = ChunkState::Span { n, used: true };
            drop(g);
            h.counters().objects.fetch_add(1, Ordering::Relaxed);
            h.counters()
                .allocated_bytes
                .fetch_add(r.usable, Ordering::Relaxed);
            extended?;
        }
        Ok(())
    }

    fn reserve_any(&mut self, size: u64, type_num: u64, zero: bool) -> Result<Reservation, Error> {
        let h = self.heap;
        let r = self.reserve_unprepared(size, type_num)?;
        // On an error the header was stored but maybe not made durable: the block stays
        // reserved until reopen (see `reserve_unfenced`, "Reuse after a cancel").
        h.prepare_block(r.off - ALLOC_HEADER_BYTES, r.usable, type_num, zero, true)?;
        Ok(r)
    }

    /// Reserve a block or span (volatile state only; its header not yet written).
    fn reserve_unprepared(&mut self, size: u64, type_num: u64) -> Result<Reservation, Error> {
        let h = self.heap;
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let block = size
            .checked_add(ALLOC_HEADER_BYTES)
            .ok_or(Error::OutOfMemory { requested: size })?;
        let r = match h.class_for(block) {
            Some(class) => {
                let (c, bit, mut g) = self.take_block(class).map_err(|e| match e {
                    Error::OutOfMemory { .. } => Error::OutOfMemory { requested: size },
                    e => e,
                })?;
                let ChunkState::Run(rs) = &mut *g else {
                    unreachable!("take_block returns a run")
                };
                let start =
                    h.chunk_off(c) + rs.geom.data_off as u64 + bit as u64 * rs.geom.block_size;
                Reservation {
                    heap: h.id,
                    off: start + ALLOC_HEADER_BYTES,
                    usable: rs.geom.block_size - ALLOC_HEADER_BYTES,
                    type_num,
                    kind: ResKind::Block { chunk: c, bit },
                    unfenced: false,
                }
            }
            None => {
                let n = block.div_ceil(h.hdr.chunk_size);
                if n > h.hdr.zone_max_chunks as u64 {
                    return Err(Error::OutOfMemory { requested: size });
                }
                let c = h
                    .take_chunks(&mut self.arena, n as usize)
                    .map_err(|e| match e {
                        Error::OutOfMemory { .. } => Error::OutOfMemory { requested: size },
                        e => e,
                    })?;
                *h.chunks[c].lock() = ChunkState::Span {
                    n: n as u32,
                    used: false,
                };
                for i in c + 1..c + n as usize {
                    *h.chunks[i].lock() = ChunkState::Interior { start: c };
                }
                let start = h.chunk_off(c);
                Reservation {
                    heap: h.id,
                    off: start + ALLOC_HEADER_BYTES,
                    usable: n * h.hdr.chunk_size - ALLOC_HEADER_BYTES,
                    type_num,
                    kind: ResKind::Span {
                        chunk: c,
                        n: n as u32,
                    },
                    unfenced: false,
                }
            }
        };
        Ok(r)
    }

    /// Reserve one block of `class` in this arena's active run, finding or making a run when
    /// needed. Returns the chunk, the block's bit (set in the volatile bitmap) and the chunk's
    /// lock, still held.
    fn take_block(
        &mut self,
        class: usize,
    ) -> Result<(usize, u32, FenceGuard<'h, ChunkState>), Error> {
        let h = self.heap;
        let ai = self.index;
        loop {
            if let Some(c) = self.arena.active[class] {
                let mut g = h.chunks[c].lock();
                let mut got = None;
                if let ChunkState::Run(rs) = &mut *g {
                    if rs.free > 0 {
                        let bit = first_zero(&rs.bits, rs.hint, rs.geom.nblocks)
                            .expect("free count says a block is free");
                        rs.hint = bit as usize / 64;
                        rs.bits[bit as usize / 64] |= 1 << (bit % 64);
                        rs.free -= 1;
                        got = Some(bit);
                    } else {
                        rs.owner = None;
                    }
                }
                if let Some(bit) = got {
                    return Ok((c, bit, g));
                }
                self.arena.active[class] = None;
            }
            let got = loop {
                let Some(c) = lock(&h.avail[class]).pop() else {
                    break None;
                };
                let mut g = h.chunks[c].lock();
                if let ChunkState::Run(rs) = &mut *g {
                    rs.in_avail = false;
                    if rs.owner.is_none() && rs.class == Some(class) && rs.free > 0 {
                        rs.owner = Some(ai);
                        break Some(c);
                    }
                }
            };
            if let Some(c) = got {
                self.arena.active[class] = Some(c);
                continue;
            }
            let c = h.take_chunks(&mut self.arena, 1)?;
            h.make_run(&mut self.arena, ai, c, class)?;
            self.arena.active[class] = Some(c);
        }
    }

    /// Publish `actions` atomically on this lane (see [`Heap::publish`]).
    pub fn publish(&mut self, actions: Vec<Action>) -> Result<(), Error> {
        let h = self.heap;
        // Fast paths: one run block allocated or freed, with at most one plain store.
        let done = match actions.as_slice() {
            [Action::Free(off)] => h.free_block(*off, None)?,
            [Action::Free(off), Action::Set { off: d, value }]
            | [Action::Set { off: d, value }, Action::Free(off)]
                if h.is_plain_dest(*d) =>
            {
                let set = Entry {
                    off: *d,
                    value: *value,
                };
                h.free_block(*off, Some((set, &mut self.arena.ulog)))?
            }
            [Action::Alloc(r)] => self.publish_block(r, None)?,
            [Action::Alloc(r), Action::Set { off: d, value }]
            | [Action::Set { off: d, value }, Action::Alloc(r)]
                if h.is_plain_dest(*d) =>
            {
                let set = Entry {
                    off: *d,
                    value: *value,
                };
                self.publish_block(r, Some(set))?
            }
            _ => false,
        };
        if done {
            return Ok(());
        }
        if let Err(e) = h.guard_actions(&actions) {
            h.cancel(actions);
            return Err(e);
        }
        if actions
            .iter()
            .any(|a| matches!(a, Action::Alloc(r) if r.heap != h.id))
        {
            h.cancel(actions);
            return Err(Error::ForeignReservation);
        }
        // Every action is at most one redo entry: make the log hold that many (before any
        // chunk is locked; growing allocates).
        if actions.len() > self.arena.ulog.total_capacity() {
            if let Err(e) = self.grow_redo(actions.len()) {
                h.cancel(actions);
                return Err(e);
            }
        }
        // Chunks to lock, ascending.
        let mut need = Vec::new();
        for a in &actions {
            match a {
                Action::Alloc(r) => need.push(r.kind.chunk()),
                Action::Free(off) | Action::Set { off, .. } => {
                    if let Some(c) = h.chunk_of(*off) {
                        need.push(c);
                        if let ChunkState::Interior { start } = &*h.chunks[c].lock() {
                            need.push(*start);
                        }
                    }
                }
            }
        }
        need.sort_unstable();
        need.dedup();
        let mut guards: Vec<(usize, FenceGuard<'_, ChunkState>)> =
            need.iter().map(|&c| (c, h.chunks[c].lock())).collect();
        let entries = match h.build_entries(&mut guards, &actions, self.arena.ulog.total_capacity())
        {
            Ok(e) => e,
            Err(e) => {
                drop(guards);
                h.cancel(actions);
                return Err(e);
            }
        };
        // On a persistence failure before the commit point the volatile state is left as it
        // was: reservations stay reserved and frees stay allocated until the next open, which
        // can only leak. After it (`UlogError::Committed`) the batch is applied: the volatile
        // state follows it below and the error is returned at the end.
        let committed = self.arena.ulog.commit(&*h.p, &entries);
        if committed.as_ref().is_err_and(|e| !e.is_committed()) {
            return Err(committed.unwrap_err().into());
        }
        let mut freed_spans = Vec::new();
        for a in &actions {
            match a {
                Action::Alloc(r) => {
                    h.counters().objects.fetch_add(1, Ordering::Relaxed);
                    h.counters()
                        .allocated_bytes
                        .fetch_add(r.usable, Ordering::Relaxed);
                    match r.kind {
                        ResKind::Span { chunk, n } => {
                            **guard(&mut guards, chunk) = ChunkState::Span { n, used: true };
                            let internal = if is_internal_type(r.type_num) {
                                info::INTERNAL
                            } else {
                                0
                            };
                            h.info[chunk]
                                .store(info::SPAN | internal | n as u64, Ordering::Release);
                        }
                        ResKind::Block { chunk, bit } => {
                            // The committed word is the copy plus this publish's bits.
                            if let ChunkState::Run(rs) = &mut **guard(&mut guards, chunk) {
                                rs.pbits[bit as usize / 64] |= 1 << (bit % 64);
                            }
                        }
                    }
                }
                Action::Free(off) => {
                    let c = h.chunk_of(*off).expect("validated by build_entries");
                    let g = guard(&mut guards, c);
                    let usable = match &mut **g {
                        ChunkState::Run(rs) => {
                            let (bit, _) = h.block_at(c, rs, *off).expect("validated");
                            rs.pbits[bit as usize / 64] &= !(1 << (bit % 64));
                            h.unset_block(c, rs, bit);
                            rs.geom.block_size - ALLOC_HEADER_BYTES
                        }
                        ChunkState::Span { n, .. } => {
                            let n = *n;
                            **g = ChunkState::Free;
                            h.info[c].store(info::NONE, Ordering::Release);
                            freed_spans.push((c, n as usize));
                            n as u64 * h.hdr.chunk_size - ALLOC_HEADER_BYTES
                        }
                        _ => unreachable!("validated by build_entries"),
                    };
                    h.counters().objects.fetch_sub(1, Ordering::Relaxed);
                    h.counters()
                        .allocated_bytes
                        .fetch_sub(usable, Ordering::Relaxed);
                }
                Action::Set { .. } => {}
            }
        }
        drop(guards);
        for (c, n) in freed_spans {
            h.free_span_volatile(c, n);
        }
        Ok(committed?)
    }
}

impl<P: Persister + ?Sized> Lane<'_, P> {
    /// The fast path of publishing one reserved run block (with `set`, a plain destination's
    /// store, in the same step). `Ok(false)` when `r` is not a block reservation that is still
    /// reserved: the caller takes the general path (which reports why).
    fn publish_block(&mut self, r: &Reservation, set: Option<Entry>) -> Result<bool, Error> {
        let h = self.heap;
        let ResKind::Block { chunk: c, bit } = r.kind else {
            return Ok(false);
        };
        if r.heap != h.id {
            return Ok(false);
        }
        let mut g = h.chunks[c].lock();
        let ChunkState::Run(rs) = &mut *g else {
            return Ok(false);
        };
        let (wi, m) = (bit as usize / 64, 1u64 << (bit % 64));
        if rs.bits[wi] & m == 0 || rs.pbits[wi] & m != 0 {
            return Ok(false);
        }
        // On a persistence failure the reservation stays reserved (as in the general path); a
        // committed batch's error leaves it published.
        let res = h.commit_bit(c, rs, bit, true, set.map(|e| (e, &mut self.arena.ulog)));
        if res.as_ref().is_err_and(|e| !e.is_committed()) {
            return res.map(|_| false);
        }
        h.counters().objects.fetch_add(1, Ordering::Relaxed);
        h.counters()
            .allocated_bytes
            .fetch_add(r.usable, Ordering::Relaxed);
        res.map(|_| true)
    }
}

fn refuse_reserved_type(type_num: u64) -> Result<(), Error> {
    if is_internal_type(type_num) {
        return Err(Error::Config(format!(
            "type number {type_num:#x} is internal (top bit set): reserved for the heap's and \
             upper layers' own blocks"
        )));
    }
    Ok(())
}

fn guard<'a, 'g>(
    guards: &'a mut [(usize, FenceGuard<'g, ChunkState>)],
    c: usize,
) -> &'a mut FenceGuard<'g, ChunkState> {
    let i = guards
        .binary_search_by_key(&c, |(k, _)| *k)
        .expect("chunk is in the lock set");
    &mut guards[i].1
}

/// The first zero bit of `bits` at or after word `from`.
fn first_zero(bits: &[u64], from: usize, nblocks: u32) -> Option<u32> {
    for (w, &v) in bits.iter().enumerate().skip(from) {
        if v != u64::MAX {
            let b = w as u32 * 64 + (!v).trailing_zeros();
            return (b < nblocks).then_some(b);
        }
    }
    None
}

/// The redo entries of a publish, one per destination word (indexed: a batch can hold
/// thousands).
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    index: HashMap<u64, usize>,
}

impl Batch {
    fn set(&mut self, off: u64, value: u64) {
        match self.index.get(&off) {
            Some(&i) => self.entries[i].value = value,
            None => {
                self.index.insert(off, self.entries.len());
                self.entries.push(Entry { off, value });
            }
        }
    }

    fn get(&self, off: u64) -> Option<u64> {
        self.index.get(&off).map(|&i| self.entries[i].value)
    }

    /// The value bitmap word `off` (word `wi` of `rs`) will have: this batch's entry for it,
    /// or the volatile copy of what media holds.
    fn current(&self, rs: &RunState, off: u64, wi: usize) -> u64 {
        self.get(off).unwrap_or(rs.pbits[wi])
    }
}

impl<P: Persister + ?Sized> Heap<P> {
    /// Validate `actions` under the chunk locks and compute the redo entries.
    fn build_entries(
        &self,
        guards: &mut [(usize, FenceGuard<'_, ChunkState>)],
        actions: &[Action],
        capacity: usize,
    ) -> Result<Vec<Entry>, Error> {
        let mut entries = Batch::default();
        // Usable ranges allocated by this publish (start -> end), and objects freed by it.
        let mut fresh: BTreeMap<u64, u64> = BTreeMap::new();
        let mut freed: HashSet<u64> = HashSet::new();
        for a in actions {
            let Action::Alloc(r) = a else { continue };
            let stale = Error::StaleReservation { off: r.off };
            match (r.kind, &**guard(guards, r.kind.chunk())) {
                (ResKind::Block { chunk, bit }, ChunkState::Run(rs))
                    if rs.bits[bit as usize / 64] & (1 << (bit % 64)) != 0 =>
                {
                    let w = self.bitmap_word_off(chunk, bit) as u64;
                    let cur = entries.current(rs, w, bit as usize / 64);
                    if cur & (1 << (bit % 64)) != 0 {
                        return Err(stale);
                    }
                    entries.set(w, cur | 1 << (bit % 64));
                }
                (ResKind::Span { chunk, n }, ChunkState::Span { n: m, used: false }) if n == *m => {
                    let w = self.chunk_hdr_off(chunk);
                    if entries.get(w).is_some() {
                        return Err(stale);
                    }
                    entries.set(w, layout::chunk_header(layout::CHUNK_USED, n));
                }
                _ => return Err(stale),
            }
            fresh.insert(r.off, r.off + r.usable);
        }
        for a in actions {
            let Action::Free(off) = *a else { continue };
            let not = Error::NotAllocated { off };
            if freed.contains(&off) || fresh.contains_key(&off) {
                return Err(not);
            }
            let c = self.chunk_of(off).ok_or(Error::NotAllocated { off })?;
            match &**guard(guards, c) {
                ChunkState::Run(rs) => {
                    let (bit, start) = self
                        .block_at(c, rs, off)
                        .filter(|&(_, s)| s + ALLOC_HEADER_BYTES == off)
                        .ok_or(Error::NotAllocated { off })?;
                    let w = self.bitmap_word_off(c, bit) as u64;
                    let cur = entries.current(rs, w, bit as usize / 64);
                    if cur & (1 << (bit % 64)) == 0
                        || is_internal_type(self.p.read_u64(off as usize - 8))
                    {
                        return Err(not);
                    }
                    let _ = start;
                    entries.set(w, cur & !(1 << (bit % 64)));
                }
                ChunkState::Span { n, used: true }
                    if off == self.chunk_off(c) + ALLOC_HEADER_BYTES
                        && self.info[c].load(Ordering::Relaxed) & info::INTERNAL == 0 =>
                {
                    entries.set(self.chunk_hdr_off(c), layout::chunk_header(CHUNK_FREE, *n));
                }
                _ => return Err(not),
            }
            freed.insert(off);
        }
        for a in actions {
            let Action::Set { off, value } = *a else {
                continue;
            };
            let bad = |reason: &'static str| Error::BadDestination { off, reason };
            if off % 8 != 0 {
                return Err(bad("not 8-byte aligned"));
            }
            if !(self.is_user_slot(off) || self.in_lane_extra(off)) {
                let within = |s: u64, e: u64| off >= s && off + 8 <= e;
                let in_fresh = fresh
                    .range(..=off)
                    .next_back()
                    .is_some_and(|(&s, &e)| within(s, e));
                if !in_fresh {
                    let c = self
                        .chunk_of(off)
                        .ok_or(bad("not in a user slot, a lane's extra area, or an object"))?;
                    let c = match &**guard(guards, c) {
                        ChunkState::Interior { start } => *start,
                        _ => c,
                    };
                    // The interior's start was locked from a peek; re-check it is still there.
                    let i = guards
                        .binary_search_by_key(&c, |(k, _)| *k)
                        .map_err(|_| bad("object changed concurrently"))?;
                    let ok = match &*guards[i].1 {
                        ChunkState::Run(rs) => match self.block_at(c, rs, off) {
                            Some((bit, start)) => {
                                let w = self.bitmap_word_off(c, bit) as u64;
                                within(start + ALLOC_HEADER_BYTES, start + rs.geom.block_size)
                                    && entries.current(rs, w, bit as usize / 64) & (1 << (bit % 64))
                                        != 0
                            }
                            None => false,
                        },
                        ChunkState::Span { n, used: true } => {
                            let s = self.chunk_off(c);
                            let freed_now = entries.get(self.chunk_hdr_off(c)).is_some();
                            !freed_now
                                && within(
                                    s + ALLOC_HEADER_BYTES,
                                    s + *n as u64 * self.hdr.chunk_size,
                                )
                        }
                        _ => false,
                    };
                    if !ok {
                        return Err(bad("not inside a live object"));
                    }
                }
            }
            entries.set(off, value);
        }
        if entries.entries.len() > capacity {
            return Err(Error::TooManyActions {
                entries: entries.entries.len(),
                capacity,
            });
        }
        Ok(entries.entries)
    }
}

/// Iterator over live objects ([`Heap::objects`]).
pub struct Objects<'h, P: Persister + ?Sized> {
    heap: &'h Heap<P>,
    next_chunk: usize,
    buf: VecDeque<ObjectInfo>,
    type_num: Option<u64>,
}

impl<P: Persister + ?Sized> Iterator for Objects<'_, P> {
    type Item = ObjectInfo;

    fn next(&mut self) -> Option<ObjectInfo> {
        let h = self.heap;
        while self.buf.is_empty() && self.next_chunk < h.chunks.len() {
            let c = self.next_chunk;
            self.next_chunk += 1;
            let g = h.chunks[c].lock();
            match &*g {
                ChunkState::Run(rs) => {
                    let off = h.chunk_off(c) as usize;
                    let bits = read_bitmap(&*h.p, off, &rs.geom);
                    for (w, &v) in bits.iter().enumerate() {
                        let mut v = v;
                        while v != 0 {
                            let b = w as u64 * 64 + v.trailing_zeros() as u64;
                            v &= v - 1;
                            let start =
                                off as u64 + rs.geom.data_off as u64 + b * rs.geom.block_size;
                            let type_num = h.p.read_u64(start as usize + 8);
                            if !is_internal_type(type_num) {
                                self.buf.push_back(ObjectInfo {
                                    off: start + ALLOC_HEADER_BYTES,
                                    type_num,
                                    usable_size: rs.geom.block_size - ALLOC_HEADER_BYTES,
                                });
                            }
                        }
                    }
                }
                ChunkState::Span { n, used: true }
                    if h.info[c].load(Ordering::Relaxed) & info::INTERNAL == 0 =>
                {
                    self.buf.push_back(h.span_info(c, *n))
                }
                _ => {}
            }
            if let Some(t) = self.type_num {
                self.buf.retain(|o| o.type_num == t);
            }
        }
        self.buf.pop_front()
    }
}
