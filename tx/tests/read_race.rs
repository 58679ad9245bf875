//! Unlocked reads of an object (`ObjPool::read`, `PoolTyped` through `Deref`) while another
//! thread's transactions write the same object. Isolation is "none beyond locks" (as
//! libpmemobj), so a reader may see a mix of old and new words of the object — but, in Rust,
//! never a data race: the region reads and writes the mapping as atomic 8-byte words. Each
//! word a reader sees must be whole, as one transaction (or its roll-back) left it:
//! - `whole` is written whole by `tx.write` with every byte equal to the round's value;
//! - `inner` is changed by `tx.update` on bytes 3..61 only (an unaligned range, so its first and
//!   last words are merged into their untouched neighbours), every byte of the range equal.

mod common;
use common::{assert_heap_ok, region, small};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tx::{ptype, Error, PoolTyped};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Root {
    whole: [u64; 8],
    inner: [u8; 64],
}
ptype!(Root);

type Pool = PoolTyped<Root, pool::region::MappedRegion>;

/// Panics unless `r` is made of whole words as the writer stores them.
fn check(r: &Root) {
    for (i, w) in r.whole.iter().enumerate() {
        let b = w.to_ne_bytes();
        assert!(b.iter().all(|&x| x == b[0]), "whole[{i}] torn: {w:#018x}");
    }
    let b = &r.inner;
    assert_eq!(
        (&b[..3], &b[61..]),
        (&[0u8; 3][..], &[0u8; 3][..]),
        "bytes outside 3..61"
    );
    for w in 0..8 {
        let lo = (8 * w).max(3);
        let hi = (8 * w + 8).min(61);
        let part = &b[lo..hi];
        assert!(
            part.iter().all(|&x| x == part[0]),
            "inner word {w} torn: {:?}",
            &b[8 * w..8 * w + 8]
        );
    }
}

#[test]
fn reads_racing_transactions_see_whole_words() {
    let pool: Pool = PoolTyped::create_in(region(4 << 20), &small(2)).unwrap();
    let root = pool.root();
    let rounds = 2000u32;
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (pool, stop, reads) = (&pool, &stop, &reads);
            s.spawn(move || {
                let mut n = 0u64;
                let mut changes = 0u64;
                let mut last = [0u8; 1];
                // Bounded; the writer sets `stop` on every exit path.
                for _ in 0..10_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = pool.read(&root).unwrap();
                    check(&r);
                    // Also through a closure over the copy (the same read path).
                    pool.with(&root, check).unwrap();
                    if r.inner[3] != last[0] {
                        changes += 1;
                        last[0] = r.inner[3];
                    }
                    n += 1;
                }
                eprintln!("reader: {n} reads, saw the object change {changes} times");
                reads.fetch_add(n, Ordering::Relaxed);
            });
        }
        let (pool, stop) = (&pool, &stop);
        s.spawn(move || {
            let _stop = testkit::StopOnDrop(stop);
            for round in 1..=rounds {
                let v = (round % 251) as u8 + 1;
                let abort = round % 7 == 0;
                let r: Result<(), Error> = pool.tx(|tx| {
                    let mut cur = tx.read(&root)?;
                    cur.whole = [u64::from_ne_bytes([v; 8]); 8];
                    tx.write(&root, cur)?;
                    tx.update(&root, |r| r.inner[3..61].fill(v))?;
                    if abort {
                        // Rolled back: readers may have seen the new words; they then see the
                        // old ones again, each whole.
                        return Err(Error::Config("abort on purpose".into()));
                    }
                    Ok(())
                });
                assert_eq!(r.is_err(), abort, "round {round}: {r:?}");
            }
        });
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    check(&pool.read(&root).unwrap());
    assert_heap_ok(&**pool.persister());
}
