//! The bodies of the fuzz targets in `fuzz/` (each target is a one-line shim calling one of
//! these) and the deterministic seed corpora they start from. Keeping them here means
//! `cargo test` runs every committed seed and a bounded random sweep through the same code
//! (`tests/fuzz_seeds.rs`), and the seeds can be regenerated exactly.
//!
//! What counts as a bug, for every target: a panic (including an out-of-bounds access through a
//! persister, which panics by contract), a hang, or an allocation sized by a hostile field
//! (libFuzzer's `-rss_limit_mb`/`-malloc_limit_mb` report those). The inputs are bounded
//! ([`MAX_IMAGE`]), so a slow input is a real hang, not a big one.
//!
//! Input formats (first byte selects the mode where there is one):
//! - [`pool_header`]: mode 0 — the rest is a header region (two slots) and a single slot,
//!   decoded as is; mode 1 — the rest is a list of (offset u16 LE, byte) patches applied to a
//!   valid header slot, which is then resealed (checksum recomputed) so that the validation
//!   behind the checksum is explored too.
//! - [`ulog_recover`]: the first byte picks the log area size (64..=1024 bytes); the rest is
//!   the persister's bytes (at least the area, at most [`MAX_IMAGE`]). `inspect`, then
//!   `Ulog::open` (recovery), then `inspect` again.
//! - [`heap_open`]: mode 0 — the rest is a whole pool image (at most [`MAX_IMAGE`]); mode 1 —
//!   (offset u32 LE, byte) patches on a valid pool image with objects, redo and undo logs.
//!   `palloc::Heap::open` + `palloc::check`, and `tx::ObjPool::open_in` (heap and undo
//!   recovery) + `palloc::check` on what it left.

use crate::workload::{layout, run_step, Root, Step, TxOp};
use palloc::ulog::{self, LogState};
use palloc::{Recovered, Ulog};
use pool::crash::Recorder;
use pool::header::{self, PartHeader, HEADER_REGION_BYTES, HEADER_SLOT_BYTES};
use pool::image::MemImage;
use std::sync::{Arc, OnceLock};
use tx::PoolTyped;
use zerocopy::{FromBytes, IntoBytes};

/// Largest image an input may describe.
pub const MAX_IMAGE: usize = 256 << 10;
/// Bytes of the pool image [`heap_open`] patches.
pub const HEAP_IMAGE: usize = 192 << 10;

/// A valid, deterministic header slot: fixed UUIDs and creation time, this machine's
/// architecture, sealed.
pub fn valid_header() -> PartHeader {
    let mut h = PartHeader::zeroed();
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("p");
    // The pool crate fills every field the way it does for real pools; then the random ones
    // are fixed so that the seed is the same on every run.
    drop(pool::Pool::create_file(&f, 2 << 20, "fuzz-seed").expect("create a seed pool"));
    let bytes = std::fs::read(&f).expect("read the seed pool");
    h.as_mut_bytes()
        .copy_from_slice(&bytes[..HEADER_SLOT_BYTES]);
    h.poolset_uuid = [1; 16];
    h.uuid = [2; 16];
    h.prev_part_uuid = [2; 16];
    h.next_part_uuid = [2; 16];
    h.prev_repl_uuid = [2; 16];
    h.next_repl_uuid = [2; 16];
    h.crtime = 1_700_000_000.into();
    h.seal();
    h
}

fn cached_header() -> &'static PartHeader {
    static H: OnceLock<PartHeader> = OnceLock::new();
    H.get_or_init(valid_header)
}

/// Fuzz body: pool and part headers (see the module documentation).
pub fn pool_header(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let slot: Vec<u8> = if mode & 1 == 0 {
        let _ = header::decode_region(rest);
        rest.to_vec()
    } else {
        let mut b = cached_header().as_bytes().to_vec();
        for p in rest.chunks_exact(3) {
            let off = usize::from(u16::from_le_bytes([p[0], p[1]])) % HEADER_SLOT_BYTES;
            b[off] = p[2];
        }
        let mut h = PartHeader::read_from_bytes(&b).expect("slot-sized buffer");
        h.seal();
        let mut region = h.as_bytes().to_vec();
        region.resize(HEADER_REGION_BYTES, 0);
        let _ = header::decode_region(&region);
        h.as_bytes().to_vec()
    };
    if let Ok(h) = PartHeader::decode(&slot) {
        // Whatever decodes is self-consistent and prints.
        assert_eq!(
            h.compute_checksum(),
            h.checksum.get(),
            "decoded with a bad checksum"
        );
        assert_eq!(h.as_bytes(), &slot[..HEADER_SLOT_BYTES]);
        let _ = (h.layout_name().len(), h.stale_replicas(), format!("{h:?}"));
    }
}

/// Fuzz body: redo-log recovery on arbitrary bytes (see the module documentation).
pub fn ulog_recover(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let area = (usize::from(sel % 16) + 1) * 64;
    let mut img = rest[..rest.len().min(MAX_IMAGE)].to_vec();
    img.resize(img.len().max(area).div_ceil(64) * 64, 0);
    let p = MemImage::new(img.to_vec());
    let before = ulog::inspect(&p, 0, area);
    let Ok((_, rec)) = Ulog::open(&p, 0, area) else {
        return;
    };
    // Recovery does what inspection predicted, and leaves an empty log.
    match (&before, rec) {
        (Ok(LogState::Empty), Recovered::Empty)
        | (Ok(LogState::Incomplete(_)), Recovered::Discarded)
        | (Ok(LogState::Committed { .. }), Recovered::Replayed { .. }) => {}
        (b, r) => panic!("inspect said {b:?} but open did {r:?}"),
    }
    if let (Ok(LogState::Committed { entries, .. }), Recovered::Replayed { entries: n }) =
        (&before, rec)
    {
        assert_eq!(entries.len(), n, "replayed a different number of entries");
    }
    let after = ulog::inspect(&p, 0, area);
    assert!(
        matches!(after, Ok(LogState::Empty)),
        "log not empty after recovery: {after:?}"
    );
    // A second recovery finds nothing to do.
    let again = Ulog::open(&p, 0, area).map(|(_, r)| r);
    assert!(
        matches!(again, Ok(Recovered::Empty)),
        "second recovery: {again:?}"
    );
}

/// A valid pool image with objects (one per slot, some freed), a nested transaction and an
/// aborted one behind it, so the redo and undo areas and run bitmaps hold real data.
pub fn valid_heap_image() -> Vec<u8> {
    let p = Arc::new(MemImage::new(vec![0u8; HEAP_IMAGE]));
    let pool =
        PoolTyped::<Root, MemImage>::create_in(p.clone(), &layout()).expect("create the seed pool");
    let mut steps: Vec<Step> = (0..8usize)
        .map(|slot| Step::Publish {
            slot,
            val: slot as u64 + 1,
        })
        .collect();
    steps.push(Step::Tx {
        ops: vec![
            TxOp::WriteRoot {
                at: 0,
                len: 150,
                byte: 7,
            },
            TxOp::Free { slot: 2 },
            TxOp::Alloc { slot: 3, val: 9 },
            TxOp::Nested {
                ops: vec![TxOp::WriteObj {
                    slot: 4,
                    idx: 1,
                    val: 5,
                }],
                abort: false,
            },
        ],
        abort: false,
    });
    steps.push(Step::Tx {
        ops: vec![TxOp::Alloc { slot: 5, val: 11 }],
        abort: true,
    });
    for s in &steps {
        run_step(&pool, s).expect("seed workload");
    }
    drop(pool);
    p.to_vec()
}

fn cached_heap() -> &'static [u8] {
    static H: OnceLock<Vec<u8>> = OnceLock::new();
    H.get_or_init(valid_heap_image)
}

/// Fuzz body: heap metadata and undo logs on open (see the module documentation).
pub fn heap_open(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let img = if mode & 1 == 0 {
        rest[..rest.len().min(MAX_IMAGE)].to_vec()
    } else {
        let mut b = cached_heap().to_vec();
        for p in rest.chunks_exact(5) {
            let off = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize % b.len();
            b[off] = p[4];
        }
        b
    };
    let p = Arc::new(MemImage::new(img.to_vec()));
    let _ = palloc::check(&*p);
    if let Ok(h) = palloc::Heap::open(p.clone(), Default::default()) {
        let _ = palloc::check(&*p);
        let objs: Vec<_> = h.objects().take(100_000).collect();
        for o in objs.iter().take(64) {
            let _ = h.usable_size(o.off);
            let _ = h.object(o.off);
        }
        let _ = h.stats();
    }
    let p = Arc::new(MemImage::new(img.to_vec()));
    if let Ok(pool) = tx::ObjPool::open_in(p.clone(), Default::default()) {
        let _ = palloc::check(&*p);
        let _ = pool.root_off();
    }
}

/// Crash images of a redo-log commit of `entries` 8-byte stores (log area at 0 of `area`
/// bytes, targets after it), as ulog_recover inputs: complete logs not yet applied, partly
/// written ones, cleared ones.
fn ulog_images(area: usize, entries: usize) -> Vec<Vec<u8>> {
    let len = 4096;
    let r = Recorder::new(len);
    r.set_capture(false);
    let mut log = Ulog::format(&r, 0, area).expect("format");
    r.clear_history();
    r.set_capture(true);
    let batch: Vec<palloc::Entry> = (0..entries)
        .map(|i| palloc::Entry {
            off: (2048 + 8 * i) as u64,
            value: 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1),
        })
        .collect();
    log.commit(&r, &batch).expect("commit");
    let mut out: Vec<Vec<u8>> = r.crash_points().iter().map(|c| c.durable_image()).collect();
    out.push(r.durable_image());
    out
}

/// The seed corpora: (target, file name, bytes). Deterministic.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let h = valid_header();
    let mut region = Vec::from([0u8]);
    region.extend_from_slice(h.as_bytes());
    region.extend_from_slice(h.as_bytes());
    out.push((
        "pool_header",
        "region-two-good-slots".into(),
        region.clone(),
    ));
    let mut torn = region.clone();
    torn[1 + HEADER_SLOT_BYTES + 100] ^= 0xff;
    out.push(("pool_header", "region-slot1-corrupt".into(), torn));
    out.push(("pool_header", "patch-none".into(), vec![1]));
    // Patch the major version and a reserved byte (offsets within the slot, LE u16).
    out.push((
        "pool_header",
        "patch-fields".into(),
        vec![1, 8, 0, 9, 0x10, 1, 1],
    ));

    for (area_sel, entries) in [(3u8, 3usize), (15, 20)] {
        let area = (usize::from(area_sel) + 1) * 64;
        for (k, img) in ulog_images(area, entries).into_iter().enumerate() {
            let mut b = vec![area_sel];
            b.extend_from_slice(&img);
            out.push(("ulog_recover", format!("commit{entries}-fence{k}"), b));
        }
    }

    let heap = valid_heap_image();
    let mut raw = vec![0u8];
    raw.extend_from_slice(&heap);
    out.push(("heap_open", "raw-valid-pool".into(), raw));
    out.push(("heap_open", "patch-none".into(), vec![1]));
    // A few bytes of the heap header and of the first chunk header changed.
    out.push((
        "heap_open",
        "patch-headers".into(),
        vec![1, 8, 0, 0, 0, 0xff, 0, 0x10, 0, 0, 0x7f],
    ));
    out
}
