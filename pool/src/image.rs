//! [`MemImage`]: a pool's data area copied into memory, as a [`Persister`], so that the layers
//! above (heap and transaction recovery, an application's checker) can run over a copy of a
//! replica or of a crash image without changing the original; the recovery's writes land in the
//! copy and are thrown away with it. Flushes and fences do nothing: nothing here is meant to be
//! durable (every store is "durable" at once). Cheaper than a [`crate::crash::Recorder`]: one
//! copy, no bookkeeping.

use std::sync::{Mutex, MutexGuard};

use crate::persist::PersistError;
use crate::Persister;

/// An in-memory copy of a pool's data area.
pub struct MemImage {
    bytes: Mutex<Vec<u8>>,
}

impl MemImage {
    /// The image of `bytes`.
    pub fn new(bytes: Vec<u8>) -> MemImage {
        MemImage {
            bytes: Mutex::new(bytes),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves plain bytes behind: still usable.
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        self.lock().clone()
    }
}

#[track_caller]
fn check(len: usize, off: usize, n: usize) {
    assert!(
        off.checked_add(n).is_some_and(|e| e <= len),
        "range {off}+{n} outside the image of {len} bytes"
    );
}

impl Persister for MemImage {
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        let b = self.lock();
        check(b.len(), off, buf.len());
        buf.copy_from_slice(&b[off..off + buf.len()]);
    }

    fn write(&self, off: usize, data: &[u8]) {
        let mut b = self.lock();
        check(b.len(), off, data.len());
        b[off..off + data.len()].copy_from_slice(data);
    }

    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        check(self.lock().len(), off, len);
        Ok(())
    }

    fn drain(&self) -> Result<(), PersistError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written() {
        let m = MemImage::new(vec![0; 64]);
        m.write(8, b"abc");
        m.persist(8, 3).unwrap();
        let mut b = [0u8; 4];
        m.read(7, &mut b);
        assert_eq!(&b, b"\0abc");
        assert_eq!(m.len(), 64);
    }

    #[test]
    #[should_panic(expected = "outside the image")]
    fn out_of_range_panics_with_the_bounds() {
        MemImage::new(vec![0; 16]).write(10, &[0; 8]);
    }
}
