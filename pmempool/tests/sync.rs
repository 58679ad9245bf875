//! `pmempool sync` and the resync path of `check --repair`: missing, damaged and stale-marked
//! replicas are rebuilt from the primary; `--dry-run` changes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn replicated(d: &Path) -> (PathBuf, [PathBuf; 3]) {
    let p = |n: &str| d.join(n);
    let set = write_set(
        d,
        "pool.set",
        &[
            format!("16M {}", p("a0").display()),
            "REPLICA".into(),
            format!("8M {}", p("b0").display()),
            format!("12M {}", p("b1").display()),
        ],
    );
    run_expect(&["create", s(&set)], 0);
    // Some data to copy: user slot 4 (unused by tx) through a real open.
    {
        use pool::Persister;
        let pl = pool::Pool::open_poolset(&set, None).unwrap();
        pl.write_u64(96, 0x5eed_cafe);
        pl.persist(96, 8).unwrap();
    }
    (set, [p("a0"), p("b0"), p("b1")])
}

#[test]
fn missing_replica_part_is_recreated_by_sync() {
    let d = testkit::shm_tempdir();
    let (set, [a0, b0, b1]) = replicated(d.path());
    std::fs::remove_file(&b1).unwrap();
    let out = run_expect(&["check", s(&set)], 2);
    let t = text(&out.stdout);
    assert!(t.contains("[repairable: resync from the primary]"), "{t}");
    let info = text(&run_expect(&["info", s(&set)], 0).stdout);
    assert!(info.contains("missing"), "{info}");
    let before = snapshot(&[&a0, &b0]);
    let out = run_expect(&["sync", "--dry-run", s(&set)], 0);
    assert!(text(&out.stdout).contains("would be resynchronised"));
    assert_eq!(snapshot(&[&a0, &b0]), before);
    assert!(!b1.exists(), "dry run created nothing");
    let out = run_expect(&["sync", "--progress", s(&set)], 0);
    assert!(
        text(&out.stdout).contains("replica 1") && text(&out.stdout).contains("rebuilt"),
        "{}",
        text(&out.stdout)
    );
    assert!(b1.exists());
    run_expect(&["check", s(&set)], 0);
    let out = run_expect(&["sync", s(&set)], 0);
    assert!(text(&out.stdout).contains("nothing to do"));
    // The rebuilt replica holds the data: the word at pool offset 96 is in b0's data area.
    assert_eq!(read_at(&b0, HDR + 96, 8), 0x5eed_cafeu64.to_le_bytes());
}

#[test]
fn replica_with_both_header_slots_broken_is_rebuilt_by_check_repair() {
    let d = testkit::shm_tempdir();
    let (set, [a0, _b0, b1]) = replicated(d.path());
    flip(&b1, 300);
    flip(&b1, 2048 + 300);
    let out = run_expect(&["check", s(&set)], 2);
    let t = text(&out.stdout);
    assert!(
        t.contains("both slots unusable") && t.contains("resync"),
        "{t}"
    );
    let before = snapshot(&[&a0, &b1]);
    run_expect(&["check", "--repair", "--dry-run", s(&set)], 1);
    assert_eq!(snapshot(&[&a0, &b1]), before);
    let out = run_expect(&["check", "--repair", "--yes", s(&set)], 1);
    assert!(
        text(&out.stdout).contains("rebuilt from the primary"),
        "{}",
        text(&out.stdout)
    );
    run_expect(&["check", s(&set)], 0);
}

#[test]
fn replica_marked_stale_is_reported_and_synced() {
    let d = testkit::shm_tempdir();
    let (set, [a0, b0, b1]) = replicated(d.path());
    // Run degraded once with replica 1 gone: the primary's header marks it stale.
    let saved = std::fs::read(&b0).unwrap();
    std::fs::remove_file(&b0).unwrap();
    {
        let parsed = poolset::parse_file(&set, poolset::Mode::Initiator).unwrap();
        let opts = pool::OpenOptions {
            failure_policy: pool::FailurePolicy::Degraded,
            ..Default::default()
        };
        let pl = pool::Pool::open(&parsed.set, None, opts).unwrap();
        assert!(!pl.replica_health()[1].is_healthy());
    }
    std::fs::write(&b0, &saved).unwrap(); // back, but the mark stays
    let info = text(&run_expect(&["info", s(&set)], 0).stdout);
    assert!(info.contains("STALE"), "{info}");
    let v = json(&run_expect(&["info", "--json", s(&set)], 0));
    assert_eq!(
        v["replicas"][0]["parts"][0]["header"]["stale_replicas"],
        serde_json::json!([1])
    );
    let out = run_expect(&["check", s(&set)], 2);
    assert!(
        text(&out.stdout).contains("marked stale"),
        "{}",
        text(&out.stdout)
    );
    let before = snapshot(&[&a0, &b0, &b1]);
    run_expect(&["sync", "--dry-run", s(&set)], 0);
    assert_eq!(snapshot(&[&a0, &b0, &b1]), before);
    run_expect(&["sync", "--full", s(&set)], 0);
    run_expect(&["check", s(&set)], 0);
    let v = json(&run_expect(&["info", "--json", s(&set)], 0));
    assert_eq!(
        v["replicas"][0]["parts"][0]["header"]["stale_replicas"],
        serde_json::json!([])
    );
}

#[test]
fn sync_refuses_a_single_file_and_a_broken_primary() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("one.pool");
    run_expect(&["create", "--size", "8M", s(&f)], 0);
    let out = run_expect(&["sync", s(&f)], 1);
    assert!(
        text(&out.stderr).contains("no replicas"),
        "{}",
        text(&out.stderr)
    );
    let (set, [a0, _, _]) = replicated(d.path());
    flip(&a0, 300);
    flip(&a0, 2048 + 300);
    let out = run_expect(&["sync", s(&set)], 1);
    assert!(text(&out.stderr).contains("a0"), "{}", text(&out.stderr));
    let out = run_expect(&["check", s(&set)], 2);
    assert!(
        text(&out.stdout).contains("NOT repairable"),
        "the primary is not rebuilt"
    );
}
