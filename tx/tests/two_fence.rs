//! Crash images of the two-fence commit (docs/FORMAT.md, "Commit protocol"): a committed log
//! stays active until retired, and recovery rolls it forward. These tests make such logs meet
//! the writers that must retire them first:
//! - transactions on different lanes writing overlapping bytes, in both lane orders (recovery
//!   visits lanes in index order, so a stale roll-forward of a higher lane would win);
//! - a committed object freed outside any transaction, its block allocated again and written
//!   without a snapshot (palloc's store guard);
//! - an allocation, and a free, outside any transaction whose destination word a committed log
//!   covers (the store guard, for a caller-named word);
//! - a damaged `retired` word (trusted only for a committed log not behind it);
//! - a `NO_SNAPSHOT` write over a committed log's bytes.
//!
//! Every crash image at every fence must recover to the state before or after the running
//! operation, and to the state after it once it returned. Replay: `TX_TWO_FENCE_SEED`.

mod common;
use common::small;
use pool::crash::{CrashMoment, Enumerate, Recorder};
use pool::Persister;
use std::sync::Arc;
use testkit::seed;
use tx::{ObjPool, SnapFlags, UndoRecovered};

const OBJ: u64 = 192;

fn opts() -> Enumerate {
    Enumerate {
        exhaustive_max: 256,
        samples: 48,
        seed: None,
    }
}

/// The pool recovered from a crash image.
fn reopen(img: &[u8]) -> Result<(Arc<Recorder>, ObjPool<Recorder>), String> {
    let r = common::image_recorder(img);
    let pool = ObjPool::open_in(r.clone(), Default::default()).map_err(|e| format!("open: {e}"))?;
    Ok((r, pool))
}

/// The bytes of `[off, off+len)` in the pool recovered from `img`, after the heap checker.
fn recovered(img: &[u8], off: u64, len: usize) -> Result<Vec<u8>, String> {
    let (r, pool) = reopen(img)?;
    let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
    if !rep.is_ok() {
        return Err(format!("heap checker: {:?}", rep.problems));
    }
    let mut b = vec![0u8; len];
    r.read(off as usize, &mut b);
    drop(pool);
    Ok(b)
}

/// Run `op` on a new thread (each thread starts at another home lane), capturing its history,
/// then check every crash image against `before`/`after` (the object's bytes).
fn explore(
    rec: &Recorder,
    obj: u64,
    before: &[u8],
    after: &[u8],
    what: &str,
    op: impl FnOnce() + Send,
) -> usize {
    rec.clear_history();
    rec.set_capture(true);
    std::thread::scope(|s| s.spawn(op).join().expect("operation panicked"));
    rec.set_capture(false);
    rec.check_crash_images_at(&opts(), |at, img| {
        let got = recovered(img, obj, before.len())?;
        match at {
            CrashMoment::Now if got != after => Err(format!("{what}: done but not there")),
            _ if got != before && got != after => Err(format!("{what}: neither before nor after")),
            _ => Ok(()),
        }
    })
    .unwrap_or_else(|f| panic!("{what}: {f}"))
}

#[test]
fn overlapping_commits_on_different_lanes_survive_every_crash() {
    let seed = seed("TX_TWO_FENCE_SEED");
    eprintln!("TX_TWO_FENCE_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(4)).unwrap();
    let obj = pool.heap().zalloc(OBJ, 5, None).unwrap();
    let mut model = vec![0u8; OBJ as usize];
    let (mut images, mut lanes) = (0, Vec::new());
    for i in 0..24 {
        // One or two overlapping-prone writes of up to 24 bytes in the first 64 (so the
        // commit record fits the slot and transactions keep overwriting each other's bytes).
        let writes: Vec<(u64, Vec<u8>)> = (0..1 + next(2))
            .map(|k| {
                let at = next(48);
                let len = 1 + next(24) as usize;
                (at, vec![(i * 4 + k) as u8 + 1; len])
            })
            .collect();
        let mut after = model.clone();
        for (at, d) in &writes {
            after[*at as usize..*at as usize + d.len()].copy_from_slice(d);
        }
        let lane = std::sync::Mutex::new(0);
        images += explore(&rec, obj, &model, &after, &format!("tx {i}"), || {
            pool.tx(|tx| {
                *lane.lock().unwrap() = tx.lane_index();
                for (at, d) in &writes {
                    tx.write_raw(obj, *at, d)?;
                }
                Ok::<_, tx::Error>(())
            })
            .unwrap()
        });
        lanes.push(lane.into_inner().unwrap());
        model = after;
    }
    eprintln!("{images} crash images, lanes in order {lanes:?}");
    assert!(
        lanes.windows(2).any(|w| w[0] < w[1]) && lanes.windows(2).any(|w| w[0] > w[1]),
        "a lower lane never followed a higher one, or the reverse: {lanes:?}"
    );
    drop(pool);
    // A clean close leaves nothing to roll forward.
    let pool = ObjPool::open_in(rec.clone(), Default::default()).unwrap();
    assert!(pool.recovered().iter().all(|r| *r == UndoRecovered::Idle));
}

#[test]
fn a_committed_object_freed_and_reused_is_not_rolled_forward_over() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(2)).unwrap();
    let mut images = 0;
    for round in 0..6u8 {
        let obj = pool.heap().zalloc(64, 5, None).unwrap();
        let old = vec![0u8; 64];
        let new = vec![0xA0 + round; 64];
        // All on this thread, so on one lane: the reusing transaction below writes no undo
        // entry, so nothing but the free retires the commit's log.
        rec.clear_history();
        rec.set_capture(true);
        pool.tx(|tx| tx.write_raw(obj, 0, &new)).unwrap();
        rec.set_capture(false);
        images += rec
            .check_crash_images_at(&opts(), |at, img| {
                let got = recovered(img, obj, 64)?;
                match at {
                    CrashMoment::Now if got != new => Err("commit: done but not there".into()),
                    _ if got != old && got != new => Err("commit: torn".into()),
                    _ => Ok(()),
                }
            })
            .unwrap_or_else(|f| panic!("round {round}: {f}"));
        // The committed log is pending: free the object outside any transaction, then take
        // its block again in a transaction that writes it without a snapshot (a fresh block).
        let reused = vec![0x11 + round; 64];
        rec.clear_history();
        rec.set_capture(true);
        pool.heap().free(obj, None).unwrap();
        let fresh = pool
            .tx(|tx| {
                let o = tx.alloc_raw(64, 6, false)?;
                tx.write_raw(o, 0, &reused)?;
                Ok::<_, tx::Error>(o)
            })
            .unwrap();
        rec.set_capture(false);
        assert_eq!(
            fresh, obj,
            "the freed block was reused (what this test is about)"
        );
        images += rec
            .check_crash_images_at(&opts(), |at, img| {
                let (r, p) = reopen(img)?;
                // Type 5: the committed object, not yet freed; 6: its block's new object.
                let ty = p.heap().object(obj).map(|o| o.type_num).ok();
                let mut b = vec![0u8; 64];
                r.read(obj as usize, &mut b);
                match (at, ty) {
                    (CrashMoment::Now, t) if t != Some(6) => Err("reallocation lost".into()),
                    (_, Some(5)) if b != new => Err("the committed object changed".into()),
                    (_, Some(6)) if b != reused => Err(format!(
                        "the reused object holds {:#x}.. instead of {:#x}",
                        b[0], reused[0]
                    )),
                    _ => Ok(()),
                }
            })
            .unwrap_or_else(|f| panic!("round {round}: {f}"));
        pool.heap().free(obj, None).unwrap();
    }
    eprintln!("{images} crash images");
}

/// Crash images of `op` (captured alone): `judge(moment, obj is live, word at holder)` for the
/// pool recovered from each.
fn judge_word_images(
    rec: &Recorder,
    holder: u64,
    obj: impl Fn() -> u64,
    op: impl FnOnce(),
    judge: impl Fn(CrashMoment, bool, u64) -> Result<(), String>,
) -> usize {
    rec.clear_history();
    rec.set_capture(true);
    op();
    rec.set_capture(false);
    let obj = obj();
    rec.check_crash_images_at(&opts(), |at, img| {
        let (r, p) = reopen(img)?;
        judge(
            at,
            p.heap().object(obj).is_ok(),
            r.read_u64(holder as usize),
        )
    })
    .unwrap_or_else(|f| panic!("{f}"))
}

#[test]
fn an_allocation_or_free_into_a_committed_word_is_not_rolled_forward_over() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(2)).unwrap();
    let holder = pool.heap().zalloc(64, 5, None).unwrap();
    let mut images = 0;
    for round in 0..6u64 {
        // A committed (and, on this thread's lane, pending) write of the holder's first word.
        let old = 0xC0 + round;
        pool.tx(|tx| tx.write_raw(holder, 0, &old.to_le_bytes()))
            .unwrap();
        // Outside any transaction: an allocation whose destination is that word.
        let fresh = std::sync::OnceLock::new();
        images += judge_word_images(
            &rec,
            holder,
            || *fresh.get().unwrap(),
            || {
                fresh
                    .set(pool.heap().alloc(64, 6, Some(holder)).unwrap())
                    .unwrap()
            },
            |at, live, word| match (at, live) {
                (CrashMoment::Now, false) => Err(format!("round {round}: allocation lost")),
                (_, true) if word != *fresh.get().unwrap() => Err(format!(
                    "round {round}: allocated but its destination holds {word:#x}"
                )),
                (_, false) if word != old => Err(format!(
                    "round {round}: no allocation but the destination holds {word:#x}"
                )),
                _ => Ok(()),
            },
        );
        let fresh = *fresh.get().unwrap();
        // And a free that clears the word: a committed (pending) write of the same value
        // first, so that a roll-forward would bring back a pointer to the freed object.
        pool.tx(|tx| tx.write_raw(holder, 0, &fresh.to_le_bytes()))
            .unwrap();
        images += judge_word_images(
            &rec,
            holder,
            || fresh,
            || pool.heap().free(fresh, Some(holder)).unwrap(),
            |at, live, word| match (at, live) {
                (CrashMoment::Now, true) => Err(format!("round {round}: free lost")),
                (_, false) if word != 0 => Err(format!(
                    "round {round}: freed but its destination still holds {word:#x}"
                )),
                (_, true) if word != fresh => {
                    Err(format!("round {round}: destination holds {word:#x}"))
                }
                _ => Ok(()),
            },
        );
    }
    eprintln!("{images} crash images");
}

#[test]
fn a_no_snapshot_write_over_a_committed_log_survives_every_crash() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(2)).unwrap();
    let obj = pool.heap().zalloc(64, 5, None).unwrap();
    let mut model = vec![0u8; 64];
    let mut images = 0;
    for round in 0..6u8 {
        let new = vec![0x30 + round; 64];
        images += explore(&rec, obj, &model, &new, "commit", || {
            pool.tx(|tx| tx.write_raw(obj, 0, &new)).unwrap()
        });
        model = new;
        // Another lane (a new thread), no snapshot of the same bytes: abort and recovery keep
        // whatever it wrote, but never the old commit's bytes rolled forward over it once done.
        let scratch = vec![0x90 + round; 64];
        let mut after = scratch.clone();
        after[32..].copy_from_slice(&model[32..]);
        rec.clear_history();
        rec.set_capture(true);
        std::thread::scope(|s| {
            s.spawn(|| {
                pool.tx(|tx| {
                    tx.snapshot_raw(obj, 0, 32, SnapFlags::NO_SNAPSHOT)?;
                    tx.write_raw(obj, 0, &scratch[..32])
                })
                .unwrap()
            })
            .join()
            .unwrap()
        });
        rec.set_capture(false);
        images += rec
            .check_crash_images_at(&opts(), |at, img| {
                let got = recovered(img, obj, 64)?;
                let mixed = (0..64).all(|i| got[i] == model[i] || got[i] == after[i]);
                match at {
                    CrashMoment::Now if got != after => Err(format!(
                        "no-snapshot write done but the object holds {:#x}..",
                        got[0]
                    )),
                    _ if !mixed => Err("bytes neither old nor written".into()),
                    _ => Ok(()),
                }
            })
            .unwrap_or_else(|f| panic!("round {round}: {f}"));
        model = after;
    }
    eprintln!("{images} crash images");
}

/// A `retired` word is trusted only for a committed log, and only when it is not ahead of the
/// log's generation: a damaged one never keeps an uncommitted transaction, and is reported
/// before recovery changes anything.
#[test]
fn a_damaged_retired_word_neither_keeps_a_transaction_nor_loses_its_roll_back() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(1)).unwrap();
    let obj = pool.heap().zalloc(64, 5, None).unwrap();
    let base = pool.heap().header().lane_extra_off(0);
    let area = small(1).heap.lane_extra_bytes as usize;
    let word = base + ((area - 8) & !7);
    // The image of a transaction in flight: entry durable, new bytes written, no commit record.
    let mut in_flight = Vec::new();
    let _ = pool.tx(|tx| {
        tx.write_raw(obj, 0, &[0xEE; 64])?;
        in_flight = rec.live_image();
        Err::<(), _>(tx::Error::NestedAborted)
    });
    drop(pool);
    let state = u64::from_le_bytes(in_flight[base..base + 8].try_into().unwrap());
    assert_eq!(state & 1, 1, "the image has the transaction in flight");
    let gen = state >> 1;
    for (retired, rolled_back) in [(0, true), (gen, true), (gen + 7, false)] {
        let mut img = in_flight.clone();
        img[word..word + 8].copy_from_slice(&retired.to_le_bytes());
        let r = common::image_recorder(&img);
        let opened = ObjPool::open_in(r.clone(), Default::default());
        let mut b = [0u8; 64];
        r.read(obj as usize, &mut b);
        if rolled_back {
            let p = opened.unwrap_or_else(|e| panic!("retired = {retired}: {e}"));
            assert!(
                matches!(p.recovered()[0], UndoRecovered::RolledBack { .. }),
                "retired = {retired}: {:?}",
                p.recovered()[0]
            );
            assert_eq!(
                b, [0u8; 64],
                "retired = {retired}: the transaction was kept"
            );
        } else {
            match opened {
                Err(tx::Error::Corrupt(m)) => assert!(m.contains("retired word"), "{m}"),
                Err(e) => panic!("wrong error: {e}"),
                Ok(_) => panic!("a retired word ahead of the log opened"),
            }
            assert_eq!(r.read_u64(base), state, "state untouched");
            assert_eq!(b, [0xEE; 64], "nothing rolled back or forward");
        }
    }
}
