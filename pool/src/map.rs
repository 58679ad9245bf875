//! Memory mapping of parts: one contiguous reservation per replica, each part mapped at its
//! place with `MAP_FIXED`, `MAP_SYNC` tried first; and the "is persistent memory" decision.
//!
//! # `PMEM_IS_PMEM_FORCE`
//! As PMDK: `PMEM_IS_PMEM_FORCE=1` treats every mapping as persistent memory (cache flushes
//! instead of `msync`), `PMEM_IS_PMEM_FORCE=0` treats none as such. Unset: a mapping is
//! persistent memory when the kernel accepted `MAP_SYNC` for it. (PMDK also counts Device DAX;
//! pools refuse character devices for now, see `pool::Error::CharDevice`, so only `MAP_SYNC`
//! decides in practice.)

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Linux `MAP_SHARED_VALIDATE` (uapi `asm-generic/mman-common.h`).
const MAP_SHARED_VALIDATE: libc::c_int = 0x03;
/// Linux `MAP_SYNC`.
const MAP_SYNC: libc::c_int = 0x08_0000;

/// The `PMEM_IS_PMEM_FORCE` override of the process environment, if set to 0 or 1 (read at
/// every call, so at every pool create/open).
pub fn is_pmem_force() -> Option<bool> {
    is_pmem_force_in(&|k| std::env::var(k).ok())
}

/// [`is_pmem_force`] with an explicit environment lookup (for tests): `Some` only for exactly
/// `0` or `1`, as PMDK.
pub fn is_pmem_force_in(env: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
    match env("PMEM_IS_PMEM_FORCE").as_deref() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

/// PMDK's decision: forced by the environment, else `MAP_SYNC` accepted or Device DAX.
pub fn decide_is_pmem(map_sync: bool, device_dax: bool) -> bool {
    decide_is_pmem_with(is_pmem_force(), map_sync, device_dax)
}

/// The decision with an explicit override (`Some` wins; `None` decides by the mapping).
pub fn decide_is_pmem_with(force: Option<bool>, map_sync: bool, device_dax: bool) -> bool {
    force.unwrap_or(map_sync || device_dax)
}

/// True when `path` is a character device.
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

/// True when `path` is a Device DAX character device: its `/sys/dev/char/MAJOR:MINOR/subsystem`
/// link names the `dax` class (as PMDK's `util_fd_get_type`).
pub fn is_device_dax(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    if !is_char_device(path) {
        return false;
    }
    let rdev = m.rdev();
    let sys = format!(
        "/sys/dev/char/{}:{}/subsystem",
        libc::major(rdev),
        libc::minor(rdev)
    );
    std::fs::read_link(sys)
        .ok()
        .and_then(|t| t.file_name().map(|n| n == "dax"))
        .unwrap_or(false)
}

/// An address range reserved with an anonymous `PROT_NONE` mapping; parts are mapped over it.
/// Dropping it unmaps the whole range (and so every part mapped inside).
pub struct Reservation {
    addr: *mut u8,
    len: usize,
}

// SAFETY: the reservation is an address range owned by this value; it carries no thread-bound
// state.
unsafe impl Send for Reservation {}
// SAFETY: as above; shared access only reads `addr`/`len`.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Reserve `len` bytes (a multiple of the page size).
    pub fn new(len: usize) -> io::Result<Reservation> {
        // SAFETY: an anonymous PROT_NONE mapping at a kernel-chosen address touches no existing
        // memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Reservation {
            addr: p.cast(),
            len,
        })
    }

    /// Start of the range.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Length of the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty reservation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Map `len` bytes of `file` from `file_off` at `off` inside the reservation, shared and
    /// writable; `MAP_SYNC` is tried first. Returns whether `MAP_SYNC` was accepted.
    ///
    /// The `MAP_SYNC` attempt never touches the reservation: it maps at an address of the
    /// kernel's choosing and, only if that succeeds, moves the mapping into place with
    /// `mremap(MREMAP_FIXED)`. (A failed `MAP_FIXED|MAP_SYNC` call over the reservation may, on
    /// older kernels, unmap the target range before failing; another thread's `mmap` could then
    /// take the hole, which the fallback `MAP_FIXED` would silently clobber.) When `MAP_SYNC` is
    /// refused, nothing was changed and a plain `MAP_SHARED|MAP_FIXED` mapping replaces our own
    /// `PROT_NONE` pages.
    pub fn map_at(&self, off: usize, file: &File, file_off: u64, len: usize) -> io::Result<bool> {
        if self.map_moved(off, file, file_off, len, MAP_SHARED_VALIDATE | MAP_SYNC)? {
            return Ok(true);
        }
        // EOPNOTSUPP (tmpfs, ext4 without DAX) or EINVAL (old kernels): plain shared mapping.
        let target = self.target(off, len);
        let file_off = off_t(file_off)?;
        // SAFETY: `[target, target+len)` lies inside our own PROT_NONE reservation (checked by
        // `target`), so MAP_FIXED replaces only pages this value owns and no Rust object lives
        // there.
        let p = unsafe {
            libc::mmap(
                target,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(false)
    }

    /// The address of `[off, off+len)` inside the reservation (asserted to be inside).
    fn target(&self, off: usize, len: usize) -> *mut libc::c_void {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "part mapping {off}+{len} outside reservation of {} bytes",
            self.len
        );
        // SAFETY: `off <= self.len` (asserted), so the result is inside or one past the range.
        unsafe { self.addr.add(off) }.cast()
    }

    /// Map the file with `flags` (no `MAP_FIXED`) wherever the kernel likes, then move the
    /// mapping onto `[off, off+len)` of the reservation. `Ok(false)` when the `mmap` is refused
    /// (the reservation is untouched).
    fn map_moved(
        &self,
        off: usize,
        file: &File,
        file_off: u64,
        len: usize,
        flags: libc::c_int,
    ) -> io::Result<bool> {
        let target = self.target(off, len);
        let file_off = off_t(file_off)?;
        // SAFETY: no MAP_FIXED: the kernel picks a free range, nothing existing is replaced.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                file.as_raw_fd(),
                file_off,
            )
        };
        if p == libc::MAP_FAILED {
            return Ok(false);
        }
        // SAFETY: `p` is the mapping just made (len bytes, owned by nobody else); the target
        // range lies inside our own reservation, which MREMAP_FIXED replaces atomically (the
        // move unmaps whatever is at the target as part of the same call).
        let q = unsafe {
            libc::mremap(
                p,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target,
            )
        };
        if q == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: `p` is still our temporary mapping (mremap failed, nothing moved).
            unsafe { libc::munmap(p, len) };
            return Err(e);
        }
        debug_assert_eq!(q, target);
        Ok(true)
    }
}

fn off_t(file_off: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(file_off)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))
}

/// A standalone shared, writable mapping of part of a file; unmapped on drop.
pub struct FileMapping {
    addr: *mut u8,
    len: usize,
    sync: bool,
}

// SAFETY: an owned address range with no thread-bound state.
unsafe impl Send for FileMapping {}
// SAFETY: as above; shared access only reads `addr`/`len`.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// Map `len` bytes of `file` from `file_off`, with `MAP_SYNC` when `try_sync` and the kernel
    /// accepts it, else plain `MAP_SHARED`.
    pub fn new(file: &File, file_off: u64, len: usize, try_sync: bool) -> io::Result<FileMapping> {
        let file_off = off_t(file_off)?;
        let attempts: &[(libc::c_int, bool)] = if try_sync {
            &[
                (MAP_SHARED_VALIDATE | MAP_SYNC, true),
                (libc::MAP_SHARED, false),
            ]
        } else {
            &[(libc::MAP_SHARED, false)]
        };
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for &(flags, sync) in attempts {
            // SAFETY: no MAP_FIXED: the kernel picks a free range.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    file.as_raw_fd(),
                    file_off,
                )
            };
            if p != libc::MAP_FAILED {
                return Ok(FileMapping {
                    addr: p.cast(),
                    len,
                    sync,
                });
            }
            last = io::Error::last_os_error();
        }
        Err(last)
    }

    /// Start of the mapping.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the kernel accepted `MAP_SYNC` (stores are durable after a cache flush, file
    /// system metadata included).
    pub fn is_sync(&self) -> bool {
        self.sync
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `new` and is owned by this value.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `new` and is owned by this value; no reference into
        // it outlives the owner of the reservation (regions keep it alive).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// The system page size.
pub fn page_size() -> usize {
    crate::persist::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_files_map_contiguously() {
        let ps = page_size();
        let a = tempfile::tempfile().unwrap();
        let b = tempfile::tempfile().unwrap();
        a.set_len(2 * ps as u64).unwrap();
        b.set_len(3 * ps as u64).unwrap();
        let r = Reservation::new(4 * ps).unwrap();
        let sync_a = r.map_at(0, &a, ps as u64, ps).unwrap();
        let sync_b = r.map_at(ps, &b, 0, 3 * ps).unwrap();
        // tmpfs / ext4 without DAX refuse MAP_SYNC.
        eprintln!("MAP_SYNC accepted: {sync_a} {sync_b}");
        // SAFETY: both pages are mapped read/write above.
        unsafe {
            *r.addr().add(5) = 7;
            *r.addr().add(ps + 9) = 8;
        }
        use std::os::unix::fs::FileExt;
        let mut x = [0u8; 1];
        a.read_at(&mut x, ps as u64 + 5).unwrap();
        assert_eq!(x[0], 7);
        b.read_at(&mut x, 9).unwrap();
        assert_eq!(x[0], 8);
    }

    /// S3: the map-elsewhere-then-move path (used for `MAP_SYNC`, which tmpfs refuses) places
    /// the file's pages at the reservation offset; exercised here with plain `MAP_SHARED`.
    #[test]
    fn mapping_moved_into_the_reservation_is_the_file() {
        let ps = page_size();
        let f = tempfile::tempfile().unwrap();
        f.set_len(3 * ps as u64).unwrap();
        let r = Reservation::new(4 * ps).unwrap();
        assert!(r
            .map_moved(ps, &f, ps as u64, 2 * ps, libc::MAP_SHARED)
            .unwrap());
        // SAFETY: pages 1 and 2 of the reservation are now the file's pages 1 and 2.
        unsafe {
            *r.addr().add(ps) = 3;
            *r.addr().add(3 * ps - 1) = 4;
        }
        use std::os::unix::fs::FileExt;
        let mut x = [0u8; 1];
        f.read_at(&mut x, ps as u64).unwrap();
        assert_eq!(x[0], 3);
        f.read_at(&mut x, 3 * ps as u64 - 1).unwrap();
        assert_eq!(x[0], 4);
        // A refused mmap leaves the reservation alone: MAP_SYNC on a tmpfs/ext4 file.
        if !r
            .map_moved(0, &f, 0, ps, MAP_SHARED_VALIDATE | MAP_SYNC)
            .unwrap()
        {
            // Still PROT_NONE: mincore reports it mapped (not ENOMEM).
            let mut v = [0u8; 1];
            // SAFETY: mincore only inspects the page tables of our own range.
            let rc = unsafe { libc::mincore(r.addr().cast(), ps, v.as_mut_ptr()) };
            assert_eq!(rc, 0, "reservation page was unmapped by a refused MAP_SYNC");
        }
    }

    #[test]
    fn standalone_file_mapping() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(8192).unwrap();
        let m = FileMapping::new(&f, 4096, 4096, true).unwrap();
        eprintln!("MAP_SYNC accepted: {}", m.is_sync());
        // SAFETY: the mapping is 4096 bytes, read/write.
        unsafe { *m.addr().add(1) = 9 };
        use std::os::unix::fs::FileExt;
        let mut x = [0u8; 1];
        f.read_at(&mut x, 4097).unwrap();
        assert_eq!(x[0], 9);
    }

    #[test]
    fn dev_null_is_a_char_device_but_not_device_dax() {
        assert!(is_char_device(Path::new("/dev/null")));
        assert!(!is_device_dax(Path::new("/dev/null")));
        assert!(!is_char_device(Path::new("/")));
    }

    /// T4: the override wins both ways; unset (or any other value) decides by the mapping.
    #[test]
    fn is_pmem_decision_and_override() {
        let env = |v: Option<&'static str>| {
            move |k: &str| {
                (k == "PMEM_IS_PMEM_FORCE")
                    .then_some(v)
                    .flatten()
                    .map(String::from)
            }
        };
        assert_eq!(is_pmem_force_in(&env(Some("1"))), Some(true));
        assert_eq!(is_pmem_force_in(&env(Some("0"))), Some(false));
        for other in [None, Some("yes"), Some("2"), Some(""), Some(" 1")] {
            assert_eq!(is_pmem_force_in(&env(other)), None, "{other:?}");
        }
        for (sync, dax) in [(false, false), (true, false), (false, true), (true, true)] {
            assert!(decide_is_pmem_with(Some(true), sync, dax));
            assert!(!decide_is_pmem_with(Some(false), sync, dax));
            assert_eq!(decide_is_pmem_with(None, sync, dax), sync || dax);
        }
    }
}
