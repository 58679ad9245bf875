//! A block reserved with `Lane::reserve_unfenced` (header flushed, not fenced) and then
//! cancelled must not come back with a header that is not durable.
//!
//! `prepare_block` skips the store, flush and fence when a block's header already holds the
//! right bytes, on the grounds that every header write is persisted. A cancelled unfenced
//! reservation breaks that unless the cancel fences first: the next reservation of the block
//! with the same type sees the right bytes (in the cache), writes nothing, and its publish
//! makes the block allocated while the header may still be the old bytes on media — after a
//! crash, a live object with a garbage header.

mod common;
use common::small;
use palloc::{check, Action, CreateOptions, Heap, Options};
use pool::crash::{Enumerate, Recorder};
use pool::Persister;
use std::sync::Arc;

fn layout() -> CreateOptions {
    CreateOptions {
        lane_count: 2,
        ..small()
    }
}

/// User slot 0 and the live objects as `(off, type, usable)`.
type State = (u64, Vec<(u64, u64, u64)>);

/// Open a heap on `img`; the checker must pass; returns its [`State`].
/// Every crash image `rec` recorded recovers to `before` or `after`; returns how many there were.
fn every_image_is(rec: &Recorder, before: &State, after: &State, ctx: &str) -> usize {
    rec.check_crash_images(
        &Enumerate {
            exhaustive_max: 1 << 12,
            samples: 64,
            seed: None,
        },
        |img| {
            let s = recovered(img)?;
            if s == *before || s == *after {
                Ok(())
            } else {
                Err(format!("neither before nor after: {s:?}"))
            }
        },
    )
    .unwrap_or_else(|f| panic!("{ctx}: {f}"))
}

fn recovered(img: &[u8]) -> Result<State, String> {
    let r = Arc::new(Recorder::from_image(img));
    r.set_capture(false);
    let h = Heap::open(r.clone(), Options::default()).map_err(|e| format!("open: {e}"))?;
    let rep = check(&*r).map_err(|e| e.to_string())?;
    if !rep.is_ok() {
        return Err(format!("checker: {:?}", rep.problems));
    }
    let slot = r.read_u64(h.user_slot(0) as usize);
    Ok((slot, common::objects(&h)))
}

/// Reserve unfenced, cancel, then allocate the same size and type (with or without a
/// destination); every crash image of the allocation is before or after it.
fn reuse_after_cancel(dest: bool, zero: bool) {
    let rec = Arc::new(Recorder::new(1 << 20));
    rec.set_capture(false);
    let h = Heap::create(rec.clone(), &layout(), Options::default()).unwrap();
    let (size, type_num) = (100, 5);
    let mut lane = h.lane().unwrap();
    let (r, owed) = lane.reserve_unfenced(size, type_num, zero).unwrap();
    assert!(owed, "a fresh block's header is written: a fence is owed");
    drop(lane);
    let first = r.off();
    h.cancel(vec![Action::Alloc(r)]);
    let slot = h.user_slot(0);
    rec.clear_history();
    rec.set_capture(true);
    let off = h
        .alloc(size, type_num, dest.then_some(slot))
        .expect("allocation");
    rec.set_capture(false);
    assert_eq!(off, first, "the cancelled block is the one reused");
    let usable = h.usable_size(off).unwrap();
    let before = (0u64, Vec::new());
    let after = (if dest { off } else { 0 }, vec![(off, type_num, usable)]);
    let n = every_image_is(&rec, &before, &after, &format!("dest {dest} zero {zero}"));
    eprintln!("dest {dest} zero {zero}: {n} crash images");
}

#[test]
fn a_cancelled_unfenced_block_reused_by_alloc_has_a_durable_header() {
    reuse_after_cancel(false, false);
}

#[test]
fn a_cancelled_unfenced_block_reused_by_alloc_with_destination_has_a_durable_header() {
    reuse_after_cancel(true, false);
}

#[test]
fn a_cancelled_unfenced_zeroed_block_reused_has_a_durable_header() {
    reuse_after_cancel(false, true);
}

/// The same through a publish of a plain reservation on another lane (the cancelling lane's
/// fence is the only one that orders its flush).
#[test]
fn a_cancelled_unfenced_block_reserved_again_and_published_has_a_durable_header() {
    let rec = Arc::new(Recorder::new(1 << 20));
    rec.set_capture(false);
    let h = Heap::create(rec.clone(), &layout(), Options::default()).unwrap();
    let mut lane = h.lane().unwrap();
    let (r, owed) = lane.reserve_unfenced(100, 5, false).unwrap();
    assert!(owed);
    let first = r.off();
    h.cancel(vec![Action::Alloc(r)]);
    // Same lane (the block's run is this lane's active run): reserve it again, fenced.
    rec.clear_history();
    rec.set_capture(true);
    let r2 = lane.reserve(100, 5, false).unwrap();
    assert_eq!(
        r2.off(),
        first,
        "the cancelled block is the one reserved again"
    );
    let off = r2.off();
    lane.publish(vec![Action::Alloc(r2)]).unwrap();
    rec.set_capture(false);
    drop(lane);
    let usable = h.usable_size(off).unwrap();
    let before = (0u64, Vec::new());
    let after = (0u64, vec![(off, 5, usable)]);
    every_image_is(&rec, &before, &after, "reserve again + publish");
}
