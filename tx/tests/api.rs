//! The typed API at its boundary: writes, reads, abort, nesting, hooks, foreign pointers,
//! type checks, reopen, persistent locks.

mod common;
use common::{assert_heap_ok, region, small};
use pool::Persister;
use std::sync::atomic::{AtomicUsize, Ordering};
use tx::{ptype, Error, ObjPool, PMutex, PPtr, PoolTyped, SnapFlags};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Root {
    head: PPtr<Node>,
    count: u64,
    lock: PMutex,
    big: [u8; 512],
}
ptype!(Root);

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Node {
    next: PPtr<Node>,
    value: u64,
    pad: u64,
}
ptype!(Node);

type Pool = PoolTyped<Root, pool::region::MappedRegion>;

fn fresh() -> Pool {
    PoolTyped::create_in(region(4 << 20), &small(2)).unwrap()
}

fn push(pool: &Pool, v: u64) -> Result<PPtr<Node>, Error> {
    let root = pool.root();
    pool.tx(|tx| {
        let head = tx.read(&root)?.head;
        let n = tx.alloc_value(Node {
            next: head,
            value: v,
            pad: 0,
        })?;
        tx.update(&root, |r| {
            r.head = n;
            r.count += 1;
        })?;
        Ok(n)
    })
}

/// Live objects other than undo overflow blocks (which stay attached to their lane).
fn user_objects(pool: &Pool) -> Vec<palloc::ObjectInfo> {
    pool.heap()
        .objects()
        .filter(|o| o.type_num != tx::undo::OVERFLOW_TYPE)
        .collect()
}

fn list(pool: &Pool) -> Vec<u64> {
    let mut out = vec![];
    let mut cur = pool.read(&pool.root()).unwrap().head;
    while !cur.is_null() {
        let n = pool.read(&cur).unwrap();
        out.push(n.value);
        cur = n.next;
    }
    out
}

#[test]
fn root_is_zeroed_and_commit_persists() {
    let pool = fresh();
    let r = pool.read(&pool.root()).unwrap();
    assert!(r.head.is_null() && r.count == 0 && r.big.iter().all(|&b| b == 0));
    for v in 0..10 {
        push(&pool, v).unwrap();
    }
    assert_eq!(list(&pool), (0..10).rev().collect::<Vec<_>>());
    assert_eq!(pool.read(&pool.root()).unwrap().count, 10);
    assert_heap_ok(&**pool.persister());
}

#[test]
fn error_aborts_everything_and_hooks_run() {
    let pool = fresh();
    push(&pool, 1).unwrap();
    let before = user_objects(&pool);
    let (commits, aborts) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let root = pool.root();
    let r: Result<(), Error> = pool.tx(|tx| {
        tx.on_commit(|| {
            commits.fetch_add(1, Ordering::SeqCst);
        });
        tx.on_abort(|| {
            aborts.fetch_add(1, Ordering::SeqCst);
        });
        let n = tx.alloc::<Node>()?;
        tx.update(&root, |r| {
            r.head = n;
            r.count = 99;
            r.big = [7; 512];
        })?;
        let old = tx.read(&root)?;
        assert_eq!(old.count, 99, "a transaction sees its own writes");
        Err(Error::Config("user abort".into()))
    });
    assert!(matches!(r, Err(Error::Config(m)) if m == "user abort"));
    assert_eq!(
        (
            commits.load(Ordering::SeqCst),
            aborts.load(Ordering::SeqCst)
        ),
        (0, 1)
    );
    assert_eq!(list(&pool), vec![1]);
    assert_eq!(pool.read(&root).unwrap().big, [0; 512]);
    assert_eq!(user_objects(&pool), before, "the allocation was released");
    let ok: Result<(), Error> = pool.tx(|tx| {
        tx.on_commit(|| {
            commits.fetch_add(1, Ordering::SeqCst);
        });
        Ok(())
    });
    ok.unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 1);
}

#[test]
fn inner_abort_aborts_all_even_if_swallowed() {
    let pool = fresh();
    let root = pool.root();
    let r: Result<(), Error> = pool.tx(|tx| {
        tx.set_field(&root, |r| &r.count, 5u64)?;
        let inner: Result<(), Error> = tx.nested(|tx| {
            tx.set_field(&root, |r| &r.count, 6u64)?;
            Err(Error::Config("inner".into()))
        });
        assert!(inner.is_err());
        // Later operations fail, and swallowing the error does not commit.
        assert!(matches!(tx.read(&root), Err(Error::NestedAborted)));
        Ok(())
    });
    assert!(matches!(r, Err(Error::NestedAborted)), "{r:?}");
    assert_eq!(pool.read(&root).unwrap().count, 0);
    // Nested success is part of the outer commit.
    pool.tx(|tx| {
        tx.nested(|tx| tx.set_field(&root, |r| &r.count, 7u64))?;
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(pool.read(&root).unwrap().count, 7);
}

#[test]
fn panic_in_tx_rolls_back() {
    let pool = fresh();
    let root = pool.root();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error> = pool.tx(|tx| {
            tx.set_field(&root, |r| &r.count, 42u64)?;
            panic!("boom");
        });
    }));
    assert!(res.is_err());
    assert_eq!(pool.read(&root).unwrap().count, 0);
    push(&pool, 3).unwrap();
    assert_eq!(list(&pool), vec![3]);
}

#[test]
fn frees_are_deferred_and_big_snapshots_overflow() {
    let pool = fresh();
    let a = push(&pool, 1).unwrap();
    push(&pool, 2).unwrap();
    let root = pool.root();
    // A transaction saving far more than the 256-byte lane area (needs overflow blocks).
    pool.tx(|tx| {
        for i in 0..40u8 {
            tx.update(&root, |r| r.big = [i; 512])?;
            let n = tx.alloc::<[u8; 4096]>()?;
            tx.write(&n, [i; 4096])?;
            tx.free(n)?;
        }
        let r = tx.read(&root)?;
        let head = tx.read(&r.head)?;
        tx.free(r.head)?;
        // Neither readable nor writable after the free in this transaction.
        assert!(matches!(tx.read(&r.head), Err(Error::FreedInTx { .. })));
        assert!(matches!(
            tx.write(&r.head, head),
            Err(Error::FreedInTx { .. })
        ));
        tx.set_field(&root, |r| &r.head, head.next)?;
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(list(&pool), vec![1]);
    assert_eq!(pool.read(&root).unwrap().big, [39; 512]);
    // An aborted big transaction restores every byte.
    let r: Result<(), Error> = pool.tx(|tx| {
        for i in 0..200u64 {
            tx.update(&root, |r| {
                r.big[(i as usize * 7) % 512] ^= 0xff;
                r.count += 1;
            })?;
            let n = tx.alloc::<Node>()?;
            tx.set_field(&a, |x| &x.pad, i)?;
            tx.free(n)?;
        }
        Err(Error::Config("no".into()))
    });
    assert!(r.is_err());
    assert_eq!(pool.read(&root).unwrap().big, [39; 512]);
    assert_eq!(pool.read(&a).unwrap().pad, 0);
    assert_heap_ok(&**pool.persister());
}

#[test]
fn reopen_keeps_data_and_rejects_wrong_root() {
    let reg = region(4 << 20);
    {
        let pool: Pool = PoolTyped::create_in(reg.clone(), &small(2)).unwrap();
        push(&pool, 5).unwrap();
    }
    let pool: Pool = PoolTyped::open_in(reg.clone(), Default::default()).unwrap();
    assert_eq!(list(&pool), vec![5]);
    drop(pool);
    let wrong = PoolTyped::<Node, _>::open_in(reg, Default::default());
    assert!(
        matches!(wrong, Err(Error::RootType { .. })),
        "{:?}",
        wrong.err()
    );
}

#[test]
fn foreign_null_and_mistyped_pointers_are_refused() {
    let (p1, p2) = (fresh(), fresh());
    assert_ne!(p1.id(), p2.id());
    let n = push(&p1, 1).unwrap();
    assert!(matches!(p2.read(&n), Err(Error::ForeignPointer { .. })));
    let r: Result<(), Error> = p2.tx(|tx| {
        tx.write(
            &n,
            Node {
                next: PPtr::null(),
                value: 0,
                pad: 0,
            },
        )
    });
    assert!(matches!(r, Err(Error::ForeignPointer { .. })));
    assert!(matches!(p1.read(&PPtr::<Node>::null()), Err(Error::Null)));
    let as_u64: PPtr<u64> = p1
        .ptr_at::<Node>(n.off())
        .map(|_| unreachable_cast(n.off(), p1.id()))
        .unwrap();
    assert!(matches!(p1.read(&as_u64), Err(Error::TypeMismatch { .. })));
}

/// Build a mistyped pointer the only way safe code can: through its bytes.
fn unreachable_cast(off: u64, id: u64) -> PPtr<u64> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&off.to_le_bytes());
    b[8..].copy_from_slice(&id.to_le_bytes());
    PPtr::read_from_bytes(&b).unwrap()
}

#[test]
fn nested_tx_via_pool_is_refused_not_deadlocked() {
    let pool = fresh();
    let r: Result<(), Error> = pool.tx(|_| pool.tx(|_| Ok::<_, Error>(())));
    assert!(matches!(r, Err(Error::AlreadyInTx)));
}

#[test]
fn no_flush_and_no_snapshot_flags() {
    let pool = fresh();
    let root = pool.root();
    let r: Result<(), Error> = pool.tx(|tx| {
        tx.snapshot(&root, SnapFlags::NO_SNAPSHOT)?;
        tx.set_field(&root, |r| &r.count, 9u64)?;
        Err(Error::Config("abort".into()))
    });
    assert!(r.is_err());
    assert_eq!(
        pool.read(&root).unwrap().count,
        9,
        "NO_SNAPSHOT ranges are not restored"
    );
    pool.tx(|tx| {
        let mut v = tx.read(&root)?;
        v.count = 10;
        tx.write_with(&root, v, SnapFlags::NO_FLUSH)
    })
    .unwrap();
    assert_eq!(pool.read(&root).unwrap().count, 10);
}

#[test]
fn locks_exclude_and_reset_on_reopen() {
    let reg = region(4 << 20);
    let pool: Pool = PoolTyped::create_in(reg.clone(), &small(4)).unwrap();
    let root = pool.root();
    let g = pool.lock(&root, |r| &r.lock).unwrap();
    assert!(pool.try_lock(&root, |r| &r.lock).unwrap().is_none());
    drop(g);
    assert!(pool.try_lock(&root, |r| &r.lock).unwrap().is_some());
    // Many threads increment under the lock, each in its own transaction.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let _g = pool.lock(&root, |r| &r.lock).unwrap();
                    pool.tx(|tx| tx.update(&root, |r| r.count += 1)).unwrap();
                }
            });
        }
    });
    assert_eq!(pool.read(&root).unwrap().count, 200);
    // Left locked "at the crash": the next open sees it unlocked.
    std::mem::forget(pool.lock(&root, |r| &r.lock).unwrap());
    let raw = pool.persister().read_u64(root.off() as usize + 24);
    assert_ne!(raw & 0xffff_ffff, 0, "the lock word says locked");
    drop(pool);
    let pool: Pool = PoolTyped::open_in(reg, Default::default()).unwrap();
    assert!(pool.try_lock(&root, |r| &r.lock).unwrap().is_some());
}

#[test]
fn untyped_pool_has_no_root_until_typed() {
    let reg = region(4 << 20);
    let p = ObjPool::create_in(reg.clone(), &small(1)).unwrap();
    assert_eq!(p.root_off(), 0);
    let typed = PoolTyped::<Root, _>::with_root(p).unwrap();
    assert_ne!(typed.root_off(), 0);
}

#[test]
fn transactions_on_different_lanes_run_in_parallel() {
    let pool: Pool = PoolTyped::create_in(region(8 << 20), &small(4)).unwrap();
    // Each thread owns one node and a chain of allocations hanging off it; no locks needed
    // because no two threads touch the same object.
    let heads: Vec<PPtr<Node>> = (0..4).map(|i| push(&pool, i).unwrap()).collect();
    let lanes = std::sync::Mutex::new(std::collections::BTreeSet::new());
    std::thread::scope(|s| {
        for h in &heads {
            let (pool, lanes) = (&pool, &lanes);
            s.spawn(move || {
                for k in 1..=100u64 {
                    let r: Result<(), Error> = pool.tx(|tx| {
                        lanes.lock().unwrap().insert(tx.lane_index());
                        let n = tx.alloc::<Node>()?;
                        tx.set_field(&n, |n| &n.value, k)?;
                        tx.update(h, |x| x.pad += 1)?;
                        tx.free(n)?;
                        if k % 10 == 0 {
                            return Err(Error::Config("every tenth aborts".into()));
                        }
                        Ok(())
                    });
                    assert_eq!(r.is_err(), k % 10 == 0);
                }
            });
        }
    });
    for h in &heads {
        assert_eq!(pool.read(h).unwrap().pad, 90);
    }
    assert!(
        lanes.lock().unwrap().len() > 1,
        "threads used different lanes"
    );
    assert_eq!(
        user_objects(&pool).len(),
        5,
        "root + 4 nodes, nothing leaked"
    );
    assert_heap_ok(&**pool.persister());
}

#[test]
fn a_pool_with_a_local_replica_replicates_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("p.set");
    std::fs::write(
        &set,
        format!(
            "PMEMPOOLSET\n8M {}\nREPLICA\n8M {}\n",
            dir.path().join("a").display(),
            dir.path().join("r").display()
        ),
    )
    .unwrap();
    {
        let pool: PoolTyped<Root> = PoolTyped::create_poolset(&set).unwrap();
        let root = pool.root();
        for v in 0..20u64 {
            pool.tx(|tx| {
                let n = tx.alloc_value(Node {
                    next: tx.read(&root)?.head,
                    value: v,
                    pad: 0,
                })?;
                tx.update(&root, |r| {
                    r.head = n;
                    r.count += 1;
                })
            })
            .unwrap();
        }
        let _: Result<(), Error> = pool.tx(|tx| {
            tx.update(&root, |r| r.big = [1; 512])?;
            Err(Error::Config("abort".into()))
        });
        // Every byte a transaction made durable on the primary reached the replica (a flush
        // covers whole cache lines, and so does the fan-out).
        let diffs = pool.persister().verify_replicas().unwrap();
        assert!(
            diffs.is_empty(),
            "replica differs: {diffs:?} (root {:#x})",
            root.off()
        );
    }
    let pool: PoolTyped<Root> = PoolTyped::open_poolset(&set).unwrap();
    assert_eq!(pool.read(&pool.root()).unwrap().count, 20);
}

#[test]
fn header_whose_lanes_leave_no_zone_is_refused_at_open() {
    // A corrupt header (checksum right) whose lanes' redo and undo areas reach past the end:
    // open must fail naming the field, not index past the mapping.
    let reg = region(8 << 20);
    drop(Pool::create_in(reg.clone(), &small(2)).unwrap());
    let mut raw = [0u8; palloc::layout::HEAP_HEADER_BYTES];
    reg.read(0, &mut raw);
    let mut h = palloc::layout::HeapHeader::decode(&raw, 8 << 20).unwrap();
    h.lane_count = 1024;
    h.lane_redo_bytes = 4096;
    h.lane_extra_bytes = 4096;
    reg.write(0, &h.encode());
    // Lanes of zeros (empty logs), so that nothing but the layout is wrong.
    let area = palloc::layout::HEAP_HEADER_AREA;
    reg.fill(area, 0, reg.len() - area);
    match Pool::open_in(reg, Default::default()) {
        Err(e) => assert!(e.to_string().contains("heap_size"), "{e}"),
        Ok(_) => panic!("opened a heap whose lanes leave no room for a zone"),
    }
}

/// A type claiming the undo overflow blocks' type number (a hand-written `PType`).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Impostor {
    words: [u64; 4],
}
impl tx::PType for Impostor {
    const TYPE_NUM: u64 = tx::undo::OVERFLOW_TYPE;
}

#[test]
fn undo_overflow_blocks_are_out_of_users_reach() {
    let pool = fresh();
    let root = pool.root();
    // More than the 256-byte lane area: the lane's log links an overflow block.
    pool.tx(|tx| tx.update(&root, |r| r.big = [1; 512]))
        .unwrap();
    let heap = pool.heap();
    let block = (0..heap.header().lane_count as usize)
        .map(|i| {
            pool.persister()
                .read_u64(heap.header().lane_extra_off(i) + 8)
        })
        .find(|&o| o != 0)
        .expect("an overflow block linked from a lane");
    // Not listed, not an object, not freeable or writable, through the heap or a transaction.
    assert!(heap.objects().all(|o| o.off != block));
    assert!(heap.object(block).is_err());
    assert!(heap.free(block, None).is_err());
    let r = pool.tx(|tx| tx.free_raw(block));
    assert!(r.is_err(), "free_raw of an overflow block");
    let r = pool.tx(|tx| tx.write_raw(block, 0, &[0; 8]));
    assert!(r.is_err(), "write_raw into an overflow block");
    let r = pool.tx(|tx| tx.snapshot_raw(block, 0, 8, SnapFlags::NONE));
    assert!(r.is_err(), "snapshot_raw of an overflow block");
    // A type declaring the reserved number is refused outright.
    let imp = pool.ptr_at::<Impostor>(block);
    assert!(
        matches!(
            imp.as_ref().map(|p| pool.read(p)),
            Ok(Err(Error::Config(_))) | Err(_)
        ),
        "{imp:?}"
    );
    let r = pool.tx(|tx| tx.alloc::<Impostor>().map(|_| ()));
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    // "Free every object" leaves the lane's log whole: later transactions still overflow.
    let all: Vec<u64> = heap
        .objects()
        .map(|o| o.off)
        .filter(|&o| o != root.off())
        .collect();
    for off in all {
        heap.free(off, None).unwrap();
    }
    pool.tx(|tx| tx.update(&root, |r| r.big = [2; 512]))
        .unwrap();
    assert_eq!(pool.read(&root).unwrap().big, [2; 512]);
    assert_heap_ok(&**pool.persister());
}

#[test]
fn abort_never_rolls_back_a_lock_word() {
    let pool = fresh();
    let root = pool.root();
    // Locked before the transaction, released inside it, then the transaction aborts: the
    // roll-back must not restore "locked".
    let g = pool.lock(&root, |r| &r.lock).unwrap();
    let r = pool.tx(|tx| {
        // The whole root saved, its lock word included.
        tx.snapshot(&root, SnapFlags::NONE)?;
        tx.update(&root, |r| r.count = 9)?;
        drop(g);
        Err::<(), _>(Error::Config("abort".into()))
    });
    assert!(r.is_err());
    assert_eq!(pool.read(&root).unwrap().count, 0);
    let again = pool.try_lock(&root, |r| &r.lock).unwrap();
    assert!(again.is_some(), "released mutex still held after the abort");
    drop(again);
    // Unlocked when saved, locked inside the transaction and still held after the abort: the
    // roll-back must not restore "unlocked" (a second holder could then enter).
    let mut held = None;
    let r = pool.tx(|tx| {
        tx.snapshot(&root, SnapFlags::NONE)?;
        tx.update(&root, |r| r.count = 10)?;
        held = Some(tx.pool().lock(&root, |r| &r.lock)?);
        Err::<(), _>(Error::Config("abort".into()))
    });
    assert!(r.is_err());
    assert!(held.is_some());
    assert!(
        pool.try_lock(&root, |r| &r.lock).unwrap().is_none(),
        "held mutex taken a second time after the abort"
    );
    drop(held);
    assert!(pool.try_lock(&root, |r| &r.lock).unwrap().is_some());
}
