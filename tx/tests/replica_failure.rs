//! A replica failing at every fence of a transaction, with crash images.
//!
//! [`FailAt`] wraps `pool::crash::Recorder` as `pool::Pool` behaves with one replica under the
//! fail-stop policy: every flush and fence is done locally (the primary) first, then fence
//! number `k` (counted from the start of the transaction) returns `PersistError::Replica` —
//! once (a transient failure), or from then on (a replica that is gone).
//!
//! For every `k` up to the transaction's last fence, the outcome must be well-defined:
//! - `Ok` (or the program's own abort) as without a failure;
//! - `tx::Error::CommittedReplicationFailed`: the transaction is there after a reopen;
//! - any other error: the transaction is absent after a reopen;
//!
//! "after a reopen" both from the live image (the process ends without a crash) and from the
//! durable image (a power failure right after `tx` returned), heap-checked. And every crash
//! image before each fence recovers to the state before or after the transaction (a crash is
//! an unknown outcome, but never a mixture).
//!
//! A second test fails one *flush* instead of a fence (see
//! `replica_failing_at_each_flush_leaves_the_log_idle`).
//!
//! Replay: the test prints `TX_REPLICA_SEED=<seed>`; the recorder prints `POOL_CRASH_SEED`
//! when it samples images.

mod common;
use common::prog::{gen_prog, observe, run, Model, Op, Prog, Rng, Root, DATA};
use common::small;
use pool::crash::{Enumerate, Recorder};
use pool::persist::PersistError;
use pool::Persister;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tx::{Error, PoolTyped};

/// The recorder as the primary, plus a replica that fails at fence `fail_at` (counted by
/// this wrapper) and, when `sticky`, at every later one. With `streams`, `write_flush` is the
/// primary's streaming store followed by the replica's copy (which counts and may fail as a
/// flush), as `Pool` does on a streaming primary; without, the plain store + flush paths.
struct FailAt {
    rec: Recorder,
    streams: bool,
    fences: AtomicU64,
    fail_at: AtomicU64,
    sticky: AtomicBool,
    failed: AtomicU64,
    /// Flushes counted since creation, and the one that fails (`u64::MAX`: none).
    flushes: AtomicU64,
    flush_at: AtomicU64,
}

impl FailAt {
    fn new(rec: Recorder, streams: bool) -> FailAt {
        FailAt {
            rec,
            streams,
            fences: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            sticky: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_at: AtomicU64::new(u64::MAX),
        }
    }

    /// Fail the `k`-th fence from now (1 = the next one).
    fn arm(&self, k: u64, sticky: bool) {
        self.sticky.store(sticky, Ordering::SeqCst);
        self.failed.store(0, Ordering::SeqCst);
        self.fail_at
            .store(self.fences.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }

    /// Fail the `k`-th flush from now (1 = the next one), once.
    fn arm_flush(&self, k: u64) {
        self.failed.store(0, Ordering::SeqCst);
        self.flush_at
            .store(self.flushes.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }

    /// The replica's part of a flush: counted, and failing when armed.
    fn replica_flush(&self) -> Result<(), PersistError> {
        let n = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.flush_at.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(PersistError::Replica {
                replica: 1,
                message: format!("injected failure at flush {n}"),
            });
        }
        Ok(())
    }

    fn disarm(&self) {
        self.fail_at.store(u64::MAX, Ordering::SeqCst);
        self.flush_at.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Persister for FailAt {
    fn len(&self) -> usize {
        self.rec.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.rec.read(off, buf)
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.rec.write(off, data)
    }
    fn streams(&self) -> bool {
        self.streams
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        if !self.streams {
            self.write(off, data);
            return self.flush(off, data.len());
        }
        // The primary's streaming store first, as `Pool::write_flush`.
        self.rec.write_flush(off, data)?;
        self.replica_flush()
    }
    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        // The primary's flush first, as `Pool::flush`.
        self.rec.flush(off, len)?;
        self.replica_flush()
    }
    fn drain(&self) -> Result<(), PersistError> {
        // The primary's fence first, as `Pool::drain`.
        self.rec.drain()?;
        let n = self.fences.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at.load(Ordering::SeqCst);
        if n == at || (self.sticky.load(Ordering::SeqCst) && n > at) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(PersistError::Replica {
                replica: 1,
                message: format!("injected failure at fence {n}"),
            });
        }
        Ok(())
    }
}

/// The state a pool opened on `img` holds (recovery, then heap checker, then the model).
fn recovered_state(img: &[u8]) -> Result<Model, String> {
    let r = common::image_recorder(img);
    let pool = PoolTyped::<Root, Recorder>::open_in(r.clone(), Default::default())
        .map_err(|e| format!("open failed: {e}"))?;
    let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
    if !rep.is_ok() {
        return Err(format!("heap checker: {:?}", rep.problems));
    }
    observe(&pool)
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Returned without an injected failure taking effect (committed or aborted by itself).
    Clean,
    /// An error: the transaction must be absent.
    Absent,
    /// `CommittedReplicationFailed`: the transaction must be there.
    Committed,
}

/// Run `prog` on a pool opened from `base` with a replica failing at fence `k`; check every
/// outcome as the module documentation says. Returns the outcome and whether the failure was
/// reached at all.
fn check_one(
    base: &[u8],
    prog: &Prog,
    k: u64,
    sticky: bool,
    streams: bool,
    opts: &Enumerate,
) -> Result<(Outcome, bool, usize), String> {
    let before = recovered_state(base)?;
    let mut after = before.clone();
    after.apply(prog);
    let fa = Arc::new(FailAt::new(Recorder::from_image(base), streams));
    fa.rec.set_capture(false);
    let pool = PoolTyped::<Root, FailAt>::open_in(fa.clone(), Default::default())
        .map_err(|e| format!("open: {e}"))?;
    fa.rec.clear_history();
    fa.rec.set_capture(true);
    fa.arm(k, sticky);
    let r = run(&pool, prog);
    fa.disarm();
    fa.rec.set_capture(false);
    let reached = fa.failed.load(Ordering::SeqCst) > 0;
    let (outcome, expected) = match &r {
        Ok(_) if !reached => (Outcome::Clean, &after),
        // The program aborted itself and the failure hit its roll-back: `tx` returns the
        // program's error (the abort), and the transaction is absent as it would be anyway.
        Ok(false) => (Outcome::Absent, &before),
        Ok(true) => return Err(format!("fence {k}: committed, injected failure swallowed")),
        Err(Error::CommittedReplicationFailed(_)) => (Outcome::Committed, &after),
        Err(_) => (Outcome::Absent, &before),
    };
    let what = format!("fence {k} (sticky {sticky}, streams {streams}), tx returned {r:?}");
    // The live view of the still-open pool, when the primary was not left undecided.
    if !matches!(r, Err(Error::OutcomeUnknown(_))) {
        let live = observe(&pool).map_err(|e| format!("{what}: live view: {e}"))?;
        if &live != expected {
            return Err(format!("{what}: live view {live:?}, expected {expected:?}"));
        }
    }
    drop(pool);
    // Process ends without a crash: the live image is what the next open sees.
    let reopened = recovered_state(&fa.rec.live_image())
        .map_err(|e| format!("{what}: reopen of the live image: {e}"))?;
    if &reopened != expected {
        return Err(format!(
            "{what}: reopened (live image) {reopened:?}, expected {expected:?}"
        ));
    }
    // Power failure right after `tx` returned: the durable image.
    let durable = recovered_state(&fa.rec.crash_point_now().durable_image())
        .map_err(|e| format!("{what}: reopen of the durable image: {e}"))?;
    if &durable != expected {
        return Err(format!(
            "{what}: reopened (durable image) {durable:?}, expected {expected:?}"
        ));
    }
    // Any crash on the way: before or after, never a mixture.
    let images = fa
        .rec
        .check_crash_images(opts, |img| {
            let s = recovered_state(img)?;
            if s == before || s == after {
                Ok(())
            } else {
                Err(format!("neither before nor after: {s:?}"))
            }
        })
        .map_err(|f| format!("{what}: {f}"))?;
    Ok((outcome, reached, images))
}

/// A pool with a few objects and some root data, as an image.
fn base_image() -> Vec<u8> {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = PoolTyped::<Root, Recorder>::create_in(rec.clone(), &small(1)).unwrap();
    let setup = Prog {
        ops: vec![
            Op::Alloc { slot: 0, val: 10 },
            Op::Alloc { slot: 1, val: 11 },
            Op::Alloc { slot: 2, val: 12 },
            Op::WriteRoot {
                at: 0,
                len: DATA,
                byte: 0x5a,
            },
        ],
        abort: false,
    };
    assert!(run(&pool, &setup).unwrap());
    drop(pool);
    rec.live_image()
}

/// The programs: fixed ones for each commit path, then random ones.
fn programs(seed: u64, random: usize) -> Vec<Prog> {
    let mut v = vec![
        // Undo only: the idle store is the commit point.
        Prog {
            ops: vec![
                Op::WriteRoot {
                    at: 3,
                    len: 40,
                    byte: 1,
                },
                Op::WriteObj {
                    slot: 1,
                    idx: 2,
                    val: 99,
                },
            ],
            abort: false,
        },
        // Allocation and free with snapshots: a redo batch ends the undo log.
        Prog {
            ops: vec![
                Op::Alloc { slot: 0, val: 20 },
                Op::Free { slot: 2 },
                Op::WriteRoot {
                    at: 100,
                    len: 8,
                    byte: 2,
                },
            ],
            abort: false,
        },
        // An allocation into an empty slot only.
        Prog {
            ops: vec![Op::Alloc { slot: 5, val: 21 }],
            abort: false,
        },
    ];
    let mut rng = Rng(seed);
    v.extend((0..random).map(|_| gen_prog(&mut rng, 5)));
    v
}

fn every_fence(sticky: bool) {
    let seed = testkit::seed("TX_REPLICA_SEED");
    let base = base_image();
    let opts = Enumerate {
        exhaustive_max: 64,
        samples: 16,
        seed: None,
    };
    let mut seen = Vec::new();
    let mut images = 0;
    for streams in [false, true] {
        for (i, prog) in programs(seed, 6).iter().enumerate() {
            for k in 1.. {
                let (o, reached, n) = check_one(&base, prog, k, sticky, streams, &opts)
                    .unwrap_or_else(|e| panic!("TX_REPLICA_SEED={seed} program {i} {prog:?}: {e}"));
                images += n;
                if i < 3 {
                    seen.push(o);
                }
                if !reached {
                    break;
                }
            }
        }
    }
    eprintln!("sticky {sticky}: {images} crash images checked");
    // The fixed programs reach every kind of outcome.
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [Outcome::Clean, Outcome::Absent, Outcome::Committed],
        "outcomes of the fixed programs"
    );
}

#[test]
fn replica_failing_once_at_each_fence() {
    every_fence(false);
}

#[test]
fn replica_gone_from_each_fence_on() {
    every_fence(true);
}

/// A replica failing at one *flush* (not a fence) of an undo-only transaction, at each flush in
/// turn. Whatever the transaction returns, the lane's undo log must end idle: a later change
/// of the same bytes (here a direct durable write, as another lane's commit would make) must
/// survive a reopen — a log left active would roll it back to the old bytes it saved.
#[test]
fn replica_failing_at_each_flush_leaves_the_log_idle() {
    let base = base_image();
    let prog = Prog {
        ops: vec![Op::WriteRoot {
            at: 0,
            len: 8,
            byte: 1,
        }],
        abort: false,
    };
    for streams in [false, true] {
        for k in 1.. {
            let fa = Arc::new(FailAt::new(Recorder::from_image(&base), streams));
            fa.rec.set_capture(false);
            let pool =
                PoolTyped::<Root, FailAt>::open_in(fa.clone(), Default::default()).expect("open");
            fa.arm_flush(k);
            let r = run(&pool, &prog);
            fa.disarm();
            if fa.failed.load(Ordering::SeqCst) == 0 {
                assert!(k > 2, "the transaction flushed only {} times", k - 1);
                break;
            }
            // Another writer's durable change of the same bytes after the transaction ended.
            let at = pool.root().off() as usize + std::mem::offset_of!(Root, data);
            fa.write(at, &[0x77; 8]);
            fa.persist(at, 8).expect("persist");
            drop(pool);
            let got = recovered_state(&fa.rec.live_image()).unwrap_or_else(|e| {
                panic!("flush {k} (streams {streams}), tx returned {r:?}: reopen: {e}")
            });
            assert_eq!(
                got.data[..8],
                [0x77; 8],
                "flush {k} (streams {streams}), tx returned {r:?}: a later write was rolled back at reopen"
            );
        }
    }
}
