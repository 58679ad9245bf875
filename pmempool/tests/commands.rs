//! `create`, `info`, `dump`, `rm` and the command line itself, driven through the real binary on
//! real pools in /dev/shm.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use tx::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use tx::{ptype, PPtr, PoolTyped};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Root {
    node: PPtr<Node>,
    count: u64,
}
ptype!(Root, "pmempool-test::Root");

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "tx::zerocopy")]
#[repr(C)]
struct Node {
    value: [u8; 16],
}
ptype!(Node, "pmempool-test::Node");

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [
        "create",
        "info",
        "check",
        "dump",
        "rm",
        "sync",
        "transform",
        "poolset",
    ] {
        let out = run_expect(&[cmd, "--help"], 0);
        let t = text(&out.stdout);
        assert!(t.contains("Example"), "{cmd} --help has no examples:\n{t}");
        assert!(
            t.contains("Exit status"),
            "{cmd} --help has no exit codes:\n{t}"
        );
    }
}

#[test]
fn bad_command_lines_exit_64() {
    run_expect(&["create"], 64);
    run_expect(&["check", "--dry-run", "x"], 64); // --dry-run needs --repair
    run_expect(&["frobnicate"], 64);
}

#[test]
fn create_file_opens_with_tx_and_info_shows_it() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    run_expect(&["create", "--size", "16M", "--mode", "0600", s(&f)], 0);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 16 << 20);
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // tx opens it as a typed pool (the layout is tx's; the root is created at first open).
    {
        let p = PoolTyped::<Root>::open(&f).expect("tx opens a pool pmempool created");
        let root = p.root();
        p.tx(|t| {
            let n = t.alloc_value(Node {
                value: *b"hello, pmempool!",
            })?;
            t.update(&root, |r| {
                r.node = n;
                r.count = 1;
            })
        })
        .unwrap();
    }
    let out = run_expect(&["info", s(&f)], 0);
    let t = text(&out.stdout);
    for want in [
        "signature       RSPMPOOL",
        "layout          \"rs-tx-obj\"",
        "replica_count   1",
        "healthy",
        "objects per type",
        "lanes with pending logs: none",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    let v = json(&run_expect(&["info", "--json", s(&f)], 0));
    assert_eq!(v["poolset"], false);
    assert_eq!(v["pool_size"], (16u64 << 20) - 4096);
    let hdr = &v["replicas"][0]["parts"][0]["header"];
    assert_eq!(hdr["major"], 1);
    assert_eq!(hdr["part_size"], 16u64 << 20);
    assert_eq!(hdr["uuid"], hdr["next_part_uuid"]);
    assert_eq!(v["heap"]["stats"]["objects"], 2, "root + node: {v:#}");
    let types = v["heap"]["types"].as_array().unwrap();
    let node_t = types
        .iter()
        .find(|t| t["type_num"] == <Node as tx::PType>::TYPE_NUM)
        .expect("the node's type is listed");
    assert_eq!(node_t["objects"], 1);
    assert!(v["problems"].as_array().unwrap().is_empty());
}

#[test]
fn create_refuses_what_it_cannot_do() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    let out = run_expect(&["create", s(&f)], 1);
    assert!(
        text(&out.stderr).contains("--size is needed"),
        "{}",
        text(&out.stderr)
    );
    run_expect(&["create", "--size", "8M", s(&f)], 0);
    let before = std::fs::read(&f).unwrap();
    let out = run_expect(&["create", "--size", "8M", s(&f)], 1);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&f).unwrap(), before, "nothing overwritten");
    let out = run_expect(&["create", "--size", "12Q", s(&d.path().join("b"))], 1);
    assert!(
        text(&out.stderr).contains("unknown unit"),
        "{}",
        text(&out.stderr)
    );
    // A remote replica whose rpmemd cannot be started: the error names the replica, and the
    // local part created before it is removed again.
    let part = d.path().join("r.part0");
    let set = write_set(
        d.path(),
        "remote.set",
        &[
            format!("16M {}", part.display()),
            "REPLICA localhost target.set".into(),
        ],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmempool"))
        .args(["create", s(&set)])
        .env("RPMEM_TRANSPORT", "local")
        .env("RPMEMD_PATH", d.path().join("no-such-rpmemd"))
        .output()
        .unwrap();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("replica 1"), "{e}");
    assert!(!part.exists());
    // --size with a poolset is a mistake, said so.
    let set2 = write_set(
        d.path(),
        "l.set",
        &[format!("16M {}", d.path().join("l0").display())],
    );
    let out = run_expect(&["create", "--size", "8M", s(&set2)], 1);
    assert!(text(&out.stderr).contains("--size is for a single pool file"));
}

#[test]
fn poolset_with_parts_and_replica_create_info_check_rm() {
    let d = testkit::shm_tempdir();
    let p = |n: &str| d.path().join(n);
    let set = two_parts_and_a_replica(d.path());
    run_expect(&["create", "-v", "--progress", s(&set)], 0);
    let v = json(&run_expect(&["info", "--json", s(&set)], 0));
    assert_eq!(v["poolset"], true);
    let reps = v["replicas"].as_array().unwrap();
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0]["parts"].as_array().unwrap().len(), 2);
    assert_eq!(reps[1]["health"], "healthy (data equal to the primary)");
    let a0 = &reps[0]["parts"][0]["header"];
    let a1 = &reps[0]["parts"][1]["header"];
    let b0 = &reps[1]["parts"][0]["header"];
    assert_eq!(a0["next_part_uuid"], a1["uuid"]);
    assert_eq!(a0["next_repl_uuid"], b0["uuid"]);
    assert_eq!(b0["prev_repl_uuid"], a0["uuid"]);
    assert_eq!(b0["replica_index"], 1);
    run_expect(&["check", s(&set)], 0);
    // rm --only-pools keeps the poolset.
    run_expect(&["rm", "--only-pools", s(&set)], 0);
    for n in ["a0", "a1", "b0"] {
        assert!(!p(n).exists(), "{n} removed");
    }
    assert!(set.exists());
    // Missing parts: an error unless --force; then the poolset goes too.
    let out = run_expect(&["rm", s(&set)], 1);
    assert!(text(&out.stderr).contains("a0"), "{}", text(&out.stderr));
    run_expect(&["rm", "--force", s(&set)], 0);
    assert!(!set.exists());
}

#[test]
fn info_and_rm_refuse_a_pool_in_use() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    run_expect(&["create", "--size", "8M", s(&f)], 0);
    let held = pool::Pool::open_file(&f, None).unwrap();
    let out = run_expect(&["info", s(&f)], 1);
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    let out = run_expect(&["check", s(&f)], 3);
    assert!(text(&out.stderr).contains("in use"));
    let out = run_expect(&["rm", s(&f)], 1);
    assert!(text(&out.stderr).contains("in use"));
    assert!(f.exists());
    drop(held);
    run_expect(&["rm", "-v", s(&f)], 0);
    assert!(!f.exists());
}

#[test]
fn dump_user_area_ranges_and_objects() {
    let d = testkit::shm_tempdir();
    let f = d.path().join("a.pool");
    run_expect(&["create", "--size", "8M", s(&f)], 0);
    let node_off = {
        let p = PoolTyped::<Root>::open(&f).unwrap();
        let root = p.root();
        p.tx(|t| {
            let n = t.alloc_value(Node {
                value: *b"0123456789abcdef",
            })?;
            t.update(&root, |r| r.node = n)?;
            Ok::<_, tx::Error>(n.off())
        })
        .unwrap()
    };
    let out = run_expect(&["dump", "--range", "0-32", s(&f)], 0);
    let t = text(&out.stdout);
    assert!(
        t.starts_with("00000000  52 53 50 4d 48 45 41 50"),
        "heap signature first:\n{t}"
    );
    assert!(t.contains("|RSPMHEAP"), "{t}");
    assert!(t.trim_end().ends_with("00000020"), "{t}");
    let out = run_expect(&["dump", "--binary", "--range", "0-8", s(&f)], 0);
    assert_eq!(out.stdout, b"RSPMHEAP");
    let out = run_expect(
        &[
            "dump",
            "--binary",
            "--object",
            &format!("{node_off:#x}"),
            s(&f),
        ],
        0,
    );
    assert_eq!(&out.stdout[..16], b"0123456789abcdef");
    // The whole user area, binary: exactly the file minus the header region.
    let out = run_expect(&["dump", "--binary", s(&f)], 0);
    assert_eq!(out.stdout, std::fs::read(&f).unwrap()[HDR as usize..]);
    let out = run_expect(&["dump", "--range", "0-9M", s(&f)], 1);
    assert!(text(&out.stderr).contains("past the pool"));
    let out = run_expect(&["dump", "--object", "0x10", s(&f)], 1);
    assert!(
        text(&out.stderr).contains("not a live object"),
        "{}",
        text(&out.stderr)
    );
    // Long runs of equal lines collapse to '*'.
    let out = run_expect(&["dump", "--range", "4K-8K", s(&f)], 0);
    assert!(text(&out.stdout).lines().count() < 64);
}

/// docs/pmempool/CMD.md documents every option `--help` lists (a new option without its doc
/// fails here).
#[test]
fn doc_pages_cover_every_option() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pmempool");
    for cmd in [
        "create",
        "info",
        "check",
        "dump",
        "rm",
        "sync",
        "transform",
        "poolset",
    ] {
        let page = std::fs::read_to_string(docs.join(format!("{cmd}.md")))
            .unwrap_or_else(|e| panic!("docs/pmempool/{cmd}.md: {e}"));
        let help = text(&run_expect(&[cmd, "--help"], 0).stdout);
        for word in help.split_whitespace() {
            let opt = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            if opt.starts_with("--") && opt.len() > 2 && opt != "--help" {
                assert!(page.contains(opt), "docs/pmempool/{cmd}.md lacks {opt}");
            }
        }
    }
}

/// Files that are not pools (empty, shorter than a header, random bytes) give verdicts and
/// errors, never a panic.
#[test]
fn non_pools_are_reported_not_crashed_on() {
    let d = testkit::shm_tempdir();
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("tiny", vec![7u8; 1000]),
        // Deterministic "random" bytes (xorshift), 8 MiB.
        ("noise", {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            (0..(8 << 20) / 8)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        }),
    ];
    for (name, bytes) in cases {
        let f = d.path().join(name);
        std::fs::write(&f, &bytes).unwrap();
        let info = run_expect(&["info", s(&f)], 0);
        assert!(!text(&info.stdout).is_empty());
        let chk = run_expect(&["check", s(&f)], 2);
        assert!(text(&chk.stdout).contains(name), "{}", text(&chk.stdout));
        run_expect(&["check", "--repair", "--yes", s(&f)], 2);
        run_expect(&["dump", s(&f)], 1);
        assert_eq!(std::fs::read(&f).unwrap(), bytes, "{name} unchanged");
    }
}
