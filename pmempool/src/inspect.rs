//! Read-only inspection shared by `info` and `check`: every part's header region (for display;
//! the cross-checks of docs/FORMAT.md "Checks at open" and the replica data comparison are
//! `pool::verify`'s, turned into findings by [`pool_findings`]), the heap (`palloc::check` before
//! recovery, then the real open of `tx`/`palloc` run on an [`Image`] overlay to see what
//! recovery would do and what the pool holds after it).
//!
//! Nothing here writes a file: parts are read with `pread` (headers) or through [`Image`].
//! Findings carry whether `check --repair` can fix them and how.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use palloc::layout::{HeapHeader, HEAP_HEADER_BYTES};
use palloc::ulog::{self, LogState};
use palloc::{CheckReport, Recovered};
use pool::header::{self, HeaderRead, PartHeader, RegionError};
use pool::Persister;
use poolset::{PoolSet, Replica};
use tx::{UndoRecovered, UndoState};

use crate::image::{Image, PartData};
use crate::target::{has_header, node_name};
use crate::util::Progress;

/// One local part as found on disk.
pub struct PartSurvey {
    /// Replica index in the pool set.
    pub replica: usize,
    /// Part index in the replica.
    pub part: usize,
    /// The part file.
    pub path: PathBuf,
    /// Size the poolset gives.
    pub size_poolset: u64,
    /// Size of the file, or why it cannot be stat'ed.
    pub size_file: Result<u64, String>,
    /// Whether the part has a header region.
    pub has_header: bool,
    /// The header region, when the part has one and the file could be read.
    pub header: Option<Result<HeaderRead, RegionError>>,
    /// Why the header region could not be read.
    pub read_error: Option<String>,
}

impl PartSurvey {
    /// The header in force, if the region decodes.
    pub fn hdr(&self) -> Option<&PartHeader> {
        match &self.header {
            Some(Ok(r)) => Some(&r.header),
            _ => None,
        }
    }

    /// Whether the file exists with the poolset's size.
    pub fn size_ok(&self) -> bool {
        self.size_file
            .as_ref()
            .is_ok_and(|&s| s == self.size_poolset)
    }
}

/// One replica as found.
pub enum ReplicaSurvey {
    /// Local files.
    Local {
        /// Index in the pool set.
        index: usize,
        /// Its parts.
        parts: Vec<PartSurvey>,
        /// Bytes of its data area (poolset sizes minus header regions).
        data_bytes: u64,
    },
    /// On another node (not read: see `remote_note`).
    Remote {
        /// Index in the pool set.
        index: usize,
        /// `[user@]host[:port]`.
        node: String,
        /// Poolset descriptor on the node.
        descriptor: String,
    },
}

/// Every replica and part of a pool set.
pub struct Survey {
    /// Replicas in poolset order.
    pub replicas: Vec<ReplicaSurvey>,
}

impl Survey {
    /// The primary replica's parts (replica 0 is always local: the poolset grammar requires it).
    pub fn primary_parts(&self) -> &[PartSurvey] {
        match self.replicas.first() {
            Some(ReplicaSurvey::Local { parts, .. }) => parts,
            _ => &[],
        }
    }

    /// Pool size: the primary's part-0 header says it; without headers, the primary's data size.
    pub fn pool_size(&self) -> Option<u64> {
        match self.replicas.first() {
            Some(ReplicaSurvey::Local {
                parts, data_bytes, ..
            }) => match parts.first() {
                Some(p) if p.has_header => p.hdr().map(|h| h.pool_size.get()),
                _ => Some(*data_bytes),
            },
            _ => None,
        }
    }
}

/// Read every local part's size and header region.
pub fn survey(set: &PoolSet) -> Survey {
    let mut replicas = Vec::new();
    for (r, rep) in set.replicas.iter().enumerate() {
        match rep {
            Replica::Local(l) => {
                let mut parts = Vec::new();
                let mut data_bytes = 0u64;
                for (i, p) in l.parts.iter().enumerate() {
                    let hh = has_header(set, i);
                    data_bytes += p.size.saturating_sub(if hh {
                        header::HEADER_REGION_BYTES as u64
                    } else {
                        0
                    });
                    let size_file = std::fs::metadata(&p.path)
                        .map(|m| m.len())
                        .map_err(|e| e.to_string());
                    let (mut hdr, mut read_error) = (None, None);
                    if hh && size_file.is_ok() {
                        let mut buf = vec![0u8; header::HEADER_REGION_BYTES];
                        match File::open(&p.path).and_then(|f| f.read_exact_at(&mut buf, 0)) {
                            Ok(()) => hdr = Some(header::decode_region(&buf)),
                            Err(e) => {
                                read_error = Some(format!(
                                    "cannot read the {}-byte header region (file has {} bytes; is it a pool?): {e}",
                                    header::HEADER_REGION_BYTES,
                                    size_file.as_ref().copied().unwrap_or(0)
                                ))
                            }
                        }
                    }
                    parts.push(PartSurvey {
                        replica: r,
                        part: i,
                        path: p.path.clone(),
                        size_poolset: p.size,
                        size_file,
                        has_header: hh,
                        header: hdr,
                        read_error,
                    });
                }
                replicas.push(ReplicaSurvey::Local {
                    index: r,
                    parts,
                    data_bytes,
                });
            }
            Replica::Remote(rr) => replicas.push(ReplicaSurvey::Remote {
                index: r,
                node: node_name(rr),
                descriptor: rr.descriptor.display().to_string(),
            }),
        }
    }
    Survey { replicas }
}

/// How a finding can be dealt with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Opening the pool (`pool::Pool::open`) repairs it: stale header slots are rewritten from
    /// the slot in force, replica data is copied from the primary.
    PoolOpen,
    /// Opening the object pool (`tx::ObjPool::open_in`) repairs it: redo logs replayed or
    /// discarded, transactions in flight rolled back.
    Recovery,
    /// Rebuilding the replica from the primary (`pool::resync`, as `pmempool sync` does): the
    /// replica (not the primary) has missing or damaged parts, or is marked stale.
    Resync,
    /// Not repairable by pmempool; the text says what to do.
    Cannot(String),
}

/// Which layer a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// Part files and headers (a problem here that cannot be repaired stops `pool` opening).
    Parts,
    /// Replica data compared with the primary's.
    Data,
    /// Heap, logs, objects.
    Heap,
}

/// One thing `check` found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Where and what.
    pub what: String,
    /// Whether and how it is repaired.
    pub fix: Fix,
    /// The layer concerned.
    pub area: Area,
}

fn heap_cannot(what: String, todo: &str) -> Finding {
    Finding {
        what,
        fix: Fix::Cannot(todo.to_string()),
        area: Area::Heap,
    }
}

const RESTORE: &str = "restore the part from a backup (a replica other than the primary is \
                       rebuilt from the primary by check --repair or pmempool sync)";

/// The findings of `pool::verify` (headers, links, sizes, stale marks, replica data: the
/// pool crate's own read-only check, the same rules its open applies) in pmempool's terms.
pub fn pool_findings(problems: &[pool::Problem]) -> Vec<Finding> {
    problems
        .iter()
        .map(|p| {
            let area = match p.kind {
                pool::ProblemKind::MarkedStale | pool::ProblemKind::DataDiffers { .. } => {
                    Area::Data
                }
                _ => Area::Parts,
            };
            let fix = match &p.repair {
                pool::Repair::PoolOpen => Fix::PoolOpen,
                pool::Repair::Resync => Fix::Resync,
                pool::Repair::Manual(todo) => Fix::Cannot(todo.clone()),
            };
            Finding {
                what: p.message.clone(),
                fix,
                area,
            }
        })
        .collect()
}

/// Build the read-only image of a local replica's data (None when a part is missing or has
/// the wrong size: that is reported by `pool::verify`).
pub fn replica_image(set: &PoolSet, parts: &[PartSurvey]) -> Option<Result<Image, String>> {
    let too_small = |p: &PartSurvey| {
        has_header(set, p.part) && p.size_poolset < header::HEADER_REGION_BYTES as u64
    };
    if parts.iter().any(|p| !p.size_ok() || too_small(p)) {
        return None;
    }
    let datas: Vec<PartData<'_>> = parts
        .iter()
        .map(|p| {
            let off = if has_header(set, p.part) {
                header::HEADER_REGION_BYTES as u64
            } else {
                0
            };
            PartData {
                path: &p.path,
                file_off: off,
                len: p.size_poolset - off,
            }
        })
        .collect();
    Some(Image::open(&datas))
}

/// One lane with something for recovery to do.
#[derive(Clone, Debug)]
pub struct LaneSurvey {
    /// Lane index.
    pub lane: usize,
    /// The redo log: "empty", "incomplete (FIELD)", "committed, N entries".
    pub redo: String,
    /// Whether the redo log would be replayed (complete) at open.
    pub redo_pending: bool,
    /// Whether it would be discarded (something there, not complete).
    pub redo_incomplete: bool,
    /// The undo log holds a transaction in flight (rolled back at open).
    pub undo_active: bool,
    /// The undo log holds a committed transaction not yet retired (rolled forward at open).
    pub undo_committed: bool,
    /// The undo log's generation.
    pub undo_generation: u64,
}

/// Object-pool metadata (the heap's user slots, docs/FORMAT.md "Transactions").
#[derive(Clone, Debug, Default)]
pub struct ObjMeta {
    /// Slot 0 on disk was non-zero (else the first open initializes the pool).
    pub initialized: bool,
    /// Pool id.
    pub pool_id: u64,
    /// Root object offset (0: none).
    pub root_off: u64,
    /// Run generation of the last open.
    pub run_gen: u64,
}

/// Objects of one type.
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeCount {
    /// Live objects.
    pub objects: u64,
    /// Sum of their usable sizes.
    pub bytes: u64,
}

/// The pool after the recovery an open would do (run on the overlay).
pub struct AfterOpen {
    /// Lanes whose redo log would be replayed or discarded.
    pub redo: Vec<(usize, Recovered)>,
    /// Lanes whose transaction would be rolled back.
    pub undo: Vec<(usize, UndoRecovered)>,
    /// Object-pool metadata, when the heap is an object pool.
    pub obj: Option<ObjMeta>,
    /// Why the heap is not opened as an object pool (then only the heap is shown).
    pub not_obj: Option<String>,
    /// Heap statistics.
    pub stats: palloc::Stats,
    /// Objects per type number.
    pub types: BTreeMap<u64, TypeCount>,
    /// `palloc::check` after recovery.
    pub check: CheckReport,
    /// Pointers (PPtr-shaped words carrying this pool's id) that lead to no live object.
    pub bad_pointers: Vec<String>,
    /// The root offset is not a live object.
    pub root_problem: Option<String>,
    /// Stores recovery made (in memory only).
    pub stores: u64,
}

/// The heap of the primary replica.
pub struct HeapSurvey {
    /// Bytes of the pool's user area.
    pub pool_size: u64,
    /// The heap header, when it decodes.
    pub header: Result<HeapHeader, String>,
    /// `palloc::check` before recovery.
    pub before: Result<CheckReport, String>,
    /// Lanes with a log or a transaction in flight.
    pub lanes: Vec<LaneSurvey>,
    /// The pool after the recovery an open would do.
    pub after: Result<AfterOpen, String>,
    /// A read error of the part files, if any (reads returned zeros).
    pub io_error: Option<String>,
}

fn scan_lanes(img: &Image, h: &HeapHeader) -> Vec<LaneSurvey> {
    let mut out = Vec::new();
    for lane in 0..h.lane_count as usize {
        let (redo, pending, incomplete) =
            match ulog::inspect(img, h.lane_off(lane), h.lane_redo_bytes as usize) {
                Ok(LogState::Empty) => ("empty".to_string(), false, false),
                Ok(LogState::Incomplete(f)) => (format!("incomplete ({f})"), false, true),
                Ok(LogState::Committed { entries, .. }) => {
                    (format!("committed, {} entries", entries.len()), true, false)
                }
                Err(e) => (format!("unreadable: {e}"), false, false),
            };
        let area = h.lane_extra_bytes as usize;
        let magic = img.read_u64(palloc::layout::USER_SLOTS_OFF);
        let undo = if area >= tx::obj::MIN_EXTRA {
            tx::undo::inspect(img, h.lane_extra_off(lane), area, magic).ok()
        } else {
            None
        };
        let (undo_active, undo_committed, undo_generation) = match undo {
            Some(UndoState::InFlight { generation }) => (true, false, generation),
            Some(UndoState::Committed { generation }) => (false, true, generation),
            Some(UndoState::Idle { generation }) => (false, false, generation),
            // Unreadable overflow chain: the state word alone (open reports the corruption).
            None if area >= 8 => {
                let state = img.read_u64(h.lane_extra_off(lane) + tx::undo::STATE_WORD);
                (state & 1 == 1, false, state >> 1)
            }
            None => (false, false, 0),
        };
        out.push(LaneSurvey {
            lane,
            redo,
            redo_pending: pending,
            redo_incomplete: incomplete,
            undo_active,
            undo_committed,
            undo_generation,
        });
    }
    out
}

/// Inspect the heap in `img` (the primary's data, truncated to the pool size).
pub fn heap_survey(img: Image, progress: bool) -> HeapSurvey {
    let pool_size = img.len() as u64;
    let img = Arc::new(img);
    let mut raw = [0u8; HEAP_HEADER_BYTES];
    let header = if img.len() >= HEAP_HEADER_BYTES {
        img.read(0, &mut raw);
        HeapHeader::decode(&raw, pool_size).map_err(|e| match e {
            palloc::layout::HeaderError::NoHeap => {
                "no heap here (heap header signature is zero)".to_string()
            }
            palloc::layout::HeaderError::Field(f, d) => {
                format!("heap header field `{f}` invalid: {d}")
            }
        })
    } else {
        Err(format!("pool of {pool_size} bytes has no room for a heap"))
    };
    let before = palloc::check(&*img).map_err(|e| e.to_string());
    let lanes = match &header {
        Ok(h) => scan_lanes(&img, h),
        Err(_) => Vec::new(),
    };
    let after = if header.is_ok() {
        after_open(&img, progress)
    } else {
        Err("no heap".into())
    };
    HeapSurvey {
        pool_size,
        header,
        before,
        lanes,
        after,
        io_error: img.io_error(),
    }
}

fn after_open(img: &Arc<Image>, progress: bool) -> Result<AfterOpen, String> {
    let slot = |i: usize| palloc::layout::USER_SLOTS_OFF + 8 * i;
    let magic_on_disk = img.read_u64(slot(tx::obj::SLOT_MAGIC));
    let opts = palloc::Options::default();
    let (heap_owner, undo, obj, not_obj): (HeapOwner, _, _, _) =
        match tx::ObjPool::open_in(img.clone(), opts.clone()) {
            Ok(op) => {
                let undo: Vec<(usize, UndoRecovered)> = op
                    .recovered()
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| **r != UndoRecovered::Idle)
                    .map(|(i, r)| (i, *r))
                    .collect();
                let meta = ObjMeta {
                    initialized: magic_on_disk != 0,
                    pool_id: op.id(),
                    root_off: op.root_off(),
                    run_gen: img.read_u64(slot(tx::obj::SLOT_RUN_GEN)).wrapping_sub(1),
                };
                (HeapOwner::Obj(op), undo, Some(meta), None)
            }
            Err(e) => {
                // Not an object pool (or its metadata is damaged): show the heap alone.
                let heap = palloc::Heap::open(img.clone(), opts)
                    .map_err(|he| format!("opening the heap (as recovery would) fails: {he}"))?;
                (HeapOwner::Heap(heap), Vec::new(), None, Some(e.to_string()))
            }
        };
    let heap = heap_owner.heap();
    let redo: Vec<(usize, Recovered)> = heap
        .recovered()
        .iter()
        .enumerate()
        .filter(|(_, r)| **r != Recovered::Empty)
        .map(|(i, r)| (i, *r))
        .collect();
    let mut types: BTreeMap<u64, TypeCount> = BTreeMap::new();
    let mut bad_pointers = Vec::new();
    let mut buf = Vec::new();
    // Reading every object (for the pointer scan) is the long part on a big pool.
    let mut bar = Progress::new("objects", heap.stats().objects, false, progress);
    for (seen, o) in heap.objects().enumerate() {
        bar.set(seen as u64);
        let t = types.entry(o.type_num).or_default();
        t.objects += 1;
        t.bytes += o.usable_size;
        let Some(meta) = &obj else { continue };
        // (`objects()` lists user objects only: tx's undo overflow blocks are internal.)
        if bad_pointers.len() >= 100 {
            continue;
        }
        // A PPtr is (off, pool id); the id is random, so a word pair ending in it is a pointer.
        buf.resize(o.usable_size as usize, 0);
        img.read(o.off as usize, &mut buf);
        for k in (0..buf.len().saturating_sub(15)).step_by(8) {
            let w = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[i..i + 8]);
                u64::from_le_bytes(b)
            };
            let (off, id) = (w(k), w(k + 8));
            if id == meta.pool_id && off != 0 && heap.object(off).is_err() {
                bad_pointers.push(format!(
                    "object {:#x} (type {:#x}) at +{k}: pointer to {off:#x}, which is not a live object",
                    o.off, o.type_num
                ));
            }
        }
    }
    bar.finish();
    let root_problem = obj.as_ref().and_then(|m| {
        (m.root_off != 0)
            .then(|| heap.object(m.root_off).err())
            .flatten()
            .map(|e| format!("root object offset {:#x}: {e}", m.root_off))
    });
    let stats = heap.stats();
    let check = palloc::check(&**img).map_err(|e| e.to_string())?;
    Ok(AfterOpen {
        redo,
        undo,
        obj,
        not_obj,
        stats,
        types,
        check,
        bad_pointers,
        root_problem,
        stores: img.stores(),
    })
}

enum HeapOwner {
    Obj(tx::ObjPool<Image>),
    Heap(palloc::Heap<Image>),
}

impl HeapOwner {
    fn heap(&self) -> &palloc::Heap<Image> {
        match self {
            HeapOwner::Obj(o) => o.heap(),
            HeapOwner::Heap(h) => h,
        }
    }
}

/// Findings about the heap, logs and objects.
pub fn heap_findings(h: &HeapSurvey) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = &h.io_error {
        out.push(heap_cannot(format!("reading the pool: {e}"), RESTORE));
    }
    if let Err(e) = &h.header {
        out.push(heap_cannot(
            format!("heap: {e}"),
            "this is not an object pool (create one with pmempool create), or its heap header \
             was destroyed; restore the pool from a backup",
        ));
        return out;
    }
    for l in &h.lanes {
        if l.redo_pending {
            out.push(Finding {
                what: format!("lane {}: redo log {} (replayed at open)", l.lane, l.redo),
                fix: Fix::Recovery,
                area: Area::Heap,
            });
        } else if l.redo_incomplete {
            out.push(Finding {
                what: format!("lane {}: redo log {} (discarded at open)", l.lane, l.redo),
                fix: Fix::Recovery,
                area: Area::Heap,
            });
        }
        if l.undo_active {
            out.push(Finding {
                what: format!(
                    "lane {}: transaction of generation {} in flight (rolled back at open)",
                    l.lane, l.undo_generation
                ),
                fix: Fix::Recovery,
                area: Area::Heap,
            });
        }
        if l.undo_committed {
            out.push(Finding {
                what: format!(
                    "lane {}: committed transaction of generation {} not yet retired (rolled \
                     forward at open)",
                    l.lane, l.undo_generation
                ),
                fix: Fix::Recovery,
                area: Area::Heap,
            });
        }
    }
    match &h.after {
        Err(e) => out.push(heap_cannot(
            e.clone(),
            "the heap metadata is damaged beyond what recovery handles; restore from a backup \
             (or copy the objects out with pmempool dump)",
        )),
        Ok(a) => {
            for p in &a.check.problems {
                out.push(heap_cannot(
                    format!("heap: {p}"),
                    "heap metadata is damaged; restore from a backup",
                ));
            }
            if let Some(p) = &a.root_problem {
                out.push(heap_cannot(p.clone(), "restore from a backup"));
            }
            for p in &a.bad_pointers {
                out.push(heap_cannot(
                    p.clone(),
                    "a dangling persistent pointer (an application bug or damaged data)",
                ));
            }
            if let Some(e) = &a.not_obj {
                out.push(heap_cannot(
                    format!("object pool metadata: {e}"),
                    "the heap is not a tx object pool",
                ));
            }
        }
    }
    // Problems seen before recovery but gone after it were recovery's to fix; problems after
    // recovery are reported above. Report pre-recovery problems only when recovery failed.
    if h.after.is_err() {
        if let Ok(b) = &h.before {
            for p in &b.problems {
                out.push(heap_cannot(format!("heap: {p}"), "restore from a backup"));
            }
        }
    }
    out
}
