//! The heap's public API on a real mapped region: alloc/zalloc/realloc/free with destinations,
//! type numbers, iteration, reservations, classes, statistics, errors, out of memory, reopen.

mod common;
use common::*;
use palloc::{Action, AllocClasses, CreateOptions, Error, Heap, Options};
use pool::Persister;
use std::sync::Arc;

#[test]
fn alloc_free_with_destination_and_types() {
    let r = region(4 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let slot = h.user_slot(0);
    let a = h.alloc(100, 7, Some(slot)).unwrap();
    assert_eq!(r.read_u64(slot as usize), a);
    assert!(h.usable_size(a).unwrap() >= 100);
    assert_eq!(h.object(a).unwrap().type_num, 7);
    let b = h.zalloc(5000, 8, None).unwrap();
    let mut buf = vec![1u8; 5000];
    r.read(b as usize, &mut buf);
    assert!(buf.iter().all(|&x| x == 0));
    let big = h.alloc(40 << 10, 9, None).unwrap(); // > a chunk: a span
    assert_eq!(h.usable_size(big).unwrap(), (48 << 10) - 16);
    assert_eq!(objects(&h).len(), 3);
    assert_eq!(
        h.objects_of_type(8).map(|o| o.off).collect::<Vec<_>>(),
        vec![b]
    );
    assert_consistent(&h);
    h.free(a, Some(slot)).unwrap();
    assert_eq!(r.read_u64(slot as usize), 0);
    assert!(matches!(h.free(a, None), Err(Error::NotAllocated { .. })));
    assert!(matches!(
        h.free(a + 16, None),
        Err(Error::NotAllocated { .. })
    ));
    assert!(matches!(
        h.free(big + 8, None),
        Err(Error::NotAllocated { .. })
    ));
    assert!(matches!(
        h.free(1 << 40, None),
        Err(Error::NotAllocated { .. })
    ));
    h.free(big, None).unwrap();
    assert_eq!(objects(&h), vec![(b, 8, h.usable_size(b).unwrap())]);
    assert!(matches!(h.alloc(0, 1, None), Err(Error::ZeroSize)));
    assert_consistent(&h);
}

#[test]
fn destinations_must_be_writable_through_the_heap() {
    let r = region(4 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let before = objects(&h);
    for (dest, why) in [
        (0u64, "user slot"),             // heap header
        (h.user_slot(0) + 4, "aligned"), // unaligned
        (4096, "user slot"),             // a redo log
        (1 << 21, "live object"),        // free chunk data
    ] {
        let e = h.alloc(64, 1, Some(dest)).unwrap_err();
        assert!(e.to_string().contains(why), "{dest:#x}: {e}");
    }
    // Nothing was allocated by the refused calls.
    assert_eq!(objects(&h), before);
    assert_consistent(&h);
    // Inside a live object, and inside a large object's later chunk: accepted.
    let holder = h.alloc(64, 1, None).unwrap();
    let a = h.alloc(64, 2, Some(holder + 8)).unwrap();
    assert_eq!(r.read_u64(holder as usize + 8), a);
    let big = h.alloc(100 << 10, 3, None).unwrap();
    let far = big + (80 << 10);
    let b = h.alloc(64, 2, Some(far)).unwrap();
    assert_eq!(r.read_u64(far as usize), b);
    // Past the end of an object, or in its header: refused.
    let e = h.alloc(64, 2, Some(holder - 8)).unwrap_err();
    assert!(e.to_string().contains("live object"), "{e}");
    // The lane's extra area is writable.
    let (extra, _) = h.lane().unwrap().extra_area();
    h.alloc(64, 2, Some(extra as u64)).unwrap();
    assert_consistent(&h);
}

#[test]
fn realloc_keeps_contents_and_moves_atomically() {
    let r = region(4 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let slot = h.user_slot(1);
    let a = h.alloc(40, 5, Some(slot)).unwrap();
    r.write(a as usize, &[0xAB; 40]);
    let same = h.realloc(a, 30, 5, Some(slot)).unwrap();
    assert_eq!(same, a);
    let b = h.realloc(a, 3000, 5, Some(slot)).unwrap();
    assert_ne!(b, a);
    assert_eq!(r.read_u64(slot as usize), b);
    let mut buf = [0u8; 40];
    r.read(b as usize, &mut buf);
    assert_eq!(buf, [0xAB; 40]);
    assert!(h.object(a).is_err());
    let c = h.realloc(b, 64 << 10, 5, Some(slot)).unwrap();
    r.read(c as usize, &mut buf);
    assert_eq!(buf, [0xAB; 40]);
    assert_eq!(h.realloc(c, 0, 5, Some(slot)).unwrap(), 0);
    assert_eq!(r.read_u64(slot as usize), 0);
    assert_eq!(objects(&h), vec![]);
    let d = h.realloc(0, 10, 6, Some(slot)).unwrap();
    assert_eq!(r.read_u64(slot as usize), d);
    assert_consistent(&h);
}

#[test]
fn reserve_publish_cancel() {
    let r = region(4 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let keep = h.alloc(64, 1, None).unwrap();
    let r1 = h.reserve(64, 2).unwrap();
    let r2 = h.reserve(20 << 10, 3).unwrap();
    let (o1, o2) = (r1.off(), r2.off());
    // Not visible until published.
    assert_eq!(objects(&h).len(), 1);
    h.publish(vec![
        Action::Alloc(r1),
        Action::Alloc(r2),
        Action::Set {
            off: h.user_slot(0),
            value: o1,
        },
        Action::Set {
            off: h.user_slot(1),
            value: o2,
        },
        Action::Set { off: o2, value: 99 }, // inside an object of this same publish
        Action::Free(keep),
    ])
    .unwrap();
    assert_eq!(r.read_u64(h.user_slot(0) as usize), o1);
    assert_eq!(r.read_u64(o2 as usize), 99);
    let offs: Vec<u64> = objects(&h).iter().map(|o| o.0).collect();
    assert_eq!(offs, vec![o1, o2]);
    // Cancel returns the space.
    let before = h.stats();
    let r3 = h.reserve(30 << 10, 4).unwrap();
    let r4 = h.reserve(64, 4).unwrap();
    h.cancel(vec![Action::Alloc(r3), Action::Alloc(r4)]);
    assert_eq!(h.stats(), before);
    // A failing publish cancels its reservations and changes nothing.
    let r5 = h.reserve(64, 4).unwrap();
    let e = h
        .publish(vec![Action::Alloc(r5), Action::Free(keep)])
        .unwrap_err();
    assert!(matches!(e, Error::NotAllocated { .. }), "{e}");
    assert_eq!(h.stats(), before);
    assert_consistent(&h);
    // A reservation of another heap is refused.
    let r2h = region(4 << 20);
    let other = Heap::create(r2h, &small(), opts()).unwrap();
    let foreign = other.reserve(64, 1).unwrap();
    assert!(matches!(
        h.publish(vec![Action::Alloc(foreign)]),
        Err(Error::ForeignReservation)
    ));
    // More entries than a lane's log holds (60 here): the log grows by a heap block of the
    // reserved type, which stays attached to the lane and is not listed as an object.
    let listed = objects(&h).len() as u64;
    let many: Vec<Action> = (0..100)
        .map(|i| Action::Set {
            off: h.user_slot(i % 8),
            value: 1,
        })
        .chain((0..70).map(|_| Action::Alloc(h.reserve(16 << 10, 1).unwrap())))
        .collect();
    h.publish(many).unwrap();
    let big: Vec<u64> = objects(&h)
        .iter()
        .filter(|o| o.1 == 1)
        .map(|o| o.0)
        .collect();
    assert_eq!(big.len(), 70);
    assert_eq!(objects(&h).len() as u64, listed + 70);
    assert_eq!(
        h.stats().objects,
        listed + 70 + 1,
        "the extension is a live block"
    );
    assert!(h.object(0).is_err());
    assert_consistent(&h);
    // The extension is reused: freeing the 70 in one publish allocates nothing more.
    let free_chunks = h.stats().free_chunks;
    let frees: Vec<Action> = big.iter().map(|&o| Action::Free(o)).collect();
    h.publish(frees).unwrap();
    assert_eq!(h.stats().free_chunks, free_chunks + 70 * 2);
    assert_eq!(objects(&h).len() as u64, listed);
    assert_consistent(&h);
    // Its type number is reserved.
    for e in [
        h.alloc(64, palloc::REDO_EXT_TYPE, None).unwrap_err(),
        h.reserve(64, palloc::REDO_EXT_TYPE).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
    // Reopen keeps it attached (and still hidden).
    drop(h);
    let h = Heap::open(r.clone(), opts()).unwrap();
    assert_eq!(objects(&h).len() as u64, listed);
    assert_eq!(h.stats().objects, listed + 1);
    assert_consistent(&h);
}

#[test]
fn out_of_memory_is_clear_and_harmless() {
    let r = region(1 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let mut small_objs = Vec::new();
    let e = loop {
        match h.alloc(1000, 1, None) {
            Ok(o) => small_objs.push(o),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::OutOfMemory { requested: 1000 }), "{e}");
    assert!(e.to_string().contains("out of memory"));
    let snapshot = objects(&h);
    assert!(matches!(
        h.alloc(64 << 10, 1, None),
        Err(Error::OutOfMemory { .. })
    ));
    assert_eq!(objects(&h), snapshot);
    assert_consistent(&h);
    // Free everything: runs are reclaimed for a large allocation.
    for o in small_objs {
        h.free(o, None).unwrap();
    }
    let total = h.stats().total_chunks;
    let big = h.alloc((total - 1) * (16 << 10), 2, None).unwrap();
    assert_consistent(&h);
    h.free(big, None).unwrap();
    assert_eq!(h.stats().free_chunks, total);
    assert_consistent(&h);
}

#[test]
fn reopen_rebuilds_the_same_heap() {
    let r = region(8 << 20);
    let c = CreateOptions {
        zone_max_chunks: 40, // several zones
        ..small()
    };
    let h = Heap::create(r.clone(), &c, opts()).unwrap();
    let mut live = Vec::new();
    for i in 0..600u64 {
        let size = [24, 100, 700, 3000, 20000, 70000][i as usize % 6];
        live.push(h.alloc(size, i % 5, None).unwrap());
        if i % 3 == 0 {
            h.free(live.swap_remove((i as usize * 7) % live.len()), None)
                .unwrap();
        }
    }
    let before = objects(&h);
    let stats = h.stats();
    assert_consistent(&h);
    assert!(palloc::check(&*r).unwrap().zones > 1);
    drop(h);
    let h = Heap::open(r.clone(), opts()).unwrap();
    assert_eq!(objects(&h), before);
    let s = h.stats();
    assert_eq!(
        (s.objects, s.allocated_bytes, s.runs),
        (stats.objects, stats.allocated_bytes, stats.runs)
    );
    for o in &before {
        h.free(o.0, None).unwrap();
    }
    assert_eq!(h.stats().objects, 0);
    assert_consistent(&h);
}

#[test]
fn allocation_classes_are_configurable() {
    let r = region(4 << 20);
    assert!(AllocClasses::new(vec![64, 48], 16 << 10).is_err());
    assert!(AllocClasses::new(vec![40], 16 << 10).is_err());
    assert!(AllocClasses::new(vec![], 16 << 10).is_err());
    let classes = AllocClasses::new(vec![128, 1024], 16 << 10).unwrap();
    let h = Heap::create(
        r.clone(),
        &small(),
        Options {
            classes: Some(classes),
        },
    )
    .unwrap();
    let a = h.alloc(1, 1, None).unwrap();
    assert_eq!(h.usable_size(a).unwrap(), 112);
    let b = h.alloc(200, 1, None).unwrap();
    assert_eq!(h.usable_size(b).unwrap(), 1008);
    let c = h.alloc(1009, 1, None).unwrap(); // past the largest class: a whole chunk
    assert_eq!(h.usable_size(c).unwrap(), (16 << 10) - 16);
    drop(h);
    // Reopen with the default classes: old runs still free correctly.
    let h = Heap::open(r, opts()).unwrap();
    assert_eq!(h.usable_size(a).unwrap(), 112);
    h.free(a, None).unwrap();
    h.free(b, None).unwrap();
    assert_consistent(&h);
}

#[test]
fn open_refuses_what_is_not_a_heap() {
    let r = region(1 << 20);
    assert!(matches!(Heap::open(r.clone(), opts()), Err(Error::NoHeap)));
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    drop(h);
    r.write(20, &[1]);
    let e = Heap::open(r.clone(), opts()).err().unwrap();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(Heap::create(region(16 << 10), &small(), opts()).is_err());
    let bad = CreateOptions {
        chunk_size: 5000,
        ..small()
    };
    assert!(matches!(
        Heap::create(region(1 << 20), &bad, opts()),
        Err(Error::Config(_))
    ));
}

#[test]
fn corrupt_chunk_header_is_reported_not_panicked() {
    let r = region(1 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    h.alloc(64, 1, None).unwrap();
    let zone = h.header().zones()[0];
    drop(h);
    r.write_u64(zone.chunk_header_off(0), 0x0000_0001_0000_0009);
    assert!(matches!(
        Heap::open(r.clone(), opts()),
        Err(Error::Corrupt(_))
    ));
    let rep = palloc::check(&*r).unwrap();
    assert!(!rep.is_ok());
    assert!(
        rep.problems[0].contains("unknown type"),
        "{:?}",
        rep.problems
    );
}

/// The one-block fast paths: an alloc of a block whose header already holds the right bytes
/// and a free are each one 8-byte store + flush + fence; with a plain destination (a user slot
/// or a lane's extra area) they are one two-entry redo commit (three fences). The one-action
/// publishes cost the same as the calls.
#[test]
fn one_block_alloc_and_free_cost_one_fence_each() {
    use pool::crash::Recorder;
    let r = Arc::new(Recorder::new(1 << 20));
    r.set_capture(false);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    // First use of the block writes its header (own fence) and makes a run.
    let a = h.alloc(64, 1, None).unwrap();
    h.free(a, None).unwrap();
    let fences = |f: &dyn Fn()| {
        let before = r.fences();
        f();
        r.fences() - before
    };
    assert_eq!(fences(&|| assert_eq!(h.alloc(64, 1, None).unwrap(), a)), 1);
    assert_eq!(fences(&|| h.free(a, None).unwrap()), 1);
    // Another type rewrites the header: one more fence, before the bitmap store.
    assert_eq!(fences(&|| assert_eq!(h.alloc(64, 2, None).unwrap(), a)), 2);
    assert_eq!(fences(&|| h.free(a, None).unwrap()), 1);
    let slot = h.user_slot(3);
    let (extra, _) = h.lane().unwrap().extra_area();
    for d in [slot, extra as u64] {
        assert_eq!(
            fences(&|| assert_eq!(h.alloc(64, 2, Some(d)).unwrap(), a)),
            3
        );
        assert_eq!(r.read_u64(d as usize), a);
        assert_eq!(fences(&|| h.free(a, Some(d)).unwrap()), 3);
        assert_eq!(r.read_u64(d as usize), 0);
    }
    let res = h.reserve(64, 2).unwrap();
    assert_eq!(res.off(), a);
    let before = r.fences();
    h.publish(vec![Action::Alloc(res)]).unwrap();
    assert_eq!(r.fences() - before, 1);
    assert_eq!(fences(&|| h.publish(vec![Action::Free(a)]).unwrap()), 1);
    // Errors on the fast paths change nothing.
    let before = r.live_image();
    assert!(matches!(h.free(a, None), Err(Error::NotAllocated { .. })));
    assert!(matches!(
        h.publish(vec![Action::Free(a + 16)]),
        Err(Error::NotAllocated { .. })
    ));
    assert!(r.live_image() == before, "a refused free wrote to the heap");
    assert_consistent(&h);
    // The state survives a reopen exactly.
    let b = h.alloc(64, 4, Some(slot)).unwrap();
    let want = objects(&h);
    drop(h);
    let h2 = Heap::open(Arc::new(Recorder::from_image(&r.durable_image())), opts()).unwrap();
    assert_eq!(objects(&h2), want);
    assert_eq!(h2.persister().read_u64(slot as usize), b);
}

#[test]
fn reserve_unfenced_flushes_without_a_fence() {
    use pool::crash::Recorder;
    let r = Arc::new(Recorder::new(1 << 20));
    r.set_capture(false);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let a = h.alloc(64, 1, None).unwrap();
    h.free(a, None).unwrap();
    let mut lane = h.lane().unwrap();
    let f0 = r.fences();
    // Same type, no zeroing: the header already holds the right bytes, nothing is owed.
    let (res, owed) = lane.reserve_unfenced(64, 1, false).unwrap();
    assert_eq!((res.off(), owed, r.fences()), (a, false, f0));
    lane.publish(vec![Action::Alloc(res)]).unwrap();
    assert_eq!(r.fences(), f0 + 1);
    h.free(a, None).unwrap();
    // Another type and zeroing: flushed, not fenced; owed until the caller fences.
    r.write(a as usize, &[0xEE; 64]);
    let f0 = r.fences();
    let (res, owed) = lane.reserve_unfenced(64, 2, true).unwrap();
    assert_eq!((res.off(), owed, r.fences()), (a, true, f0));
    let mut buf = [1u8; 64];
    r.read(a as usize, &mut buf);
    assert_eq!(buf, [0u8; 64]);
    // After the caller's fence the header and the zeroes are durable.
    r.drain().unwrap();
    let d = Recorder::from_image(&r.durable_image());
    d.read(a as usize, &mut buf);
    assert_eq!((buf, d.read_u64(a as usize - 8)), ([0u8; 64], 2));
    lane.publish(vec![Action::Alloc(res)]).unwrap();
    assert!(lane
        .reserve_unfenced(64, palloc::REDO_EXT_TYPE, false)
        .is_err());
    drop(lane);
    assert_eq!(h.object(a).unwrap().type_num, 2);
}

#[test]
fn internal_types_are_not_user_objects() {
    let r = region(4 << 20);
    let h = Heap::create(r.clone(), &small(), opts()).unwrap();
    let t = palloc::INTERNAL_TYPE_MIN + 5;
    for e in [
        h.alloc(64, t, None).unwrap_err(),
        h.reserve(64, u64::MAX).unwrap_err(),
        h.alloc(64, palloc::REDO_EXT_TYPE, None).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
    let user = h.alloc(64, 1, None).unwrap();
    // A run block and a span, both internal.
    let mut lane = h.lane().unwrap();
    let small_block = lane.reserve_internal(64, t, false).unwrap();
    let span = lane.reserve_internal(40 << 10, t, false).unwrap();
    assert!(lane.reserve_internal(64, 1, false).is_err());
    assert!(lane
        .reserve_internal(64, palloc::REDO_EXT_TYPE, false)
        .is_err());
    let (a, b) = (small_block.off(), span.off());
    lane.publish(vec![Action::Alloc(small_block)]).unwrap();
    lane.publish(vec![Action::Alloc(span)]).unwrap();
    drop(lane);
    let check = |h: &Heap<_>| {
        assert_eq!(objects(h), vec![(user, 1, h.usable_size(user).unwrap())]);
        for off in [a, b] {
            assert!(matches!(h.object(off), Err(Error::NotAllocated { .. })));
            assert!(h.free(off, None).is_err(), "free {off:#x}");
            assert!(h.free(off, Some(h.user_slot(0))).is_err());
            assert!(h.publish(vec![Action::Free(off)]).is_err());
            assert!(h.realloc(off, 128, 1, None).is_err());
        }
        // Still live for the checker and the statistics.
        assert_eq!(h.stats().objects, 3);
        assert_consistent(h);
    };
    check(&h);
    drop(h);
    check(&Heap::open(r, opts()).unwrap());
}
