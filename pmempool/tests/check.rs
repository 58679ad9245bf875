//! `pmempool check` on damaged pools: bytes of headers, replica data, logs and heap metadata
//! are corrupted on purpose; check must detect each, `--repair --dry-run` must change no byte,
//! and `--repair` must fix exactly what it says it fixes (then check says consistent).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use pool::crash::Recorder;
use tx::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use tx::{ptype, PPtr, PoolTyped};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Root {
    node: PPtr<Node>,
    count: u64,
}
ptype!(Root, "pmempool-check-test::Root");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Node {
    value: [u8; 24],
}
ptype!(Node, "pmempool-check-test::Node");

/// A single-file object pool with a root and one node; returns the node's offset.
fn pool_with_node(f: &Path) -> u64 {
    run_expect(&["create", "--size", "8M", s(f)], 0);
    let p = PoolTyped::<Root>::open(f).unwrap();
    let root = p.root();
    p.tx(|t| {
        let n = t.alloc_value(Node {
            value: *b"the quick brown fox jump",
        })?;
        t.update(&root, |r| {
            r.node = n;
            r.count = 1;
        })?;
        Ok::<_, tx::Error>(n.off())
    })
    .unwrap()
}

/// Check says "not consistent" (2) and prints `want`; dry run (1 when `fixable`, else 2) leaves
/// every byte of `files` unchanged.
#[track_caller]
fn detect(target: &Path, files: &[&Path], want: &str, fixable: bool) -> String {
    let before = snapshot(files);
    let out = run_expect(&["check", s(target)], 2);
    let t = text(&out.stdout);
    assert!(t.contains(want), "check output lacks {want:?}:\n{t}");
    assert_eq!(
        snapshot(files),
        before,
        "check without --repair changed bytes"
    );
    let dry = run_expect(
        &["check", "--repair", "--dry-run", s(target)],
        if fixable { 1 } else { 2 },
    );
    assert_eq!(snapshot(files), before, "--dry-run changed bytes");
    if fixable {
        assert!(
            text(&dry.stdout).contains("would be repaired"),
            "{}",
            text(&dry.stdout)
        );
    }
    t
}

#[test]
fn stale_header_slot_is_rewritten_and_backup_kept() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    run_expect(&["check", s(&f)], 0);
    flip(&f, 300); // inside slot 0's reserved bytes: checksum now fails
    let t = detect(&f, &[&f], "header slot 0 is corrupt", true);
    assert!(t.contains("[repairable: pool open]"), "{t}");
    // Without a terminal, --repair needs --yes (and changes nothing).
    let before = std::fs::read(&f).unwrap();
    let out = run_expect(&["check", "--repair", s(&f)], 3);
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&f).unwrap(), before);
    let b = d.path().join("backup.pool");
    let out = run_expect(&["check", "--repair", "--yes", "--backup", s(&b), s(&f)], 1);
    let t = text(&out.stdout);
    assert!(t.contains("repaired, now consistent"), "{t}");
    assert_eq!(
        std::fs::read(&b).unwrap(),
        before,
        "backup is the pool before repair"
    );
    assert_eq!(
        read_at(&f, 0, 2048),
        read_at(&f, 2048, 2048),
        "slot 0 rewritten from slot 1"
    );
    run_expect(&["check", s(&f)], 0);
    // An existing backup file is never overwritten.
    flip(&f, 300);
    let out = run_expect(&["check", "--repair", "--yes", "--backup", s(&b), s(&f)], 3);
    assert!(
        text(&out.stderr).contains("must not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn both_header_slots_broken_is_not_repairable() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    flip(&f, 300);
    flip(&f, 2048 + 300);
    let t = detect(&f, &[&f], "both slots unusable", false);
    assert!(t.contains("NOT repairable"), "{t}");
    let before = std::fs::read(&f).unwrap();
    let out = run_expect(&["check", "--repair", "--yes", s(&f)], 2);
    assert!(
        text(&out.stdout).contains("nothing repaired"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

#[test]
fn replica_data_difference_is_copied_from_the_primary() {
    let d = testkit::shm_tempdir();
    let p = |n: &str| d.path().join(n);
    let set = two_parts_and_a_replica(d.path());
    run_expect(&["create", s(&set)], 0);
    run_expect(&["check", s(&set)], 0);
    // 1 MiB into the replica's data (a free chunk: the heap would not notice).
    write_at(&p("b0"), HDR + (1 << 20) + 123, b"garbage!");
    let files = [p("a0"), p("a1"), p("b0")];
    let refs: Vec<&Path> = files.iter().map(|x| x.as_path()).collect();
    detect(
        &set,
        &refs,
        "replica 1: data differs from the primary",
        true,
    );
    let out = run_expect(&["check", "--repair", "--yes", s(&set)], 1);
    assert!(
        text(&out.stdout).contains("copied") || text(&out.stdout).contains("repaired"),
        "{}",
        text(&out.stdout)
    );
    run_expect(&["check", s(&set)], 0);
    let primary = read_at(&p("a0"), HDR + (1 << 20) + 123, 8);
    assert_eq!(read_at(&p("b0"), HDR + (1 << 20) + 123, 8), primary);
}

#[test]
fn part_of_another_pool_is_named_and_not_repairable() {
    let d = testkit::shm_tempdir();
    let p = |n: &str| d.path().join(n);
    let set_a = write_set(
        d.path(),
        "a.set",
        &[
            format!("8M {}", p("a0").display()),
            format!("8M {}", p("a1").display()),
        ],
    );
    let set_c = write_set(
        d.path(),
        "c.set",
        &[
            format!("8M {}", p("c0").display()),
            format!("8M {}", p("c1").display()),
        ],
    );
    run_expect(&["create", s(&set_a)], 0);
    run_expect(&["create", s(&set_c)], 0);
    std::fs::copy(p("c1"), p("a1")).unwrap();
    let t = detect(
        &set_a,
        &[&p("a0"), &p("a1")],
        &format!("{}: header poolset_uuid", p("a1").display()),
        false,
    );
    assert!(
        t.contains("next_part_uuid"),
        "the link from a0 is reported too:\n{t}"
    );
    run_expect(&["check", "--repair", "--yes", s(&set_a)], 2);
}

#[test]
fn heap_chunk_header_corruption_is_detected_not_repaired() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    let h = heap_header(&f);
    let z = h.zones()[0];
    // The first chunk header (a run, holding root and node) becomes an unknown type.
    let at = HDR + z.chunk_header_off(0) as u64;
    write_at(&f, at, &0x0000_0001_0000_0007u64.to_le_bytes());
    let t = detect(&f, &[&f], "unknown type", false);
    assert!(t.contains("NOT repairable"), "{t}");
    let before = std::fs::read(&f).unwrap();
    run_expect(&["check", "--repair", "--yes", s(&f)], 2);
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

#[test]
fn allocation_header_corruption_is_detected() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    let node = pool_with_node(&f);
    // The node's allocation header: block_size at node - 16.
    write_at(&f, HDR + node - 16, &12345u64.to_le_bytes());
    detect(&f, &[&f], "object header says 12345 bytes", false);
}

#[test]
fn dangling_pointer_is_reported() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    {
        let p = PoolTyped::<Root>::open(&f).unwrap();
        let r = p.read(&p.root()).unwrap();
        p.tx(|t| t.free(r.node)).unwrap(); // root.node now dangles
    }
    detect(&f, &[&f], "which is not a live object", false);
}

#[test]
fn incomplete_redo_log_is_discarded_by_repair() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    let h = heap_header(&f);
    let commit = HDR + (h.lane_off(3) + palloc::ulog::COMMIT_WORD) as u64;
    write_at(&f, commit, &0xdead_beef_dead_beefu64.to_le_bytes());
    let t = detect(&f, &[&f], "lane 3: redo log incomplete", true);
    assert!(t.contains("[repairable: recovery]"), "{t}");
    let info = text(&run_expect(&["info", s(&f)], 0).stdout);
    assert!(info.contains("lane 3: redo incomplete"), "{info}");
    let out = run_expect(&["check", "--repair", "--yes", s(&f)], 1);
    assert!(
        text(&out.stdout).contains("lane 3: incomplete redo log discarded"),
        "{}",
        text(&out.stdout)
    );
    run_expect(&["check", s(&f)], 0);
    assert_eq!(read_at(&f, commit, 8), [0u8; 8]);
}

/// Every image a crash could leave at every fence of a transaction (alloc + update) is
/// reported as repairable by recovery or as consistent; dry runs change nothing; repair leaves
/// a consistent pool holding the transaction entirely or not at all.
#[test]
fn crash_images_of_a_transaction_are_all_repairable() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    pool_with_node(&f);
    let file = std::fs::read(&f).unwrap();
    let (header, user) = file.split_at(HDR as usize);
    let rec = Arc::new(Recorder::from_image(user));
    rec.set_capture(false);
    {
        let p =
            PoolTyped::<Root, Recorder>::open_in(rec.clone(), palloc::Options::default()).unwrap();
        let root = p.root();
        rec.clear_history();
        rec.set_capture(true);
        p.tx(|t| {
            let n = t.alloc_value(Node {
                value: *b"second node, after crash",
            })?;
            t.update(&root, |r| {
                r.node = n;
                r.count = 2;
            })
        })
        .unwrap();
        rec.set_capture(false);
    }
    let mut images: Vec<Vec<u8>> = rec
        .crash_points()
        .iter()
        .map(|c| c.durable_image())
        .collect();
    images.push(rec.durable_image());
    images.dedup();
    assert!(images.len() >= 3, "a transaction has several fences");
    let (mut saw_redo, mut saw_undo, mut saw_clean) = (false, false, false);
    for (i, img) in images.iter().enumerate() {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(img);
        std::fs::write(&f, &bytes).unwrap();
        let out = pmempool(&["check", s(&f)]);
        let t = text(&out.stdout);
        match out.status.code() {
            Some(0) => saw_clean = true,
            Some(2) => {
                assert!(!t.contains("NOT repairable"), "image {i}: {t}");
                saw_redo |= t.contains("redo log committed");
                saw_undo |= t.contains("in flight");
                run_expect(&["check", "--repair", "--dry-run", s(&f)], 1);
                assert_eq!(
                    std::fs::read(&f).unwrap(),
                    bytes,
                    "image {i}: dry run wrote"
                );
                run_expect(&["check", "--repair", "--yes", s(&f)], 1);
                run_expect(&["check", s(&f)], 0);
            }
            other => panic!("image {i}: exit {other:?}\n{t}\n{}", text(&out.stderr)),
        }
        let p = PoolTyped::<Root>::open(&f).unwrap();
        let r = p.read(&p.root()).unwrap();
        let node = p.read(&r.node).unwrap();
        match r.count {
            1 => assert_eq!(&node.value, b"the quick brown fox jump", "image {i}"),
            2 => assert_eq!(&node.value, b"second node, after crash", "image {i}"),
            c => panic!("image {i}: count {c}"),
        }
    }
    assert!(saw_undo, "some image has a transaction in flight");
    assert!(saw_clean, "the final image is consistent");
    // The commit point of a transaction with an allocation is a redo batch; whether an image
    // catches it complete but unapplied depends on palloc's batching, so report, not assert.
    if !saw_redo {
        eprintln!("note: no crash image held a committed, unapplied redo log");
    }
}
