//! Memory registration: a caller-owned memory range made accessible to the fabric (and, with
//! remote access, to the peer), plus an owned, page-aligned registered buffer for staging data.
//!
//! What the peer needs to reach a region is a `RemoteKey` (address base, length, key); how the
//! address is formed depends on the provider's `FI_MR_VIRT_ADDR` bit, which `RemoteKey` hides.

use std::alloc::{self, Layout};
use std::ops::BitOr;
use std::os::raw::c_void;
use std::ptr;
use std::sync::Arc;

use libfabric_sys as sys;

use crate::domain::{close_fid, Domain, DomainInner};
use crate::error::{check_int, Error, Result};

/// Access rights of a registration (`FI_SEND`, `FI_READ`, `FI_REMOTE_WRITE`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u64);

impl Access {
    /// Local use as the source or target of sends, receives, RMA writes and reads.
    pub const LOCAL: Access =
        Access((sys::FI_SEND | sys::FI_RECV | sys::FI_READ | sys::FI_WRITE) as u64);
    /// The peer may RMA-write into the region.
    pub const REMOTE_WRITE: Access = Access(sys::FI_REMOTE_WRITE as u64);
    /// The peer may RMA-read from the region.
    pub const REMOTE_READ: Access = Access(sys::FI_REMOTE_READ as u64);

    /// The `FI_*` bits.
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// What a peer needs to RMA into or out of a region: sent over the control channel.
/// On the wire it is three little-endian u64 values (see `to_le_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteKey {
    /// Address the peer passes for offset 0 (the virtual address under `FI_MR_VIRT_ADDR`, else 0).
    pub addr: u64,
    /// Length of the region in bytes.
    pub len: u64,
    /// Protection key.
    pub key: u64,
}

impl RemoteKey {
    /// Size of the wire form.
    pub const WIRE_BYTES: usize = 24;

    /// Wire form: addr, len, key, each u64 little-endian.
    pub fn to_le_bytes(&self) -> [u8; Self::WIRE_BYTES] {
        let mut b = [0u8; Self::WIRE_BYTES];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.key.to_le_bytes());
        b
    }

    /// Parses the wire form.
    pub fn from_le_bytes(b: &[u8; Self::WIRE_BYTES]) -> RemoteKey {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        RemoteKey {
            addr: word(0),
            len: word(8),
            key: word(16),
        }
    }

    /// The address to pass to libfabric for `offset..offset+len` of the region, checked.
    pub(crate) fn target(&self, op: &'static str, offset: u64, len: usize) -> Result<u64> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.len => Ok(self.addr.wrapping_add(offset)),
            _ => Err(Error::InvalidArgument {
                op,
                what: format!(
                    "remote range {offset}+{len} is outside the peer's {}-byte region",
                    self.len
                ),
            }),
        }
    }
}

/// A registered memory range (`fi_mr_reg`). Closed on drop, before its domain.
pub struct MemoryRegion {
    pub(crate) fid: *mut sys::fid_mr,
    ptr: *mut u8,
    len: usize,
    virt_addr: bool,
    _domain: Arc<DomainInner>,
}

// SAFETY: an MR handle is thread-safe under FI_THREAD_SAFE; the memory it covers is the caller's
// responsibility (see `register`), and this type never dereferences it.
unsafe impl Send for MemoryRegion {}
// SAFETY: see Send; all &self methods only read immutable fields or call thread-safe libfabric.
unsafe impl Sync for MemoryRegion {}

impl MemoryRegion {
    /// Registers `len` bytes at `ptr` with `access`.
    ///
    /// # Safety
    /// The range must stay valid (mapped, not freed) until the region is dropped, and, with remote
    /// access, the caller must treat it as memory that changes under it at any moment (no Rust
    /// references held across remote writes; read it with raw-pointer copies).
    pub unsafe fn register(
        domain: &Domain,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<MemoryRegion> {
        if ptr.is_null() || len == 0 {
            return Err(Error::InvalidArgument {
                op: "fi_mr_reg",
                what: format!("cannot register an empty or NULL range ({ptr:?}, {len} bytes)"),
            });
        }
        let mode = domain.mr_mode();
        let requested_key = if mode & sys::FI_MR_PROV_KEY != 0 {
            0
        } else {
            domain.next_requested_key()
        };
        let mut fid = ptr::null_mut();
        // SAFETY: domain open; the caller guarantees ptr..ptr+len stays valid for the MR's life;
        // offset 0 (FI_MR_VIRT_ADDR providers ignore it); fid an out-pointer.
        let rc = unsafe {
            sys::fi_mr_reg(
                domain.inner.fid,
                ptr as *const c_void,
                len,
                access.bits(),
                0,
                requested_key,
                0,
                &mut fid,
                ptr::null_mut(),
            )
        };
        check_int("fi_mr_reg", rc)?;
        Ok(MemoryRegion {
            fid,
            ptr,
            len,
            virt_addr: mode & sys::FI_MR_VIRT_ADDR != 0,
            _domain: domain.inner.clone(),
        })
    }

    /// Start of the registered range.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length of the registered range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty registrations are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Local descriptor for operations that use this region as their local buffer.
    pub(crate) fn desc(&self) -> *mut c_void {
        // SAFETY: fid is a live MR.
        unsafe { sys::fi_mr_desc(self.fid) }
    }

    /// What the peer needs to reach this region.
    pub fn remote_key(&self) -> RemoteKey {
        // SAFETY: fid is a live MR.
        let key = unsafe { sys::fi_mr_key(self.fid) };
        RemoteKey {
            addr: if self.virt_addr { self.ptr as u64 } else { 0 },
            len: self.len as u64,
            key,
        }
    }

    /// Checks that `offset..offset+len` lies inside the region and returns its address.
    pub(crate) fn local(&self, op: &'static str, offset: usize, len: usize) -> Result<*mut u8> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.ptr.wrapping_add(offset)),
            _ => Err(Error::InvalidArgument {
                op,
                what: format!(
                    "local range {offset}+{len} is outside the {}-byte registered region",
                    self.len
                ),
            }),
        }
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        close_fid(self.fid.cast());
    }
}

/// A heap buffer, page aligned, that releases its memory on drop.
struct RawBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl RawBuf {
    fn new(len: usize) -> Result<RawBuf> {
        let layout =
            Layout::from_size_align(len.max(1), 4096).map_err(|e| Error::InvalidArgument {
                op: "alloc",
                what: format!("cannot allocate {len} bytes: {e}"),
            })?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::InvalidArgument {
                op: "alloc",
                what: format!("out of memory allocating {len} bytes"),
            });
        }
        Ok(RawBuf { ptr, layout })
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr, self.layout) };
    }
}

/// A buffer this crate allocates and registers. The fabric (and the peer, with remote access)
/// may write it at any time, so it is only accessed through copying methods.
pub struct OwnedRegion {
    // Field order matters: the registration is closed before the memory is freed.
    mr: MemoryRegion,
    _buf: RawBuf,
}

// SAFETY: the buffer is only touched through raw-pointer copies; see MemoryRegion's Send.
unsafe impl Send for OwnedRegion {}
// SAFETY: copies in and out through &self race only with the fabric/peer, which is the documented
// nature of registered memory; no Rust reference to the bytes is ever handed out.
unsafe impl Sync for OwnedRegion {}

impl OwnedRegion {
    /// Allocates `len` zeroed bytes (page aligned) and registers them with `access`.
    pub fn new(domain: &Domain, len: usize, access: Access) -> Result<OwnedRegion> {
        let buf = RawBuf::new(len)?;
        // SAFETY: buf stays allocated until after mr is dropped (field order), and is only
        // accessed through raw copies.
        let mr = unsafe { MemoryRegion::register(domain, buf.ptr, len, access)? };
        Ok(OwnedRegion { mr, _buf: buf })
    }

    /// The registration (for RMA calls and `remote_key`).
    pub fn mr(&self) -> &MemoryRegion {
        &self.mr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mr.len
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.mr.len == 0
    }

    /// Copies `src` into the buffer at `offset`.
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = self.mr.local("OwnedRegion::write_at", offset, src.len())?;
        // SAFETY: dst..dst+len is inside the live allocation (checked); src is a distinct Rust
        // slice, so the ranges cannot overlap.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// Copies bytes at `offset` out into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.mr.local("OwnedRegion::read_at", offset, dst.len())?;
        // SAFETY: as in write_at.
        unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
}
