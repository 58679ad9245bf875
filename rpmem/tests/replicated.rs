//! The replicated pool end to end: a `pool` from a poolset with a local part, a local replica
//! and remote replicas served by real rpmemd processes (local transport; a network-namespace
//! host over SSH for the link-cut test). Persists must arrive byte-exact in every part file;
//! rpmemd killed, the link cut, a replica deleted or corrupted while closed must give a typed
//! error (fail-stop) or a durable stale mark (degraded), and `pool::resync` must restore a
//! replica identical to the primary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use pool::persist::{Flags, PersistError};
use pool::{resync, Error as PoolError, FailurePolicy, OpenOptions, Persister, Pool, ResyncMode};
use rpmem::replica::Connector;
use rpmem::Options;

/// Usable bytes of the pools here: one 4 MiB part minus its header.
const PART_MIB: u64 = 4;
/// Remote parts are 2 MiB larger: rpmemd keeps a 4 KiB attribute area in front of the remote
/// pool (docs/PROTOCOL.md §14), and parts come in whole MiB.
const REMOTE_PART_MIB: u64 = 6;
const PERSIST_DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(1500);

struct Setup {
    _dir: tempfile::TempDir,
    site: Site,
    set_file: PathBuf,
    primary: PathBuf,
    local: PathBuf,
    /// Part files of the remote replicas (in replica order).
    remotes: Vec<PathBuf>,
    opts: Options,
}

/// A poolset: primary part, one local replica, and `nremote` remote replicas (rpmemd through
/// the local transport), each remote pool `r<i>.set` in the site's poolset-dir.
fn setup(nremote: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    let primary = dir.path().join("primary.part");
    let local = dir.path().join("local.part");
    let mut text = format!(
        "PMEMPOOLSET\n{PART_MIB}M {}\nREPLICA\n{PART_MIB}M {}\n",
        primary.display(),
        local.display()
    );
    let mut remotes = Vec::new();
    for i in 0..nremote {
        let name = format!("r{i}.set");
        remotes.push(site.poolset(&name, &[REMOTE_PART_MIB])[0].clone());
        text.push_str(&format!("REPLICA localhost:{name}\n"));
    }
    let set_file = dir.path().join("pool.set");
    std::fs::write(&set_file, text).unwrap();
    let mut opts = site.local();
    opts.persist_deadline = PERSIST_DEADLINE;
    opts.control_deadline = Duration::from_secs(5);
    Setup {
        _dir: dir,
        site,
        set_file,
        primary,
        local,
        remotes,
        opts,
    }
}

impl Setup {
    fn set(&self) -> poolset::PoolSet {
        poolset::parse_file(&self.set_file, poolset::Mode::Initiator)
            .unwrap()
            .set
    }
}

fn create(s: &Setup, policy: FailurePolicy) -> Pool {
    let c = Connector::new(s.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: policy,
        ..OpenOptions::default()
    };
    Pool::create(&s.set(), "replicated", o).unwrap()
}

fn open(s: &Setup, policy: FailurePolicy) -> Result<Pool, PoolError> {
    let c = Connector::new(s.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: policy,
        ..OpenOptions::default()
    };
    Pool::open(&s.set(), Some("replicated"), o)
}

fn do_resync(s: &Setup, mode: ResyncMode) -> pool::ResyncReport {
    let c = Connector::new(s.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        ..OpenOptions::default()
    };
    let mut steps = Vec::new();
    let report = resync(&s.set(), Some("replicated"), o, mode, &mut |p| {
        steps.push(p.clone())
    })
    .unwrap();
    // Progress is reported from 0 to the total for each replica, monotonically.
    for r in &report.replicas {
        let mine: Vec<_> = steps.iter().filter(|p| p.replica == r.replica).collect();
        assert_eq!(mine.first().unwrap().done_bytes, 0);
        let last = mine.last().unwrap();
        assert_eq!(last.done_bytes, last.total_bytes);
        assert!(mine.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes));
    }
    eprintln!("resync: {report:?}");
    report
}

/// The data area of a part file: after its 4 KiB header (local) or header + rpmemd's attribute
/// area (remote).
fn data_of(path: &Path, at: usize, len: usize) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    b[at..at + len].to_vec()
}

/// Every replica's data area equals the primary's (after the pool was dropped).
fn assert_identical(s: &Setup, len: usize, skip_remote: &[usize]) {
    let p = data_of(&s.primary, 4096, len);
    assert!(
        data_of(&s.local, 4096, len) == p,
        "local replica differs from the primary"
    );
    for (i, r) in s.remotes.iter().enumerate() {
        if skip_remote.contains(&i) {
            continue;
        }
        assert!(
            data_of(r, PART0_DATA_OFFSET as usize, len) == p,
            "remote replica {i} differs from the primary"
        );
    }
}

/// Random-ish writes + persists through the pool (seeded).
fn scribble(p: &Pool, seed: u64, rounds: usize) {
    let len = p.len();
    let data = pattern(seed, 256 << 10);
    let mut x = seed | 1;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = 1 + (x as usize % (64 << 10));
        let off = (x >> 20) as usize % (len - n);
        let src = &data[(x as usize >> 8) % (data.len() - n)..][..n];
        if i % 2 == 0 {
            p.write(off, src);
            p.persist(off, n).unwrap();
        } else {
            p.memcpy_persist(off, src, Flags::NONE).unwrap();
        }
    }
}

#[test]
fn persists_arrive_byte_exact_on_every_replica() {
    let s = setup(2);
    let p = create(&s, FailurePolicy::FailStop);
    let len = p.len();
    assert_eq!(len as u64, (PART_MIB << 20) - 4096);
    assert_eq!(p.replica_count(), 4);
    assert!(p.replica_health().iter().all(|h| h.is_healthy()));
    scribble(&p, seed(), 200);
    // One persist of the whole pool.
    let big = pattern(seed() ^ 0x55, len);
    p.write(0, &big);
    p.persist(0, len).unwrap();
    scribble(&p, seed() ^ 7, 50);
    drop(p);
    assert_identical(&s, len, &[]);

    // Reopen: the attributes check out, nothing differs.
    let p = open(&s, FailurePolicy::FailStop).unwrap();
    assert!(p.repaired().is_empty(), "{:?}", p.repaired());
    assert!(p.verify_replicas().unwrap().is_empty());
    scribble(&p, 99, 20);
    drop(p);
    assert_identical(&s, len, &[]);
}

#[test]
fn remote_attributes_of_another_pool_are_refused() {
    let s = setup(1);
    drop(create(&s, FailurePolicy::FailStop));
    // Another pool set's replica takes the remote pool's place.
    let other = setup(1);
    drop(create(&other, FailurePolicy::FailStop));
    std::fs::copy(&other.remotes[0], &s.remotes[0]).unwrap();
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("a foreign remote replica must be refused");
    let text = e.to_string();
    assert!(matches!(e, PoolError::Remote { replica: 2, .. }), "{e:?}");
    assert!(text.contains("poolset_uuid"), "{text}");
    eprintln!("refused as: {text}");
}

fn kill_rpmemd(s: &Setup) {
    let pid = rpmemd_child_of(&s.site);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn rpmemd_killed_fail_stop_returns_a_typed_error() {
    let s = setup(1);
    let p = create(&s, FailurePolicy::FailStop);
    scribble(&p, 1, 20);
    kill_rpmemd(&s);
    let started = Instant::now();
    let e = loop {
        // The first persists may still be in flight when the process dies.
        p.write(0, b"after the kill");
        match p.persist(0, 4096) {
            Ok(()) => assert!(started.elapsed() < PERSIST_DEADLINE + MARGIN),
            Err(e) => break e,
        }
    };
    assert!(started.elapsed() < PERSIST_DEADLINE + MARGIN);
    assert!(
        matches!(e, PersistError::Replica { replica: 2, .. }),
        "{e:?}"
    );
    eprintln!("fail-stop error: {e}");
    // It stays failed; nothing was marked.
    assert!(p.persist(0, 64).is_err());
    assert!(p.replica_health().iter().all(|h| h.is_healthy()));
    drop(p);
    // A new session: open copies the range the failed persist left behind.
    let p = open(&s, FailurePolicy::FailStop).unwrap();
    assert!(p.verify_replicas().unwrap().is_empty());
    let len = p.len();
    drop(p);
    assert_identical(&s, len, &[]);
}

#[test]
fn rpmemd_killed_degraded_marks_stale_and_resync_restores() {
    let s = setup(1);
    let p = create(&s, FailurePolicy::Degraded);
    scribble(&p, 2, 20);
    kill_rpmemd(&s);
    let started = Instant::now();
    for i in 0..20 {
        scribble(&p, 100 + i, 5);
        if !p.replica_health()[2].is_healthy() {
            break;
        }
    }
    assert!(started.elapsed() < PERSIST_DEADLINE * 2 + MARGIN);
    let h = p.replica_health();
    assert!(h[0].is_healthy() && h[1].is_healthy(), "{h:?}");
    assert!(!h[2].is_healthy(), "{h:?}");
    eprintln!("stale: {:?}", h[2].stale);
    // Work continues on the primary and the local replica.
    scribble(&p, 3, 50);
    let len = p.len();
    drop(p);
    assert_identical(&s, len, &[0]);

    // Reopen: fail-stop refuses naming the replica, degraded shows it stale.
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("stale replica");
    assert!(
        matches!(e, PoolError::StaleReplica { replica: 2, .. }),
        "{e:?}"
    );
    eprintln!("fail-stop open: {e}");
    let p = open(&s, FailurePolicy::Degraded).unwrap();
    assert!(!p.replica_health()[2].is_healthy());
    scribble(&p, 4, 10);
    drop(p);

    let report = do_resync(&s, ResyncMode::Full);
    assert_eq!(report.replicas.len(), 1);
    assert_eq!(report.replicas[0].replica, 2);
    assert_eq!(report.replicas[0].copied_bytes, len as u64);
    assert_identical(&s, len, &[]);
    let p = open(&s, FailurePolicy::FailStop).unwrap();
    assert!(p.replica_health().iter().all(|h| h.is_healthy()));
    scribble(&p, 5, 10);
    drop(p);
    assert_identical(&s, len, &[]);
}

#[test]
fn local_replica_deleted_or_corrupted_while_closed() {
    let s = setup(1);
    let p = create(&s, FailurePolicy::FailStop);
    scribble(&p, 6, 30);
    let len = p.len();
    drop(p);

    // Deleted.
    std::fs::remove_file(&s.local).unwrap();
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("missing replica");
    assert!(e.to_string().contains("local.part"), "{e}");
    let p = open(&s, FailurePolicy::Degraded).unwrap();
    let h = p.replica_health();
    assert!(!h[1].is_healthy() && h[2].is_healthy(), "{h:?}");
    scribble(&p, 7, 30);
    drop(p);
    let report = do_resync(&s, ResyncMode::Compare);
    assert_eq!(report.replicas[0].replica, 1);
    assert_identical(&s, len, &[]);
    let p = open(&s, FailurePolicy::FailStop).unwrap();
    assert!(p.repaired().is_empty(), "{:?}", p.repaired());
    drop(p);

    // Header corrupted (both slots).
    let mut b = std::fs::read(&s.local).unwrap();
    b[100] ^= 0xff;
    b[2048 + 100] ^= 0xff;
    // And some data, which resync must bring back too.
    b[4096 + 12345] ^= 0xff;
    std::fs::write(&s.local, &b).unwrap();
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("corrupt header");
    assert!(matches!(e, PoolError::Header { .. }), "{e:?}");
    let p = open(&s, FailurePolicy::Degraded).unwrap();
    assert!(!p.replica_health()[1].is_healthy());
    drop(p);
    let report = do_resync(&s, ResyncMode::Compare);
    // Compare mode copies only what differs: one chunk's differing range.
    assert!(
        report.replicas[0].copied_bytes < len as u64 / 2,
        "{report:?}"
    );
    assert_identical(&s, len, &[]);
    drop(open(&s, FailurePolicy::FailStop).unwrap());
}

#[test]
fn remote_replica_deleted_while_closed() {
    let s = setup(1);
    let p = create(&s, FailurePolicy::FailStop);
    scribble(&p, 8, 30);
    let len = p.len();
    drop(p);
    std::fs::remove_file(&s.remotes[0]).unwrap();
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("missing remote");
    assert!(matches!(e, PoolError::Remote { replica: 2, .. }), "{e:?}");
    eprintln!("fail-stop open: {e}");
    let p = open(&s, FailurePolicy::Degraded).unwrap();
    assert!(!p.replica_health()[2].is_healthy());
    scribble(&p, 9, 10);
    drop(p);
    do_resync(&s, ResyncMode::Full);
    assert_identical(&s, len, &[]);
    drop(open(&s, FailurePolicy::FailStop).unwrap());
}

/// An interrupted resync leaves the mark: simulated by a progress callback that panics midway
/// (the resync never reaches its last step); the replica stays stale, and a second resync
/// restores it.
#[test]
fn interrupted_resync_keeps_the_mark_and_restarts() {
    let s = setup(0);
    let p = create(&s, FailurePolicy::FailStop);
    scribble(&p, 10, 30);
    let len = p.len();
    drop(p);
    std::fs::remove_file(&s.local).unwrap();
    drop(open(&s, FailurePolicy::Degraded).unwrap());
    let set = s.set();
    let r = std::panic::catch_unwind(|| {
        let o = OpenOptions::default();
        resync(&set, None, o, ResyncMode::Full, &mut |p| {
            if p.done_bytes > 0 {
                panic!("interrupted");
            }
        })
    });
    if let Ok(res) = r {
        panic!("resync was not interrupted: {res:?}");
    }
    let e = open(&s, FailurePolicy::FailStop)
        .err()
        .expect("still stale");
    assert!(
        matches!(e, PoolError::StaleReplica { replica: 1, .. }),
        "{e:?}"
    );
    do_resync(&s, ResyncMode::Full);
    assert_identical(&s, len, &[]);
}

#[test]
fn link_cut_gives_a_bounded_error_or_a_stale_mark() {
    const TEST: &str = "link_cut_gives_a_bounded_error_or_a_stale_mark";
    if !testkit::require_root(TEST) {
        return;
    }
    let host = match testkit::NetnsHost::create() {
        Ok(h) => h,
        Err(e) => {
            testkit::report_skip(TEST, &e.to_string());
            return;
        }
    };
    let site = Site::new();
    let sshd = host
        .sshd_builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap();
    let mut opts = ssh_options(&sshd, &site, "rpmemd");
    opts.persist_deadline = PERSIST_DEADLINE;
    opts.control_deadline = Duration::from_secs(3);
    for (k, policy) in [FailurePolicy::FailStop, FailurePolicy::Degraded]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("cut{k}.set");
        site.poolset(&name, &[REMOTE_PART_MIB]);
        let set_file = dir.path().join("pool.set");
        std::fs::write(
            &set_file,
            format!(
                "PMEMPOOLSET\n{PART_MIB}M {}\nREPLICA {}@{}:{} {name}\n",
                dir.path().join("p").display(),
                sshd.user(),
                host.peer_addr(),
                sshd.port()
            ),
        )
        .unwrap();
        let set = poolset::parse_file(&set_file, poolset::Mode::Initiator)
            .unwrap()
            .set;
        let c = Connector::new(opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            failure_policy: policy,
            ..OpenOptions::default()
        };
        let p = Pool::create(&set, "cut", o).unwrap();
        scribble(&p, 11, 10);
        host.cut_link().unwrap();
        let started = Instant::now();
        p.write(0, b"cut");
        let r = p.persist(0, 4096);
        let took = started.elapsed();
        assert!(
            took < PERSIST_DEADLINE + MARGIN,
            "{policy:?}: took {took:?}"
        );
        match policy {
            FailurePolicy::FailStop => {
                let e = r.expect_err("fail-stop over a cut link");
                assert!(
                    matches!(e, PersistError::Replica { replica: 1, .. }),
                    "{e:?}"
                );
                eprintln!("link cut, fail-stop after {took:?}: {e}");
            }
            FailurePolicy::Degraded => {
                r.unwrap();
                assert!(!p.replica_health()[1].is_healthy());
                eprintln!(
                    "link cut, degraded after {took:?}: {:?}",
                    p.replica_health()[1].stale
                );
                scribble(&p, 12, 10);
            }
        }
        let started = Instant::now();
        drop(p);
        assert!(
            started.elapsed() < Duration::from_secs(3) + MARGIN,
            "drop took {:?}",
            started.elapsed()
        );
        host.restore_link().unwrap();
    }
}
