//! The undo log: before a transaction changes a range, the range's old bytes are appended here
//! and made durable; recovery (and abort) copies them back, newest first.
//!
//! A lane's undo log starts in the lane's extra area (`palloc::Lane::extra_area`) and continues
//! in *overflow blocks* — heap objects of type [`OVERFLOW_TYPE`] chained from the area header —
//! when a transaction needs more room. Overflow blocks stay attached to the lane and are reused
//! by later transactions.
//!
//! Validity without a separate commit record per entry: the area header's `state` word holds
//! the transaction's generation and an *active* bit; every entry carries a CRC-32 over the
//! lane, the generation, **its own position and sequence index**, its target and its data.
//! Recovery takes entries in order while they check, so a torn entry, an entry left over from
//! an older transaction, or bytes of the current generation found anywhere but where this
//! transaction wrote its n-th entry (a block reused from another lane, a copy of an entry)
//! end the log. An entry is made durable (fence) before the range it saves is changed, so
//! every change has a valid entry.
//!
//! A generation is never used twice: a transaction's first entry reaches media in the same
//! fence as the `state` word that names its generation, so a crash there can leave the entry
//! durable and `state` still idle at the generation before. Opening the log then retires that
//! generation (stores it, idle, before any transaction runs), so the next transaction's
//! entries can never be confused with the crashed one's.
//!
//! Two-fence commit (format 3): a transaction without allocations or frees appends *redo*
//! entries (the new bytes of every range it saved) after its undo entries, the last one
//! flagged [`LAST`], in the same fence as its data. A log whose entries end with a valid `LAST`
//! is committed: recovery rolls it *forward*. Its `state` word stays active until the lane's
//! next transaction replaces it, or another writer of the same bytes *retires* it first
//! (`retired` word, see [`crate::retire`]). So that the lane's next transaction cannot tear such
//! a log while replacing it, transactions write into two slots of the lane area by generation
//! parity ([`Layout`]).
//!
//! Byte map and protocol: `docs/FORMAT.md`, "Transactions (undo log)". All integers are
//! little-endian. This module does only the log's I/O; the transaction logic is in [`crate::tx`].

use crate::Error;
use palloc::ulog::{persist_best_effort, replace_word};
use palloc::{Action, Lane, UlogError};
use pool::Persister;
use std::collections::BTreeSet;

/// Type number of overflow blocks: internal to palloc's eyes (top bit set, see
/// `palloc::INTERNAL_TYPE_MIN`), so no user call can see, free or write them.
pub const OVERFLOW_TYPE: u64 = u64::MAX - 1;
/// Bytes of the header of the lane area and of each overflow block (small, so that the first
/// entry shares the `state` word's cache line: one line fewer to flush per transaction).
pub const SEG_HEADER_BYTES: usize = 16;
/// Bytes of an entry header (`off` u64, `len` u32, `crc` u32).
pub const ENTRY_HEADER_BYTES: usize = 16;
/// Usable bytes of a newly allocated overflow block.
pub const OVERFLOW_BYTES: u64 = 64 << 10;
/// Offset of the `state` word in the lane area header.
pub const STATE_WORD: usize = 0;
/// Offset of the `next` word (first overflow block, or the next one) in every segment header.
pub const NEXT_WORD: usize = 8;
/// Offset of the `capacity` word of an overflow block (total bytes, header included).
pub const CAPACITY_WORD: usize = 0;
/// An entry with less room than this for data moves to the next segment instead.
const MIN_PIECE: usize = 64;
/// Flag of an entry's `off` field: the entry holds new bytes (redo), not old ones.
pub const REDO: u64 = 1 << 63;
/// Flag of an entry's `off` field (with [`REDO`]): the transaction's last entry, its commit
/// record.
pub const LAST: u64 = 1 << 62;
/// Smallest lane area split into two slots (format 3); smaller areas keep one slot and commit
/// with three fences.
pub const MIN_SPLIT_AREA: usize = 256;

/// Where a lane area's entries go, by format and area size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Two slots by generation parity, and a `retired` word (format 3, area of at least
    /// [`MIN_SPLIT_AREA`] bytes); otherwise one slot from byte 16 to the end (format 2, or a
    /// small area).
    pub(crate) split: bool,
}

impl Layout {
    /// The layout of a lane area of `area` bytes in a pool of format `version`.
    pub(crate) fn new(version: u8, area: usize) -> Layout {
        Layout {
            split: version >= 3 && area >= MIN_SPLIT_AREA,
        }
    }

    /// Offset (in the lane area) of the `retired` word, when there is one.
    pub(crate) fn retired_word(self, area: usize) -> Option<usize> {
        self.split.then_some((area - 8) & !7)
    }

    /// The slot `[start, end)` (lane-area offsets) where entries of generation `gen` start.
    fn slot(self, area: usize, gen: u64) -> (usize, usize) {
        match self.retired_word(area) {
            None => (SEG_HEADER_BYTES, area),
            Some(w) => {
                // The `retired` word's line holds no entries (it is written by other threads).
                let end = w & !63;
                let half = ((end - SEG_HEADER_BYTES) / 2) & !7;
                let start = SEG_HEADER_BYTES + (gen & 1) as usize * half;
                (start, start + half)
            }
        }
    }
}

/// One segment of the log: `[start, end)` holds entries; `next_word` links the following one.
#[derive(Clone, Copy, Debug)]
struct Seg {
    start: usize,
    end: usize,
    next_word: usize,
}

/// The volatile handle of one lane's undo log.
#[derive(Debug)]
pub(crate) struct UndoLog {
    base: usize,
    area: usize,
    layout: Layout,
    /// Generation of the current (or last) transaction.
    gen: u64,
    /// The `state` word says active (entries of `gen` may exist).
    active: bool,
    segs: Vec<Seg>,
    cur: usize,
    pos: usize,
    /// Sequence index of the next entry of the current transaction.
    index: u64,
    buf: Vec<u8>,
    /// Why the lane cannot be used until reopen (a persist failed mid-abort).
    poisoned: Option<String>,
    /// Buffers the lane's transactions reuse (saved ranges, ranges to flush).
    buffers: (Ranges, Ranges),
}

/// Byte ranges `[start, end)`.
pub(crate) type Ranges = Vec<(u64, u64)>;

fn align8(x: usize) -> usize {
    (x + 7) & !7
}

/// Where an entry sits: the log's lane area, the entry's own offset, and its sequence index in
/// its transaction's log. All go into the entry's CRC, so an entry checks only where (and as
/// the n-th entry) it was written.
#[derive(Clone, Copy, Debug)]
struct EntryPlace {
    base: u64,
    pos: u64,
    index: u64,
}

/// CRC-32 of an entry (byte order in `docs/FORMAT.md`, "Undo log").
fn entry_crc(gen: u64, at: EntryPlace, off: u64, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&at.base.to_le_bytes());
    h.update(&gen.to_le_bytes());
    h.update(&at.pos.to_le_bytes());
    h.update(&at.index.to_le_bytes());
    h.update(&off.to_le_bytes());
    h.update(&(data.len() as u32).to_le_bytes());
    h.update(data);
    h.finalize()
}

/// One decoded entry.
#[derive(Debug)]
struct Entry {
    /// Target offset (flags removed).
    off: u64,
    /// Old bytes (undo) or new bytes (redo).
    data: Vec<u8>,
    redo: bool,
    last: bool,
}

/// What recovery found in one lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndoRecovered {
    /// No transaction was in flight (or its log was already retired).
    Idle,
    /// A committed transaction's log was not yet retired; its new bytes were written again.
    RolledForward {
        /// Redo entries applied.
        entries: usize,
        /// Bytes applied.
        bytes: usize,
    },
    /// A transaction was in flight; this many entries were rolled back.
    RolledBack {
        /// Entries restored.
        entries: usize,
        /// Bytes restored.
        bytes: usize,
    },
}

/// The first segment of generation `gen`'s entries: its slot of the lane area.
fn first_seg(base: usize, area: usize, layout: Layout, gen: u64) -> Seg {
    let (start, end) = layout.slot(area, gen);
    Seg {
        start: base + start,
        end: base + end,
        next_word: base + NEXT_WORD,
    }
}

/// Read the segment chain of the log whose lane area is `[base, base+area)`; the first segment
/// is generation `gen`'s slot.
fn load_segs<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area: usize,
    layout: Layout,
    gen: u64,
) -> Result<Vec<Seg>, Error> {
    let mut segs = vec![first_seg(base, area, layout, gen)];
    let mut next = p.read_u64(base + NEXT_WORD);
    // Bounded: a chain longer than the pool holds blocks is corrupt (a cycle, say).
    while next != 0 {
        if segs.len() > p.len() / OVERFLOW_BYTES.max(64) as usize + 1 {
            return Err(Error::Corrupt(format!(
                "undo log at {base:#x}: overflow chain does not end"
            )));
        }
        let off = next as usize;
        let cap = (off as u64)
            .checked_add(CAPACITY_WORD as u64 + 8)
            .filter(|&e| off % 8 == 0 && e <= p.len() as u64)
            .map(|_| p.read_u64(off + CAPACITY_WORD));
        let Some(cap) = cap.filter(|&c| {
            c as usize >= SEG_HEADER_BYTES + ENTRY_HEADER_BYTES + 8
                && (off as u64)
                    .checked_add(c)
                    .is_some_and(|e| e <= p.len() as u64)
        }) else {
            return Err(Error::Corrupt(format!(
                "undo log at {base:#x}: overflow block {next:#x} has a bad header"
            )));
        };
        segs.push(Seg {
            start: off + SEG_HEADER_BYTES,
            end: off + cap as usize,
            next_word: off + NEXT_WORD,
        });
        next = p.read_u64(off + NEXT_WORD);
    }
    Ok(segs)
}

/// Decode the entries of generation `gen` of the log at `base`, in log order. Reading ends
/// after a [`LAST`] entry.
fn read_entries<P: Persister + ?Sized>(p: &P, base: usize, segs: &[Seg], gen: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut si = 0;
    let mut pos = segs[0].start;
    loop {
        if out.last().is_some_and(|e| e.last) {
            return out;
        }
        let seg = segs[si];
        let entry = (pos + ENTRY_HEADER_BYTES <= seg.end)
            .then(|| {
                let field = p.read_u64(pos);
                let w = p.read_u64(pos + 8);
                let (len, crc) = (w as u32 as usize, (w >> 32) as u32);
                let data_end = pos + ENTRY_HEADER_BYTES + len;
                let (redo, last) = (field & REDO != 0, field & LAST != 0);
                let off = field & !(REDO | LAST);
                if len == 0
                    || (last && !redo)
                    || data_end > seg.end
                    || off
                        .checked_add(len as u64)
                        .map_or(true, |e| e > p.len() as u64)
                {
                    return None;
                }
                let mut data = vec![0u8; len];
                p.read(pos + ENTRY_HEADER_BYTES, &mut data);
                let at = EntryPlace {
                    base: base as u64,
                    pos: pos as u64,
                    index: out.len() as u64,
                };
                (entry_crc(gen, at, field, &data) == crc).then_some(Entry {
                    off,
                    data,
                    redo,
                    last,
                })
            })
            .flatten();
        match entry {
            Some(e) => {
                pos += ENTRY_HEADER_BYTES + align8(e.data.len());
                out.push(e);
            }
            // The writer moves to the next segment when an entry does not fit; the rest of the
            // previous one is stale. A stale or torn start of the next segment ends the log.
            None if si + 1 < segs.len() && pos != segs[si].start => {
                si += 1;
                pos = segs[si].start;
            }
            None => return out,
        }
    }
}

/// True when the range `[off, off+len)` overlaps the log's own bytes (the whole lane area and
/// every overflow segment).
fn overlaps_log(segs: &[Seg], base: usize, area: usize, off: u64, len: usize) -> bool {
    let (s, e) = (off, off + len as u64);
    let hit = |a: usize, b: usize| s < b as u64 && e > a as u64;
    hit(base, base + area)
        || segs[1..]
            .iter()
            .any(|g| hit(g.start - SEG_HEADER_BYTES, g.end))
}

/// Whether the log at `base` has a transaction in flight (its `state` word's active bit).
pub(crate) fn is_active<P: Persister + ?Sized>(p: &P, base: usize) -> bool {
    p.read_u64(base + STATE_WORD) & 1 == 1
}

/// What a lane's undo log holds, as recovery would see it (for inspection tools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndoState {
    /// No transaction of this generation needs anything.
    Idle {
        /// The `state` word's generation.
        generation: u64,
    },
    /// A transaction in flight: recovery rolls it back.
    InFlight {
        /// Its generation.
        generation: u64,
    },
    /// A committed transaction whose log is not retired yet: recovery rolls it forward.
    Committed {
        /// Its generation.
        generation: u64,
    },
}

/// An active log of generation `gen`, read: its segments and entries, and whether it is
/// committed (its entries end with [`LAST`]) and retired (committed, and its `retired` word
/// covers it). `Err` for a `retired` word ahead of `gen` (only committed generations, never
/// above the log's, are stored there) and for a corrupt overflow chain.
struct ActiveLog {
    segs: Vec<Seg>,
    entries: Vec<Entry>,
    committed: bool,
    retired: bool,
}

fn read_active<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area: usize,
    layout: Layout,
    gen: u64,
) -> Result<ActiveLog, Error> {
    let retired_gen = match layout.retired_word(area) {
        Some(w) => {
            let r = p.read_u64(base + w);
            if r > gen {
                return Err(Error::Corrupt(format!(
                    "undo log at {base:#x}: retired word (lane area byte {w}) says generation \
                     {r}, ahead of the log's generation {gen}"
                )));
            }
            Some(r)
        }
        None => None,
    };
    let segs = load_segs(p, base, area, layout, gen)?;
    let entries = read_entries(p, base, &segs, gen);
    let committed = entries.last().is_some_and(|e| e.last);
    Ok(ActiveLog {
        segs,
        entries,
        committed,
        // Only a committed log can have been retired; a `retired` word saying so of a log in
        // flight is not trusted (the log is rolled back).
        retired: committed && retired_gen == Some(gen),
    })
}

/// Read the state of the log in the lane area at `[base, base+area)` of a pool whose slot-0
/// magic is `magic` (its format version is the magic's last byte), without changing anything.
/// `Err` when the log is corrupt (as [`recover`] would report it).
pub fn inspect<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area: usize,
    magic: u64,
) -> Result<UndoState, Error> {
    let state = p.read_u64(base + STATE_WORD);
    let generation = state >> 1;
    if state & 1 == 0 {
        return Ok(UndoState::Idle { generation });
    }
    let layout = Layout::new((magic >> 56) as u8, area);
    let log = read_active(p, base, area, layout, generation)?;
    Ok(match (log.committed, log.retired) {
        (_, true) => UndoState::Idle { generation },
        (true, false) => UndoState::Committed { generation },
        (false, _) => UndoState::InFlight { generation },
    })
}

/// Resolve the transaction in flight in the log at `[base, base+area)`, if any: roll a
/// committed one forward (its redo entries ended by [`LAST`]), roll any other back (its undo
/// entries, newest first), and leave the log idle. A committed log its `retired` word covers is
/// only made idle. Nothing is changed when the log is found corrupt. Run at open, after the
/// heap replayed its redo logs and before anything else touches the pool.
pub(crate) fn recover<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area: usize,
    layout: Layout,
) -> Result<UndoRecovered, Error> {
    let state = p.read_u64(base + STATE_WORD);
    if state & 1 == 0 {
        return Ok(UndoRecovered::Idle);
    }
    let gen = state >> 1;
    let idle = |p: &P| -> Result<(), Error> {
        p.write_u64(base + STATE_WORD, gen << 1);
        p.persist(base + STATE_WORD, 8)?;
        Ok(())
    };
    let ActiveLog {
        segs,
        entries,
        committed,
        retired,
    } = read_active(p, base, area, layout, gen)?;
    for (i, e) in entries.iter().enumerate() {
        if overlaps_log(&segs, base, area, e.off, e.data.len()) {
            return Err(Error::Corrupt(format!(
                "undo log at {base:#x}: entry {i} targets the log itself ({:#x}+{})",
                e.off,
                e.data.len()
            )));
        }
    }
    if retired {
        // Committed, and its bytes since changed by later writers: nothing to redo.
        idle(p)?;
        return Ok(UndoRecovered::Idle);
    }
    let mut bytes = 0;
    let mut applied = 0;
    let mut apply = |e: &Entry| -> Result<(), Error> {
        p.write(e.off as usize, &e.data);
        p.flush(e.off as usize, e.data.len())?;
        bytes += e.data.len();
        applied += 1;
        Ok(())
    };
    if committed {
        entries.iter().filter(|e| e.redo).try_for_each(&mut apply)?;
    } else {
        entries
            .iter()
            .rev()
            .filter(|e| !e.redo)
            .try_for_each(&mut apply)?;
    }
    // The bytes durable before the log stops saying "active": a crash in between does the
    // same again, which is harmless.
    p.drain()?;
    idle(p)?;
    Ok(if committed {
        UndoRecovered::RolledForward {
            entries: applied,
            bytes,
        }
    } else {
        UndoRecovered::RolledBack {
            entries: applied,
            bytes,
        }
    })
}

/// Write `data` at `off`, except the 8-byte words at offsets in `keep`.
fn write_around<P: Persister + ?Sized>(p: &P, off: u64, data: &[u8], keep: &BTreeSet<u64>) {
    let end = off + data.len() as u64;
    let mut from = off;
    for &w in keep.range(off.saturating_sub(7)..end) {
        let (ws, we) = (w.max(off), (w + 8).min(end));
        if ws > from {
            p.write(
                from as usize,
                &data[(from - off) as usize..(ws - off) as usize],
            );
        }
        from = from.max(we);
    }
    if end > from {
        p.write(from as usize, &data[(from - off) as usize..]);
    }
}

impl UndoLog {
    /// Attach to the (recovered, inactive) log at `[base, base+area)`.
    pub(crate) fn open<P: Persister + ?Sized>(
        p: &P,
        base: usize,
        area: usize,
        layout: Layout,
    ) -> Result<UndoLog, Error> {
        let state = p.read_u64(base + STATE_WORD);
        if state & 1 != 0 {
            return Err(Error::Corrupt(format!(
                "undo log at {base:#x} still active after recovery"
            )));
        }
        let mut gen = state >> 1;
        if let Some(w) = layout.retired_word(area) {
            // Only committed generations are retired, and generations only grow.
            let retired = p.read_u64(base + w);
            if retired > gen {
                return Err(Error::Corrupt(format!(
                    "undo log at {base:#x}: retired word (lane area byte {w}) says generation \
                     {retired}, ahead of the log's generation {gen}"
                )));
            }
        }
        let mut segs = load_segs(p, base, area, layout, gen + 1)?;
        // A crash in the first fence of a transaction may have left its first entry durable
        // while `state` stayed idle at `gen`: that transaction used `gen + 1`. The next one
        // would use it again and, if it crashed before its own first entry was durable (with
        // `state` already active), recovery would take the stale entry as its own and restore
        // bytes that other lanes may have committed since. Retire the generation: idle at
        // `gen + 1`, durable before any transaction of this run writes an entry.
        if !read_entries(p, base, &segs, gen + 1).is_empty() {
            gen += 1;
            p.write_u64(base + STATE_WORD, gen << 1);
            p.persist(base + STATE_WORD, 8)?;
        }
        segs[0] = first_seg(base, area, layout, gen + 1);
        Ok(UndoLog {
            base,
            area,
            layout,
            gen,
            index: 0,
            active: false,
            cur: 0,
            pos: segs[0].start,
            segs,
            buf: Vec::with_capacity(256),
            poisoned: None,
            buffers: (Vec::new(), Vec::new()),
        })
    }

    /// Lend the reusable buffers to a transaction.
    pub(crate) fn take_buffers(&mut self) -> (Ranges, Ranges) {
        std::mem::take(&mut self.buffers)
    }

    /// Give the buffers back (kept only while small).
    pub(crate) fn give_buffers(&mut self, a: Ranges, b: Ranges) {
        if a.capacity() <= 1024 && b.capacity() <= 1024 {
            self.buffers = (a, b);
        }
    }

    /// Mark the lane unusable until the pool is reopened (recovery then rolls back).
    pub(crate) fn poison(&mut self, why: String) {
        self.poisoned = Some(why);
    }

    /// Why the lane is unusable, if it is.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Whether entries of the current transaction may exist on media.
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// The value of the `state` word that ends the current transaction (inactive).
    pub(crate) fn idle_state(&self) -> (u64, u64) {
        ((self.base + STATE_WORD) as u64, self.gen << 1)
    }

    /// Start the next generation (the first entry of a transaction): its slot, index 0.
    fn begin_generation(&mut self) {
        debug_assert!(!self.active);
        self.gen += 1;
        self.cur = 0;
        self.index = 0;
        self.segs[0] = first_seg(self.base, self.area, self.layout, self.gen);
        self.pos = self.segs[0].start;
    }

    /// Fill the header of the entry in `buf` (`n` data bytes already there): `field` is the
    /// target offset with its flags, the CRC binds it to this generation, position and index.
    fn seal_entry(&mut self, field: u64, n: usize) {
        let at = EntryPlace {
            base: self.base as u64,
            pos: self.pos as u64,
            index: self.index,
        };
        let crc = entry_crc(self.gen, at, field, &self.buf[ENTRY_HEADER_BYTES..][..n]);
        self.buf[0..8].copy_from_slice(&field.to_le_bytes());
        self.buf[8..12].copy_from_slice(&(n as u32).to_le_bytes());
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
    }

    /// Append the old bytes of `[off, off+len)` (read from `p`), split over segments as needed,
    /// each piece durable before returning. The first entry of a transaction also makes the
    /// `state` word active in the same fence.
    pub(crate) fn append<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        lane: &mut Lane<'_, P>,
        off: u64,
        len: usize,
    ) -> Result<(), Error> {
        let fresh = !self.active;
        if fresh {
            self.begin_generation();
        }
        let r = self.append_pieces(p, lane, off, len);
        if fresh && !self.active {
            // Nothing was stored: the generation stays unused (the next open expects the
            // next transaction at `gen + 1`).
            self.gen -= 1;
        }
        r
    }

    fn append_pieces<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        lane: &mut Lane<'_, P>,
        off: u64,
        len: usize,
    ) -> Result<(), Error> {
        let mut done = 0;
        while done < len {
            let remaining = len - done;
            let seg = self.segs[self.cur];
            let room = seg.end.saturating_sub(self.pos + ENTRY_HEADER_BYTES) & !7;
            if room < remaining.min(MIN_PIECE) {
                self.next_seg(p, lane)?;
                continue;
            }
            let n = remaining.min(room).min(u32::MAX as usize & !7);
            let target = off + done as u64;
            self.buf.clear();
            self.buf.resize(ENTRY_HEADER_BYTES + align8(n), 0);
            p.read(target as usize, &mut self.buf[ENTRY_HEADER_BYTES..][..n]);
            self.seal_entry(target, n);
            if p.streams() {
                // Active from the first store on, whatever the stores return: the entry or the
                // word may reach media (or a replica) anyway, so the generation is used, and
                // roll-back and end must store idle again.
                let first = !self.active;
                self.active = true;
                p.write_flush(self.pos, &self.buf)?;
                if first {
                    p.write_u64_flush(self.base + STATE_WORD, self.gen << 1 | 1)?;
                }
            } else {
                self.write_then_flush(p)?;
            }
            // The entry (and the active state) durable before the caller changes the range: an
            // ordering fence (remote replicas need not answer before the change is made).
            p.barrier()?;
            self.pos += self.buf.len();
            self.index += 1;
            done += n;
        }
        Ok(())
    }

    /// The entry in `buf` at `pos` (and the active state, first time) stored, then flushed
    /// once per cache line: the path for a persister that does not stream, where each flush
    /// may be an `msync`.
    fn write_then_flush<P: Persister + ?Sized>(&mut self, p: &P) -> Result<(), Error> {
        p.write(self.pos, &self.buf);
        let first = !self.active;
        if first {
            p.write_u64(self.base + STATE_WORD, self.gen << 1 | 1);
            // Active from the store on, whatever the flush returns: the word may reach media
            // (or a replica) anyway, so roll-back and end must store idle again.
            self.active = true;
        }
        // One flush per cache line: a second write-back of a line before the fence costs a
        // whole second round. The state word usually shares the entry's first line (or the one
        // before it), so entry and word go in one range then.
        let (entry_start, entry_end) = (self.pos, self.pos + self.buf.len());
        let word = self.base + STATE_WORD;
        if first && word / 64 + 1 >= entry_start / 64 && word < entry_end {
            p.flush(word.min(entry_start), entry_end - word.min(entry_start))?;
        } else {
            p.flush(entry_start, entry_end - entry_start)?;
            if first {
                p.flush(word, 8)?;
            }
        }
        Ok(())
    }

    /// Move to the next segment, allocating and linking an overflow block if there is none.
    fn next_seg<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        lane: &mut Lane<'_, P>,
    ) -> Result<(), Error> {
        if self.cur + 1 == self.segs.len() {
            let r = lane.reserve_internal(OVERFLOW_BYTES, OVERFLOW_TYPE, false)?;
            let off = r.off() as usize;
            let cap = r.usable_size() as usize & !7;
            let mut hdr = [0u8; SEG_HEADER_BYTES];
            hdr[CAPACITY_WORD..CAPACITY_WORD + 8].copy_from_slice(&(cap as u64).to_le_bytes());
            // The first entry slot is zeroed so that stale bytes there cannot continue a log.
            p.write(off, &hdr);
            p.fill(off + SEG_HEADER_BYTES, 0, ENTRY_HEADER_BYTES);
            // The block's header durable before the link that makes it reachable.
            p.persist(off, SEG_HEADER_BYTES + ENTRY_HEADER_BYTES)?;
            let link = self.segs[self.cur].next_word as u64;
            let linked = lane.publish(vec![
                Action::Alloc(r),
                Action::Set {
                    off: link,
                    value: off as u64,
                },
            ]);
            let seg = Seg {
                start: off + SEG_HEADER_BYTES,
                end: off + cap,
                next_word: off + NEXT_WORD,
            };
            match linked {
                Ok(()) => self.segs.push(seg),
                Err(palloc::Error::Ulog(UlogError::Committed { source, .. })) => {
                    // The block is linked (a persist after the commit point failed): keep it
                    // in the chain, and fail the transaction (which then rolls back) with
                    // the persist error.
                    self.segs.push(seg);
                    return Err(Error::Persist(source));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.cur += 1;
        self.pos = self.segs[self.cur].start;
        Ok(())
    }

    /// Copy every saved range back (newest first) and make it durable; does not end the
    /// transaction (see [`end`](Self::end)).
    ///
    /// Every entry is written and flushed, and the drain runs, even after a persist error (the
    /// first is returned): when only a replica failed, the primary is fully rolled back.
    ///
    /// The 8-byte words at offsets in `keep` (lock words) are not restored: the entry is
    /// written around them.
    pub(crate) fn roll_back<P: Persister + ?Sized>(
        &self,
        p: &P,
        keep: &BTreeSet<u64>,
    ) -> Result<usize, Error> {
        if !self.active {
            return Ok(0);
        }
        let entries = read_entries(p, self.base, &self.segs, self.gen);
        let mut first_err = None;
        let mut restored = 0;
        // Redo entries (of a commit that failed and was undone) are skipped.
        for e in entries.iter().rev().filter(|e| !e.redo) {
            write_around(p, e.off, &e.data, keep);
            if let Err(err) = p.flush(e.off as usize, e.data.len()) {
                first_err.get_or_insert(err);
            }
            restored += 1;
        }
        // Restored bytes durable before the state word may say "idle".
        let drained = p.drain();
        match first_err {
            Some(e) => Err(e.into()),
            None => drained.map(|_| restored).map_err(Error::from),
        }
    }

    /// Write the commit record of the current transaction: one redo entry per range of
    /// `ranges` (sorted, disjoint) holding its current bytes, the last one flagged [`LAST`],
    /// each stored with its write-back started (streamed, or stored and flushed). The caller's
    /// next fence, which also covers the transaction's data, is the commit point.
    ///
    /// `Ok(None)` (nothing written) when this log cannot commit so — no two slots, entries
    /// already past the slot, or too little room left in it: the caller commits with the idle
    /// `state` store. `Ok(Some(pos))`: the position of the first redo entry, for
    /// [`undo_commit_record`](Self::undo_commit_record). An error writing them is returned
    /// after that undo.
    pub(crate) fn write_commit_record<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        ranges: &[(u64, u64)],
    ) -> Result<Option<usize>, Error> {
        if !self.active || !self.layout.split || self.cur != 0 || ranges.is_empty() {
            return Ok(None);
        }
        let need: usize = ranges
            .iter()
            .map(|&(s, e)| ENTRY_HEADER_BYTES + align8((e - s) as usize))
            .sum();
        if ranges.iter().any(|&(s, e)| e - s > u32::MAX as u64 / 2)
            || self.pos + need > self.segs[0].end
        {
            return Ok(None);
        }
        let start = self.pos;
        match self.write_redo_entries(p, ranges) {
            Ok(()) => Ok(Some(start)),
            Err(e) => Err(self.undo_commit_record(p, start, e)),
        }
    }

    fn write_redo_entries<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        ranges: &[(u64, u64)],
    ) -> Result<(), pool::persist::PersistError> {
        let streams = p.streams();
        let start = self.pos;
        for (i, &(s, e)) in ranges.iter().enumerate() {
            let n = (e - s) as usize;
            self.buf.clear();
            self.buf.resize(ENTRY_HEADER_BYTES + align8(n), 0);
            p.read(s as usize, &mut self.buf[ENTRY_HEADER_BYTES..][..n]);
            let flags = if i + 1 == ranges.len() {
                REDO | LAST
            } else {
                REDO
            };
            self.seal_entry(s | flags, n);
            if streams {
                p.write_flush(self.pos, &self.buf)?;
            } else {
                p.write(self.pos, &self.buf);
            }
            self.pos += self.buf.len();
            self.index += 1;
        }
        if !streams {
            // One flush per line for all of them.
            p.flush(start, self.pos - start)?;
        }
        Ok(())
    }

    /// Undo a commit record whose writing or fence failed: its first redo entry, at `first`,
    /// stops decoding (`len` and CRC zeroed), persisted on the primary at least, so no `LAST`
    /// is reachable and the log is again an uncommitted one that abort (or recovery) rolls
    /// back. Returns the error to report: `OutcomeUnknown` when that persist failed on the
    /// primary itself.
    pub(crate) fn undo_commit_record<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        first: usize,
        source: pool::persist::PersistError,
    ) -> Error {
        // Streaming stores ordered before the plain store.
        pool::persist::sfence();
        p.write_u64(first + 8, 0);
        match persist_best_effort(p, first + 8, 8) {
            Ok(()) => Error::Persist(source),
            Err(u) if palloc::ulog::primary_done(&u) => Error::Persist(source),
            Err(u) => Error::OutcomeUnknown(format!(
                "{source}; then invalidating the commit record failed: {u}"
            )),
        }
    }

    /// Forget the transaction's entries (volatile part). The caller has made the state idle on
    /// media (directly or through the commit's redo log), or wrote a commit record that makes
    /// the log committed until it is retired.
    pub(crate) fn reset(&mut self) {
        self.active = false;
        self.index = 0;
        self.cur = 0;
    }

    /// The current (or last) transaction's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.gen
    }

    /// End an aborted transaction (its ranges rolled back and durable) by storing the idle
    /// state directly (one atomic word + fence). The drain runs even when the flush failed, so
    /// that a replica's failure leaves the primary idle.
    pub(crate) fn end<P: Persister + ?Sized>(&mut self, p: &P) -> Result<(), Error> {
        if self.active {
            let (w, v) = self.idle_state();
            p.write_u64(w as usize, v);
            persist_best_effort(p, w as usize, 8)?;
        }
        self.reset();
        Ok(())
    }

    /// Commit a transaction without allocations or frees: the idle state's persist is the
    /// commit point. When it fails (a replica failed after the primary, say) the transaction
    /// is **not** committed: the active state is stored back and persisted (the entries are
    /// untouched, so the log is whole again) before the error is returned, and the log stays
    /// active for the caller's roll-back. [`Error::OutcomeUnknown`] when storing it back
    /// failed on the primary itself.
    pub(crate) fn commit_end<P: Persister + ?Sized>(&mut self, p: &P) -> Result<(), Error> {
        if self.active {
            let (w, v) = self.idle_state();
            // The word holds the active state this log stored: known, not read back.
            match replace_word(p, w as usize, v | 1, v) {
                Ok(()) => {}
                Err(UlogError::Persist(e)) => return Err(Error::Persist(e)),
                Err(e) => return Err(Error::OutcomeUnknown(e.to_string())),
            }
        }
        self.reset();
        Ok(())
    }
}
