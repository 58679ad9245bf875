//! Transactions over a replicated pool, end to end: the key-value map of `examples::kv` in a
//! typed pool whose poolset has remote replicas served by real rpmemd processes (local
//! transport on this host; a second host in a network namespace over SSH for the link tests,
//! root only — they print `SKIPPED` and return otherwise).
//!
//! The model: `kv::run_step` numbers its transactions and `kv::check` recomputes the exact map
//! from the step count, so "committed transactions present, the failed one absent" is checked
//! exactly. After every fault the pool either reports the error (fail-stop) or continues
//! degraded with a stale mark, and reopening (fail-stop: the primary is authoritative) or
//! `pool::resync` (degraded) must leave every replica byte-identical to the primary.
//!
//! Shares the set-up of rpmem's end-to-end tests (real rpmemd, poolset-dir, options).

#[path = "../../rpmem/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use examples::kv::{self, KvPool};
use pool::persist::PersistError;
use pool::{resync, Error as PoolError, FailurePolicy, OpenOptions, Persister, Pool, ResyncMode};
use rpmem::replica::Connector;
use rpmem::Options;
use tx::obj::LAYOUT;
use tx::PoolTyped;

/// Pools here: one 4 MiB part (minus its header) on the primary.
const PART_MIB: u64 = 4;
/// Remote parts: the pool + rpmemd's 4 KiB attribute area + the header, in whole MiB.
const REMOTE_PART_MIB: u64 = 6;
const PERSIST_DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(1500);

/// Where one pool lives: its poolset file, the primary's part, its replicas' part files.
struct Layout {
    set_file: PathBuf,
    primary: PathBuf,
    /// Local replicas' part files.
    locals: Vec<PathBuf>,
    /// Remote replicas' part files (they are on this machine's file system, even when rpmemd
    /// runs in another network namespace).
    remotes: Vec<PathBuf>,
}

impl Layout {
    fn set(&self) -> poolset::PoolSet {
        poolset::parse_file(&self.set_file, poolset::Mode::Initiator)
            .unwrap()
            .set
    }
}

/// A pool set in `dir`: the primary, `nlocal` local replicas, and one remote replica per
/// entry of `remote_hosts` (`host` of the REPLICA line), each remote pool `<tag>r<i>.set` in
/// the site's poolset-dir.
fn layout(dir: &Path, site: &Site, tag: &str, nlocal: usize, remote_hosts: &[String]) -> Layout {
    let primary = dir.join(format!("{tag}primary.part"));
    let mut text = format!("PMEMPOOLSET\n{PART_MIB}M {}\n", primary.display());
    let mut locals = Vec::new();
    for i in 0..nlocal {
        let p = dir.join(format!("{tag}local{i}.part"));
        text.push_str(&format!("REPLICA\n{PART_MIB}M {}\n", p.display()));
        locals.push(p);
    }
    let mut remotes = Vec::new();
    for (i, host) in remote_hosts.iter().enumerate() {
        let name = format!("{tag}r{i}.set");
        remotes.push(site.poolset(&name, &[REMOTE_PART_MIB])[0].clone());
        text.push_str(&format!("REPLICA {host}:{name}\n"));
    }
    let set_file = dir.join(format!("{tag}pool.set"));
    std::fs::write(&set_file, text).unwrap();
    Layout {
        set_file,
        primary,
        locals,
        remotes,
    }
}

fn local_opts(site: &Site) -> Options {
    let mut o = site.local();
    o.persist_deadline = PERSIST_DEADLINE;
    o.control_deadline = Duration::from_secs(5);
    o
}

fn create_kv(l: &Layout, opts: &Options, policy: FailurePolicy) -> KvPool {
    let c = Connector::new(opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: policy,
        ..OpenOptions::default()
    };
    let p = Pool::create(&l.set(), LAYOUT, o).unwrap();
    PoolTyped::create_in(Arc::new(p), &Default::default()).unwrap()
}

fn open_kv(l: &Layout, opts: &Options, policy: FailurePolicy) -> Result<KvPool, tx::Error> {
    let c = Connector::new(opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: policy,
        ..OpenOptions::default()
    };
    let p = Pool::open(&l.set(), Some(LAYOUT), o)?;
    PoolTyped::open_in(Arc::new(p), Default::default())
}

fn do_resync(l: &Layout, opts: &Options) -> pool::ResyncReport {
    let c = Connector::new(opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        ..OpenOptions::default()
    };
    let r = resync(&l.set(), Some(LAYOUT), o, ResyncMode::Compare, &mut |_| {}).unwrap();
    eprintln!("resync: {r:?}");
    r
}

fn data_of(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    b[at as usize..at as usize + len].to_vec()
}

/// First differing offset of two equally long buffers.
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Every replica's data equals the primary's, byte for byte (read from the part files after
/// the pool was dropped).
fn assert_identical(l: &Layout, len: usize) {
    let p = data_of(&l.primary, 4096, len);
    for (i, f) in l.locals.iter().enumerate() {
        let d = data_of(f, 4096, len);
        assert!(
            d == p,
            "local replica {i} differs from the primary first at {:?}",
            first_diff(&p, &d)
        );
    }
    for (i, f) in l.remotes.iter().enumerate() {
        let d = data_of(f, PART0_DATA_OFFSET, len);
        assert!(
            d == p,
            "remote replica {i} differs from the primary first at {:?}",
            first_diff(&p, &d)
        );
    }
}

/// `n` run steps; returns the step count afterwards.
fn steps(pool: &KvPool, n: u64) -> u64 {
    for _ in 0..n {
        kv::run_step(pool).unwrap();
    }
    pool.read(&pool.root()).unwrap().steps
}

/// The map is exactly what `want` committed steps make, and holds no key of the failed
/// transaction.
fn assert_model(pool: &KvPool, want: u64) {
    let (n, got) = kv::check(pool).unwrap();
    assert_eq!(got, want, "committed steps");
    assert!(
        kv::entries(pool)
            .unwrap()
            .iter()
            .all(|(k, _)| !k.starts_with("doomed")),
        "a key of the failed transaction survived"
    );
    eprintln!("model ok: {n} entries after {got} steps");
}

/// The error is replica `replica`'s failure, however deep the layers wrapped it (a failing
/// persist may surface from the transaction, the heap or its redo log).
fn is_replica_failure(e: &tx::Error, replica: usize) -> bool {
    use palloc::{Error as H, UlogError as U};
    let p = match e {
        tx::Error::Persist(p) | tx::Error::Heap(H::Persist(p)) => p,
        tx::Error::Heap(H::Ulog(U::Persist(p))) => p,
        // The replica failed after the commit point: the transaction is committed.
        tx::Error::CommittedReplicationFailed(H::Ulog(U::Committed { source, .. })) => source,
        _ => return false,
    };
    matches!(p, PersistError::Replica { replica: r, .. } if *r == replica)
}

fn kill_rpmemd(site: &Site) {
    let pid = rpmemd_child_of(site);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Reaped by rpmem's transport; wait until it no longer runs (a zombie counts as gone).
    let gone = testkit::wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z ") || s.contains(") X "))
            .unwrap_or(true)
    });
    assert!(gone, "rpmemd {pid} still runs after SIGKILL");
}

#[test]
fn transactions_replicate_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    let l = layout(
        dir.path(),
        &site,
        "exact",
        1,
        &["localhost".into(), "localhost".into()],
    );
    let opts = local_opts(&site);
    let pool = create_kv(&l, &opts, FailurePolicy::FailStop);
    assert_eq!(pool.persister().replica_count(), 4);
    assert_eq!(steps(&pool, 300), 300);
    let len = pool.persister().len();
    drop(pool);
    assert_identical(&l, len);

    let pool = open_kv(&l, &opts, FailurePolicy::FailStop).unwrap();
    assert!(
        pool.persister().repaired().is_empty(),
        "{:?}",
        pool.persister().repaired()
    );
    assert_model(&pool, 300);
    assert_eq!(steps(&pool, 100), 400);
    drop(pool);
    assert_identical(&l, len);
}

/// Run committed steps, then a transaction during which rpmemd is killed: it keeps putting
/// `doomed-*` keys until an operation fails. Returns the transaction's result and the
/// committed step count before it.
fn transaction_with_rpmemd_killed(pool: &KvPool, site: &Site) -> (Result<u64, tx::Error>, u64) {
    let before = steps(pool, 40);
    let map = pool.root();
    let started = Instant::now();
    let r = pool.tx(|tx| {
        kv::put(tx, &map, b"doomed-0", b"before the kill")?;
        kill_rpmemd(site);
        let mut i = 1u64;
        loop {
            kv::put(
                tx,
                &map,
                format!("doomed-{i}").as_bytes(),
                b"after the kill",
            )?;
            i += 1;
            if started.elapsed() > PERSIST_DEADLINE * 3 || i > 200 {
                // Degraded: the replica was marked and work goes on; commit.
                tx.set_field(&map, |m| &m.steps, before + 1)?;
                return Ok(i);
            }
        }
    });
    (r, before)
}

#[test]
fn rpmemd_killed_mid_transaction_fail_stop() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    let l = layout(dir.path(), &site, "fs", 0, &["localhost".into()]);
    let opts = local_opts(&site);
    let pool = create_kv(&l, &opts, FailurePolicy::FailStop);
    let started = Instant::now();
    let (r, before) = transaction_with_rpmemd_killed(&pool, &site);
    let e = r.expect_err("fail-stop: the transaction must fail");
    assert!(
        started.elapsed() < PERSIST_DEADLINE + MARGIN + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(is_replica_failure(&e, 1), "{e:?}");
    eprintln!("fail-stop transaction error: {e}");
    // The pool stays failed; nothing was marked.
    assert!(kv::run_step(&pool).is_err());
    assert!(pool
        .persister()
        .replica_health()
        .iter()
        .all(|h| h.is_healthy()));
    let len = pool.persister().len();
    drop(pool);

    // Reopen with a new rpmemd: open copies what the replica missed from the primary, the
    // transaction in flight is rolled back (through the replicated pool).
    let pool = open_kv(&l, &opts, FailurePolicy::FailStop).unwrap();
    eprintln!("repaired at open: {:?}", pool.persister().repaired());
    assert_model(&pool, before);
    assert_eq!(steps(&pool, 10), before + 10);
    drop(pool);
    assert_identical(&l, len);
}

#[test]
fn rpmemd_killed_mid_transaction_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    let l = layout(dir.path(), &site, "dg", 1, &["localhost".into()]);
    let opts = local_opts(&site);
    let pool = create_kv(&l, &opts, FailurePolicy::Degraded);
    let (r, before) = transaction_with_rpmemd_killed(&pool, &site);
    let puts = r.expect("degraded: the transaction goes on and commits");
    let h = pool.persister().replica_health();
    assert!(h[0].is_healthy() && h[1].is_healthy(), "{h:?}");
    assert!(!h[2].is_healthy(), "{h:?}");
    eprintln!("degraded after {puts} puts: {:?}", h[2].stale);
    // The committed transaction holds its doomed-* keys: it is not a run step, so the model
    // is checked by keys here.
    let keys = kv::entries(&pool).unwrap();
    assert_eq!(
        keys.iter().filter(|(k, _)| k.starts_with("doomed")).count() as u64,
        puts
    );
    let len = pool.persister().len();
    drop(pool);

    let e = open_kv(&l, &opts, FailurePolicy::FailStop)
        .err()
        .expect("fail-stop open of a pool with a stale replica");
    assert!(
        matches!(
            e,
            tx::Error::Pool(PoolError::StaleReplica { replica: 2, .. })
        ),
        "{e:?}"
    );
    let report = do_resync(&l, &opts);
    assert_eq!(report.replicas.len(), 1);
    assert_eq!(report.replicas[0].replica, 2);
    assert_identical(&l, len);
    let pool = open_kv(&l, &opts, FailurePolicy::FailStop).unwrap();
    assert!(pool
        .persister()
        .replica_health()
        .iter()
        .all(|h| h.is_healthy()));
    assert_eq!(
        kv::entries(&pool)
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("doomed"))
            .count() as u64,
        puts
    );
    assert_eq!(pool.read(&pool.root()).unwrap().steps, before + 1);
    drop(pool);
    assert_identical(&l, len);
}

/// A second host: a network namespace with an sshd whose sessions find our rpmemd.
struct Remote {
    host: testkit::NetnsHost,
    sshd: testkit::Sshd,
    site: Site,
    opts: Options,
}

fn remote_host(test: &str) -> Option<Remote> {
    if !testkit::require_root(test) {
        return None;
    }
    let host = match testkit::NetnsHost::create() {
        Ok(h) => h,
        Err(e) => {
            testkit::report_skip(test, &e.to_string());
            return None;
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
    Some(Remote {
        host,
        sshd,
        site,
        opts,
    })
}

impl Remote {
    fn replica_line(&self) -> String {
        format!(
            "{}@{}:{}",
            self.sshd.user(),
            self.host.peer_addr(),
            self.sshd.port()
        )
    }

    /// End the rpmemd sessions still running in the namespace (started by this test through
    /// its sshd): after a cut link they wait for a peer that is gone, holding their pool.
    fn kill_rpmemds(&self) {
        for pid in self.host.pids().unwrap() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "rpmemd" {
                // SAFETY: a process this test started (through its sshd, in its namespace).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let gone = testkit::wait_for(Duration::from_secs(5), || {
            self.host.pids().unwrap().iter().all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() != "rpmemd")
                    .unwrap_or(true)
            })
        });
        assert!(gone, "rpmemd still runs in the namespace");
    }

    /// `tc qdisc add dev VETH root tbf ...` on both ends of the link (the namespace side
    /// through `ip netns exec`): the data (host to namespace) and the replies are shaped.
    fn slow_link(&self, on: bool) {
        let tbf = [
            "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms",
        ];
        let ns_side = |args: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", self.host.name(), "tc", "qdisc"]);
            c.args(args);
            c
        };
        let host_side = |args: &[&str]| {
            let mut c = Command::new("tc");
            c.arg("qdisc");
            c.args(args);
            c
        };
        let peer = self.host.peer_veth().to_string();
        let mine = self.host.host_veth().to_string();
        for (mut cmd, dev) in [
            (ns_side(&[]), peer.as_str()),
            (host_side(&[]), mine.as_str()),
        ] {
            if on {
                cmd.args(["add", "dev", dev, "root"]).args(tbf);
            } else {
                cmd.args(["del", "dev", dev, "root"]);
            }
            let out = cmd.output().expect("running tc (package iproute2)");
            assert!(
                out.status.success(),
                "{}: {}",
                testkit::command_line(&cmd),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn link_cut_mid_workload() {
    const TEST: &str = "link_cut_mid_workload";
    let Some(rh) = remote_host(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (k, policy) in [FailurePolicy::FailStop, FailurePolicy::Degraded]
        .into_iter()
        .enumerate()
    {
        let l = layout(
            dir.path(),
            &rh.site,
            &format!("cut{k}"),
            0,
            &[rh.replica_line()],
        );
        let pool = create_kv(&l, &rh.opts, policy);
        let len = pool.persister().len();
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let cut_at = std::sync::Mutex::new(None::<Instant>);
        let outcome = std::thread::scope(|s| {
            let worker = s.spawn(|| -> (u64, Option<tx::Error>, Duration) {
                let mut failed_after = Duration::ZERO;
                loop {
                    let step_started = Instant::now();
                    match kv::run_step(&pool) {
                        Ok(i) => done.store(i + 1, Ordering::SeqCst),
                        Err(e) => {
                            if let Some(t) = *cut_at.lock().unwrap() {
                                failed_after = t.elapsed();
                            }
                            if matches!(e, tx::Error::CommittedReplicationFailed(_)) {
                                // Failed after its commit point: this step is in the pool.
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            return (done.load(Ordering::SeqCst), Some(e), failed_after);
                        }
                    }
                    let took = step_started.elapsed();
                    assert!(
                        took < PERSIST_DEADLINE + MARGIN,
                        "{policy:?}: one step took {took:?}"
                    );
                    if stop.load(Ordering::SeqCst) {
                        return (done.load(Ordering::SeqCst), None, failed_after);
                    }
                }
            });
            assert!(testkit::wait_for(Duration::from_secs(30), || done
                .load(Ordering::SeqCst)
                >= 30));
            rh.host.cut_link().unwrap();
            *cut_at.lock().unwrap() = Some(Instant::now());
            let at_cut = done.load(Ordering::SeqCst);
            if policy == FailurePolicy::Degraded {
                // Work goes on: 30 more steps after the cut.
                assert!(
                    testkit::wait_for(PERSIST_DEADLINE * 3 + MARGIN, || done
                        .load(Ordering::SeqCst)
                        >= at_cut + 30),
                    "degraded: no progress after the cut"
                );
            }
            stop.store(true, Ordering::SeqCst);
            worker.join().unwrap()
        });
        let (committed, err, failed_after) = outcome;
        match policy {
            FailurePolicy::FailStop => {
                let e = err.expect("fail-stop over a cut link must fail");
                assert!(is_replica_failure(&e, 1), "{e:?}");
                assert!(
                    failed_after < PERSIST_DEADLINE + MARGIN,
                    "failed {failed_after:?} after the cut"
                );
                eprintln!("fail-stop: {committed} steps, then after {failed_after:?}: {e}");
            }
            FailurePolicy::Degraded => {
                assert!(err.is_none(), "{err:?}");
                let h = pool.persister().replica_health();
                assert!(!h[1].is_healthy(), "{h:?}");
                eprintln!("degraded: {committed} steps; {:?}", h[1].stale);
            }
        }
        let started = Instant::now();
        drop(pool);
        assert!(
            started.elapsed() < Duration::from_secs(3) + MARGIN,
            "drop took {:?}",
            started.elapsed()
        );
        rh.host.restore_link().unwrap();
        rh.kill_rpmemds();
        if policy == FailurePolicy::Degraded {
            let report = do_resync(&l, &rh.opts);
            assert_eq!(report.replicas.len(), 1);
        }
        // Reopen fail-stop: fail-stop's replica is repaired from the primary at open.
        let pool = open_kv(&l, &rh.opts, FailurePolicy::FailStop).unwrap();
        assert_model(&pool, committed);
        assert_eq!(steps(&pool, 5), committed + 5);
        drop(pool);
        assert_identical(&l, len);
    }
}

#[test]
fn slow_link_transactions_complete() {
    const TEST: &str = "slow_link_transactions_complete";
    let Some(rh) = remote_host(TEST) else {
        return;
    };
    if testkit::which("tc").is_none() {
        testkit::report_skip(TEST, "needs tc (apt install iproute2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = layout(dir.path(), &rh.site, "slow", 0, &[rh.replica_line()]);
    let pool = create_kv(&l, &rh.opts, FailurePolicy::FailStop);
    let len = pool.persister().len();
    const N: u64 = 30;
    let t = Instant::now();
    steps(&pool, N);
    let fast = t.elapsed();
    rh.slow_link(true);
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..N {
        let s = Instant::now();
        kv::run_step(&pool).expect("a step over the slow link");
        slowest = slowest.max(s.elapsed());
    }
    let slow = t.elapsed();
    rh.slow_link(false);
    eprintln!(
        "{N} steps: {fast:?} on the plain link, {slow:?} over tbf 1mbit (slowest step \
         {slowest:?})"
    );
    assert!(slowest < PERSIST_DEADLINE, "a step took {slowest:?}");
    assert!(
        slow > fast * 2,
        "the shaped link was not slower: {slow:?} vs {fast:?}"
    );
    assert!(pool
        .persister()
        .replica_health()
        .iter()
        .all(|h| h.is_healthy()));
    drop(pool);
    assert_identical(&l, len);
    let pool = open_kv(&l, &rh.opts, FailurePolicy::FailStop).unwrap();
    assert!(pool.persister().repaired().is_empty());
    assert_model(&pool, 2 * N);
}
