//! Layout freeze of the undo log (docs/FORMAT.md, "Undo log", format 3): pins the constants and
//! builds a committed log byte by byte from the documented byte map — slot by generation
//! parity, undo entry, redo entry flagged `LAST`, the `retired` word — and checks that recovery
//! reads it as documented. The format only changes on purpose (with FORMAT.md and a version
//! bump).

mod common;
use common::{image_recorder, small};
use pool::crash::Recorder;
use pool::Persister;
use std::sync::Arc;
use tx::undo::{
    ENTRY_HEADER_BYTES, LAST, MIN_SPLIT_AREA, NEXT_WORD, REDO, SEG_HEADER_BYTES, STATE_WORD,
};
use tx::{ObjPool, UndoRecovered, OBJ_MAGIC};

#[test]
fn constants_are_the_documented_ones() {
    assert_eq!(OBJ_MAGIC.to_le_bytes(), *b"RSTXOBJ\x03");
    assert_eq!((STATE_WORD, NEXT_WORD, SEG_HEADER_BYTES), (0, 8, 16));
    assert_eq!(ENTRY_HEADER_BYTES, 16);
    assert_eq!((REDO, LAST), (1 << 63, 1 << 62));
    assert_eq!(MIN_SPLIT_AREA, 256);
}

/// `(retired word, slot start)` of generation `gen` in a lane area of `area` bytes, from the
/// FORMAT.md formulas.
fn documented(area: usize, gen: u64) -> (usize, usize) {
    let w = (area - 8) & !7;
    let h = (((w & !63) - 16) / 2) & !7;
    (w, 16 + (gen & 1) as usize * h)
}

#[test]
fn the_documented_example_holds() {
    // "With the default 8192-byte area: W = 8184, H = 4056, slot 1 starts at byte 4072."
    assert_eq!(documented(8192, 1), (8184, 4072));
    assert_eq!(documented(8192, 2), (8184, 16));
}

/// One entry: `off` (flags included), `len`, CRC-32 of base ‖ gen ‖ pos ‖ index ‖ off ‖ len ‖
/// data, then the data zero-padded to 8.
fn entry(base: u64, gen: u64, pos: u64, index: u64, off: u64, data: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    for w in [base, gen, pos, index, off] {
        h.update(&w.to_le_bytes());
    }
    h.update(&(data.len() as u32).to_le_bytes());
    h.update(data);
    let mut e = off.to_le_bytes().to_vec();
    e.extend((data.len() as u32).to_le_bytes());
    e.extend(h.finalize().to_le_bytes());
    e.extend(data);
    e.resize(16 + data.len().div_ceil(8) * 8, 0);
    e
}

#[test]
fn a_committed_log_built_from_the_byte_map_is_rolled_forward_unless_retired() {
    let rec = Arc::new(Recorder::new(384 << 10));
    rec.set_capture(false);
    let pool = ObjPool::create_in(rec.clone(), &small(1)).unwrap();
    let obj = pool.heap().zalloc(24, 5, None).unwrap();
    let base = pool.heap().header().lane_extra_off(0);
    drop(pool);
    let area = small(1).heap.lane_extra_bytes as usize;
    let mut img = rec.live_image();
    let state = u64::from_le_bytes(img[base..base + 8].try_into().unwrap());
    for gen in [(state >> 1) + 1, (state >> 1) + 2] {
        let (w, start) = documented(area, gen);
        let (old, new) = ([0u8; 20], [0x6Bu8; 20]);
        let pos0 = (base + start) as u64;
        let undo = entry(base as u64, gen, pos0, 0, obj, &old);
        let pos1 = pos0 + undo.len() as u64;
        let redo = entry(base as u64, gen, pos1, 1, obj | REDO | LAST, &new);
        let mut built = img.clone();
        built[pos0 as usize..][..undo.len()].copy_from_slice(&undo);
        built[pos1 as usize..][..redo.len()].copy_from_slice(&redo);
        built[base..base + 8].copy_from_slice(&(gen << 1 | 1).to_le_bytes());
        // The data torn: half new, half old.
        built[obj as usize..][..10].copy_from_slice(&new[..10]);
        for (retired, forward) in [(gen - 1, true), (gen, false)] {
            let mut i = built.clone();
            i[base + w..base + w + 8].copy_from_slice(&retired.to_le_bytes());
            let r = image_recorder(&i);
            let p = ObjPool::open_in(r.clone(), Default::default()).unwrap();
            let mut b = [0u8; 20];
            r.read(obj as usize, &mut b);
            if forward {
                assert_eq!(
                    p.recovered()[0],
                    UndoRecovered::RolledForward {
                        entries: 1,
                        bytes: 20
                    },
                    "generation {gen}"
                );
                assert_eq!(b, new, "generation {gen}: rolled forward");
            } else {
                assert_eq!(p.recovered()[0], UndoRecovered::Idle, "generation {gen}");
                let mut torn = old;
                torn[..10].copy_from_slice(&new[..10]);
                assert_eq!(b, torn, "generation {gen}: a retired log is left alone");
            }
            assert_eq!(r.read_u64(base) & 1, 0, "idle after recovery");
        }
        img = built;
        // The next generation builds on the image with this one's log in its slot.
        img[base..base + 8].copy_from_slice(&(gen << 1).to_le_bytes());
    }
}
