//! An undo entry is valid only where, and as the n-th entry, its own transaction wrote it.
//!
//! - A copy of a genuine entry of the same generation (another lane's, as a block reused from
//!   that lane would hold) found right after a lane's last entry must not be rolled back.
//! - A crash in a transaction's first fence can leave its first entry durable while `state`
//!   still names the previous generation; the next run must not reuse that generation, or a
//!   later crash of its first transaction (`state` active, its own first entry not yet
//!   durable) rolls the stale entry back over bytes another lane committed meanwhile.
//!
//! - An entry built by hand from the byte map in `docs/FORMAT.md` is rolled back (the document
//!   and the code agree), and is not when placed with another index.
//!
//! All use `pool::crash::Recorder` images.

mod common;
use common::prog::Root;
use common::small;
use palloc::Lane;
use pool::crash::{Enumerate, Recorder};
use std::sync::Arc;
use tx::{Error, PoolTyped, UndoRecovered};

type Pool = PoolTyped<Root, Recorder>;

/// Run `f` as a transaction on lane `lane` of a two-lane pool (the calling thread holds the
/// other lane meanwhile, so the transaction takes `lane`).
fn tx_on<R>(
    pool: &Pool,
    lane: usize,
    f: impl FnOnce(&mut tx::Tx<'_, Recorder>) -> Result<R, Error>,
) -> Result<R, Error> {
    let first = pool.heap().lane().unwrap();
    let _other: Lane<'_, Recorder> = if first.index() == lane {
        let o = pool.heap().lane().unwrap();
        drop(first);
        o
    } else {
        first
    };
    pool.tx(|tx| {
        assert_eq!(
            tx.lane_index(),
            lane,
            "the transaction took the wanted lane"
        );
        f(tx)
    })
}

fn root_data(pool: &Pool) -> Vec<u8> {
    pool.read(&pool.root()).unwrap().data.to_vec()
}

fn open(img: &[u8]) -> Result<(Arc<Recorder>, Pool), String> {
    let r = common::image_recorder(img);
    let pool = Pool::open_in(r.clone(), Default::default()).map_err(|e| format!("open: {e}"))?;
    let rep = palloc::check(&*r).map_err(|e| e.to_string())?;
    if !rep.is_ok() {
        return Err(format!("heap checker: {:?}", rep.problems));
    }
    Ok((r, pool))
}

#[test]
fn a_copy_of_another_lanes_entry_after_the_last_entry_is_not_rolled_back() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = Pool::create_in(rec.clone(), &small(2)).unwrap();
    let root = pool.root();
    let (h, o) = (0usize, 1usize);
    let base = |i| pool.heap().header().lane_extra_off(i);
    // Lane `o`, generation 1: saves data[64..72] (zeros) and commits 0xAB there.
    tx_on(&pool, o, |tx| {
        tx.update(&root, |r| r.data[64..72].fill(0xAB))
    })
    .unwrap();
    // Lane `h`, also generation 1: one entry for data[0..8]; the image is taken mid-way.
    let mut img = None;
    let _ = tx_on(&pool, h, |tx| {
        tx.update(&root, |r| r.data[0..8].fill(0xCD))?;
        img = Some(rec.live_image());
        Err::<(), _>(Error::Config("abort: image taken".into()))
    });
    let mut img = img.expect("the transaction ran");
    // Lane `h`'s next slot holds a byte-for-byte copy of lane `o`'s (generation 1) entry.
    let entry = 16 + 8; // header + 8 bytes of data
    let (from, to) = (base(o) + 16, base(h) + 16 + entry);
    let copy = img[from..from + entry].to_vec();
    img[to..to + entry].copy_from_slice(&copy);
    let (_, p2) = open(&img).unwrap();
    assert_eq!(
        p2.recovered()[h],
        UndoRecovered::RolledBack {
            entries: 1,
            bytes: 8
        },
        "only lane {h}'s own entry is rolled back"
    );
    let d = root_data(&p2);
    assert_eq!(d[0..8], [0u8; 8], "lane {h}'s change rolled back");
    assert_eq!(d[64..72], [0xAB; 8], "lane {o}'s commit must survive");
}

#[test]
fn a_generation_whose_first_entry_survived_a_crash_is_not_used_again() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = Pool::create_in(rec.clone(), &small(2)).unwrap();
    let root = pool.root();
    let (h, o) = (0usize, 1usize);
    let base_h = pool.heap().header().lane_extra_off(h);
    // Run 1: lane `h`'s first transaction (generation 1) saves data[0..8] (zeros); a crash at
    // its first fence that kept the entry but not the active `state`.
    rec.clear_history();
    rec.set_capture(true);
    tx_on(&pool, h, |tx| tx.update(&root, |r| r.data[0..8].fill(0x11))).unwrap();
    rec.set_capture(false);
    let live = rec.live_image();
    let first = &rec.crash_points()[0];
    let opts = Enumerate {
        exhaustive_max: 1 << 12,
        samples: 0,
        seed: None,
    };
    let word = |img: &[u8], off: usize| u64::from_le_bytes(img[off..off + 8].try_into().unwrap());
    let img = first
        .images(&opts)
        .find(|img| {
            word(img, base_h) == 0
                && img[base_h + 16..base_h + 40] == live[base_h + 16..base_h + 40]
        })
        .expect("an image with the entry durable and the state still idle");
    drop(pool);
    // Run 2: lane `o` commits 0x22 over data[0..8]; then lane `h`'s first transaction of this
    // run saves another range, and every crash image of it is checked.
    let (rec2, pool2) = open(&img).unwrap();
    assert_eq!(root_data(&pool2)[0..8], [0u8; 8]);
    tx_on(&pool2, o, |tx| {
        tx.update(&root, |r| r.data[0..8].fill(0x22))
    })
    .unwrap();
    rec2.clear_history();
    rec2.set_capture(true);
    tx_on(&pool2, h, |tx| {
        tx.update(&root, |r| r.data[100..108].fill(0x33))
    })
    .unwrap();
    rec2.set_capture(false);
    let n = rec2
        .check_crash_images(&opts, |img| {
            let (_, p) = open(img)?;
            let d = root_data(&p);
            if d[0..8] != [0x22; 8] {
                return Err(format!(
                    "lane {o}'s commit lost: data[0..8] = {:?}",
                    &d[0..8]
                ));
            }
            if d[100..108] != [0; 8] && d[100..108] != [0x33; 8] {
                return Err(format!("torn data[100..108] = {:?}", &d[100..108]));
            }
            Ok(())
        })
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("{n} crash images checked");
}

/// An entry built byte by byte from `docs/FORMAT.md` ("Undo log", slots, entry table and CRC
/// order) is rolled back; the same entry one entry further along (or with another index) is
/// not.
#[test]
fn an_entry_built_from_the_documented_byte_map_is_rolled_back() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = Pool::create_in(rec.clone(), &small(1)).unwrap();
    let base = pool.heap().header().lane_extra_off(0);
    // Root: 8 `PPtr`s (16 bytes each), then the data bytes.
    let target = pool.root().off() + 8 * 16;
    drop(pool);
    let build = |slot: usize, index: u64| {
        let mut img = rec.live_image();
        let state = u64::from_le_bytes(img[base..base + 8].try_into().unwrap());
        assert_eq!(state & 1, 0, "idle after create");
        let gen = (state >> 1) + 1;
        // Format 3 slots (docs/FORMAT.md, "Undo log"): the area split in two by generation
        // parity, below the line of the `retired` word.
        let area = small(1).heap.lane_extra_bytes as usize;
        let end = ((area - 8) & !7) & !63;
        let half = ((end - 16) / 2) & !7;
        let start = 16 + (gen & 1) as usize * half;
        let pos = (base + start + slot * 24) as u64;
        let data = [0x5Au8; 8];
        let mut h = crc32fast::Hasher::new();
        h.update(&(base as u64).to_le_bytes());
        h.update(&gen.to_le_bytes());
        h.update(&pos.to_le_bytes());
        h.update(&index.to_le_bytes());
        h.update(&target.to_le_bytes());
        h.update(&8u32.to_le_bytes());
        h.update(&data);
        let crc = h.finalize();
        let p = pos as usize;
        img[p..p + 8].copy_from_slice(&target.to_le_bytes());
        img[p + 8..p + 12].copy_from_slice(&8u32.to_le_bytes());
        img[p + 12..p + 16].copy_from_slice(&crc.to_le_bytes());
        img[p + 16..p + 24].copy_from_slice(&data);
        img[base..base + 8].copy_from_slice(&(gen << 1 | 1).to_le_bytes());
        img
    };
    let (_, p) = open(&build(0, 0)).unwrap();
    assert_eq!(
        p.recovered()[0],
        UndoRecovered::RolledBack {
            entries: 1,
            bytes: 8
        }
    );
    assert_eq!(root_data(&p)[0..8], [0x5A; 8]);
    for (slot, index) in [(1, 0), (0, 1)] {
        let (_, p) = open(&build(slot, index)).unwrap();
        assert_eq!(
            p.recovered()[0],
            UndoRecovered::RolledBack {
                entries: 0,
                bytes: 0
            },
            "an entry at slot {slot} with index {index} is not valid"
        );
        assert_eq!(root_data(&p)[0..8], [0; 8]);
    }
}
