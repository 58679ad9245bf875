//! The one persistence trait, [`Persister`], and its hardware implementation [`MappedRegion`].
//!
//! Everything above `persist` (headers, pools, and later the allocator and transactions) writes
//! persistent memory only through a `Persister`: a byte-addressed region with plain stores
//! (`write`), flushes and fences. Tests substitute [`crate::crash::Recorder`], which logs every
//! store, flush and fence and computes the images a crash could leave.
//!
//! Offsets are `usize` byte offsets into the region. An offset or length outside the region is a
//! programmer error and panics with the bounds in the message.

use crate::persist::{self, Flags, Flusher, PersistError};

/// A region of (possibly) persistent memory that code writes through.
///
/// The model (x86, as PMDK documents it): a store lands in the CPU cache and may reach the media
/// at any time; `flush` starts the write-back of the 64-byte lines of a range, and `drain` waits
/// until every earlier flush is complete. Only after `flush` + `drain` is a store guaranteed to
/// survive a crash. Aligned 8-byte stores ([`write_u64`](Self::write_u64)) are never torn.
///
/// # Concurrency
/// Methods take `&self`, so a region can be shared between threads, and every implementation
/// must stay sound when they race: overlapping reads and stores from several threads at the
/// same time are allowed and are never undefined behaviour. What a racing reader sees is
/// defined per aligned 8-byte word: each such word is seen entirely as some store left it
/// (never torn, [`write_u64`](Self::write_u64) included), but the words of a longer range
/// being stored concurrently may be seen partly old and partly new. [`MappedRegion`] gets this
/// from word-atomic accesses (see [`crate::persist#shared-memory-accesses`]); the in-memory
/// implementations from a lock around every call.
///
/// Consistency beyond one word is the caller's duty: each lane, transaction or allocator
/// structure owns the ranges it writes and hands them over with proper synchronization (a lock
/// or a channel), or re-checks what it read (as the allocator's lock-free object lookup does).
/// A reader that observes a word stored by `write_u64`, `write` or `fill` also observes every
/// store the writer made to that region before it (release/acquire per word). Streaming stores
/// (`memcpy_persist`/`memset_persist` of long ranges) are weakly ordered until the writer's
/// `drain`; they give only the per-word guarantee. Disjoint ranges may be used concurrently;
/// only 64-byte-line sharing then matters, for performance.
///
/// # Errors (contract relied on by palloc and tx)
/// An error of kind [`PersistError::Replica`] from `flush`, `drain` or `persist` means the
/// primary's part of the operation is complete — the range is flushed (and, for a drain, fenced)
/// on the primary exactly as if the call had succeeded — and only a replica failed. Any other
/// error means the primary itself may not have the range durable. The redo and undo logs use
/// this to decide whether a failed commit can still be undone on the primary.
pub trait Persister: Send + Sync {
    /// Length of the region in bytes.
    fn len(&self) -> usize;

    /// True for an empty region.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy `buf.len()` bytes at `off` into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]);

    /// Plain stores of `data` at `off` (not durable until flushed and drained).
    fn write(&self, off: usize, data: &[u8]);

    /// Plain stores of `len` copies of `byte` at `off`.
    fn fill(&self, off: usize, byte: u8, len: usize) {
        // Chunked so that huge fills do not allocate huge buffers.
        let chunk = [byte; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len());
            self.write(off + done, &chunk[..n]);
            done += n;
        }
    }

    /// Read a little-endian `u64` at `off`.
    fn read_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        u64::from_le_bytes(b)
    }

    /// One atomic, little-endian 8-byte store; `off` must be 8-byte aligned.
    fn write_u64(&self, off: usize, v: u64) {
        assert!(off % 8 == 0, "write_u64 at unaligned offset {off}");
        self.write(off, &v.to_le_bytes());
    }

    /// [`write_flush`](Self::write_flush) of one little-endian `u64` at `off` (8-byte
    /// aligned). An implementation stores an aligned 8-byte `write_flush` as one atomic store,
    /// as [`write_u64`](Self::write_u64) does.
    fn write_u64_flush(&self, off: usize, v: u64) -> Result<(), PersistError> {
        assert!(off % 8 == 0, "write_u64_flush at unaligned offset {off}");
        self.write_flush(off, &v.to_le_bytes())
    }

    /// Store `data` at `off` with its write-back started, like [`write`](Self::write) then
    /// [`flush`](Self::flush) but covering only these bytes: other bytes of their cache lines
    /// are not written back (the hardware implementation uses streaming stores, which bypass
    /// the cache and cost a shorter fence than a line write-back). Durable after the next
    /// drain. For bytes written once per persist (log entries, commit words, transaction
    /// data); a caller that stores other words of the line and relies on this flush must
    /// [`flush`](Self::flush) them.
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.write(off, data);
        self.flush(off, data.len())
    }

    /// Whether [`write_flush`](Self::write_flush) streams (a store that starts its own
    /// write-back, cheap to fence). When false (the `msync` path, or streaming switched off)
    /// it is a store plus a [`flush`](Self::flush) — one `msync` per call on the `msync` path
    /// — and a caller writing several ranges before one fence should store them all and flush
    /// once instead.
    fn streams(&self) -> bool {
        false
    }

    /// Start write-back of every cache line overlapping `[off, off+len)`.
    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError>;

    /// Wait until every earlier flush is durable (a fence).
    fn drain(&self) -> Result<(), PersistError>;

    /// An ordering fence: every range flushed before it becomes durable before any range
    /// flushed after it, on every copy of the pool, but a remote copy may still be making it
    /// durable when this returns. Errors of that remote work surface at a later `barrier` or
    /// `drain`, and the next [`drain`](Self::drain) waits for it. For fences that only order
    /// (an undo entry before the change it covers, new data before the commit record); a
    /// fence after which the caller acknowledges anything must be a `drain`. The default is a
    /// `drain`; a pool with remote replicas saves their round trips.
    fn barrier(&self) -> Result<(), PersistError> {
        self.drain()
    }

    /// `flush` then `drain`.
    fn persist(&self, off: usize, len: usize) -> Result<(), PersistError> {
        self.flush(off, len)?;
        self.drain()
    }

    /// Copy `data` to `off` and make it durable according to `flags`.
    fn memcpy_persist(&self, off: usize, data: &[u8], flags: Flags) -> Result<(), PersistError> {
        self.write(off, data);
        finish(self, off, data.len(), flags)
    }

    /// Fill `len` bytes at `off` with `byte` and make them durable according to `flags`.
    fn memset_persist(
        &self,
        off: usize,
        byte: u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        self.fill(off, byte, len);
        finish(self, off, len, flags)
    }
}

fn finish<P: Persister + ?Sized>(
    p: &P,
    off: usize,
    len: usize,
    flags: Flags,
) -> Result<(), PersistError> {
    if flags.contains(Flags::NO_FLUSH) {
        return Ok(());
    }
    p.flush(off, len)?;
    if !flags.contains(Flags::NO_DRAIN) {
        p.drain()?;
    }
    Ok(())
}

/// Panics with a clear message when `[off, off+len)` is not inside a region of `size` bytes.
#[track_caller]
pub(crate) fn check_bounds(off: usize, len: usize, size: usize) {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= size),
        "range {off}+{len} outside region of {size} bytes"
    );
}

/// A mapped range of memory with a hardware [`Flusher`].
///
/// Every access is word-atomic (the shared-memory contract of [`crate::persist`]), so threads
/// may read and write overlapping ranges at the same time without a data race. No Rust
/// reference to the mapped bytes is ever created except transient `&AtomicU64`s, which allow
/// the bytes to change under them: the file behind a shared mapping can change under us (other
/// mappings of it), which plain references must never observe.
pub struct MappedRegion {
    ptr: *mut u8,
    len: usize,
    flusher: Flusher,
    _owner: Box<dyn Send + Sync>,
}

// SAFETY: the region owns its mapping (through `_owner`) and holds no thread-bound state, so
// moving it to another thread is sound.
unsafe impl Send for MappedRegion {}
// SAFETY: every access to the mapped bytes through `&self` is an atomic access of the aligned
// 8-byte words it overlaps (`persist::load_shared`/`store_shared`/`fill_shared`/`*_u64_shared`),
// or an inline-assembly streaming store or cache flush, which the compiler treats as opaque
// (possibly atomic) accesses. Racing calls from several threads, on overlapping ranges too,
// are therefore never a data race; `new`'s contract makes every such word valid and reachable
// only through this region.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// A region over `[ptr, ptr+len)`, kept alive by `owner` (e.g. the mapping).
    ///
    /// # Safety
    /// Every aligned 8-byte word overlapping `[ptr, ptr+len)` (edge words included: a range at
    /// the region's edge loads or merges its whole word) must be readable and writable for as
    /// long as `owner` lives, and must not be accessed through Rust references, nor by plain
    /// (non-atomic) accesses from this process, while this region exists. A page-granular
    /// mapping used only through this region meets this.
    pub unsafe fn new(
        ptr: *mut u8,
        len: usize,
        flusher: Flusher,
        owner: Box<dyn Send + Sync>,
    ) -> Self {
        // Offsets that are multiples of 8 must be aligned words (`write_u64`, the word lattice).
        assert!(
            ptr as usize % 8 == 0,
            "MappedRegion at {ptr:p}: base must be 8-byte aligned"
        );
        MappedRegion {
            ptr,
            len,
            flusher,
            _owner: owner,
        }
    }

    /// A region over a whole `memmap2::MmapMut`.
    pub fn from_mmap(mut map: memmap2::MmapMut, flusher: Flusher) -> Self {
        let ptr = map.as_mut_ptr();
        let len = map.len();
        // SAFETY: the mapping is moved into the region and lives as long as it; the MmapMut is
        // never dereferenced again (it is only kept to be unmapped on drop).
        unsafe { MappedRegion::new(ptr, len, flusher, Box::new(map)) }
    }

    /// The flusher in use.
    pub fn flusher(&self) -> Flusher {
        self.flusher
    }

    /// Base address of the mapping (for diagnostics and benchmarks).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Persister for MappedRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        check_bounds(off, buf.len(), self.len);
        // SAFETY: bounds checked; the words overlapping the range are valid and accessed only
        // atomically (`new`'s contract); `buf` is ordinary memory, exclusive (`&mut`), and
        // cannot alias the mapping (no references into it exist).
        unsafe { persist::load_shared(buf.as_mut_ptr(), self.ptr.add(off), buf.len()) }
    }

    fn write(&self, off: usize, data: &[u8]) {
        check_bounds(off, data.len(), self.len);
        // SAFETY: as in `read`; `data` cannot alias the mapping. Word-atomic, so an aligned
        // 8-byte word is never torn and concurrent readers never race (see `store_shared`).
        unsafe { persist::store_shared(self.ptr.add(off), data.as_ptr(), data.len()) }
    }

    fn fill(&self, off: usize, byte: u8, len: usize) {
        check_bounds(off, len, self.len);
        // SAFETY: as in `write`.
        unsafe { persist::fill_shared(self.ptr.add(off), byte, len) }
    }

    fn read_u64(&self, off: usize) -> u64 {
        check_bounds(off, 8, self.len);
        if off % 8 != 0 {
            let mut b = [0u8; 8];
            self.read(off, &mut b);
            return u64::from_le_bytes(b);
        }
        // SAFETY: in bounds and 8-byte aligned (mappings are page aligned, `new`'s contract
        // makes the word valid and atomic-only): one atomic load, never torn.
        u64::from_le(unsafe { persist::load_u64_shared(self.ptr.add(off)) })
    }

    fn write_u64(&self, off: usize, v: u64) {
        assert!(off % 8 == 0, "write_u64 at unaligned offset {off}");
        check_bounds(off, 8, self.len);
        // SAFETY: in bounds and 8-byte aligned (mappings are page aligned): one atomic store,
        // a single `mov` on x86, never torn.
        unsafe { persist::store_u64_shared(self.ptr.add(off), v.to_le()) }
    }

    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        check_bounds(off, data.len(), self.len);
        // SAFETY: in bounds; the mapping meets the shared-memory contract; `data` does not
        // alias the mapping.
        unsafe {
            self.flusher
                .write_nt_raw(self.ptr.add(off), data.as_ptr(), data.len())
        }
    }

    fn streams(&self) -> bool {
        self.flusher.movnt() && self.flusher.path() != persist::FlushPath::Msync
    }

    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        check_bounds(off, len, self.len);
        // SAFETY: in bounds of the live mapping.
        unsafe { self.flusher.flush_raw(self.ptr.add(off), len) }
    }

    fn drain(&self) -> Result<(), PersistError> {
        self.flusher.drain();
        Ok(())
    }

    fn memcpy_persist(&self, off: usize, data: &[u8], flags: Flags) -> Result<(), PersistError> {
        check_bounds(off, data.len(), self.len);
        // SAFETY: in bounds; the destination meets the shared-memory contract (`new`); `data`
        // does not alias the mapping.
        unsafe {
            self.flusher
                .memcpy_raw(self.ptr.add(off), data.as_ptr(), data.len(), flags)
        }
    }

    fn memset_persist(
        &self,
        off: usize,
        byte: u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        check_bounds(off, len, self.len);
        // SAFETY: in bounds; the destination meets the shared-memory contract (`new`).
        unsafe { self.flusher.memset_raw(self.ptr.add(off), byte, len, flags) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::FlushPath;

    /// An 8 KiB region over a private temporary file, flushed with `f`.
    fn temp_region(f: Flusher) -> MappedRegion {
        let file = tempfile::tempfile().unwrap();
        file.set_len(8192).unwrap();
        // SAFETY: private temp file, not resized while mapped.
        let map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
        MappedRegion::from_mmap(map, f)
    }

    #[test]
    fn mapped_region_round_trips_on_every_path() {
        for path in FlushPath::ALL {
            let Ok(f) = Flusher::with_path(path) else {
                eprintln!("SKIP {path:?}: not supported by this CPU");
                continue;
            };
            let r = temp_region(f);
            r.memcpy_persist(10, &[1, 2, 3], Flags::NONE).unwrap();
            r.memset_persist(1000, 9, 3000, Flags::NONE).unwrap();
            r.write_u64(4096, 0x1122_3344_5566_7788);
            r.persist(4096, 8).unwrap();
            let mut b = [0u8; 3];
            r.read(10, &mut b);
            assert_eq!(b, [1, 2, 3]);
            assert_eq!(r.read_u64(4096), 0x1122_3344_5566_7788);
            let mut big = vec![0u8; 3000];
            r.read(1000, &mut big);
            assert!(big.iter().all(|&x| x == 9));
        }
    }

    #[test]
    fn write_flush_stores_exactly_its_bytes_on_every_path() {
        for path in FlushPath::ALL {
            let Ok(f) = Flusher::with_path(path) else {
                eprintln!("SKIP {path:?}: not supported by this CPU");
                continue;
            };
            for movnt in [true, false] {
                let r = temp_region(f.with_movnt(movnt));
                r.fill(0, 0xEE, 8192);
                // Unaligned start and end, several whole lines and words between.
                let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
                for (off, len) in [(3, 300), (64, 64), (120, 5), (4096 + 8, 16)] {
                    r.write_flush(off, &data[..len]).unwrap();
                    r.drain().unwrap();
                    let mut back = vec![0u8; len + 2];
                    r.read(off - 1, &mut back);
                    assert_eq!(back[0], 0xEE, "{path:?} movnt {movnt}: byte before {off}");
                    assert_eq!(&back[1..=len], &data[..len], "{path:?} movnt {movnt}");
                    assert_eq!(back[len + 1], 0xEE, "{path:?} movnt {movnt}: byte after");
                    r.fill(off, 0xEE, len);
                }
                r.write_u64_flush(512, 0x0102_0304_0506_0708).unwrap();
                r.drain().unwrap();
                assert_eq!(r.read_u64(512), 0x0102_0304_0506_0708);
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside region of 4096 bytes")]
    fn out_of_bounds_is_a_clear_panic() {
        let map = memmap2::MmapMut::map_anon(4096).unwrap();
        let r = MappedRegion::from_mmap(map, Flusher::with_path(FlushPath::Clflush).unwrap());
        r.write(4090, &[0u8; 7]);
    }
}
