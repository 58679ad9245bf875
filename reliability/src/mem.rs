//! [`MemPersister`]: a plain in-memory [`Persister`] (flush and drain do nothing), the cheapest
//! place to open a crash image: the recovery writes land in it and are thrown away.

use pool::persist::PersistError;
use pool::Persister;
use std::sync::{Mutex, MutexGuard};

/// An in-memory region; every store is "durable" at once.
pub struct MemPersister {
    bytes: Mutex<Vec<u8>>,
}

impl MemPersister {
    /// A region holding a copy of `image`.
    pub fn from_image(image: &[u8]) -> MemPersister {
        MemPersister {
            bytes: Mutex::new(image.to_vec()),
        }
    }

    /// The bytes now.
    pub fn image(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panicking checker leaves the bytes as they were; nothing to repair.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[track_caller]
fn bounds(off: usize, len: usize, size: usize) {
    assert!(
        off.checked_add(len).is_some_and(|e| e <= size),
        "range {off}+{len} outside region of {size} bytes"
    );
}

impl Persister for MemPersister {
    fn len(&self) -> usize {
        self.lock().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        let b = self.lock();
        bounds(off, buf.len(), b.len());
        buf.copy_from_slice(&b[off..off + buf.len()]);
    }
    fn write(&self, off: usize, data: &[u8]) {
        let mut b = self.lock();
        bounds(off, data.len(), b.len());
        b[off..off + data.len()].copy_from_slice(data);
    }
    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        bounds(off, len, self.lock().len());
        Ok(())
    }
    fn drain(&self) -> Result<(), PersistError> {
        Ok(())
    }
}
