//! The primary's own persistence failing at each fence of a transaction that allocates (a redo
//! batch ends it). When the failure leaves a log undecided on media — the commit returned
//! `CommittedReplicationFailed` with the primary's error, or `OutcomeUnknown` — every later
//! transaction must be refused until reopen: the next open replays that log's absolute values
//! (among them an old idle `state` of the undo log) over anything committed meanwhile.

mod common;
use common::prog::{run, Op, Prog, Root};
use common::small;
use palloc::UlogError;
use pool::crash::Recorder;
use pool::persist::PersistError;
use pool::Persister;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tx::{Error, PoolTyped};

/// The recorder with the primary's fence `fail_at` failing (an `msync` error).
struct FailPrimary {
    rec: Recorder,
    fences: AtomicU64,
    fail_at: AtomicU64,
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

#[test]
fn a_log_left_undecided_refuses_later_transactions() {
    let alloc = Prog {
        ops: vec![
            Op::Alloc { slot: 0, val: 7 },
            Op::WriteRoot {
                at: 0,
                len: 8,
                byte: 3,
            },
        ],
        abort: false,
    };
    let undo_only = Prog {
        ops: vec![Op::WriteRoot {
            at: 8,
            len: 8,
            byte: 4,
        }],
        abort: false,
    };
    let mut undecided = 0;
    for k in 1.. {
        let fp = Arc::new(FailPrimary {
            rec: Recorder::new(384 << 10),
            fences: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
        });
        fp.rec.set_capture(false);
        let pool = PoolTyped::<Root, FailPrimary>::create_in(fp.clone(), &small(2)).unwrap();
        fp.fail_at
            .store(fp.fences.load(Ordering::SeqCst) + k, Ordering::SeqCst);
        let r = run(&pool, &alloc);
        if fp.fences.load(Ordering::SeqCst) < fp.fail_at.load(Ordering::SeqCst) {
            break;
        }
        let left_undecided = match &r {
            Err(Error::CommittedReplicationFailed(palloc::Error::Ulog(UlogError::Committed {
                source,
                ..
            }))) => !palloc::ulog::primary_done(source),
            Err(Error::OutcomeUnknown(_)) => true,
            _ => false,
        };
        let next = run(&pool, &undo_only);
        if left_undecided {
            undecided += 1;
            assert!(
                matches!(
                    next,
                    Err(Error::Heap(palloc::Error::Ulog(UlogError::Poisoned { .. })))
                ),
                "fence {k}: first tx returned {r:?}, the next one {next:?}"
            );
        } else {
            assert!(
                matches!(next, Ok(true)),
                "fence {k}: first tx returned {r:?}, the next one {next:?}"
            );
        }
    }
    assert!(undecided > 0, "no fence left a log undecided");
}
