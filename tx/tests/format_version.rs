//! Format versions of the object pool (docs/FORMAT.md, "Object-pool metadata"): a version-1
//! pool with every undo log idle opens and is upgraded to version 3 durably; one with a
//! transaction in flight is refused with an error naming the lanes (its v1 undo entries would
//! not check under position-bound CRCs, so it could not be rolled back); a version-2 pool with
//! a transaction in flight is rolled back under version 2's layout, then upgraded (its
//! `retired` words zeroed); an unknown magic is refused; every crash image of both upgrades
//! opens, with the data intact.

mod common;
use common::{region, small};
use palloc::Options;
use pool::crash::{Enumerate, Recorder};
use pool::Persister;
use std::sync::Arc;
use tx::{Error, ObjPool, UndoRecovered, OBJ_MAGIC, OBJ_MAGIC_V1, OBJ_MAGIC_V2};

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
    assert_eq!(p.read_u64(magic), OBJ_MAGIC, "magic rewritten to version 3");
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
    p.write_u64(magic, u64::from_le_bytes(*b"RSTXOBJ\x04"));
    p.persist(magic, 8).unwrap();
    match ObjPool::open_in(p, Options::default()) {
        Err(Error::NotObjPool(m)) => assert!(m.contains("v3"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("unknown magic opened"),
    }
}

/// The offset (in the lane area) of the `retired` word of format 3 (docs/FORMAT.md).
fn retired_word(area: usize) -> usize {
    (area - 8) & !7
}

#[test]
fn v2_pool_with_a_transaction_in_flight_is_rolled_back_then_upgraded() {
    let (p, magic, state) = v2_pool();
    let area = small(2).heap.lane_extra_bytes as usize;
    let obj = ObjPool::open_in(p.clone(), Options::default())
        .unwrap()
        .heap()
        .objects()
        .next()
        .unwrap()
        .off;
    // A version-2 log on lane 1, generation 9 (odd): its first entry at the area's byte 16,
    // where version 2 put every generation's (version 3 puts odd ones in the second slot).
    let base = state;
    let (gen, pos, old) = (9u64, base + 16, [0x77u8; 8]);
    let mut h = crc32fast::Hasher::new();
    for w in [base as u64, gen, pos as u64, 0, obj] {
        h.update(&w.to_le_bytes());
    }
    h.update(&8u32.to_le_bytes());
    h.update(&old);
    p.write_u64(pos, obj);
    p.write_u64(pos + 8, 8 | (h.finalize() as u64) << 32);
    p.write(pos + 16, &old);
    p.write_u64(state, gen << 1 | 1);
    // Bytes of old entries where version 3 keeps the `retired` word.
    p.write_u64(base + retired_word(area), u64::MAX);
    p.write_u64(magic, OBJ_MAGIC_V2);
    p.persist(0, p.len()).unwrap();
    let pool = ObjPool::open_in(p.clone(), Options::default()).unwrap();
    assert_eq!(
        pool.recovered()[1],
        UndoRecovered::RolledBack {
            entries: 1,
            bytes: 8
        }
    );
    let mut buf = [0u8; 8];
    p.read(obj as usize, &mut buf);
    assert_eq!(buf, old, "the v2 entry was rolled back");
    assert_eq!(p.read_u64(magic), OBJ_MAGIC, "upgraded to version 3");
    assert_eq!(
        p.read_u64(base + retired_word(area)),
        0,
        "retired word zeroed"
    );
    // And the pool works under version 3.
    pool.tx(|tx| tx.write_raw(obj, 0, &[9u8; 8])).unwrap();
    drop(pool);
    let pool = ObjPool::open_in(p.clone(), Options::default()).unwrap();
    p.read(obj as usize, &mut buf);
    assert_eq!(buf, [9u8; 8]);
    drop(pool);
}

/// Every crash image of opening a pool made older by `age` (a committed 64-byte object,
/// `[5; 64]`, given to `age` with the magic slot's offset) opens, with the data intact and the
/// magic at version 3 after the reopen; `check_image` vets each image before it is opened.
fn every_crash_image_of_an_upgrade_opens(
    what: &str,
    age: impl FnOnce(&Recorder, &ObjPool<Recorder>, usize),
    check_image: impl Fn(&Recorder, u64) -> Result<(), String>,
) {
    let rec = Arc::new(Recorder::new(1 << 20));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(2)).unwrap();
    let obj = pool.heap().zalloc(64, 7, None).unwrap();
    pool.tx(|tx| tx.write_raw(obj, 0, &[5u8; 64])).unwrap();
    let magic = pool.heap().user_slot(0) as usize;
    age(&rec, &pool, magic);
    drop(pool);
    rec.persist(0, rec.len()).unwrap();
    rec.clear_history();
    rec.set_capture(true);
    drop(ObjPool::open_in(rec.clone(), Options::default()).unwrap());
    rec.set_capture(false);
    let n = rec
        .check_crash_images(
            &Enumerate {
                samples: 64,
                ..Enumerate::default()
            },
            |img| {
                let r = common::image_recorder(img);
                check_image(&r, r.read_u64(magic))?;
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
        .unwrap_or_else(|f| panic!("{what}: {f}"));
    eprintln!("{n} crash images of the {what}");
    assert!(
        n > 1,
        "the {what} wrote and fenced at least once: {n} images"
    );
}

#[test]
fn every_crash_image_of_the_v2_upgrade_opens() {
    let area = small(2).heap.lane_extra_bytes as usize;
    let words = std::sync::OnceLock::<Vec<usize>>::new();
    every_crash_image_of_an_upgrade_opens(
        "v2 upgrade",
        |rec, pool, magic| {
            // The pool's drop, after this, stores only idle `state` words.
            let w: Vec<usize> = (0..2)
                .map(|i| pool.heap().header().lane_extra_off(i) + retired_word(area))
                .collect();
            rec.write_u64(magic, OBJ_MAGIC_V2);
            for &x in &w {
                rec.write_u64(x, u64::MAX);
            }
            words.set(w).unwrap();
        },
        |r, m| {
            if m != OBJ_MAGIC && m != OBJ_MAGIC_V2 {
                return Err(format!("magic {m:#x}"));
            }
            if m == OBJ_MAGIC && words.get().unwrap().iter().any(|&w| r.read_u64(w) != 0) {
                return Err("version 3 before every retired word was zeroed".into());
            }
            Ok(())
        },
    );
}

#[test]
fn every_crash_image_of_the_upgrade_opens() {
    every_crash_image_of_an_upgrade_opens(
        "v1 upgrade",
        |rec, _, magic| rec.write_u64(magic, OBJ_MAGIC_V1),
        |_, m| match m {
            OBJ_MAGIC | OBJ_MAGIC_V1 | OBJ_MAGIC_V2 => Ok(()),
            _ => Err(format!("magic {m:#x}")),
        },
    );
}
