//! A read-only view of one local replica's data area, with a copy-on-write overlay.
//!
//! [`Image`] implements [`pool::Persister`] over the concatenated data areas of a replica's part
//! files (the layout of docs/FORMAT.md, "A part file"), reading them with `pread` and never
//! writing them. Stores land in an in-memory overlay of 4 KiB pages, so the layers above can run
//! their real open (`palloc::Heap::open` replays redo logs, `tx::ObjPool::open_in` rolls back
//! undo logs) and show what recovery *would* do, while the files keep every byte. `info` and
//! `check` (without `--repair`) only ever look at pools through this type.
//!
//! Invariant: no method of this module opens a file for writing.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pool::persist::PersistError;
use pool::Persister;

const PAGE: usize = 4096;

/// One part's data area inside the replica.
struct Segment {
    file: File,
    path: PathBuf,
    /// Where the data area starts in the file (after the header region, if any).
    file_off: u64,
    /// Where it starts in the replica's data area.
    data_off: usize,
    len: usize,
}

/// A part file's data area: (path, offset of the data in the file, length).
pub struct PartData<'a> {
    /// The part file.
    pub path: &'a Path,
    /// Bytes before the data area (the header region, or 0).
    pub file_off: u64,
    /// Bytes of data.
    pub len: u64,
}

/// The data area of a replica, read-only on disk, writable in memory.
pub struct Image {
    segs: Vec<Segment>,
    len: usize,
    overlay: Mutex<BTreeMap<usize, Vec<u8>>>,
    stores: AtomicU64,
    io_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can leave the maps half-updated across a panic that matters: a poisoned
    // lock still holds whole pages.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Image {
    /// Open the parts (read-only) of one replica, in poolset order.
    pub fn open(parts: &[PartData<'_>]) -> Result<Image, String> {
        let mut segs = Vec::new();
        let mut off = 0usize;
        for p in parts {
            let file = File::open(p.path)
                .map_err(|e| format!("{}: cannot open for reading: {e}", p.path.display()))?;
            let len = usize::try_from(p.len)
                .map_err(|_| format!("{}: larger than the address space", p.path.display()))?;
            segs.push(Segment {
                file,
                path: p.path.to_path_buf(),
                file_off: p.file_off,
                data_off: off,
                len,
            });
            off = off
                .checked_add(len)
                .ok_or_else(|| "replica larger than the address space".to_string())?;
        }
        Ok(Image {
            segs,
            len: off,
            overlay: Mutex::new(BTreeMap::new()),
            stores: AtomicU64::new(0),
            io_error: Mutex::new(None),
        })
    }

    /// Limit the view to the first `len` bytes (the pool's usable size); never grows it.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The first read error, if any (reads that failed returned zeros).
    pub fn io_error(&self) -> Option<String> {
        lock(&self.io_error).clone()
    }

    /// Number of stores made into the overlay (what an open would have written).
    pub fn stores(&self) -> u64 {
        self.stores.load(Ordering::Relaxed)
    }

    /// Read from the files only (no overlay).
    fn read_files(&self, off: usize, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let at = off + done;
            let Some(seg) = self
                .segs
                .iter()
                .find(|s| at >= s.data_off && at < s.data_off + s.len)
            else {
                buf[done..].fill(0);
                return;
            };
            let n = (seg.data_off + seg.len - at).min(buf.len() - done);
            let file_at = seg.file_off + (at - seg.data_off) as u64;
            if let Err(e) = seg.file.read_exact_at(&mut buf[done..done + n], file_at) {
                buf[done..done + n].fill(0);
                let mut slot = lock(&self.io_error);
                if slot.is_none() {
                    *slot = Some(format!(
                        "{}: read of {n} bytes at file offset {file_at}: {e}",
                        seg.path.display()
                    ));
                }
            }
            done += n;
        }
    }
}

impl Persister for Image {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        assert!(
            off.checked_add(buf.len()).is_some_and(|e| e <= self.len),
            "image read {off}+{} outside {} bytes",
            buf.len(),
            self.len
        );
        self.read_files(off, buf);
        let ov = lock(&self.overlay);
        if ov.is_empty() || buf.is_empty() {
            return;
        }
        let first = off / PAGE;
        let last = (off + buf.len() - 1) / PAGE;
        for (&pg, data) in ov.range(first..=last) {
            let pstart = pg * PAGE;
            let s = pstart.max(off);
            let e = (pstart + PAGE).min(off + buf.len());
            buf[s - off..e - off].copy_from_slice(&data[s - pstart..e - pstart]);
        }
    }

    fn write(&self, off: usize, data: &[u8]) {
        assert!(
            off.checked_add(data.len()).is_some_and(|e| e <= self.len),
            "image write {off}+{} outside {} bytes",
            data.len(),
            self.len
        );
        self.stores.fetch_add(1, Ordering::Relaxed);
        let mut ov = lock(&self.overlay);
        let mut done = 0;
        while done < data.len() {
            let at = off + done;
            let pg = at / PAGE;
            let page = ov.entry(pg).or_insert_with(|| {
                let mut p = vec![0u8; PAGE];
                let start = pg * PAGE;
                let n = PAGE.min(self.len - start);
                self.read_files(start, &mut p[..n]);
                p
            });
            let in_page = at - pg * PAGE;
            let n = (PAGE - in_page).min(data.len() - done);
            page[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    fn flush(&self, _off: usize, _len: usize) -> Result<(), PersistError> {
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
    fn reads_span_parts_and_overlay_never_reaches_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let mut fa = vec![0xaa; 8192 + 100];
        fa[..8192].fill(0x11); // "header" bytes, skipped
        std::fs::write(&a, &fa).unwrap();
        std::fs::write(&b, vec![0xbb; 5000]).unwrap();
        let img = Image::open(&[
            PartData {
                path: &a,
                file_off: 8192,
                len: 100,
            },
            PartData {
                path: &b,
                file_off: 0,
                len: 5000,
            },
        ])
        .unwrap();
        assert_eq!(img.len(), 5100);
        let mut buf = vec![0u8; 10];
        img.read(95, &mut buf);
        assert_eq!(
            buf,
            [0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb]
        );
        img.write(4090, &[1; 20]);
        let mut buf = vec![0u8; 30];
        img.read(4080, &mut buf);
        assert_eq!(&buf[..10], &[0xbb; 10]);
        assert_eq!(&buf[10..30], &[1; 20]);
        assert_eq!(std::fs::read(&b).unwrap(), vec![0xbb; 5000]);
        assert_eq!(img.stores(), 1);
        assert!(img.io_error().is_none());
    }
}
