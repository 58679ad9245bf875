//! Crash images at every fence of random alloc/free/realloc/publish/cancel sequences.
//!
//! Each operation runs on a heap inside `pool::crash::Recorder`. For every crash image the
//! recorder allows before each fence (and at the end), a fresh heap is opened on the image
//! (recovering the redo logs); it must pass the checker and hold exactly the objects and user
//! slot values of the model before the operation or after it — never a mixture.
//!
//! Replay: every run prints `PALLOC_CRASH_SEED=<seed>` (the operation sequence) and the
//! recorder prints `POOL_CRASH_SEED` when it samples images; set both to replay a failure
//! (`PALLOC_CRASH_LOG=1` also prints the failing operation's stores, flushes and fences).

mod common;
use common::small;
use palloc::{Action, CreateOptions, Error, Heap, Options};
use pool::crash::{Enumerate, Recorder};
use pool::Persister;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    objects: BTreeSet<(u64, u64, u64)>,
    slots: [u64; 8],
    /// The first word of each lane's extra area (also a destination the heap accepts).
    extra: [u64; 2],
}

fn state<P: Persister + ?Sized>(h: &Heap<P>) -> Model {
    let mut slots = [0u64; 8];
    for (i, s) in slots.iter_mut().enumerate() {
        *s = h.persister().read_u64(h.user_slot(i) as usize);
    }
    let mut extra = [0u64; 2];
    for (i, e) in extra.iter_mut().enumerate() {
        *e = h.persister().read_u64(h.header().lane_extra_off(i));
    }
    Model {
        extra,
        objects: h
            .objects()
            .map(|o| (o.off, o.type_num, o.usable_size))
            .collect(),
        slots,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn size(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=5 => 1 + rng.below(200),
        6..=7 => 200 + rng.below(1800),
        _ => 10_000 + rng.below(30_000),
    }
}

fn layout() -> CreateOptions {
    CreateOptions {
        lane_count: 2,
        ..small()
    }
}

/// One random operation; returns a description.
fn step(h: &Heap<Recorder>, rng: &mut Rng) -> String {
    let live: Vec<u64> = h.objects().map(|o| o.off).collect();
    let pick = |rng: &mut Rng| live[rng.below(live.len() as u64) as usize];
    let slot = h.user_slot(rng.below(8) as usize);
    let extra = h.header().lane_extra_off(rng.below(2) as usize) as u64;
    // None, a user slot, or a lane's extra area (the latter two take the fast paths' redo
    // commit; a destination inside an object takes the general publish).
    let dest = match rng.below(4) {
        0 | 1 => None,
        2 => Some(slot),
        _ => Some(extra),
    };
    let res: Result<String, Error> = match rng.below(6) {
        0 | 1 => {
            let (s, t) = (size(rng), rng.below(4));
            h.alloc(s, t, dest)
                .map(|o| format!("alloc {s} type {t} -> {o:#x} dest {dest:?}"))
        }
        2 if !live.is_empty() => {
            let o = pick(rng);
            match (rng.below(3), dest) {
                // The same free as one- or two-action publishes (either order).
                (0, None) => h
                    .publish(vec![Action::Free(o)])
                    .map(|_| format!("publish free {o:#x}")),
                (0, Some(d)) => h
                    .publish(vec![Action::Set { off: d, value: 7 }, Action::Free(o)])
                    .map(|_| format!("publish set {d:#x}=7, free {o:#x}")),
                _ => h
                    .free(o, dest)
                    .map(|_| format!("free {o:#x} dest {dest:?}")),
            }
        }
        3 if !live.is_empty() => {
            let (o, s) = (pick(rng), size(rng));
            h.realloc(o, s, 1, dest)
                .map(|n| format!("realloc {o:#x} to {s} -> {n:#x}"))
        }
        4 => {
            let mut acts = Vec::new();
            let mut desc = String::from("publish");
            for _ in 0..1 + rng.below(3) {
                match h.reserve(size(rng), 2) {
                    Ok(r) => {
                        let s = h.user_slot(rng.below(8) as usize);
                        let set = Action::Set {
                            off: s,
                            value: r.off(),
                        };
                        // With or without a destination, before or after the alloc (one
                        // reservation alone takes the one-block fast path).
                        match rng.below(3) {
                            0 => {
                                desc += &format!(" alloc {:#x}", r.off());
                                acts.push(Action::Alloc(r));
                            }
                            1 => {
                                desc += &format!(" slot {s:#x}<-alloc {:#x}", r.off());
                                acts.push(set);
                                acts.push(Action::Alloc(r));
                            }
                            _ => {
                                desc += &format!(" alloc {:#x}->slot {s:#x}", r.off());
                                acts.push(Action::Alloc(r));
                                acts.push(set);
                            }
                        }
                    }
                    Err(e) => desc += &format!(" (reserve: {e})"),
                }
            }
            if !live.is_empty() && rng.below(2) == 0 {
                let o = pick(rng);
                desc += &format!(" free {o:#x}");
                acts.push(Action::Free(o));
            }
            h.publish(acts).map(|_| desc)
        }
        _ => {
            let r = h.reserve(size(rng), 3);
            match r {
                Ok(r) => {
                    let d = format!("reserve {:#x} + cancel", r.off());
                    h.cancel(vec![Action::Alloc(r)]);
                    Ok(d)
                }
                Err(e) => Err(e),
            }
        }
    };
    match res {
        Ok(d) => d,
        Err(e @ Error::OutOfMemory { .. }) => format!("refused: {e}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn run(seed: u64, ops: usize, opts: &Enumerate) -> usize {
    let mut rng = Rng(seed);
    let r = Arc::new(Recorder::new(224 << 10));
    r.set_capture(false);
    let h = Heap::create(r.clone(), &layout(), Options::default()).unwrap();
    let mut images = 0;
    for k in 0..ops {
        let before = state(&h);
        r.clear_history();
        r.set_capture(true);
        let what = step(&h, &mut rng);
        r.set_capture(false);
        let after = state(&h);
        let n = r
            .check_crash_images(opts, |img| {
                let c = Arc::new(Recorder::from_image(img));
                c.set_capture(false);
                let h2 = Heap::open(c.clone(), Options::default())
                    .map_err(|e| format!("open: {e}"))?;
                let rep = palloc::check(&*c).map_err(|e| format!("check: {e}"))?;
                if !rep.is_ok() {
                    return Err(format!("checker: {:?}", rep.problems));
                }
                let got = state(&h2);
                if got != before && got != after {
                    return Err(format!(
                        "recovered state is neither before nor after\n got {got:?}\n before {before:?}\n after {after:?}"
                    ));
                }
                Ok(())
            })
            .unwrap_or_else(|f| {
                if std::env::var_os("PALLOC_CRASH_LOG").is_some() {
                    for e in r.log() {
                        eprintln!("{e:?}");
                    }
                }
                panic!("PALLOC_CRASH_SEED={seed} op {k} ({what}): {f}")
            });
        images += n;
        // After the operation everything is durable: the durable image is the new state.
        let d = Arc::new(Recorder::from_image(&r.durable_image()));
        let h2 = Heap::open(d, Options::default()).unwrap();
        assert_eq!(
            state(&h2),
            after,
            "PALLOC_CRASH_SEED={seed} op {k} ({what}) not durable"
        );
    }
    images
}

fn seed() -> u64 {
    testkit::seed("PALLOC_CRASH_SEED")
}

#[test]
fn every_crash_image_recovers_to_before_or_after() {
    let base = seed();
    let opts = Enumerate {
        exhaustive_max: 64,
        samples: 6,
        seed: None,
    };
    let start = std::time::Instant::now();
    let mut images = 0;
    // PALLOC_CRASH_SEQUENCES=<n> for a longer soak (default 4 sequences of 30 operations).
    let sequences: u64 = std::env::var("PALLOC_CRASH_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for i in 0..sequences {
        let s = base.wrapping_add(i);
        eprintln!("crash sequence: PALLOC_CRASH_SEED={s}");
        images += run(s, 30, &opts);
    }
    eprintln!("{images} crash images checked in {:?}", start.elapsed());
    assert!(images > 100);
}

/// The state a big publish changes: live objects, user slot 0, and the words of the object
/// user slot 1 points to (if any).
type BigState = (BTreeSet<u64>, u64, Vec<u64>);

fn big_state<P: Persister + ?Sized>(h: &Heap<P>) -> BigState {
    let p = h.persister();
    let big = p.read_u64(h.user_slot(1) as usize);
    let words = match h.object(big) {
        Ok(o) if big != 0 => (0..o.usable_size / 8)
            .map(|i| p.read_u64((big + 8 * i) as usize))
            .collect(),
        _ => Vec::new(),
    };
    (
        h.objects().map(|o| o.off).collect(),
        p.read_u64(h.user_slot(0) as usize),
        words,
    )
}

/// Sampled crash images of `what`: each recovered heap passes the checker and holds the state
/// before or after it.
fn check_big(r: &Recorder, before: &BigState, after: &BigState) -> usize {
    let opts = Enumerate {
        exhaustive_max: 64,
        samples: 10,
        seed: None,
    };
    r.check_crash_images(&opts, |img| {
        let c = Arc::new(Recorder::from_image(img));
        c.set_capture(false);
        let h2 = Heap::open(c.clone(), Options::default()).map_err(|e| format!("open: {e}"))?;
        let rep = palloc::check(&*c).map_err(|e| format!("check: {e}"))?;
        if !rep.is_ok() {
            return Err(format!("checker: {:?}", rep.problems));
        }
        let got = big_state(&h2);
        if &got != before && &got != after {
            return Err(format!(
                "neither before nor after: {} objects, slot {:#x}",
                got.0.len(),
                got.1
            ));
        }
        Ok(())
    })
    .unwrap_or_else(|f| panic!("{f}"))
}

#[test]
fn ten_thousand_action_publish_is_all_or_nothing() {
    // 1 KiB lane logs hold 60 entries: the publishes below need extensions.
    let r = Arc::new(Recorder::new(2 << 20));
    r.set_capture(false);
    let h = Heap::create(r.clone(), &small(), Options::default()).unwrap();
    let objs: Vec<u64> = (0..10_000).map(|_| h.alloc(48, 1, None).unwrap()).collect();
    let slot = h.user_slot(0);
    // 10 000 frees and a slot in one atomic step.
    let before = big_state(&h);
    let mut acts: Vec<Action> = objs.iter().map(|&o| Action::Free(o)).collect();
    acts.push(Action::Set {
        off: slot,
        value: 0xA,
    });
    r.clear_history();
    r.set_capture(true);
    h.publish(acts).unwrap();
    r.set_capture(false);
    let after = big_state(&h);
    assert_eq!(after, (BTreeSet::new(), 0xA, Vec::new()));
    let mut images = check_big(&r, &before, &after);
    // 5 000 allocations and the slot: the extension is reused (no chunk taken for it).
    let free_chunks = h.stats().free_chunks;
    let res: Vec<Action> = (0..5_000)
        .map(|_| Action::Alloc(h.reserve(48, 2).unwrap()))
        .collect();
    let before = after;
    let mut acts = res;
    acts.push(Action::Set {
        off: slot,
        value: 0xB,
    });
    r.clear_history();
    r.set_capture(true);
    h.publish(acts).unwrap();
    r.set_capture(false);
    let after = big_state(&h);
    assert_eq!((after.0.len(), after.1), (5_000, 0xB));
    assert!(h.stats().free_chunks <= free_chunks);
    images += check_big(&r, &before, &after);
    // 10 000 distinct words stored in one step (10 000 redo entries, most in extensions; the
    // log grows again), with the slot.
    let big = h.zalloc(80_000, 3, Some(h.user_slot(1))).unwrap();
    let before = big_state(&h);
    let mut acts: Vec<Action> = (0..10_000u64)
        .map(|i| Action::Set {
            off: big + 8 * i,
            value: i + 1,
        })
        .collect();
    acts.push(Action::Set {
        off: slot,
        value: 0xC,
    });
    r.clear_history();
    r.set_capture(true);
    h.publish(acts).unwrap();
    r.set_capture(false);
    let after = big_state(&h);
    assert_eq!(after.1, 0xC);
    assert!(after
        .2
        .iter()
        .take(10_000)
        .enumerate()
        .all(|(i, &v)| v == i as u64 + 1));
    images += check_big(&r, &before, &after);
    let d = Arc::new(Recorder::from_image(&r.durable_image()));
    let h2 = Heap::open(d.clone(), Options::default()).unwrap();
    assert_eq!(big_state(&h2), after);
    assert!(palloc::check(&*d).unwrap().is_ok());
    eprintln!("{images} crash images of 10 001- and 5 001-action publishes checked");
}
