//! Persistence primitives: cache-line flushes, fences, non-temporal copies and `msync`.
//!
//! A [`Flusher`] is one chosen way to make stores durable:
//!
//! | path                     | flush of a range                   | drain      |
//! |--------------------------|------------------------------------|------------|
//! | [`FlushPath::Clwb`]      | `clwb` on every 64-byte line       | `sfence`   |
//! | [`FlushPath::ClflushOpt`]| `clflushopt` on every line         | `sfence`   |
//! | [`FlushPath::Clflush`]   | `clflush` on every line            | `sfence`   |
//! | [`FlushPath::Msync`]     | `msync(MS_SYNC)` on the page range | nothing    |
//!
//! The CPU is probed once with CPUID ([`cpu`]); the best available cache flush is chosen
//! (CLWB, else CLFLUSHOPT, else CLFLUSH). Copies and fills of at least the non-temporal threshold
//! (256 bytes by default, as PMDK) use streaming stores (`movntdq`, 16 bytes at a time, or
//! `vmovntdq` 32 bytes at a time where AVX is present), which bypass the cache and need only the
//! final `sfence`. Temporal copies store word by word, so an aligned 8-byte word is written by
//! one 8-byte store and never torn; a streaming store writes an aligned 16- or 32-byte block with
//! one instruction, which (as PMDK assumes) does not tear the aligned words inside it. On memory
//! that is not persistent memory the `msync` path is used and copies are ordinary word copies.
//!
//! # Shared-memory accesses
//!
//! A pool mapping is read and written by several threads at once without a lock around every
//! access (the allocator reads allocation headers while another lane publishes in the same run;
//! an unlocked object read may run while a transaction writes the object). With plain copies
//! that would be a data race — undefined behaviour in Rust's memory model, whatever the
//! hardware does. So every access to such memory ([`load_shared`], [`store_shared`],
//! [`fill_shared`], [`load_u64_shared`], [`store_u64_shared`], and the `_raw` copies and fills
//! of [`Flusher`]) works on the **8-byte word lattice** of absolute addresses:
//!
//! - each aligned 8-byte word is accessed only as one `AtomicU64` (release stores, acquire
//!   loads; on x86 plain `mov`s), or by inline assembly — streaming stores, cache flushes, and
//!   for long loads and fills aligned 16-byte `movdqa` moves on CPUs where those are atomic —
//!   which the compiler cannot see into and which moves aligned words whole;
//! - a range that covers a word only partly loads the whole word and keeps the wanted bytes,
//!   or stores by an atomic compare-exchange merge, so that all accesses to a word have the
//!   same size (racing atomics of different sizes on overlapping bytes are undefined
//!   behaviour too) and a concurrent store to the word's other bytes is never lost.
//!
//! The contract such a range `[p, p+len)` must meet (the **shared-memory contract**): every
//! aligned 8-byte word overlapping it — including the parts of edge words outside the range —
//! is valid for reads and writes for the duration of the call, and every concurrent access to
//! those words goes through these functions (or is itself atomic). A page-granular mapping
//! accessed only through [`crate::region::MappedRegion`] meets it.
//!
//! Readers then see each word as one store left it: never torn, never undefined. They may see
//! a mix of old and new words of a multi-word range that is being written; deciding which
//! ranges are consistent is the job of the layers above (locks, the chunk `info` re-check).
//! Copies into ordinary, exclusively owned buffers ([`copy_words`], the slice API of
//! [`Flusher`]) store their edge bytes plainly and never touch bytes outside the range.
//!
//! # Environment
//!
//! Read at every call of [`Flusher::detect`], that is at every pool create/open without an
//! explicit flusher (so a change of the environment applies to pools opened afterwards), and
//! once for [`Flusher::global`]. As PMDK, a switch is on only when its value is exactly `1`, and
//! each switch removes only its own instruction:
//!
//! | variable                   | effect                                                         |
//! |----------------------------|----------------------------------------------------------------|
//! | `PMEM_NO_CLWB=1`           | never use CLWB (CLFLUSHOPT, else CLFLUSH, instead)             |
//! | `PMEM_NO_CLFLUSHOPT=1`     | never use CLFLUSHOPT (CLWB is still used where present)        |
//! | `PMEM_NO_MOVNT=1`          | never use non-temporal stores                                  |
//! | `PMEM_MOVNT_THRESHOLD=N`   | copies/fills of at least N bytes use non-temporal stores       |
//! | `PMEM_IS_PMEM_FORCE=0\|1`  | force the "is persistent memory" decision (see `crate::map`)   |
//!
//! Tests need not use the environment: [`Flusher::with_path`] selects a path in-process.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Size of an x86 cache line, the unit of a flush.
pub const CACHE_LINE: usize = 64;

/// Default length from which copies and fills use non-temporal stores (PMDK's default).
pub const MOVNT_THRESHOLD_DEFAULT: usize = 256;

/// Flags for [`Flusher::memcpy_persist`] and [`Flusher::memset_persist`], after PMDK's
/// `PMEM_F_MEM_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// Flush, then drain (fence): the data is durable on return.
    pub const NONE: Flags = Flags(0);
    /// Flush but do not drain; the caller issues one [`Flusher::drain`] for several operations.
    pub const NO_DRAIN: Flags = Flags(1);
    /// Use non-temporal stores whatever the length.
    pub const NONTEMPORAL: Flags = Flags(2);
    /// Use ordinary (temporal) stores plus flushes whatever the length.
    pub const TEMPORAL: Flags = Flags(4);
    /// Do not flush at all (the caller flushes later); implies no drain.
    pub const NO_FLUSH: Flags = Flags(8);

    /// True when every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// How a [`Flusher`] makes a range durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushPath {
    /// `clwb` per line: writes back and keeps the line cached (best).
    Clwb,
    /// `clflushopt` per line: writes back and evicts, weakly ordered.
    ClflushOpt,
    /// `clflush` per line: writes back and evicts, serialising.
    Clflush,
    /// `msync(MS_SYNC)` of the page-aligned range, for memory that is not persistent memory.
    Msync,
}

impl FlushPath {
    /// Every path, best first.
    pub const ALL: [FlushPath; 4] = [
        FlushPath::Clwb,
        FlushPath::ClflushOpt,
        FlushPath::Clflush,
        FlushPath::Msync,
    ];
}

/// CPU capabilities relevant to persistence, probed once with CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// CPUID.(EAX=7,ECX=0):EBX bit 24.
    pub clwb: bool,
    /// CPUID.(EAX=7,ECX=0):EBX bit 23.
    pub clflushopt: bool,
    /// CPUID.(EAX=1):EDX bit 19.
    pub clflush: bool,
    /// AVX usable (CPU and OS), for 32-byte streaming stores.
    pub avx: bool,
}

impl Cpu {
    /// The features present in both `self` and `other`.
    pub fn intersect(self, other: Cpu) -> Cpu {
        Cpu {
            clwb: self.clwb && other.clwb,
            clflushopt: self.clflushopt && other.clflushopt,
            clflush: self.clflush && other.clflush,
            avx: self.avx && other.avx,
        }
    }
}

/// The CPU's capabilities (probed on first call).
pub fn cpu() -> Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    *CPU.get_or_init(probe_cpu)
}

#[cfg(target_arch = "x86_64")]
fn probe_cpu() -> Cpu {
    use core::arch::x86_64::__cpuid_count;
    // CPUID is available on every x86_64 CPU; the leaf-7 query is only meaningful when the
    // maximum basic leaf is at least 7.
    let max_leaf = __cpuid_count(0, 0).eax;
    let leaf1 = __cpuid_count(1, 0);
    let (clwb, clflushopt) = if max_leaf >= 7 {
        let l7 = __cpuid_count(7, 0);
        (l7.ebx & (1 << 24) != 0, l7.ebx & (1 << 23) != 0)
    } else {
        (false, false)
    };
    Cpu {
        clwb,
        clflushopt,
        clflush: leaf1.edx & (1 << 19) != 0,
        avx: std::arch::is_x86_feature_detected!("avx"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe_cpu() -> Cpu {
    Cpu {
        clwb: false,
        clflushopt: false,
        clflush: false,
        avx: false,
    }
}

/// Error of a persistence operation.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The requested flush path needs an instruction this CPU lacks.
    #[error("flush path {path:?} is not supported by this CPU (needs {needs})")]
    Unsupported {
        /// The path that was asked for.
        path: FlushPath,
        /// The missing instruction.
        needs: &'static str,
    },
    /// `msync` failed (for example a write-back I/O error).
    #[error("msync of {len} bytes at {addr:#x} failed: {source}")]
    Msync {
        /// Page-aligned start address.
        addr: usize,
        /// Length in bytes.
        len: usize,
        /// The OS error.
        source: io::Error,
    },
    /// A replica could not be updated (its own error text). The primary's part of the operation
    /// is complete (see the error contract on [`crate::Persister`]).
    #[error("replica {replica}: {message}")]
    Replica {
        /// Index of the replica (0 is the primary).
        replica: usize,
        /// What went wrong.
        message: String,
    },
}

/// A `PMEM_NO_*` switch: on only when the value is exactly `1`, as PMDK (`strcmp(e, "1")`).
fn env_flag_in(env: &dyn Fn(&str) -> Option<String>, name: &str) -> bool {
    env(name).as_deref() == Some("1")
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// One chosen way to make stores durable; cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flusher {
    path: FlushPath,
    movnt: bool,
    movnt_threshold: usize,
    avx: bool,
}

impl Flusher {
    /// The flusher PMDK would pick: for persistent memory the best cache flush this CPU has
    /// (after the `PMEM_NO_*` environment overrides), otherwise `msync`.
    pub fn detect(is_pmem: bool) -> Flusher {
        Flusher::detect_with(is_pmem, cpu(), &process_env)
    }

    /// [`detect`](Self::detect) with an explicit CPU and environment lookup (for tests).
    ///
    /// `c` can only take features away: it is intersected with the real [`cpu`], so a
    /// flusher built here never executes an instruction this CPU lacks (which would be
    /// undefined behaviour or SIGILL). Tests can thus force every path the CPU really has.
    pub fn detect_with(is_pmem: bool, c: Cpu, env: &dyn Fn(&str) -> Option<String>) -> Flusher {
        Flusher::choose(is_pmem, c.intersect(cpu()), env)
    }

    /// The decision of [`detect_with`](Self::detect_with) for a CPU `c` that must be a subset
    /// of the real one (the caller intersects it).
    fn choose(is_pmem: bool, c: Cpu, env: &dyn Fn(&str) -> Option<String>) -> Flusher {
        // Each switch removes only its own instruction, as PMDK: PMEM_NO_CLFLUSHOPT=1 on a
        // CPU with CLWB still uses CLWB.
        let no_clflushopt = env_flag_in(env, "PMEM_NO_CLFLUSHOPT");
        let no_clwb = env_flag_in(env, "PMEM_NO_CLWB");
        let path = if !is_pmem || !c.clflush {
            FlushPath::Msync
        } else if c.clwb && !no_clwb {
            FlushPath::Clwb
        } else if c.clflushopt && !no_clflushopt {
            FlushPath::ClflushOpt
        } else {
            FlushPath::Clflush
        };
        let threshold = env("PMEM_MOVNT_THRESHOLD")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(MOVNT_THRESHOLD_DEFAULT);
        Flusher {
            path,
            movnt: !env_flag_in(env, "PMEM_NO_MOVNT") && path != FlushPath::Msync,
            movnt_threshold: threshold,
            avx: c.avx,
        }
    }

    /// The process-wide flusher for persistent memory (`Flusher::detect(true)`, computed once).
    pub fn global() -> Flusher {
        static G: OnceLock<Flusher> = OnceLock::new();
        *G.get_or_init(|| Flusher::detect(true))
    }

    /// A flusher on exactly `path`, ignoring the environment (for tests and benchmarks).
    /// Non-temporal stores are on for the cache paths, off for `msync`.
    pub fn with_path(path: FlushPath) -> Result<Flusher, PersistError> {
        let c = cpu();
        let missing = match path {
            FlushPath::Clwb if !c.clwb => Some("CLWB"),
            FlushPath::ClflushOpt if !c.clflushopt => Some("CLFLUSHOPT"),
            FlushPath::Clflush if !c.clflush => Some("CLFLUSH"),
            _ => None,
        };
        if let Some(needs) = missing {
            return Err(PersistError::Unsupported { path, needs });
        }
        Ok(Flusher {
            path,
            movnt: path != FlushPath::Msync,
            movnt_threshold: MOVNT_THRESHOLD_DEFAULT,
            avx: c.avx,
        })
    }

    /// The same flusher with non-temporal stores enabled or disabled. Non-temporal stores are
    /// never used on the `msync` path.
    pub fn with_movnt(mut self, on: bool) -> Flusher {
        self.movnt = on && self.path != FlushPath::Msync;
        self
    }

    /// The same flusher with another non-temporal threshold (bytes).
    pub fn with_movnt_threshold(mut self, bytes: usize) -> Flusher {
        self.movnt_threshold = bytes;
        self
    }

    /// The same flusher without AVX streaming stores (SSE2 only).
    pub fn without_avx(mut self) -> Flusher {
        self.avx = false;
        self
    }

    /// The flush path in use.
    pub fn path(&self) -> FlushPath {
        self.path
    }

    /// Whether non-temporal stores may be used.
    pub fn movnt(&self) -> bool {
        self.movnt
    }

    /// Whether the path flushes CPU caches (the memory is treated as persistent memory).
    pub fn is_pmem(&self) -> bool {
        self.path != FlushPath::Msync
    }

    /// Flush the lines (or pages) covering `[ptr, ptr+len)`.
    ///
    /// # Safety
    /// The range must lie inside one live mapping of this process for the duration of the call.
    pub unsafe fn flush_raw(&self, ptr: *const u8, len: usize) -> Result<(), PersistError> {
        if len == 0 {
            return Ok(());
        }
        match self.path {
            // SAFETY (all three): the caller guarantees the range is mapped.
            FlushPath::Clwb => unsafe { flush_lines::<0>(ptr, len) },
            FlushPath::ClflushOpt => unsafe { flush_lines::<1>(ptr, len) },
            FlushPath::Clflush => unsafe { flush_lines::<2>(ptr, len) },
            FlushPath::Msync => return msync_range(ptr, len),
        }
        Ok(())
    }

    /// Wait until every flush and non-temporal store issued so far is durable (`sfence`).
    pub fn drain(&self) {
        if self.path != FlushPath::Msync {
            sfence();
        }
    }

    /// [`flush_raw`](Self::flush_raw) then [`drain`](Self::drain).
    ///
    /// # Safety
    /// As [`flush_raw`](Self::flush_raw).
    pub unsafe fn persist_raw(&self, ptr: *const u8, len: usize) -> Result<(), PersistError> {
        // SAFETY: forwarded caller guarantee.
        unsafe { self.flush_raw(ptr, len)? };
        // Everything flushed above must be durable before the caller's next store.
        self.drain();
        Ok(())
    }

    fn use_movnt(&self, len: usize, flags: Flags) -> bool {
        if !self.movnt || flags.contains(Flags::TEMPORAL) || flags.contains(Flags::NO_FLUSH) {
            return false;
        }
        flags.contains(Flags::NONTEMPORAL) || len >= self.movnt_threshold
    }

    /// Copy `len` bytes from `src` to `dst` and make them durable according to `flags`.
    ///
    /// The destination is treated as memory other threads may read or write at the same time
    /// (a pool mapping): every store is an atomic access on the 8-byte word lattice (see
    /// [`store_shared`]) or an opaque streaming store, never a plain store that could race.
    ///
    /// # Safety
    /// `dst` must satisfy the [shared-memory contract](self#shared-memory-accesses) for `len`
    /// bytes and lie inside one live mapping; `src` must be valid for `len` reads and not be
    /// written concurrently; the two ranges must not overlap.
    pub unsafe fn memcpy_raw(
        &self,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        // SAFETY: forwarded caller guarantee (shared destination).
        unsafe { self.memcpy_to::<true>(dst, src, len, flags) }
    }

    /// [`memcpy_raw`](Self::memcpy_raw) for a destination that is either shared (`SHARED`:
    /// edge words merged atomically) or exclusively owned by the caller (edge bytes stored
    /// plainly, nothing outside `[dst, dst+len)` touched).
    ///
    /// # Safety
    /// As `memcpy_raw`; with `SHARED == false`, `dst` valid for `len` writes and not accessed
    /// by anyone else during the call.
    unsafe fn memcpy_to<const SHARED: bool>(
        &self,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        if self.use_movnt(len, flags) {
            // SAFETY: forwarded caller guarantee; movnt is only enabled on x86_64 cache paths.
            unsafe { self.memcpy_nt::<SHARED>(dst, src, len) };
        } else {
            // SAFETY: forwarded caller guarantee.
            unsafe { store_words::<SHARED>(dst, src, len) };
            if !flags.contains(Flags::NO_FLUSH) {
                // SAFETY: dst..dst+len is mapped (caller).
                unsafe { self.flush_raw(dst, len)? };
            }
        }
        if !flags.contains(Flags::NO_DRAIN) && !flags.contains(Flags::NO_FLUSH) {
            // The copied bytes must be durable before the caller continues.
            self.drain();
        }
        Ok(())
    }

    /// Fill `len` bytes at `dst` with `byte` and make them durable according to `flags`.
    ///
    /// The destination is treated as shared memory, as for [`memcpy_raw`](Self::memcpy_raw).
    ///
    /// # Safety
    /// `dst` must satisfy the [shared-memory contract](self#shared-memory-accesses) for `len`
    /// bytes and lie inside one live mapping.
    pub unsafe fn memset_raw(
        &self,
        dst: *mut u8,
        byte: u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        // SAFETY: forwarded caller guarantee (shared destination).
        unsafe { self.memset_to::<true>(dst, byte, len, flags) }
    }

    /// [`memset_raw`](Self::memset_raw) for a shared or exclusive destination (as
    /// [`memcpy_to`](Self::memcpy_to)).
    ///
    /// # Safety
    /// As `memcpy_to` for `dst`.
    unsafe fn memset_to<const SHARED: bool>(
        &self,
        dst: *mut u8,
        byte: u8,
        len: usize,
        flags: Flags,
    ) -> Result<(), PersistError> {
        if self.use_movnt(len, flags) {
            // SAFETY: forwarded caller guarantee.
            unsafe { self.memset_nt::<SHARED>(dst, byte, len) };
        } else {
            // SAFETY: forwarded caller guarantee.
            unsafe { fill_words::<SHARED>(dst, byte, len) };
            if !flags.contains(Flags::NO_FLUSH) {
                // SAFETY: dst..dst+len is mapped (caller).
                unsafe { self.flush_raw(dst, len)? };
            }
        }
        if !flags.contains(Flags::NO_DRAIN) && !flags.contains(Flags::NO_FLUSH) {
            self.drain();
        }
        Ok(())
    }

    /// Flush the lines covering `range`.
    pub fn flush(&self, range: &[u8]) -> Result<(), PersistError> {
        // SAFETY: a slice is always inside live memory; for the msync path a slice that is not
        // part of a file mapping makes msync fail with ENOMEM, reported as an error.
        unsafe { self.flush_raw(range.as_ptr(), range.len()) }
    }

    /// Flush then drain `range`.
    pub fn persist(&self, range: &[u8]) -> Result<(), PersistError> {
        // SAFETY: as in `flush`.
        unsafe { self.persist_raw(range.as_ptr(), range.len()) }
    }

    /// Copy `src` into `dst` (same length) and make it durable according to `flags`.
    ///
    /// # Panics
    /// When the lengths differ (a programmer error).
    pub fn memcpy_persist(
        &self,
        dst: &mut [u8],
        src: &[u8],
        flags: Flags,
    ) -> Result<(), PersistError> {
        assert_eq!(dst.len(), src.len(), "memcpy_persist: length mismatch");
        // SAFETY: distinct slices (one is &mut) cannot overlap and are valid for their length;
        // `&mut` makes the destination exclusive, so its edge bytes may be stored plainly.
        unsafe { self.memcpy_to::<false>(dst.as_mut_ptr(), src.as_ptr(), src.len(), flags) }
    }

    /// Fill `dst` with `byte` and make it durable according to `flags`.
    pub fn memset_persist(
        &self,
        dst: &mut [u8],
        byte: u8,
        flags: Flags,
    ) -> Result<(), PersistError> {
        // SAFETY: a mutable slice is valid for writes over its length and exclusive.
        unsafe { self.memset_to::<false>(dst.as_mut_ptr(), byte, dst.len(), flags) }
    }

    /// Non-temporal copy: word stores plus flush for the unaligned head and tail, streaming
    /// stores for the aligned middle. Needs a drain afterwards.
    ///
    /// # Safety
    /// As [`memcpy_to`](Self::memcpy_to).
    unsafe fn memcpy_nt<const SHARED: bool>(&self, dst: *mut u8, src: *const u8, len: usize) {
        let head = (dst as usize).wrapping_neg() % CACHE_LINE;
        let head = head.min(len);
        let body = (len - head) / CACHE_LINE * CACHE_LINE;
        let tail = len - head - body;
        // SAFETY: all offsets stay within [0, len), which the caller guarantees valid; the
        // body starts 64-byte aligned and is a multiple of 64 long.
        unsafe {
            if head > 0 {
                store_words::<SHARED>(dst, src, head);
                self.flush_lines_cache(dst, head);
            }
            if body > 0 {
                nt::copy(dst.add(head), src.add(head), body, self.avx);
            }
            if tail > 0 {
                let off = head + body;
                store_words::<SHARED>(dst.add(off), src.add(off), tail);
                self.flush_lines_cache(dst.add(off), tail);
            }
        }
    }

    /// Non-temporal fill (as [`memcpy_nt`](Self::memcpy_nt)).
    ///
    /// # Safety
    /// As [`memset_to`](Self::memset_to).
    unsafe fn memset_nt<const SHARED: bool>(&self, dst: *mut u8, byte: u8, len: usize) {
        let head = ((dst as usize).wrapping_neg() % CACHE_LINE).min(len);
        let body = (len - head) / CACHE_LINE * CACHE_LINE;
        let tail = len - head - body;
        // SAFETY: all offsets stay within [0, len), which the caller guarantees valid.
        unsafe {
            if head > 0 {
                fill_words::<SHARED>(dst, byte, head);
                self.flush_lines_cache(dst, head);
            }
            if body > 0 {
                nt::fill(dst.add(head), byte, body, self.avx);
            }
            if tail > 0 {
                fill_words::<SHARED>(dst.add(head + body), byte, tail);
                self.flush_lines_cache(dst.add(head + body), tail);
            }
        }
    }

    /// Copy `len` bytes to `dst` and start their write-back, covering only these bytes
    /// (durable after the next [`drain`](Self::drain); other bytes of their lines are not
    /// written back). On the cache paths with streaming stores enabled: one non-temporal
    /// 8-byte store (`movnti`) per aligned word, ordinary stores plus a line flush for the
    /// partial words at the edges. Otherwise ordinary stores plus
    /// [`flush_raw`](Self::flush_raw).
    ///
    /// The partly covered first and last lines are loaded before the stores: on the benchmark
    /// machine a fence after streaming stores into part of a line that is not in the cache
    /// cost several times more (BENCHMARKS.md: palloc alloc+free 1.3x libpmemobj without the
    /// loads, 3-5x with them). Loads change nothing for durability.
    ///
    /// # Safety
    /// As [`memcpy_raw`](Self::memcpy_raw).
    pub unsafe fn write_nt_raw(
        &self,
        dst: *mut u8,
        src: *const u8,
        len: usize,
    ) -> Result<(), PersistError> {
        #[cfg(target_arch = "x86_64")]
        if self.movnt && self.path != FlushPath::Msync && len > 0 {
            let (start, end) = (dst as usize, dst as usize + len);
            let first_line = start & !(CACHE_LINE - 1);
            let last_line = (end - 1) & !(CACHE_LINE - 1);
            if start != first_line || end - first_line < CACHE_LINE {
                // SAFETY: the line's first word is mapped (the range starts in that line, and
                // mappings are page aligned), aligned, and loaded atomically.
                std::hint::black_box(unsafe { load_u64_shared(first_line as *const u8) });
            }
            if last_line != first_line && end % CACHE_LINE != 0 {
                // SAFETY: as above, for the line holding the range's last byte.
                std::hint::black_box(unsafe { load_u64_shared(last_line as *const u8) });
            }
            let head = start.wrapping_neg() % 8;
            let head = head.min(len);
            let words = (len - head) / 8;
            let tail = len - head - words * 8;
            // SAFETY: every offset stays within [0, len) (caller); the words start 8-byte
            // aligned; the edges go through the shared-memory word stores.
            unsafe {
                if head > 0 {
                    store_words::<true>(dst, src, head);
                    self.flush_lines_cache(dst, head);
                }
                for w in 0..words {
                    let at = head + 8 * w;
                    let v = std::ptr::read_unaligned(src.add(at) as *const u64);
                    // Inline asm, not the `_mm_stream_si64` intrinsic (a plain, non-atomic
                    // store to Rust): the word is stored whole, as the shared-memory contract
                    // requires. dst+at is 8-byte aligned and inside the caller's range.
                    core::arch::asm!(
                        "movnti [{d}], {v}",
                        d = in(reg) dst.add(at),
                        v = in(reg) v,
                        options(nostack, preserves_flags)
                    );
                }
                if tail > 0 {
                    let at = head + words * 8;
                    store_words::<true>(dst.add(at), src.add(at), tail);
                    self.flush_lines_cache(dst.add(at), tail);
                }
            }
            return Ok(());
        }
        // SAFETY: forwarded caller guarantee.
        unsafe {
            store_words::<true>(dst, src, len);
            self.flush_raw(dst, len)
        }
    }

    /// Cache flush of the head/tail of a non-temporal operation (only called on cache paths).
    unsafe fn flush_lines_cache(&self, ptr: *const u8, len: usize) {
        // SAFETY: caller guarantees the range is mapped.
        unsafe {
            match self.path {
                FlushPath::Clwb => flush_lines::<0>(ptr, len),
                FlushPath::ClflushOpt => flush_lines::<1>(ptr, len),
                _ => flush_lines::<2>(ptr, len),
            }
        }
    }
}

/// Flush with the process-wide flusher ([`Flusher::global`]).
pub fn flush(range: &[u8]) -> Result<(), PersistError> {
    Flusher::global().flush(range)
}

/// Drain with the process-wide flusher.
pub fn drain() {
    Flusher::global().drain()
}

/// Persist with the process-wide flusher.
pub fn persist(range: &[u8]) -> Result<(), PersistError> {
    Flusher::global().persist(range)
}

/// `memcpy_persist` with the process-wide flusher.
pub fn memcpy_persist(dst: &mut [u8], src: &[u8], flags: Flags) -> Result<(), PersistError> {
    Flusher::global().memcpy_persist(dst, src, flags)
}

/// `memset_persist` with the process-wide flusher.
pub fn memset_persist(dst: &mut [u8], byte: u8, flags: Flags) -> Result<(), PersistError> {
    Flusher::global().memset_persist(dst, byte, flags)
}

/// The atomic view of the aligned 8-byte word at `p`.
///
/// # Safety
/// `p` 8-byte aligned, valid for reads and writes for `'a`, and every concurrent access to it is
/// atomic (the [shared-memory contract](self#shared-memory-accesses)).
#[inline(always)]
unsafe fn word<'a>(p: *const u8) -> &'a AtomicU64 {
    debug_assert!(
        p as usize % 8 == 0,
        "word access at unaligned address {p:p}"
    );
    // SAFETY: the caller's guarantee is exactly `AtomicU64::from_ptr`'s (aligned, valid, only
    // atomic concurrent accesses). An `&AtomicU64` allows the bytes to change under it.
    unsafe { AtomicU64::from_ptr(p as *mut u64) }
}

/// Store `n` bytes from `src` into the word at `w` from byte `at` on, leaving its other bytes as
/// they are, in one atomic step (compare-exchange): a concurrent store to the other bytes of
/// the word is not lost, and a concurrent reader sees the word before or after, never between.
///
/// # Safety
/// As [`word`] for `w`; `at + n <= 8`; `src` valid for `n` reads.
#[inline]
unsafe fn merge_word(w: *mut u8, at: usize, src: *const u8, n: usize) {
    debug_assert!(at + n <= 8);
    // SAFETY: forwarded caller guarantee.
    let a = unsafe { word(w) };
    let mut cur = a.load(Ordering::Relaxed);
    loop {
        let mut b = cur.to_ne_bytes();
        // SAFETY: `at + n <= 8` keeps the copy inside `b`; `src` is valid for `n` reads.
        unsafe { core::ptr::copy_nonoverlapping(src, b.as_mut_ptr().add(at), n) };
        match a.compare_exchange_weak(
            cur,
            u64::from_ne_bytes(b),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Copy `len` bytes so that every 8-byte-aligned word of the destination is written by one
/// aligned 8-byte atomic store, which x86 never tears: a word stored atomically in one mapping
/// (for example with `Persister::write_u64` on the primary) is copied atomically too (for
/// example to a replica by fan-out). `memcpy` gives no such promise (byte moves, `rep movsb`,
/// overlapping unaligned vector stores). Bytes outside whole aligned words are stored one by
/// one, plainly: the destination must be exclusive to the caller (for memory other threads may
/// access, use [`store_shared`]).
///
/// # Safety
/// `dst` valid for `len` writes and not accessed by anyone else during the call, `src` valid
/// for `len` reads, the ranges do not overlap.
pub unsafe fn copy_words(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded caller guarantee (exclusive destination).
    unsafe { store_words::<false>(dst, src, len) }
}

/// Copy `len` bytes from ordinary memory at `src` into shared memory at `dst`: each aligned
/// 8-byte word of the destination fully inside the range is one atomic store (release), each
/// partly covered word at the edges one atomic compare-exchange merge. A concurrent reader
/// using [`load_shared`] therefore sees every word either entirely before or entirely after
/// this copy (words may change in any order), and a concurrent store to bytes outside the
/// range is never lost.
///
/// # Safety
/// `dst` satisfies the [shared-memory contract](self#shared-memory-accesses) for `len` bytes;
/// `src` valid for `len` reads and not written during the call; the ranges do not overlap.
pub unsafe fn store_shared(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded caller guarantee (shared destination).
    unsafe { store_words::<true>(dst, src, len) }
}

/// [`copy_words`] (`SHARED == false`) or [`store_shared`] (`SHARED == true`).
///
/// # Safety
/// As the function chosen by `SHARED`.
#[inline]
unsafe fn store_words<const SHARED: bool>(dst: *mut u8, src: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let lead = dst as usize % 8;
    let head = if lead == 0 { 0 } else { (8 - lead).min(len) };
    let words = (len - head) / 8;
    let tail = len - head - words * 8;
    // SAFETY: every offset below stays inside [0, len), valid per the caller; `dst + head` is
    // 8-byte aligned, so every `word` is aligned; for `SHARED` the edge words (outside the
    // range but overlapping it) are valid and atomic-only by the shared-memory contract;
    // loads from `src` are unaligned-safe and plain (ordinary memory, not written meanwhile).
    unsafe {
        if head > 0 {
            if SHARED {
                merge_word(dst.sub(lead), lead, src, head);
            } else {
                core::ptr::copy_nonoverlapping(src, dst, head);
            }
        }
        let (d, s) = (dst.add(head), src.add(head));
        for i in 0..words {
            let v = core::ptr::read_unaligned(s.add(8 * i).cast::<u64>());
            word(d.add(8 * i)).store(v, Ordering::Release);
        }
        if tail > 0 {
            let at = head + words * 8;
            if SHARED {
                merge_word(dst.add(at), 0, src.add(at), tail);
            } else {
                core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), tail);
            }
        }
    }
}

/// Fill `len` bytes of shared memory at `dst` with `byte`, word by word as [`store_shared`].
///
/// # Safety
/// `dst` satisfies the [shared-memory contract](self#shared-memory-accesses) for `len` bytes.
pub unsafe fn fill_shared(dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: forwarded caller guarantee.
    unsafe { fill_words::<true>(dst, byte, len) }
}

/// [`fill_shared`] (`SHARED == true`) or a plain fill of exclusive memory (`false`).
///
/// # Safety
/// As [`fill_shared`], or for `SHARED == false` `dst` valid for `len` writes and exclusive.
#[inline]
unsafe fn fill_words<const SHARED: bool>(dst: *mut u8, byte: u8, len: usize) {
    if !SHARED {
        // SAFETY: exclusive and valid per the caller. A fill stores one byte value everywhere,
        // so no word of it can be observed torn between two values it was given.
        unsafe { core::ptr::write_bytes(dst, byte, len) };
        return;
    }
    if len == 0 {
        return;
    }
    let pattern = [byte; 8];
    let lead = dst as usize % 8;
    let head = if lead == 0 { 0 } else { (8 - lead).min(len) };
    let words = (len - head) / 8;
    let tail = len - head - words * 8;
    let v = u64::from_ne_bytes(pattern);
    // SAFETY: as in `store_words::<true>`.
    unsafe {
        if head > 0 {
            merge_word(dst.sub(lead), lead, pattern.as_ptr(), head);
        }
        let (mut d, mut words) = (dst.add(head), words);
        if words * 8 >= BULK_MIN && bulk_ok() {
            if d as usize % 16 != 0 {
                word(d).store(v, Ordering::Release);
                (d, words) = (d.add(8), words - 1);
            }
            let n = words * 8 / 64 * 64;
            bulk::fill(d, byte, n);
            (d, words) = (d.add(n), words - n / 8);
        }
        for i in 0..words {
            word(d.add(8 * i)).store(v, Ordering::Release);
        }
        if tail > 0 {
            merge_word(dst.add(len - tail), 0, pattern.as_ptr(), tail);
        }
    }
}

/// Copy `len` bytes from shared memory at `src` into ordinary memory at `dst`: every aligned
/// 8-byte word overlapping the source range is read with one atomic load (acquire), so each
/// word is seen entirely as one store left it (words of a multi-word copy may come from
/// different stores, as with any unlocked read). Edge words are loaded whole and only the
/// bytes inside the range are kept.
///
/// # Safety
/// `src` satisfies the [shared-memory contract](self#shared-memory-accesses) for `len` bytes;
/// `dst` valid for `len` writes and not accessed by anyone else during the call; the ranges do
/// not overlap.
pub unsafe fn load_shared(dst: *mut u8, src: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let lead = src as usize % 8;
    let head = if lead == 0 { 0 } else { (8 - lead).min(len) };
    let words = (len - head) / 8;
    let tail = len - head - words * 8;
    // SAFETY: every offset stays inside [0, len) of `dst`; the words read are the aligned
    // words overlapping the source range, valid and atomic-only by the shared-memory contract;
    // stores into `dst` are unaligned-safe.
    unsafe {
        if head > 0 {
            let w = word(src.sub(lead)).load(Ordering::Acquire).to_ne_bytes();
            core::ptr::copy_nonoverlapping(w.as_ptr().add(lead), dst, head);
        }
        let (mut d, mut s, mut words) = (dst.add(head), src.add(head), words);
        if words * 8 >= BULK_MIN && bulk_ok() {
            // Align the source to 16 bytes with one word, then whole 64-byte blocks by
            // 16-byte loads; the words left over below.
            if s as usize % 16 != 0 {
                let v = word(s).load(Ordering::Acquire);
                core::ptr::write_unaligned(d.cast::<u64>(), v);
                (d, s, words) = (d.add(8), s.add(8), words - 1);
            }
            let n = words * 8 / 64 * 64;
            bulk::load(d, s, n);
            (d, s, words) = (d.add(n), s.add(n), words - n / 8);
        }
        for i in 0..words {
            let v = word(s.add(8 * i)).load(Ordering::Acquire);
            core::ptr::write_unaligned(d.add(8 * i).cast::<u64>(), v);
        }
        if tail > 0 {
            let at = len - tail;
            let w = word(src.add(at)).load(Ordering::Acquire).to_ne_bytes();
            core::ptr::copy_nonoverlapping(w.as_ptr(), dst.add(at), tail);
        }
    }
}

/// Shortest run of whole words that [`load_shared`] and [`fill_shared`] move with 16-byte
/// instructions instead of word by word (about twice as fast for kilobytes).
const BULK_MIN: usize = 256;

/// Whether 16-byte aligned loads and stores are single atomic accesses on this CPU: Intel's SDM
/// (vol. 3A, 9.1.1) and AMD's APM (vol. 2, 7.3.2) guarantee it for `movdqa` on processors that
/// enumerate AVX. Without that guarantee the word loops are used.
#[inline]
fn bulk_ok() -> bool {
    cfg!(target_arch = "x86_64") && cpu().avx
}

/// 16-byte block moves for the shared-memory copies, as inline assembly: opaque to the
/// compiler, so they are modelled as (atomic) accesses of unknown code, not as plain accesses
/// that could race; on an AVX CPU each aligned 16-byte `movdqa` is one atomic access, so every
/// aligned 8-byte word inside it is moved whole (see [`bulk_ok`]).
#[cfg(target_arch = "x86_64")]
mod bulk {
    use core::arch::asm;
    use core::arch::x86_64::{__m128i, _mm_set1_epi8};

    /// Load `len` bytes of shared memory at `src` into `dst`.
    ///
    /// # Safety
    /// `src` 16-byte aligned and under the shared-memory contract for `len` bytes; `dst` valid
    /// for `len` writes and exclusive; `len % 64 == 0`; [`super::bulk_ok`] is true.
    pub unsafe fn load(dst: *mut u8, src: *const u8, len: usize) {
        debug_assert!(src as usize % 16 == 0 && len % 64 == 0);
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len, `src + off` 16-byte aligned; the asm reads exactly the
            // 64 bytes at src+off and writes exactly the 64 bytes at dst+off.
            unsafe {
                asm!(
                    "movdqa {a}, [{s}]",
                    "movdqa {b}, [{s} + 16]",
                    "movdqa {c}, [{s} + 32]",
                    "movdqa {e}, [{s} + 48]",
                    "movdqu [{d}], {a}",
                    "movdqu [{d} + 16], {b}",
                    "movdqu [{d} + 32], {c}",
                    "movdqu [{d} + 48], {e}",
                    s = in(reg) src.add(off),
                    d = in(reg) dst.add(off),
                    a = out(xmm_reg) _,
                    b = out(xmm_reg) _,
                    c = out(xmm_reg) _,
                    e = out(xmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }

    /// Store `len` copies of `byte` into shared memory at `dst`.
    ///
    /// # Safety
    /// `dst` 16-byte aligned and under the shared-memory contract for `len` bytes;
    /// `len % 64 == 0`; [`super::bulk_ok`] is true.
    pub unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
        debug_assert!(dst as usize % 16 == 0 && len % 64 == 0);
        // SAFETY: SSE2 is baseline on x86_64.
        let v: __m128i = unsafe { _mm_set1_epi8(byte as i8) };
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len, `dst + off` 16-byte aligned; writes exactly those bytes.
            unsafe {
                asm!(
                    "movdqa [{d}], {v}",
                    "movdqa [{d} + 16], {v}",
                    "movdqa [{d} + 32], {v}",
                    "movdqa [{d} + 48], {v}",
                    d = in(reg) dst.add(off),
                    v = in(xmm_reg) v,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }
}

/// Never called: [`bulk_ok`] is false off x86_64.
#[cfg(not(target_arch = "x86_64"))]
mod bulk {
    pub unsafe fn load(_dst: *mut u8, _src: *const u8, _len: usize) {
        unreachable!("bulk shared-memory moves are x86_64 only")
    }
    pub unsafe fn fill(_dst: *mut u8, _byte: u8, _len: usize) {
        unreachable!("bulk shared-memory moves are x86_64 only")
    }
}

/// One atomic (acquire) load of the aligned word at `p`, in memory byte order.
///
/// # Safety
/// `p` 8-byte aligned and satisfying the [shared-memory contract](self#shared-memory-accesses).
#[inline]
pub unsafe fn load_u64_shared(p: *const u8) -> u64 {
    assert!(
        p as usize % 8 == 0,
        "load_u64_shared at unaligned address {p:p}"
    );
    // SAFETY: aligned (checked) and shared-memory contract (caller).
    unsafe { word(p) }.load(Ordering::Acquire)
}

/// One atomic (release) store of `v`, in memory byte order, to the aligned word at `p`.
///
/// # Safety
/// As [`load_u64_shared`].
#[inline]
pub unsafe fn store_u64_shared(p: *mut u8, v: u64) {
    assert!(
        p as usize % 8 == 0,
        "store_u64_shared at unaligned address {p:p}"
    );
    // SAFETY: aligned (checked) and shared-memory contract (caller).
    unsafe { word(p) }.store(v, Ordering::Release)
}

/// Store fence: orders every earlier store, flush and streaming store before later stores.
#[inline]
pub fn sfence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no operands and only orders memory operations.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Flush every cache line that overlaps `[ptr, ptr+len)` with instruction `KIND`
/// (0 = clwb, 1 = clflushopt, 2 = clflush).
///
/// # Safety
/// The range must be mapped; the instruction must be supported (checked when the `Flusher` was
/// built).
#[inline]
unsafe fn flush_lines<const KIND: u8>(ptr: *const u8, len: usize) {
    let start = ptr as usize & !(CACHE_LINE - 1);
    let end = ptr as usize + len;
    let mut line = start;
    while line < end {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `line` is inside a mapped cache line of the caller's range; the asm blocks are
        // not `nomem`, so the compiler keeps earlier stores before them.
        unsafe {
            match KIND {
                0 => {
                    core::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags))
                }
                1 => {
                    core::arch::asm!("clflushopt [{0}]", in(reg) line, options(nostack, preserves_flags))
                }
                _ => {
                    core::arch::asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags))
                }
            }
        }
        line += CACHE_LINE;
    }
}

/// The system page size (asked once; 4096 if sysconf cannot say).
pub(crate) fn page_size() -> usize {
    static PS: OnceLock<usize> = OnceLock::new();
    *PS.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            v as usize
        } else {
            4096
        }
    })
}

/// `msync(MS_SYNC)` of the pages covering the range (msync wants a page-aligned start).
fn msync_range(ptr: *const u8, len: usize) -> Result<(), PersistError> {
    let ps = page_size();
    let start = ptr as usize & !(ps - 1);
    let span = ptr as usize + len - start;
    // SAFETY: msync does not dereference memory from our point of view; an unmapped range is
    // reported as ENOMEM.
    let rc = unsafe { libc::msync(start as *mut libc::c_void, span, libc::MS_SYNC) };
    if rc != 0 {
        return Err(PersistError::Msync {
            addr: start,
            len: span,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Streaming-store loops. Lengths are multiples of 64 and `dst` is 64-byte aligned.
///
/// The stores are inline assembly (`movntdq` / `vmovntdq`), not the `_mm*_stream_*`
/// intrinsics: the compiler sees an opaque block that may access the destination in any way
/// an atomic access could, so a streaming store racing with another thread's atomic loads of
/// the same words is not a data race in Rust's memory model (a store the compiler knows as a
/// plain store would be). On the hardware each aligned 16- or 32-byte streaming store writes
/// its aligned 8-byte words whole. The loads come from the caller's ordinary source buffer.
#[cfg(target_arch = "x86_64")]
mod nt {
    use core::arch::asm;
    use core::arch::x86_64::*;

    /// # Safety
    /// `dst` 64-byte aligned, valid for `len` writes, accessed by others only atomically;
    /// `src` valid for `len` reads and not written meanwhile; `len % 64 == 0`.
    pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, avx: bool) {
        debug_assert!(dst as usize % 64 == 0 && len % 64 == 0);
        if avx {
            // SAFETY: AVX presence was checked by CPUID/OS detection.
            unsafe { copy_avx(dst, src, len) }
        } else {
            // SAFETY: SSE2 is part of x86_64.
            unsafe { copy_sse2(dst, src, len) }
        }
    }

    #[target_feature(enable = "avx")]
    unsafe fn copy_avx(dst: *mut u8, src: *const u8, len: usize) {
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len; dst+off is 64-byte aligned (so 32-byte aligned for
            // `vmovntdq`); the asm stores exactly the 64 bytes at dst+off and touches no stack.
            unsafe {
                let s = src.add(off) as *const __m256i;
                let a = _mm256_loadu_si256(s);
                let b = _mm256_loadu_si256(s.add(1));
                asm!(
                    "vmovntdq [{d}], {a}",
                    "vmovntdq [{d} + 32], {b}",
                    d = in(reg) dst.add(off),
                    a = in(ymm_reg) a,
                    b = in(ymm_reg) b,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }

    unsafe fn copy_sse2(dst: *mut u8, src: *const u8, len: usize) {
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len; dst+off is 16-byte aligned; the asm stores exactly the
            // 64 bytes at dst+off.
            unsafe {
                let s = src.add(off) as *const __m128i;
                let a = _mm_loadu_si128(s);
                let b = _mm_loadu_si128(s.add(1));
                let c = _mm_loadu_si128(s.add(2));
                let e = _mm_loadu_si128(s.add(3));
                asm!(
                    "movntdq [{d}], {a}",
                    "movntdq [{d} + 16], {b}",
                    "movntdq [{d} + 32], {c}",
                    "movntdq [{d} + 48], {e}",
                    d = in(reg) dst.add(off),
                    a = in(xmm_reg) a,
                    b = in(xmm_reg) b,
                    c = in(xmm_reg) c,
                    e = in(xmm_reg) e,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }

    /// # Safety
    /// As [`copy`] for `dst`.
    pub unsafe fn fill(dst: *mut u8, byte: u8, len: usize, avx: bool) {
        debug_assert!(dst as usize % 64 == 0 && len % 64 == 0);
        if avx {
            // SAFETY: AVX presence was checked.
            unsafe { fill_avx(dst, byte, len) }
        } else {
            // SAFETY: SSE2 is part of x86_64.
            unsafe { fill_sse2(dst, byte, len) }
        }
    }

    #[target_feature(enable = "avx")]
    unsafe fn fill_avx(dst: *mut u8, byte: u8, len: usize) {
        let v = _mm256_set1_epi8(byte as i8);
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len, 32-byte aligned; stores exactly 64 bytes at dst+off.
            unsafe {
                asm!(
                    "vmovntdq [{d}], {v}",
                    "vmovntdq [{d} + 32], {v}",
                    d = in(reg) dst.add(off),
                    v = in(ymm_reg) v,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }

    unsafe fn fill_sse2(dst: *mut u8, byte: u8, len: usize) {
        // SAFETY: SSE2 is baseline on x86_64.
        let v = unsafe { _mm_set1_epi8(byte as i8) };
        let mut off = 0;
        while off < len {
            // SAFETY: off + 64 <= len, 16-byte aligned; stores exactly 64 bytes at dst+off.
            unsafe {
                asm!(
                    "movntdq [{d}], {v}",
                    "movntdq [{d} + 16], {v}",
                    "movntdq [{d} + 32], {v}",
                    "movntdq [{d} + 48], {v}",
                    d = in(reg) dst.add(off),
                    v = in(xmm_reg) v,
                    options(nostack, preserves_flags),
                );
            }
            off += 64;
        }
    }
}

/// Without streaming stores: word-atomic copies and fills (the body is whole aligned words).
#[cfg(not(target_arch = "x86_64"))]
mod nt {
    /// # Safety
    /// As the x86_64 version.
    pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, _avx: bool) {
        // SAFETY: forwarded; the range is whole aligned words, so no edge word is touched.
        unsafe { super::store_shared(dst, src, len) }
    }
    /// # Safety
    /// As the x86_64 version.
    pub unsafe fn fill(dst: *mut u8, byte: u8, len: usize, _avx: bool) {
        // SAFETY: as above.
        unsafe { super::fill_shared(dst, byte, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_here() -> Vec<Flusher> {
        let mut v = Vec::new();
        for p in FlushPath::ALL {
            match Flusher::with_path(p) {
                Ok(f) => v.push(f),
                Err(e) => eprintln!("SKIP flush path {p:?}: {e}"),
            }
        }
        v
    }

    #[test]
    fn cpu_probe_is_consistent() {
        let c = cpu();
        // Every x86_64 CPU has CLFLUSH (SSE2 implies it).
        assert!(c.clflush);
        assert_eq!(c, cpu());
        // CLWB and CLFLUSHOPT are reported in /proc/cpuinfo on Linux; compare.
        if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
            let flags: Vec<&str> = info
                .lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().collect())
                .unwrap_or_default();
            assert_eq!(c.clwb, flags.contains(&"clwb"));
            assert_eq!(c.clflushopt, flags.contains(&"clflushopt"));
        }
    }

    #[test]
    fn unsupported_path_is_an_error_naming_the_instruction() {
        let c = cpu();
        if !c.clwb {
            let e = Flusher::with_path(FlushPath::Clwb).unwrap_err();
            assert!(e.to_string().contains("CLWB"));
        }
        assert!(Flusher::with_path(FlushPath::Msync).is_ok());
    }

    /// Every cache path, every copy strategy, unaligned starts and odd lengths: data is right and
    /// nothing outside the destination changes.
    #[test]
    fn cache_paths_copy_and_fill_correctly() {
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 7 + 3) as u8).collect();
        for f in paths_here().into_iter().filter(|f| f.is_pmem()) {
            for variant in [
                f,
                f.with_movnt(false),
                f.without_avx(),
                f.with_movnt_threshold(0),
            ] {
                for flags in [
                    Flags::NONE,
                    Flags::NO_DRAIN,
                    Flags::NONTEMPORAL,
                    Flags::TEMPORAL,
                ] {
                    for &(off, len) in &[
                        (0, 0),
                        (1, 1),
                        (3, 63),
                        (0, 64),
                        (5, 255),
                        (7, 256),
                        (13, 4099),
                        (64, 8192),
                    ] {
                        let mut buf = vec![0xEEu8; 9000 + 200];
                        variant
                            .memcpy_persist(&mut buf[off..off + len], &src[..len], flags)
                            .unwrap();
                        variant.drain();
                        assert_eq!(
                            &buf[off..off + len],
                            &src[..len],
                            "{variant:?} {flags:?} {off}+{len}"
                        );
                        assert!(buf[..off].iter().all(|&b| b == 0xEE));
                        assert!(buf[off + len..].iter().all(|&b| b == 0xEE));
                        variant
                            .memset_persist(&mut buf[off..off + len], 0x5A, flags)
                            .unwrap();
                        variant.drain();
                        assert!(buf[off..off + len].iter().all(|&b| b == 0x5A));
                        assert!(buf[off + len..].iter().all(|&b| b == 0xEE));
                        variant.persist(&buf[off..off + len]).unwrap();
                        variant.flush(&buf[..1]).unwrap();
                    }
                }
            }
        }
    }

    /// The msync path on a real file mapping: the file sees the data.
    #[test]
    fn msync_path_writes_file() {
        use std::io::Read;
        let f = Flusher::with_path(FlushPath::Msync).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.set_len(3 * 4096).unwrap();
        // SAFETY: the temp file is private to this test and not resized while mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        f.memcpy_persist(&mut map[100..5100], &data, Flags::NONE)
            .unwrap();
        f.memset_persist(&mut map[6000..6100], 0x77, Flags::NONE)
            .unwrap();
        f.persist(&map[4097..4098]).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(&back[100..5100], &data[..]);
        assert!(back[6000..6100].iter().all(|&b| b == 0x77));
        assert!(back[..100].iter().all(|&b| b == 0));
    }

    #[test]
    fn msync_of_non_file_memory_reports_error_or_succeeds_cleanly() {
        // msync on anonymous/heap memory may succeed (Linux) — it must never crash.
        let f = Flusher::with_path(FlushPath::Msync).unwrap();
        let buf = vec![1u8; 100];
        let _ = f.persist(&buf);
    }

    #[test]
    fn global_functions_work() {
        let mut a = vec![0u8; 1000];
        memcpy_persist(&mut a[3..703], &[9u8; 700], Flags::NONE).unwrap();
        memset_persist(&mut a[800..900], 4, Flags::NO_DRAIN).unwrap();
        drain();
        flush(&a).unwrap();
        persist(&a).unwrap();
        assert!(a[3..703].iter().all(|&b| b == 9));
        assert!(a[800..900].iter().all(|&b| b == 4));
    }

    #[test]
    fn env_overrides_are_read_by_detect() {
        let all = Cpu {
            clwb: true,
            clflushopt: true,
            clflush: true,
            avx: true,
        };
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        // `choose` only decides (nothing is executed), so a fake CPU with every feature is fine.
        let env_owned = |pairs: Vec<(&'static str, &'static str)>| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let f = Flusher::choose(true, all, &env(&[]));
        assert_eq!(
            (f.path(), f.movnt(), f.movnt_threshold),
            (FlushPath::Clwb, true, 256)
        );
        let f = Flusher::choose(true, all, &env(&[("PMEM_NO_CLWB", "1")]));
        assert_eq!(f.path(), FlushPath::ClflushOpt);
        // K4: PMEM_NO_CLFLUSHOPT does not disable CLWB (PMDK checks each independently).
        let f = Flusher::choose(true, all, &env(&[("PMEM_NO_CLFLUSHOPT", "1")]));
        assert_eq!(f.path(), FlushPath::Clwb);
        let f = Flusher::choose(
            true,
            all,
            &env(&[("PMEM_NO_CLFLUSHOPT", "1"), ("PMEM_NO_CLWB", "1")]),
        );
        assert_eq!(f.path(), FlushPath::Clflush);
        let f = Flusher::choose(
            true,
            Cpu { clwb: false, ..all },
            &env(&[("PMEM_NO_CLFLUSHOPT", "1")]),
        );
        assert_eq!(f.path(), FlushPath::Clflush);
        // Only "1" switches, as PMDK's strcmp(e, "1").
        for v in ["yes", "true", "y", "0", "", " 1"] {
            let f = Flusher::choose(
                true,
                all,
                &env_owned(vec![("PMEM_NO_CLWB", v), ("PMEM_NO_MOVNT", v)]),
            );
            assert_eq!(
                (f.path(), f.movnt()),
                (FlushPath::Clwb, true),
                "value {v:?}"
            );
        }
        let f = Flusher::choose(
            true,
            all,
            &env(&[("PMEM_NO_MOVNT", "1"), ("PMEM_MOVNT_THRESHOLD", "1024")]),
        );
        assert_eq!((f.movnt(), f.movnt_threshold), (false, 1024));
        let f = Flusher::choose(true, Cpu { clwb: false, ..all }, &env(&[]));
        assert_eq!(f.path(), FlushPath::ClflushOpt);
        let f = Flusher::choose(false, all, &env(&[]));
        assert_eq!((f.path(), f.movnt()), (FlushPath::Msync, false));
    }

    /// S1: a requested CPU can only remove features. With a simulated real CPU lacking CLWB,
    /// CLFLUSHOPT and AVX, asking for all of them yields CLFLUSH without AVX; and the public
    /// `detect_with` never selects a path the real CPU lacks.
    #[test]
    fn detect_with_never_exceeds_the_real_cpu() {
        let all = Cpu {
            clwb: true,
            clflushopt: true,
            clflush: true,
            avx: true,
        };
        let old = Cpu {
            clwb: false,
            clflushopt: false,
            clflush: true,
            avx: false,
        };
        let none = |_: &str| None;
        let f = Flusher::choose(true, all.intersect(old), &none);
        assert_eq!((f.path(), f.avx), (FlushPath::Clflush, false));
        let f = Flusher::detect_with(true, all, &none);
        assert!(
            Flusher::with_path(f.path()).is_ok(),
            "{f:?} not supported by {:?}",
            cpu()
        );
        assert!(!f.avx || cpu().avx);
        assert_eq!(all.intersect(cpu()), cpu());
    }

    /// The shared-memory copies, fills and loads are exact at every alignment and length and
    /// leave every byte outside the range as it was (edge words are merged, not overwritten).
    #[test]
    fn shared_accesses_are_exact_at_every_alignment() {
        let src: Vec<u8> = (0..700u32).map(|i| (i * 13 + 1) as u8).collect();
        const MEM: usize = 1024;
        // Short lengths (word loops) and long ones (16-byte blocks where the CPU allows).
        let lens = (0..70).chain([255, 256, 257, 263, 320, 511, 600]);
        for len in lens {
            for off in 0..17 {
                // Word-aligned backing memory, so edge words stay inside the allocation.
                let mut mem = vec![0u64; MEM / 8];
                let base = mem.as_mut_ptr().cast::<u8>();
                let before: Vec<u8> = (0..MEM as u32).map(|i| (i * 5 + 200) as u8).collect();
                // SAFETY (all blocks below): `mem` is MEM bytes, 8-aligned, used by this
                // thread only; off + len <= 617 < MEM, so every edge word is inside it.
                unsafe {
                    core::ptr::copy_nonoverlapping(before.as_ptr(), base, MEM);
                    store_shared(base.add(off), src.as_ptr(), len);
                }
                let mut got = vec![0u8; MEM];
                unsafe { core::ptr::copy_nonoverlapping(base, got.as_mut_ptr(), MEM) };
                assert_eq!(&got[off..off + len], &src[..len], "store {off}+{len}");
                assert_eq!(&got[..off], &before[..off], "store {off}+{len} head");
                assert_eq!(
                    &got[off + len..],
                    &before[off + len..],
                    "store {off}+{len} tail"
                );
                let mut back = vec![0xEEu8; len + 2];
                unsafe { load_shared(back.as_mut_ptr().add(1), base.add(off), len) };
                assert_eq!(&back[1..len + 1], &src[..len], "load {off}+{len}");
                assert_eq!((back[0], back[len + 1]), (0xEE, 0xEE), "load {off}+{len}");
                unsafe { fill_shared(base.add(off), 0x3C, len) };
                unsafe { core::ptr::copy_nonoverlapping(base, got.as_mut_ptr(), MEM) };
                assert!(got[off..off + len].iter().all(|&b| b == 0x3C));
                assert_eq!(&got[..off], &before[..off], "fill {off}+{len} head");
                assert_eq!(
                    &got[off + len..],
                    &before[off + len..],
                    "fill {off}+{len} tail"
                );
            }
        }
        let mut w = [0u64; 2];
        let p = w.as_mut_ptr().cast::<u8>();
        // SAFETY: aligned words of a local array, this thread only.
        unsafe {
            store_u64_shared(p.add(8), 0x0102_0304_0506_0708);
            assert_eq!(load_u64_shared(p.add(8)), 0x0102_0304_0506_0708);
        }
        assert_eq!(w, [0, 0x0102_0304_0506_0708]);
    }

    /// Two threads storing disjoint byte ranges of the same words (edge merges racing with
    /// each other) never lose a store: each merge is one compare-exchange of the whole word.
    #[test]
    fn racing_edge_merges_lose_no_store() {
        use std::sync::atomic::AtomicU64;
        let mem: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let base = mem.as_ptr() as usize;
        std::thread::scope(|s| {
            for t in 0..2u8 {
                s.spawn(move || {
                    for round in 1..=2000u32 {
                        let v = [(round as u8) ^ (t * 0x55); 3];
                        // Thread 0 stores bytes 2..5 of each word, thread 1 bytes 5..8:
                        // disjoint ranges inside the same words.
                        let at = if t == 0 { 2 } else { 5 };
                        for w in 0..4 {
                            // SAFETY: inside `mem` (aligned atomics); all accesses are atomic.
                            unsafe { store_shared((base + 8 * w + at) as *mut u8, v.as_ptr(), 3) };
                        }
                    }
                });
            }
        });
        for w in &mem {
            let b = w.load(Ordering::Relaxed).to_ne_bytes();
            assert_eq!(&b[2..5], &[(2000u32 as u8); 3], "{b:?}");
            assert_eq!(&b[5..8], &[(2000u32 as u8) ^ 0x55; 3], "{b:?}");
            assert_eq!(&b[..2], &[0, 0]);
        }
    }

    /// S4: `copy_words` copies right at every alignment and length, and touches nothing else.
    #[test]
    fn copy_words_is_exact_at_every_alignment() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 13 + 1) as u8).collect();
        for dst_off in 0..16 {
            for src_off in 0..9 {
                for len in 0..70 {
                    let mut dst = vec![0xEEu8; 100];
                    // SAFETY: both ranges are inside their vectors and distinct allocations.
                    unsafe {
                        copy_words(
                            dst.as_mut_ptr().add(dst_off),
                            src.as_ptr().add(src_off),
                            len,
                        )
                    };
                    assert_eq!(&dst[dst_off..dst_off + len], &src[src_off..src_off + len]);
                    assert!(dst[..dst_off].iter().all(|&b| b == 0xEE));
                    assert!(dst[dst_off + len..].iter().all(|&b| b == 0xEE));
                }
            }
        }
    }
}
