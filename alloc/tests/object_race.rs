//! `Heap::object` takes no lock: it reads a run's bitmap word and an allocation header while
//! another thread allocates, publishes and frees blocks of the same run. Those reads race with
//! the stores by design, so the region must make them word-atomic (see
//! `pool::persist#shared-memory-accesses`). Here readers hammer every block of one run while a
//! writer cycles it through objects of two type numbers whose 8 bytes all differ; a reader must
//! only ever get "not allocated" or an object of one of those types with the class's usable
//! size — a torn header word would be neither.

mod common;
use common::*;
use palloc::{Error, Heap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Type numbers whose bytes are pairwise different, so a mix of the two is a third value (the
/// top bit, reserved for internal types, is clear in both).
const TYPES: [u64; 2] = [0x0102_0304_0506_0708, 0x7877_7675_7473_7271];

#[test]
fn object_lookups_racing_alloc_publish_free_see_whole_headers() {
    let h = Arc::new(Heap::create(region(4 << 20), &small(), opts()).unwrap());
    // One object to find the run and its block size; kept, so the run stays a run.
    let anchor = h.alloc(64, TYPES[0], None).unwrap();
    let info = h.object(anchor).unwrap();
    let usable = info.usable_size;
    let block = usable + palloc::layout::ALLOC_HEADER_BYTES;
    let rounds = 3000u64;
    let stop = AtomicBool::new(false);
    let seen_live = AtomicU64::new(0);
    std::thread::scope(|s| {
        for reader in 0..2u64 {
            let (h, stop, seen_live) = (&h, &stop, &seen_live);
            s.spawn(move || {
                let mut live = 0u64;
                // Bounded even if the writer dies: it sets `stop` on every exit path (scope
                // join propagates its panic after the readers finish this loop).
                for pass in 0..1_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for k in 0..32 {
                        let off = anchor + block * ((k + pass + reader) % 32);
                        match h.object(off) {
                            Ok(o) => {
                                assert!(
                                    TYPES.contains(&o.type_num),
                                    "object at {off:#x}: torn type number {:#018x}",
                                    o.type_num
                                );
                                assert_eq!((o.off, o.usable_size), (off, usable), "at {off:#x}");
                                live += 1;
                            }
                            Err(Error::NotAllocated { .. }) => {}
                            Err(e) => panic!("object({off:#x}): unexpected error {e}"),
                        }
                    }
                }
                seen_live.fetch_add(live, Ordering::Relaxed);
            });
        }
        let (h, stop) = (&h, &stop);
        s.spawn(move || {
            let _stop = testkit::StopOnDrop(stop);
            for round in 0..rounds {
                let t = TYPES[(round % 2) as usize];
                let mut offs = Vec::new();
                for i in 0..8 {
                    if i % 2 == 0 {
                        offs.push(h.alloc(64, t, None).unwrap());
                    } else {
                        // Reserve + publish: the header is written, then published atomically.
                        let r = h.reserve(64, t).unwrap();
                        let off = r.off();
                        h.publish(vec![palloc::Action::Alloc(r)]).unwrap();
                        offs.push(off);
                    }
                }
                for off in offs {
                    h.free(off, None).unwrap();
                }
            }
        });
    });
    let live = seen_live.load(Ordering::Relaxed);
    eprintln!("{rounds} writer rounds; readers saw {live} live objects");
    assert!(
        live > 0,
        "readers never saw an object (the anchor is always live)"
    );
    assert_consistent(&h);
}
