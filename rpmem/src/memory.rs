//! The initiator's local pool memory: the bytes that persist operations RMA-write to the target.
//!
//! Either allocated here (page aligned, zeroed, freed on drop) or borrowed from the caller by raw
//! pointer (librpmem's `pool_addr`), e.g. a mapping of a local pool. Accessed only through raw
//! copies: the fabric reads it while persists run, so no Rust reference to it is ever made.

use std::alloc::{self, Layout};

use crate::Error;

/// Memory that a [`crate::RpmemPool`] replicates.
pub struct PoolMemory {
    ptr: *mut u8,
    len: usize,
    /// Set when this value allocated the memory and must free it.
    owned: Option<Layout>,
}

// SAFETY: the memory is plain heap or mapped memory accessed through raw-pointer copies only;
// concurrent copies to overlapping ranges give torn bytes, as with any shared memory, never
// undefined behaviour through references.
unsafe impl Send for PoolMemory {}
// SAFETY: as above.
unsafe impl Sync for PoolMemory {}

impl PoolMemory {
    /// Allocates `len` zeroed, page-aligned bytes.
    pub fn new(len: usize) -> Result<PoolMemory, Error> {
        if len == 0 {
            return Err(Error::Alloc {
                len,
                why: "a pool cannot be empty".into(),
            });
        }
        let layout = Layout::from_size_align(len, 4096).map_err(|e| Error::Alloc {
            len,
            why: e.to_string(),
        })?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::Alloc {
                len,
                why: "out of memory".into(),
            });
        }
        Ok(PoolMemory {
            ptr,
            len,
            owned: Some(layout),
        })
    }

    /// Uses caller memory (librpmem's `pool_addr`, `pool_size`).
    ///
    /// # Safety
    /// `[ptr, ptr+len)` must be valid for reads and writes for the whole life of the
    /// `RpmemPool` built on it, and must not be accessed through Rust references while it is
    /// (use [`crate::RpmemPool::write`]/`read_local` or raw copies).
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> PoolMemory {
        PoolMemory {
            ptr,
            len,
            owned: None,
        }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "local range {offset}+{len} is outside the {}-byte pool",
                self.len
            ))),
        }
    }

    /// Copies `data` into the memory at `offset` (a plain store; persist makes it remote).
    /// Word-atomic (`pool::persist::store_shared`): the memory may be a pool's primary mapping
    /// that other threads read and write at the same time.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.check(offset, data.len())?;
        // SAFETY: in bounds of the live memory, which is 8-byte aligned (page-aligned here, a
        // mapping in `from_raw`) and accessed by this crate only through word-atomic copies
        // (pool's shared-memory contract); `data` is a distinct Rust slice.
        unsafe { pool::persist::store_shared(self.ptr.add(offset), data.as_ptr(), data.len()) };
        Ok(())
    }

    /// Copies bytes at `offset` into `out` (word-atomic, as [`write`](Self::write)).
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        self.check(offset, out.len())?;
        // SAFETY: as in `write`; `out` is a distinct Rust slice.
        unsafe { pool::persist::load_shared(out.as_mut_ptr(), self.ptr.add(offset), out.len()) };
        Ok(())
    }
}

impl Drop for PoolMemory {
    fn drop(&mut self) {
        if let Some(layout) = self.owned {
            // SAFETY: allocated in `new` with exactly this layout, freed once.
            unsafe { alloc::dealloc(self.ptr, layout) };
        }
    }
}
