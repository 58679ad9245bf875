//! `pmempool transform` on local replicas, driving the real binary: add and remove, dry run,
//! refusals, and a real abrupt exit (`PMEMPOOL_TRANSFORM_CRASH_BEFORE`) before every step,
//! after which the pool is still SRC (before the commit) or DST (during removal), and running
//! the same transform again always ends with a consistent DST.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Sets {
    _d: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    src_parts: Vec<PathBuf>,
    dst_parts: Vec<PathBuf>,
}

/// small.set: primary (two 8 MiB parts) + replica r; big.set: primary + replica n + replica r.
/// `add`: SRC small, DST big (else the reverse). SRC is created with pmempool create.
fn sets(add: bool) -> Sets {
    let d = testkit::shm_tempdir();
    let p = |n: &str| d.path().join(n);
    let lines = |names: &[&[&str]]| -> Vec<String> {
        let mut v = Vec::new();
        for (i, r) in names.iter().enumerate() {
            if i > 0 {
                v.push("REPLICA".into());
            }
            for n in *r {
                v.push(format!("8M {}", p(n).display()));
            }
        }
        v
    };
    let small = write_set(
        d.path(),
        "small.set",
        &lines(&[&["p0", "p1"], &["r0", "r1"]]),
    );
    let big = write_set(
        d.path(),
        "big.set",
        &lines(&[&["p0", "p1"], &["n0", "n1"], &["r0", "r1"]]),
    );
    let sp: Vec<PathBuf> = ["p0", "p1", "r0", "r1"].iter().map(|n| p(n)).collect();
    let bp: Vec<PathBuf> = ["p0", "p1", "n0", "n1", "r0", "r1"]
        .iter()
        .map(|n| p(n))
        .collect();
    let (src, dst, src_parts, dst_parts) = if add {
        (small, big, sp, bp)
    } else {
        (big, small, bp, sp)
    };
    run_expect(&["create", s(&src)], 0);
    Sets {
        _d: d,
        src,
        dst,
        src_parts,
        dst_parts,
    }
}

fn user_area(parts: &[PathBuf]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in &parts[..2] {
        v.extend(read_at(p, HDR, (8 << 20) - HDR as usize));
    }
    v
}

fn transform_env(args: &[&str], crash: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pmempool"));
    c.arg("transform").args(args);
    if let Some(step) = crash {
        c.env("PMEMPOOL_TRANSFORM_CRASH_BEFORE", step);
    }
    c.output().unwrap()
}

fn assert_parts(x: &Sets) {
    for p in x.src_parts.iter().chain(&x.dst_parts) {
        assert_eq!(p.exists(), x.dst_parts.contains(p), "{}", p.display());
        let mut t = p.as_os_str().to_owned();
        t.push(".transform");
        assert!(!Path::new(&t).exists(), "leftover {t:?}");
    }
}

#[test]
fn add_and_remove_a_local_replica() {
    let x = sets(true);
    let before = snapshot(&x.src_parts.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let out = run_expect(&["transform", "--dry-run", s(&x.src), s(&x.dst)], 0);
    let t = text(&out.stdout);
    assert!(t.contains("add replica 1: local"), "{t}");
    assert!(t.contains("keep replica 1 as replica 2"), "{t}");
    assert!(
        t.contains("steps: create:1, commit, relabel-primary, relabel:2"),
        "{t}"
    );
    assert!(t.contains("state: the pool is SRC"), "{t}");
    assert!(!x.dst_parts[2].exists(), "dry run created nothing");
    assert_eq!(
        before,
        snapshot(&x.src_parts.iter().map(|p| p.as_path()).collect::<Vec<_>>()),
        "dry run changed nothing"
    );
    let out = run_expect(&["transform", "-v", s(&x.src), s(&x.dst)], 0);
    assert!(text(&out.stdout).contains("done: committed"));
    run_expect(&["check", s(&x.dst)], 0);
    assert!(user_area(&x.dst_parts[2..4]) == user_area(&x.dst_parts[..2]));
    assert_parts(&x);
    let out = run_expect(&["info", "--json", s(&x.dst)], 0);
    let v = json(&out);
    assert_eq!(v["replicas"].as_array().unwrap().len(), 3);
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    // SRC no longer describes the pool.
    let out = run_expect(&["check", s(&x.src)], 2);
    assert!(
        text(&out.stdout).contains("replica_count"),
        "{}",
        text(&out.stdout)
    );
    // And back.
    run_expect(&["transform", s(&x.dst), s(&x.src)], 0);
    run_expect(&["check", s(&x.src)], 0);
    assert!(!x.dst_parts[2].exists() && !x.dst_parts[3].exists());
    // Again: nothing to do.
    let out = run_expect(&["transform", s(&x.src), s(&x.src)], 0);
    assert!(text(&out.stdout).contains("nothing to do"));
}

#[test]
fn refusals_name_the_problem() {
    let x = sets(true);
    // A single pool file is not a poolset.
    let f = x._d.path().join("single.pool");
    run_expect(&["create", "--size", "8M", s(&f)], 0);
    let out = run_expect(&["transform", s(&f), s(&x.dst)], 1);
    assert!(text(&out.stderr).contains("not a poolset"));
    // An added part in the way that is not ours.
    std::fs::write(&x.dst_parts[2], b"precious").unwrap();
    let out = run_expect(&["transform", s(&x.src), s(&x.dst)], 1);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&x.dst_parts[2]).unwrap(), b"precious");
    run_expect(&["check", s(&x.src)], 0);
    // Adding and removing at once.
    let other = write_set(
        x._d.path(),
        "swap.set",
        &[
            format!("8M {}", x.src_parts[0].display()),
            format!("8M {}", x.src_parts[1].display()),
            "REPLICA".into(),
            format!("16M {}", x._d.path().join("z").display()),
        ],
    );
    let out = run_expect(&["transform", s(&x.src), s(&other)], 1);
    assert!(
        text(&out.stderr).contains("two transforms"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn abrupt_exit_before_every_step_then_rerun() {
    for (add, steps) in [
        (
            true,
            &["create:1", "commit", "relabel-primary", "relabel:2"][..],
        ),
        (
            false,
            &["commit", "relabel-primary", "relabel:1", "remove:1"][..],
        ),
    ] {
        for step in steps {
            eprintln!("add {add}: exit before {step}");
            let x = sets(add);
            let want = user_area(&x.src_parts);
            let out = transform_env(&[s(&x.src), s(&x.dst)], Some(step));
            assert_eq!(out.status.code(), Some(86), "{}", text(&out.stderr));
            let committed = !matches!(*step, "create:1" | "commit");
            if !committed {
                run_expect(&["check", s(&x.src)], 0);
            }
            if step.starts_with("remove") {
                run_expect(&["check", s(&x.dst)], 0);
            }
            if committed && !step.starts_with("remove") {
                // Neither side is consistent until the transform is finished; the dry run says so.
                let out = run_expect(&["transform", "--dry-run", s(&x.src), s(&x.dst)], 0);
                assert!(
                    text(&out.stdout).contains("interrupted transform"),
                    "{}",
                    text(&out.stdout)
                );
            }
            let out = transform_env(&[s(&x.src), s(&x.dst)], None);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            assert_eq!(
                text(&out.stdout).contains("interrupted transform was finished"),
                committed
            );
            run_expect(&["check", s(&x.dst)], 0);
            assert!(user_area(&x.dst_parts) == want, "user data kept");
            assert_parts(&x);
        }
    }
}
