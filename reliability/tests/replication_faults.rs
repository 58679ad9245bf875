//! Faults on the replication path that the rpmem tests do not already cover (docs/TESTING.md
//! lists those), with real rpmemd processes started by rpmem's local transport:
//!
//! - rpmemd stopped (SIGSTOP) in the middle of a *transaction* workload on a replicated pool
//!   (fail-stop): the failing transaction returns a typed error within the persist deadline, no
//!   hang; after the stopped rpmemd is gone, the pool reopens with everything acknowledged and
//!   the interrupted step either fully there or fully absent, and the remote replica is brought
//!   back identical to the primary.
//! - Disk full on the target (a 4 MiB tmpfs mounted as rpmemd's part directory; root only,
//!   skipped loudly otherwise): creating a remote pool that does not fit fails with an error
//!   that says so, and a session that already had its space keeps working.
//! - A remote replica's part file truncated while the pool was closed: a fail-stop open refuses
//!   the pool naming the replica and the size; `pool::resync` alone (rpmemd refuses OPEN — too
//!   small — and CREATE — exists, so the connector's rebuild removes the unusable remote pool and
//!   creates it anew) restores it identical to the primary, and its report says so.
//! - A hostile session next to a good one: rpmemd is one process per session, so a peer that
//!   sends garbage or lies about a frame length ends only its own rpmemd (with an error on its
//!   log), while a concurrent good session lands its data byte-exact.

#[path = "../../rpmem/tests/common/mod.rs"]
mod common;

use common::*;
use pool::{resync, FailurePolicy, OpenOptions, Persister, Pool, ResyncMode};
use reliability::workload::{layout, observe, run_step, Model, Root, Step, TxOp};
use rpmem::replica::Connector;
use rpmem::{PersistFlags, PoolMemory, RpmemPool};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tx::PoolTyped;

const PERSIST_DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(2500);

/// A pool set with a 4 MiB primary and one remote replica `r.set` (6 MiB part: the remote
/// pool sits behind rpmemd's attribute area).
struct Replicated {
    dir: tempfile::TempDir,
    site: Site,
    remote_part: PathBuf,
    opts: rpmem::Options,
}

impl Replicated {
    fn new() -> Replicated {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::new();
        let remote_part = site.poolset("r.set", &[6])[0].clone();
        std::fs::write(
            dir.path().join("pool.set"),
            format!(
                "PMEMPOOLSET\n4M {}\nREPLICA localhost:r.set\n",
                dir.path().join("primary").display()
            ),
        )
        .unwrap();
        let mut opts = site.local();
        opts.persist_deadline = PERSIST_DEADLINE;
        opts.control_deadline = Duration::from_secs(5);
        Replicated {
            dir,
            site,
            remote_part,
            opts,
        }
    }

    fn set(&self) -> poolset::PoolSet {
        poolset::parse_file(&self.dir.path().join("pool.set"), poolset::Mode::Initiator)
            .unwrap()
            .set
    }

    fn open(&self, create: bool) -> Result<Pool, pool::Error> {
        let c = Connector::new(self.opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            failure_policy: FailurePolicy::FailStop,
            ..OpenOptions::default()
        };
        if create {
            Pool::create(&self.set(), "reliability", o)
        } else {
            Pool::open(&self.set(), Some("reliability"), o)
        }
    }

    fn resync(&self) -> pool::ResyncReport {
        let c = Connector::new(self.opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            ..OpenOptions::default()
        };
        resync(
            &self.set(),
            Some("reliability"),
            o,
            ResyncMode::Full,
            &mut |_| {},
        )
        .expect("resync")
    }

    /// The remote pool's bytes as rpmemd stored them.
    fn remote_data(&self, len: usize) -> Vec<u8> {
        let b = std::fs::read(&self.remote_part).unwrap();
        let at = PART0_DATA_OFFSET as usize;
        b[at..at + len].to_vec()
    }
}

fn tx_step(i: u64) -> Step {
    Step::Tx {
        ops: vec![
            TxOp::WriteRoot {
                at: (i as usize * 7) % 100,
                len: 90,
                byte: i as u8,
            },
            TxOp::Alloc {
                slot: (i % 8) as usize,
                val: i,
            },
        ],
        abort: false,
    }
}

#[test]
fn sigstop_rpmemd_mid_transactions_fails_in_time_and_loses_nothing_acknowledged() {
    let r = Replicated::new();
    let p = Arc::new(r.open(true).expect("create the replicated pool"));
    let len = p.len();
    let pool = PoolTyped::<Root, Pool>::create_in(p.clone(), &layout()).unwrap();
    let mut model = Model::default();
    for i in 1..=20 {
        run_step(&pool, &tx_step(i)).unwrap();
        model = model.after(&tx_step(i));
    }
    let pid = rpmemd_child_of(&r.site);
    // SAFETY: kill(2) on the pid of our own child process (found through /proc children).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let mut failed_at = None;
    for i in 21..=40 {
        match run_step(&pool, &tx_step(i)) {
            Ok(_) => model = model.after(&tx_step(i)),
            Err(e) => {
                let msg = e.to_string();
                eprintln!("transaction {i} with rpmemd stopped: {msg}");
                assert!(
                    msg.contains("replica") && (msg.contains("time") || msg.contains("deadline")),
                    "the error must name the replica and the timeout: {msg}"
                );
                failed_at = Some(i);
                break;
            }
        }
    }
    let took = started.elapsed();
    let failed_at = failed_at.expect("a transaction must fail while rpmemd is stopped");
    assert!(
        took < PERSIST_DEADLINE + MARGIN,
        "the failure took {took:?} (deadline {PERSIST_DEADLINE:?})"
    );
    drop(pool);
    drop(p);
    // The stopped rpmemd must not linger; kill it if the session did not.
    if our_rpmemd_children().contains(&pid) {
        // SAFETY: as above; our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // The replica missed the last persists: resync it from the primary, then open normally.
    let report = r.resync();
    eprintln!("resync after the stop: {report:?}");
    let p = Arc::new(r.open(false).expect("reopen after resync"));
    let pool = PoolTyped::<Root, Pool>::open_in(p.clone(), Default::default()).unwrap();
    let rep = palloc::check(&*p).unwrap();
    assert!(rep.is_ok(), "heap checker: {:?}", rep.problems);
    let got = observe(&pool).unwrap();
    let with_failed = model.after(&tx_step(failed_at));
    assert!(
        got == model || got == with_failed,
        "after the stop the pool holds neither the acknowledged state (up to step {}) nor that \
         plus the failed step:\n  got {got:?}\n  acknowledged {model:?}",
        failed_at - 1
    );
    drop(pool);
    let mut primary = vec![0u8; len];
    p.read(0, &mut primary);
    drop(p);
    assert!(
        r.remote_data(len) == primary,
        "remote replica differs from the primary after resync"
    );
}

#[test]
fn remote_replica_truncated_while_closed_is_refused_then_resynced() {
    let r = Replicated::new();
    let p = r.open(true).unwrap();
    let len = p.len();
    let data = pattern(seed(), 1 << 20);
    p.memcpy_persist(4096, &data, pool::persist::Flags::NONE)
        .unwrap();
    drop(p);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&r.remote_part)
        .unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    let err = match r.open(false) {
        Ok(_) => panic!("a truncated remote replica must be refused"),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("open with the remote part truncated: {msg}");
    assert!(
        msg.contains("r.set") || msg.contains("replica 1") || msg.contains("localhost"),
        "the error must name the remote replica: {msg}"
    );
    // Resync alone rebuilds it: rpmemd refuses OPEN (file too small) and CREATE (exists), so
    // the connector's rebuild removes the unusable remote pool and creates it anew.
    let report = r.resync();
    eprintln!("resync of the truncated replica: {report:?}");
    assert_eq!(
        report
            .replicas
            .iter()
            .map(|x| (x.replica, x.copied_bytes))
            .collect::<Vec<_>>(),
        vec![(1, len as u64)],
        "{report:?}"
    );
    assert!(
        report
            .repaired
            .iter()
            .any(|l| l.contains("replica 1") && l.contains("too small") && l.contains("anew")),
        "the report must say the remote pool was rebuilt and why: {report:?}"
    );
    let p = r.open(false).expect("open after resync");
    let mut primary = vec![0u8; len];
    p.read(0, &mut primary);
    drop(p);
    assert_eq!(&primary[4096..4096 + data.len()], &data[..]);
    assert!(
        r.remote_data(len) == primary,
        "remote replica differs from the primary after resync"
    );
}

/// A tmpfs of `mib` MiB mounted on `dir` for the life of the guard.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m"))
            .arg("reliability-full")
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_on_the_target_is_a_clear_error_and_other_sessions_continue() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED disk_full_on_the_target: needs root to mount a tmpfs");
        return;
    }
    let site = Site::new();
    let parts = site.dir.path().join("parts");
    let _fs = match Tmpfs::mount(&parts, 5) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED disk_full_on_the_target: cannot mount a tmpfs: {e}");
            return;
        }
    };
    site.poolset("fits.set", &[3]);
    site.poolset("toobig.set", &[3]);
    let opts = site.local();
    let mut n = 1;
    let first = RpmemPool::create(
        "127.0.0.1",
        "fits.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(1),
        &opts,
    )
    .expect("the first pool fits");
    let mut n = 1;
    let started = Instant::now();
    let err = match RpmemPool::create(
        "127.0.0.1",
        "toobig.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(2),
        &opts,
    ) {
        Ok(_) => panic!("a pool larger than the free space must not be created"),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("create on a full target: {msg}");
    assert!(started.elapsed() < opts.control_deadline + MARGIN);
    assert!(
        msg.to_lowercase().contains("space"),
        "the error must say the target is out of space: {msg}"
    );
    // The session that had its space keeps working.
    first.persist(0, 1 << 20, 0, PersistFlags::NONE).unwrap();
    first.close(false).unwrap();
}

#[test]
fn a_hostile_session_does_not_disturb_a_concurrent_good_one() {
    let site = Site::new();
    let parts = site.poolset("good.set", &[8]);
    site.poolset("victim.set", &[4]);
    // The good session persists a pattern on two lanes while hostile peers come and go.
    let size = 4 << 20;
    let s = seed();
    let data = pattern(s, size);
    let good = {
        let opts = site.local();
        let data = data.clone();
        std::thread::spawn(move || {
            let mem = PoolMemory::new(size).unwrap();
            mem.write(0, &data).unwrap();
            let mut n = 2;
            let pool =
                RpmemPool::create("127.0.0.1", "good.set", mem, &mut n, &attr(5), &opts).unwrap();
            let mut off = 0u64;
            let mut lane = 0;
            while off < size as u64 {
                let len = (size as u64 - off).min(64 << 10);
                pool.persist(off, len, lane % n, PersistFlags::NONE)
                    .unwrap();
                off += len;
                lane += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            pool.close(false).unwrap();
        })
    };
    // Hostile peers, one rpmemd each: garbage instead of HELLO; a frame header announcing a
    // body far larger than anything legal; silence after one byte.
    let hostile: [(&str, Vec<u8>); 3] = [
        ("garbage", (0..200u8).map(|b| b.wrapping_mul(37)).collect()),
        ("huge length", {
            let mut v = vec![0u8; 16];
            v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            v
        }),
        ("one byte", vec![1u8]),
    ];
    for (what, bytes) in hostile {
        let mut child = Command::new(testkit::rpmemd::binary())
            .args(site.rpmemd_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&bytes);
        // Keep the channel open (a peer that stays connected): rpmemd must end the session
        // on its own, by refusing the bytes or by its hello deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: rpmemd still serving a hostile peer after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(stdin);
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        eprintln!("{what}: rpmemd exited {status}; log:\n{log}");
        assert!(!status.success(), "{what}: rpmemd must fail the session");
        assert!(
            !log.trim().is_empty(),
            "{what}: rpmemd must log why it ended the session"
        );
    }
    good.join().expect("the good session failed");
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(
        file[at..at + size] == data[..],
        "the good session's data differs (seed {s})"
    );
}
