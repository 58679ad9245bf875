//! Memory mapping of parts: one contiguous reservation per replica, each part mapped at its
//! place with `MAP_FIXED`, `MAP_SYNC` tried first; and the "is persistent memory" decision.
//!
//! # `PMEM_IS_PMEM_FORCE`
//! As PMDK: `PMEM_IS_PMEM_FORCE=1` treats every mapping as persistent memory (cache flushes
//! instead of `msync`), `PMEM_IS_PMEM_FORCE=0` treats none as such. Unset: a mapping is
//! persistent memory when the kernel accepted `MAP_SYNC` for it or it is a Device DAX
//! character device.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Linux `MAP_SHARED_VALIDATE` (uapi `asm-generic/mman-common.h`).
const MAP_SHARED_VALIDATE: libc::c_int = 0x03;
/// Linux `MAP_SYNC`.
const MAP_SYNC: libc::c_int = 0x08_0000;

/// The `PMEM_IS_PMEM_FORCE` override, if set to 0 or 1.
pub fn is_pmem_force() -> Option<bool> {
    match std::env::var("PMEM_IS_PMEM_FORCE").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    }
}

/// PMDK's decision: forced by the environment, else `MAP_SYNC` accepted or Device DAX.
pub fn decide_is_pmem(map_sync: bool, device_dax: bool) -> bool {
    is_pmem_force().unwrap_or(map_sync || device_dax)
}

/// True when `path` is a character device (Device DAX is the only kind a pool can live on).
pub fn is_device_dax(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_char_device())
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
    pub fn map_at(&self, off: usize, file: &File, file_off: u64, len: usize) -> io::Result<bool> {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "part mapping {off}+{len} outside reservation of {} bytes",
            self.len
        );
        let file_off = libc::off_t::try_from(file_off)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY (invariant for both calls): `[addr+off, addr+off+len)` lies inside our own
        // PROT_NONE reservation (asserted above), so MAP_FIXED replaces only pages this value
        // owns and no Rust object lives there.
        let target = unsafe { self.addr.add(off) }.cast::<libc::c_void>();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let fd = file.as_raw_fd();
        // SAFETY: see the invariant above.
        let p = unsafe {
            libc::mmap(
                target,
                len,
                prot,
                MAP_SHARED_VALIDATE | MAP_SYNC | libc::MAP_FIXED,
                fd,
                file_off,
            )
        };
        if p != libc::MAP_FAILED {
            return Ok(true);
        }
        // EOPNOTSUPP (tmpfs, ext4 without DAX) or EINVAL (old kernels): plain shared mapping.
        // SAFETY: see the invariant above.
        let p = unsafe {
            libc::mmap(
                target,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                file_off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(false)
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
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
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
}
