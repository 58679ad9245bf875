//! A redo log left undecided on media (the primary's own persistence failed after the commit
//! point) poisons the whole heap until reopen: the next open replays that log's absolute
//! values, so no commit path — another lane's log, or the one-store fast paths — may change
//! the words it holds meanwhile.

mod common;
use common::small;
use palloc::{Action, Error, Heap, UlogError};
use pool::crash::Recorder;
use pool::persist::PersistError;
use pool::Persister;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The recorder with the *primary's* fence number `fail_at` failing (an `msync` error).
struct FailPrimary {
    rec: Recorder,
    fences: AtomicU64,
    fail_at: AtomicU64,
}

impl FailPrimary {
    fn arm(&self, k: u64) {
        self.fail_at
            .store(self.fences.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }
}

impl Persister for FailPrimary {
    fn len(&self) -> usize {
        self.rec.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.rec.read(off, buf)
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.rec.write(off, data)
    }
    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        self.rec.flush(off, len)
    }
    fn drain(&self) -> Result<(), PersistError> {
        let n = self.fences.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(PersistError::Msync {
                addr: 0,
                len: 0,
                source: std::io::Error::other(format!("injected primary failure at fence {n}")),
            });
        }
        self.rec.drain()
    }
}

fn poisoned(e: &Error) -> bool {
    matches!(e, Error::Ulog(UlogError::Poisoned { .. }))
}

#[test]
fn a_log_left_on_media_poisons_every_commit_path() {
    let fp = Arc::new(FailPrimary {
        rec: Recorder::new(1 << 20),
        fences: AtomicU64::new(0),
        fail_at: AtomicU64::new(u64::MAX),
    });
    fp.rec.set_capture(false);
    let h = Heap::create(fp.clone(), &small(), Default::default()).unwrap();
    let keep = h.alloc(64, 1, None).unwrap();
    let (r1, r2) = (h.reserve(64, 2).unwrap(), h.reserve(64, 2).unwrap());
    let (a, b) = (r1.off(), r2.off());
    let slot = h.user_slot(0);
    // Fence 1 makes the log durable (the commit point), fence 2 (applying it) fails on the
    // primary: the log stays on media, to be replayed at the next open.
    fp.arm(2);
    let e = h
        .publish(vec![
            Action::Alloc(r1),
            Action::Alloc(r2),
            Action::Set {
                off: slot,
                value: a,
            },
        ])
        .unwrap_err();
    assert!(e.is_committed(), "{e}");
    // Every later commit is refused, on every path: the one-store frees and allocations,
    // a general publish, another thread's lane.
    let e = h.free(a, None).unwrap_err();
    assert!(poisoned(&e), "free (one store): {e}");
    let e = h.free(keep, Some(slot)).unwrap_err();
    assert!(poisoned(&e), "free with a destination: {e}");
    let e = h.alloc(64, 3, None).unwrap_err();
    assert!(poisoned(&e), "alloc: {e}");
    let e = h.alloc(100 << 10, 3, Some(slot)).unwrap_err();
    assert!(poisoned(&e), "span alloc: {e}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let e = h.free(b, None).unwrap_err();
            assert!(poisoned(&e), "free on another thread: {e}");
        });
    });
    drop(h);
    // The next open replays the log: the batch is there, and nothing freed since.
    let img = Arc::new(Recorder::from_image(&fp.rec.live_image()));
    img.set_capture(false);
    let h = Heap::open(img.clone(), Default::default()).unwrap();
    for off in [keep, a, b] {
        assert!(h.object(off).is_ok(), "object {off:#x} lost");
    }
    assert_eq!(img.read_u64(slot as usize), a);
    let r = palloc::check(&*img).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
}
