//! `pool::verify` (read-only: every problem found, no byte changed) and `pool::transform`
//! (add and remove local replicas; an interruption before every step leaves a pool that opens
//! as SRC, or that running the same transform again turns into DST).

use std::path::{Path, PathBuf};

use pool::persist::Flags;
use pool::{
    transform, verify, OpenOptions, Persister, Pool, ProblemKind, Repair, TransformOptions,
    TransformStep,
};

fn part_lines(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("4M {}\n", p.display()))
        .collect()
}

/// A poolset file from replicas (each a list of 4 MiB part files).
fn write_set(dir: &Path, name: &str, replicas: &[&[PathBuf]]) -> (PathBuf, poolset::PoolSet) {
    let mut t = String::from("PMEMPOOLSET\n");
    for (i, r) in replicas.iter().enumerate() {
        if i > 0 {
            t.push_str("REPLICA\n");
        }
        t.push_str(&part_lines(r));
    }
    let f = dir.join(name);
    std::fs::write(&f, t).unwrap();
    let set = poolset::parse_file(&f, poolset::Mode::Initiator)
        .unwrap()
        .set;
    (f, set)
}

fn files(dir: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| dir.join(format!("{prefix}{i}"))).collect()
}

fn fill(pool: &Pool, seed: u8) {
    let len = pool.len();
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    pool.memcpy_persist(0, &data, Flags::NONE).unwrap();
}

fn data(pool: &Pool) -> Vec<u8> {
    let mut b = vec![0u8; pool.len()];
    pool.read(0, &mut b);
    b
}

#[test]
fn verify_reports_every_problem_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = files(d.path(), "p", 2);
    let r = files(d.path(), "r", 2);
    let (_, set) = write_set(d.path(), "a.set", &[&p, &r]);
    let pool = Pool::create(&set, "lay", OpenOptions::default()).unwrap();
    fill(&pool, 7);
    drop(pool);
    assert_eq!(verify(&set, Some("lay")).unwrap(), vec![]);
    // Slot 1 of the replica's header corrupt, a data byte of the replica changed, and the layout
    // asked for differs.
    let mut b = std::fs::read(&r[0]).unwrap();
    b[2048 + 100] ^= 0xff;
    b[4096 + 5000] ^= 0x01;
    std::fs::write(&r[0], &b).unwrap();
    let before: Vec<Vec<u8>> = p
        .iter()
        .chain(&r)
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let probs = verify(&set, Some("other")).unwrap();
    let after: Vec<Vec<u8>> = p
        .iter()
        .chain(&r)
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(before == after, "verify changed a file");
    assert!(
        probs
            .iter()
            .any(|x| x.kind == ProblemKind::HeaderSlot { slot: 1 }
                && x.replica == 1
                && x.repair == Repair::PoolOpen),
        "{probs:#?}"
    );
    assert!(probs.iter().any(|x| matches!(&x.kind,
        ProblemKind::DataDiffers { ranges } if ranges == &vec![(5000, 1)])));
    let layout: Vec<_> = probs
        .iter()
        .filter(|x| x.kind == ProblemKind::HeaderField { field: "layout" })
        .collect();
    assert_eq!(
        layout.len(),
        4,
        "every header names the wrong layout: {probs:#?}"
    );
    // A missing part of the replica: resync repairs it; of the primary: manual.
    std::fs::remove_file(&r[0]).unwrap();
    std::fs::remove_file(&p[1]).unwrap();
    let probs = verify(&set, None).unwrap();
    let missing: Vec<_> = probs
        .iter()
        .filter(|x| x.kind == ProblemKind::PartMissing)
        .collect();
    assert_eq!(missing.len(), 2, "{probs:#?}");
    assert!(missing
        .iter()
        .any(|x| x.replica == 1 && x.repair == Repair::Resync));
    assert!(missing
        .iter()
        .any(|x| x.replica == 0 && matches!(x.repair, Repair::Manual(_))));
}

struct Case {
    _d: tempfile::TempDir,
    src: poolset::PoolSet,
    dst: poolset::PoolSet,
    want: Vec<u8>,
}

/// SRC: primary of 2 parts + replica r; DST: SRC plus a 2-part replica n (add), or the reverse.
fn case(add: bool) -> Case {
    let d = tempfile::tempdir().unwrap();
    let p = files(d.path(), "p", 2);
    let r = files(d.path(), "r", 2);
    let n = files(d.path(), "n", 2);
    let (_, small) = write_set(d.path(), "small.set", &[&p, &r]);
    let (_, big) = write_set(d.path(), "big.set", &[&p, &n, &r]);
    let (src, dst) = if add { (small, big) } else { (big, small) };
    let pool = Pool::create(&src, "lay", OpenOptions::default()).unwrap();
    fill(&pool, if add { 3 } else { 9 });
    let want = data(&pool);
    drop(pool);
    Case {
        _d: d,
        src,
        dst,
        want,
    }
}

fn check_dst(c: &Case) {
    assert_eq!(verify(&c.dst, Some("lay")).unwrap(), vec![]);
    let pool = Pool::open(&c.dst, Some("lay"), OpenOptions::default()).unwrap();
    assert!(pool.repaired().is_empty(), "{:?}", pool.repaired());
    assert!(data(&pool) == c.want);
    assert_eq!(pool.replica_count(), c.dst.replicas.len());
    assert_eq!(pool.verify_replicas().unwrap(), vec![]);
}

fn run(c: &Case, stop: Option<&TransformStep>) -> Result<pool::TransformReport, pool::Error> {
    let hook = |s: &TransformStep| {
        if Some(s) == stop {
            Err("test interruption".to_string())
        } else {
            Ok(())
        }
    };
    let opts = TransformOptions {
        before_step: Some(&hook),
        ..TransformOptions::default()
    };
    transform(&c.src, &c.dst, Some("lay"), opts, &mut |_| {})
}

fn part_paths(set: &poolset::PoolSet) -> Vec<PathBuf> {
    set.replicas
        .iter()
        .flat_map(|r| match r {
            poolset::Replica::Local(l) => l.parts.iter().map(|p| p.path.clone()).collect(),
            poolset::Replica::Remote(_) => Vec::new(),
        })
        .collect()
}

#[test]
fn add_then_remove_a_replica() {
    let c = case(true);
    let plan = pool::transform::plan(&c.src, &c.dst).unwrap();
    assert_eq!(plan.added.len(), 1);
    assert_eq!(plan.added[0].0, 1);
    assert_eq!(plan.kept, vec![(0, 0), (1, 2)]);
    let rep = run(&c, None).unwrap();
    assert!(!rep.resumed);
    check_dst(&c);
    // And back: removing the replica again deletes its files.
    let back = Case {
        src: c.dst.clone(),
        dst: c.src.clone(),
        want: c.want.clone(),
        _d: tempfile::tempdir().unwrap(),
    };
    run(&back, None).unwrap();
    check_dst(&back);
    for p in part_paths(&c.dst) {
        assert_eq!(
            p.exists(),
            part_paths(&c.src).contains(&p),
            "{}",
            p.display()
        );
    }
}

#[test]
fn interruption_before_every_step_is_recoverable() {
    for add in [true, false] {
        let probe = case(add);
        let steps = pool::transform::plan(&probe.src, &probe.dst)
            .unwrap()
            .steps();
        drop(probe);
        assert!(steps.len() >= 4, "{steps:?}");
        for s in &steps {
            eprintln!("add {add}: interrupt before {s}");
            let c = case(add);
            let e = run(&c, Some(s)).unwrap_err();
            assert!(e.to_string().contains(&format!("before step {s}")), "{e}");
            let committed = !matches!(
                s,
                TransformStep::CreateReplica { .. } | TransformStep::Commit
            );
            if !committed {
                // Nothing committed: SRC opens as before, untouched.
                assert_eq!(verify(&c.src, Some("lay")).unwrap(), vec![]);
                let p = Pool::open(&c.src, Some("lay"), OpenOptions::default()).unwrap();
                assert!(data(&p) == c.want);
                drop(p);
            }
            if matches!(s, TransformStep::RemoveReplica { .. }) {
                // Every header is DST's already: DST opens.
                check_dst(&c);
            }
            let rep = run(&c, None).unwrap();
            assert_eq!(rep.resumed, committed, "{rep:?}");
            check_dst(&c);
            for p in part_paths(&c.src).into_iter().chain(part_paths(&c.dst)) {
                assert_eq!(
                    p.exists(),
                    part_paths(&c.dst).contains(&p),
                    "{}",
                    p.display()
                );
                let mut t = p.as_os_str().to_owned();
                t.push(".transform");
                assert!(!PathBuf::from(t).exists(), "leftover temporary file");
            }
        }
    }
}

#[test]
fn plan_refuses_what_is_not_an_add_or_remove() {
    let d = tempfile::tempdir().unwrap();
    let p = files(d.path(), "p", 1);
    let q = files(d.path(), "q", 1);
    let r = files(d.path(), "r", 1);
    let s = files(d.path(), "s", 1);
    let (_, a) = write_set(d.path(), "a.set", &[&p, &r]);
    let (_, other_primary) = write_set(d.path(), "b.set", &[&q, &r]);
    let (_, swap) = write_set(d.path(), "c.set", &[&p, &s]);
    let msg = |x: &poolset::PoolSet| pool::transform::plan(&a, x).unwrap_err().to_string();
    assert!(msg(&other_primary).contains("primary replica must be the same"));
    assert!(msg(&swap).contains("two transforms"), "{}", msg(&swap));
    assert!(pool::transform::plan(&a, &a).unwrap().is_empty());
    // A file in the way of an added replica that is not ours is never overwritten.
    let (_, add) = write_set(d.path(), "e.set", &[&p, &r, &s]);
    let pool = Pool::create(&a, "lay", OpenOptions::default()).unwrap();
    drop(pool);
    std::fs::write(&s[0], b"someone else's file").unwrap();
    let e = transform(&a, &add, None, TransformOptions::default(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&s[0]).unwrap(), b"someone else's file");
    assert_eq!(verify(&a, None).unwrap(), vec![]);
}
