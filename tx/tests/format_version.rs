//! Format versions of the object pool (docs/FORMAT.md, "Object-pool metadata"): a version-1
//! pool with every undo log idle opens and is upgraded to version 2 durably; one with a
//! transaction in flight is refused with an error naming the lanes (its v1 undo entries would
//! not check under v2's position-bound CRCs, so it could not be rolled back); an unknown magic
//! is refused; every crash image of the upgrade opens, with the data intact.

mod common;
use common::{region, small};
use palloc::Options;
use pool::crash::{Enumerate, Recorder};
use pool::Persister;
use std::sync::Arc;
use tx::{Error, ObjPool, OBJ_MAGIC, OBJ_MAGIC_V1};

/// A fresh object pool with one committed write, returned as its raw persister with the offsets
/// of the magic slot and of lane 1's undo `state` word.
fn v2_pool() -> (Arc<pool::region::MappedRegion>, usize, usize) {
    let p = region(4 << 20);
    let pool = ObjPool::create_in(p.clone(), &small(2)).unwrap();
    let obj = pool.heap().zalloc(64, 7, None).unwrap();
    pool.tx(|tx| tx.write_raw(obj, 0, &[5u8; 64])).unwrap();
    let magic = pool.heap().user_slot(0) as usize;
    let state = pool.heap().header().lane_extra_off(1);
    assert_eq!(p.read_u64(magic), OBJ_MAGIC);
    drop(pool);
    (p, magic, state)
}

#[test]
fn idle_v1_pool_opens_and_is_upgraded() {
    let (p, magic, _) = v2_pool();
    p.write_u64(magic, OBJ_MAGIC_V1);
    p.persist(magic, 8).unwrap();
    let pool = ObjPool::open_in(p.clone(), Options::default()).unwrap();
    assert_eq!(p.read_u64(magic), OBJ_MAGIC, "magic rewritten to version 2");
    let obj = pool
        .heap()
        .objects()
        .next()
        .expect("the object survives")
        .off;
    let mut buf = [0u8; 64];
    p.read(obj as usize, &mut buf);
    assert_eq!(buf, [5u8; 64]);
}

#[test]
fn v1_pool_with_a_transaction_in_flight_is_refused() {
    let (p, magic, state) = v2_pool();
    p.write_u64(magic, OBJ_MAGIC_V1);
    // Lane 1's log active (generation 9), as a crash mid-transaction leaves it.
    p.write_u64(state, 9 << 1 | 1);
    p.persist(magic, 8).unwrap();
    p.persist(state, 8).unwrap();
    match ObjPool::open_in(p.clone(), Options::default()) {
        Err(Error::NotObjPool(m)) => {
            assert!(m.contains("format 1") && m.contains("[1]"), "{m}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a v1 pool with an active undo log opened"),
    }
    assert_eq!(p.read_u64(magic), OBJ_MAGIC_V1, "nothing rewritten");
}

#[test]
fn unknown_magic_is_refused() {
    let (p, magic, _) = v2_pool();
    p.write_u64(magic, u64::from_le_bytes(*b"RSTXOBJ\x03"));
    p.persist(magic, 8).unwrap();
    match ObjPool::open_in(p, Options::default()) {
        Err(Error::NotObjPool(m)) => assert!(m.contains("v2"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("unknown magic opened"),
    }
}

#[test]
fn every_crash_image_of_the_upgrade_opens() {
    let rec = Arc::new(Recorder::new(1 << 20));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(2)).unwrap();
    let obj = pool.heap().zalloc(64, 7, None).unwrap();
    pool.tx(|tx| tx.write_raw(obj, 0, &[5u8; 64])).unwrap();
    let magic = pool.heap().user_slot(0) as usize;
    drop(pool);
    rec.write_u64(magic, OBJ_MAGIC_V1);
    rec.persist(magic, 8).unwrap();
    rec.clear_history();
    rec.set_capture(true);
    drop(ObjPool::open_in(rec.clone(), Options::default()).unwrap());
    rec.set_capture(false);
    let n = rec
        .check_crash_images(
            &Enumerate {
                exhaustive_max: 1 << 12,
                samples: 64,
                seed: None,
            },
            |img| {
                let r = Arc::new(Recorder::from_image(img));
                r.set_capture(false);
                let m = r.read_u64(magic);
                if m != OBJ_MAGIC && m != OBJ_MAGIC_V1 {
                    return Err(format!("magic {m:#x}"));
                }
                let pool = ObjPool::open_in(r.clone(), Options::default())
                    .map_err(|e| format!("open: {e}"))?;
                let mut buf = [0u8; 64];
                r.read(obj as usize, &mut buf);
                if buf != [5u8; 64] || r.read_u64(magic) != OBJ_MAGIC {
                    return Err("data lost or magic not upgraded after reopen".into());
                }
                drop(pool);
                Ok(())
            },
        )
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("{n} crash images of the upgrade");
    assert!(
        n > 1,
        "the upgrade wrote and fenced at least once: {n} images"
    );
}
