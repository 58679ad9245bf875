//! The redo log ("ulog"): a batch of aligned 8-byte stores applied all-or-nothing.
//!
//! A log lives in a fixed area `[base, base + area_bytes)` of a [`Persister`]. A commit:
//!
//! 1. writes the entries and the header (with a CRC-32 over both) and persists them with one
//!    flush + fence — the checksum is what makes entries and commit record one all-or-nothing
//!    unit: an image with any word of the new log missing fails the checksum and is discarded;
//! 2. applies every entry (`write_u64` at its offset), flushes, fences;
//! 3. clears the log by zeroing the *commit word* (checksum + generation) and persists that.
//!
//! A batch of one entry skips the log: an aligned 8-byte store is never torn, so a store plus
//! one flush + fence is already all-or-nothing.
//!
//! Recovery ([`Ulog::open`]) replays a complete log (step 1 durable) and discards any other.
//! Because entries are absolute values, replaying a log that was already (partly) applied is
//! harmless. The commit word carries the low 32 bits of a generation that changes at every
//! commit, so once a clear is durable no mixture of old and new words can revive an older log.
//!
//! The byte map is in `docs/FORMAT.md` ("Heap and redo log"). All integers are little-endian.
//! This module knows nothing about the heap: the transaction layer uses it for its own logs.

use pool::persist::PersistError;
use pool::Persister;

/// Magic at offset 0 of a log header: "RSRL" read as a little-endian u32.
pub const ULOG_MAGIC: u32 = u32::from_le_bytes(*b"RSRL");
/// Format version of the log header.
pub const ULOG_VERSION: u16 = 1;
/// Bytes of the log header (one cache line).
pub const HEADER_BYTES: usize = 64;
/// Bytes of one entry (offset u64, value u64).
pub const ENTRY_BYTES: usize = 16;
/// Offset of the commit word (checksum u32 + generation low u32) inside the header.
pub const COMMIT_WORD: usize = 56;

/// One redo entry: store `value` (8 bytes, little-endian) at `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Destination offset in the persister; 8-byte aligned.
    pub off: u64,
    /// Value to store.
    pub value: u64,
}

/// Errors of the redo log.
#[derive(Debug, thiserror::Error)]
pub enum UlogError {
    /// The batch does not fit the log area.
    #[error("redo log at {base:#x} holds at most {capacity} entries, batch has {entries}")]
    TooManyEntries {
        /// Log base offset.
        base: usize,
        /// Entries in the batch.
        entries: usize,
        /// Capacity of the log.
        capacity: usize,
    },
    /// An entry cannot be applied (unaligned, out of bounds, or inside the log itself).
    #[error("redo log at {base:#x}: entry {index} targets offset {off:#x}: {reason}")]
    BadEntry {
        /// Log base offset.
        base: usize,
        /// Position of the entry.
        index: usize,
        /// Its target offset.
        off: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The log area itself is unusable.
    #[error("redo log area {base:#x}+{len} invalid: {reason}")]
    BadArea {
        /// Log base offset.
        base: usize,
        /// Area length.
        len: usize,
        /// Why.
        reason: &'static str,
    },
    /// Flushing failed.
    #[error("redo log persist: {0}")]
    Persist(#[from] PersistError),
}

/// What [`Ulog::open`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// No committed log.
    Empty,
    /// A header was present but incomplete or corrupt; it was discarded.
    Discarded,
    /// A complete log was replayed.
    Replayed {
        /// Number of entries applied.
        entries: usize,
    },
}

/// The decoded state of a log area, without changing it (for checkers and fuzzing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogState {
    /// Cleared (commit word zero).
    Empty,
    /// Something is there but it is not a complete log (would be discarded).
    Incomplete(&'static str),
    /// A complete, checksummed log (would be replayed).
    Committed {
        /// Its generation.
        generation: u64,
        /// Its entries.
        entries: Vec<Entry>,
    },
}

/// A redo log at a fixed place. Holds no reference to the persister: every call takes one.
#[derive(Debug)]
pub struct Ulog {
    base: usize,
    area_bytes: usize,
    capacity: usize,
    generation: u64,
    buf: Vec<u8>,
}

/// Number of entries a log area of `area_bytes` holds.
pub fn capacity_for(area_bytes: usize) -> usize {
    area_bytes.saturating_sub(HEADER_BYTES) / ENTRY_BYTES
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn check_area<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area_bytes: usize,
) -> Result<(), UlogError> {
    let bad = |reason| UlogError::BadArea {
        base,
        len: area_bytes,
        reason,
    };
    if base % 64 != 0 {
        return Err(bad("base is not 64-byte aligned"));
    }
    if capacity_for(area_bytes) == 0 {
        return Err(bad("too small for one entry"));
    }
    if base.checked_add(area_bytes).map_or(true, |e| e > p.len()) {
        return Err(bad("outside the persister"));
    }
    Ok(())
}

/// Decode the log at `[base, base+area_bytes)` (the area is read, never written).
pub fn inspect<P: Persister + ?Sized>(
    p: &P,
    base: usize,
    area_bytes: usize,
) -> Result<LogState, UlogError> {
    check_area(p, base, area_bytes)?;
    let mut hdr = [0u8; HEADER_BYTES];
    p.read(base, &mut hdr);
    Ok(decode(p, base, area_bytes, &hdr))
}

fn decode<P: Persister + ?Sized>(p: &P, base: usize, area_bytes: usize, hdr: &[u8]) -> LogState {
    let commit = le_u64(hdr, COMMIT_WORD);
    if commit == 0 {
        return LogState::Empty;
    }
    if le_u32(hdr, 0) != ULOG_MAGIC {
        return LogState::Incomplete("magic");
    }
    if u16::from_le_bytes([hdr[4], hdr[5]]) != ULOG_VERSION {
        return LogState::Incomplete("version");
    }
    if u16::from_le_bytes([hdr[6], hdr[7]]) != 0 {
        return LogState::Incomplete("flags");
    }
    let count = le_u32(hdr, 8) as usize;
    if count > capacity_for(area_bytes) || le_u32(hdr, 12) as usize != capacity_for(area_bytes) {
        return LogState::Incomplete("count");
    }
    let generation = le_u64(hdr, 16);
    if le_u32(hdr, 60) != generation as u32 {
        return LogState::Incomplete("generation");
    }
    if hdr[24..56].iter().any(|&b| b != 0) {
        return LogState::Incomplete("reserved");
    }
    let mut body = vec![0u8; count * ENTRY_BYTES];
    p.read(base + HEADER_BYTES, &mut body);
    let mut h = crc32fast::Hasher::new();
    h.update(&hdr[..COMMIT_WORD]);
    h.update(&body);
    if h.finalize() != le_u32(hdr, COMMIT_WORD) {
        return LogState::Incomplete("checksum");
    }
    let entries = body
        .chunks_exact(ENTRY_BYTES)
        .map(|e| Entry {
            off: le_u64(e, 0),
            value: le_u64(e, 8),
        })
        .collect();
    LogState::Committed {
        generation,
        entries,
    }
}

impl Ulog {
    /// Write an empty log at `[base, base+area_bytes)` and persist it.
    pub fn format<P: Persister + ?Sized>(
        p: &P,
        base: usize,
        area_bytes: usize,
    ) -> Result<Ulog, UlogError> {
        check_area(p, base, area_bytes)?;
        p.fill(base, 0, HEADER_BYTES);
        // Durable before anything relies on this log being empty.
        p.persist(base, HEADER_BYTES)?;
        Ok(Ulog::at(base, area_bytes, 0))
    }

    fn at(base: usize, area_bytes: usize, generation: u64) -> Ulog {
        Ulog {
            base,
            area_bytes,
            capacity: capacity_for(area_bytes),
            generation,
            buf: Vec::with_capacity(HEADER_BYTES + 8 * ENTRY_BYTES),
        }
    }

    /// Open the log: replay it if complete, discard it otherwise; the log is empty afterwards.
    pub fn open<P: Persister + ?Sized>(
        p: &P,
        base: usize,
        area_bytes: usize,
    ) -> Result<(Ulog, Recovered), UlogError> {
        check_area(p, base, area_bytes)?;
        let mut hdr = [0u8; HEADER_BYTES];
        p.read(base, &mut hdr);
        let generation = le_u64(&hdr, 16);
        let log = Ulog::at(base, area_bytes, generation);
        let rec = match decode(p, base, area_bytes, &hdr) {
            LogState::Empty => Recovered::Empty,
            LogState::Incomplete(_) => Recovered::Discarded,
            LogState::Committed { entries, .. } => {
                for (index, e) in entries.iter().enumerate() {
                    log.check_entry(p, index, e)?;
                }
                log.apply(p, &entries)?;
                Recovered::Replayed {
                    entries: entries.len(),
                }
            }
        };
        if rec != Recovered::Empty {
            log.clear(p)?;
        }
        Ok((log, rec))
    }

    /// Offset of the log area.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Bytes of the log area.
    pub fn area_bytes(&self) -> usize {
        self.area_bytes
    }

    /// Entries one commit can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn check_entry<P: Persister + ?Sized>(
        &self,
        p: &P,
        index: usize,
        e: &Entry,
    ) -> Result<(), UlogError> {
        let bad = |reason| UlogError::BadEntry {
            base: self.base,
            index,
            off: e.off,
            reason,
        };
        if e.off % 8 != 0 {
            return Err(bad("not 8-byte aligned"));
        }
        if e.off
            .checked_add(8)
            .map_or(true, |end| end > p.len() as u64)
        {
            return Err(bad("outside the persister"));
        }
        let (lo, hi) = (self.base as u64, (self.base + self.area_bytes) as u64);
        if e.off + 8 > lo && e.off < hi {
            return Err(bad("inside the redo log itself"));
        }
        Ok(())
    }

    /// Apply `entries` all-or-nothing (see the module documentation). On return they are
    /// durable and the log is empty again.
    pub fn commit<P: Persister + ?Sized>(
        &mut self,
        p: &P,
        entries: &[Entry],
    ) -> Result<(), UlogError> {
        if entries.len() > self.capacity {
            return Err(UlogError::TooManyEntries {
                base: self.base,
                entries: entries.len(),
                capacity: self.capacity,
            });
        }
        for (index, e) in entries.iter().enumerate() {
            self.check_entry(p, index, e)?;
        }
        match entries {
            [] => return Ok(()),
            [e] => {
                // One aligned 8-byte store is atomic by itself: no log needed.
                p.write_u64(e.off as usize, e.value);
                p.persist(e.off as usize, 8)?;
                return Ok(());
            }
            _ => {}
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation as u32 == 0 {
            // The low half goes into the commit word, which must never be zero for a valid log.
            self.generation = self.generation.wrapping_add(1);
        }
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&ULOG_MAGIC.to_le_bytes());
        buf.extend_from_slice(&ULOG_VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(self.capacity as u32).to_le_bytes());
        buf.extend_from_slice(&self.generation.to_le_bytes());
        buf.resize(COMMIT_WORD, 0);
        buf.extend_from_slice(&[0u8; 8]);
        for e in entries {
            buf.extend_from_slice(&e.off.to_le_bytes());
            buf.extend_from_slice(&e.value.to_le_bytes());
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[..COMMIT_WORD]);
        h.update(&buf[HEADER_BYTES..]);
        let crc = h.finalize();
        buf[COMMIT_WORD..COMMIT_WORD + 4].copy_from_slice(&crc.to_le_bytes());
        buf[COMMIT_WORD + 4..HEADER_BYTES].copy_from_slice(&(self.generation as u32).to_le_bytes());
        p.write(self.base, buf);
        // Step 1: the whole log (entries + checksummed commit record) durable before any
        // destination word changes.
        p.persist(self.base, buf.len())?;
        self.apply(p, entries)?;
        self.clear(p)
    }

    fn apply<P: Persister + ?Sized>(&self, p: &P, entries: &[Entry]) -> Result<(), UlogError> {
        for e in entries {
            p.write_u64(e.off as usize, e.value);
        }
        let mut last_line = u64::MAX;
        for e in entries {
            let line = e.off / 64;
            if line != last_line {
                p.flush(e.off as usize, 8)?;
                last_line = line;
            }
        }
        // Step 2: every destination durable before the log may be cleared.
        p.drain()?;
        Ok(())
    }

    fn clear<P: Persister + ?Sized>(&self, p: &P) -> Result<(), UlogError> {
        p.write_u64(self.base + COMMIT_WORD, 0);
        // Step 3: the clear durable before the caller goes on; a later direct store to a
        // destination must never be undone by replaying this log.
        p.persist(self.base + COMMIT_WORD, 8)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool::crash::{Enumerate, Recorder};

    const BASE: usize = 256;
    const AREA: usize = 64 + 4 * 16;

    #[test]
    fn commit_applies_and_clears() {
        let r = Recorder::new(4096);
        let mut log = Ulog::format(&r, BASE, AREA).unwrap();
        assert_eq!(log.capacity(), 4);
        let e = [
            Entry { off: 0, value: 7 },
            Entry {
                off: 1024,
                value: 9,
            },
        ];
        log.commit(&r, &e).unwrap();
        assert_eq!(r.read_u64(0), 7);
        assert_eq!(r.read_u64(1024), 9);
        assert_eq!(inspect(&r, BASE, AREA).unwrap(), LogState::Empty);
        assert_eq!(r.durable_image(), r.live_image());
    }

    #[test]
    fn single_entry_is_one_store_and_one_fence() {
        let r = Recorder::new(4096);
        let mut log = Ulog::format(&r, BASE, AREA).unwrap();
        let fences = r.fences();
        log.commit(&r, &[Entry { off: 8, value: 4 }]).unwrap();
        assert_eq!(r.fences(), fences + 1);
        assert_eq!(r.durable_image(), r.live_image());
        let two = [Entry { off: 8, value: 5 }, Entry { off: 16, value: 5 }];
        log.commit(&r, &two).unwrap();
        assert_eq!(r.fences(), fences + 4);
    }

    #[test]
    fn refuses_bad_batches_before_writing() {
        let r = Recorder::new(4096);
        let mut log = Ulog::format(&r, BASE, AREA).unwrap();
        let before = r.live_image();
        let five = [Entry { off: 0, value: 1 }; 5];
        assert!(matches!(
            log.commit(&r, &five),
            Err(UlogError::TooManyEntries { capacity: 4, .. })
        ));
        for (off, why) in [
            (4, "aligned"),
            (4096, "outside"),
            (BASE as u64 + 64, "log itself"),
        ] {
            let err = log.commit(&r, &[Entry { off, value: 1 }]).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(r.live_image(), before);
    }

    #[test]
    fn every_crash_image_is_all_or_nothing() {
        let r = Recorder::new(4096);
        let mut log = Ulog::format(&r, BASE, AREA).unwrap();
        // Two earlier commits so that stale entries and headers are in the area.
        log.commit(
            &r,
            &[Entry { off: 8, value: 1 }, Entry { off: 16, value: 1 }],
        )
        .unwrap();
        log.commit(&r, &[Entry { off: 8, value: 2 }]).unwrap();
        r.clear_history();
        let new = [
            Entry { off: 8, value: 3 },
            Entry { off: 16, value: 3 },
            Entry {
                off: 2048,
                value: 3,
            },
        ];
        log.commit(&r, &new).unwrap();
        let opts = Enumerate {
            exhaustive_max: 1 << 14,
            samples: 2000,
            seed: None,
        };
        let n = r
            .check_crash_images(&opts, |img| {
                let c = Recorder::from_image(img);
                Ulog::open(&c, BASE, AREA).map_err(|e| e.to_string())?;
                let got = [c.read_u64(8), c.read_u64(16), c.read_u64(2048)];
                match got {
                    [2, 1, 0] | [3, 3, 3] => Ok(()),
                    other => Err(format!("mixed state {other:?}")),
                }
            })
            .unwrap();
        assert!(n > 10, "only {n} images");
    }

    #[test]
    fn corrupt_committed_log_is_discarded_not_applied() {
        let r = Recorder::new(4096);
        let log = Ulog::format(&r, BASE, AREA).unwrap();
        drop(log);
        // Hand-build a committed log, then flip each byte of header and entry in turn.
        let mut good = Ulog::at(BASE, AREA, 41);
        // Commit but keep the log: write by committing to a scratch copy and copying the area.
        let scratch = Recorder::new(4096);
        let two = [Entry { off: 0, value: 5 }, Entry { off: 8, value: 6 }];
        good.commit(&scratch, &two).unwrap();
        // Rebuild the bytes the commit wrote in step 1 (the area before the clear).
        let mut area = vec![0u8; HEADER_BYTES + 2 * ENTRY_BYTES];
        scratch.read(BASE, &mut area);
        let commit = {
            let mut h = crc32fast::Hasher::new();
            h.update(&area[..COMMIT_WORD]);
            h.update(&area[HEADER_BYTES..]);
            h.finalize()
        };
        area[COMMIT_WORD..COMMIT_WORD + 4].copy_from_slice(&commit.to_le_bytes());
        area[COMMIT_WORD + 4..HEADER_BYTES].copy_from_slice(&(42u32).to_le_bytes());
        r.write(BASE, &area);
        assert!(matches!(
            inspect(&r, BASE, AREA).unwrap(),
            LogState::Committed { generation: 42, .. }
        ));
        for i in 0..area.len() {
            let mut bad = area.clone();
            bad[i] ^= 0x10;
            let c = Recorder::new(4096);
            c.write(BASE, &bad);
            let (_, rec) = Ulog::open(&c, BASE, AREA).unwrap();
            assert_eq!(rec, Recovered::Discarded, "byte {i}");
            assert_eq!((c.read_u64(0), c.read_u64(8)), (0, 0), "byte {i} applied");
        }
        let c = Recorder::new(4096);
        c.write(BASE, &area);
        let (_, rec) = Ulog::open(&c, BASE, AREA).unwrap();
        assert_eq!(rec, Recovered::Replayed { entries: 2 });
        assert_eq!((c.read_u64(0), c.read_u64(8)), (5, 6));
    }
}
