//! Resync's rebuild of a remote replica that exists but cannot be used (`rpmem::replica`
//! module note), with real rpmemd processes (local transport):
//!
//! - a damaged pool header or rpmemd attribute block on the target: a fail-stop open refuses,
//!   `pool::resync` alone removes and recreates the remote pool and copies the data, the report
//!   says so, and the replica is then identical to the primary;
//! - another pool set's replica in the remote replica's place: refused by every open, replaced
//!   by resync only (the operator's consent), and the report names the foreign `poolset_uuid`;
//! - a multi-part remote pool with one part file deleted: refused (`BadPoolset`, "missing"),
//!   rebuilt by resync, and its bytes read back through rpmemd equal the primary's;
//! - a remote pool held by another session is never removed: resync fails naming it and leaves
//!   the bytes alone, and succeeds once the session is gone;
//! - the connector removes nothing unless called with `create && resync` (resync's rebuild
//!   request): a plain open, an open with `resync` (how resync reconnects healthy replicas) and
//!   a plain create all leave a truncated remote pool as it was.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use pool::header::Uuid;
use pool::persist::Flags;
use pool::{resync, Error as PoolError, FailurePolicy, OpenOptions, Persister, Pool, ResyncMode};
use rpmem::replica::Connector;
use rpmem::{Options, PoolMemory, RpmemPool};

/// A pool set: a 4 MiB primary and one remote replica `r.set` (a 6 MiB part: rpmemd's attribute
/// area sits in front of the remote pool).
struct Setup {
    dir: tempfile::TempDir,
    _site: Site,
    remote: PathBuf,
    opts: Options,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    let remote = site.poolset("r.set", &[6])[0].clone();
    std::fs::write(
        dir.path().join("pool.set"),
        format!(
            "PMEMPOOLSET\n4M {}\nREPLICA localhost:r.set\n",
            dir.path().join("primary").display()
        ),
    )
    .unwrap();
    let mut opts = site.local();
    opts.persist_deadline = Duration::from_secs(2);
    opts.control_deadline = Duration::from_secs(5);
    Setup {
        dir,
        _site: site,
        remote,
        opts,
    }
}

impl Setup {
    fn set(&self) -> poolset::PoolSet {
        poolset::parse_file(&self.dir.path().join("pool.set"), poolset::Mode::Initiator)
            .unwrap()
            .set
    }

    fn create(&self) -> Pool {
        let c = Connector::new(self.opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            ..OpenOptions::default()
        };
        Pool::create(&self.set(), "rebuild", o).unwrap()
    }

    fn open(&self) -> Result<Pool, PoolError> {
        let c = Connector::new(self.opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            failure_policy: FailurePolicy::FailStop,
            ..OpenOptions::default()
        };
        Pool::open(&self.set(), Some("rebuild"), o)
    }

    fn resync(&self) -> Result<pool::ResyncReport, PoolError> {
        let c = Connector::new(self.opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            ..OpenOptions::default()
        };
        let r = resync(
            &self.set(),
            Some("rebuild"),
            o,
            ResyncMode::Full,
            &mut |_| {},
        );
        eprintln!("resync: {r:?}");
        r
    }

    /// A pool with a seeded pattern persisted in it; returns the pool length.
    fn create_with_data(&self) -> usize {
        let p = self.create();
        let len = p.len();
        let data = pattern(seed(), 1 << 20);
        p.memcpy_persist(8192, &data, Flags::NONE).unwrap();
        drop(p);
        len
    }

    /// The remote replica (rpmemd's bytes) equals the primary, and a fail-stop open accepts it.
    fn assert_restored(&self, len: usize) {
        let p = self.open().expect("fail-stop open after resync");
        let mut primary = vec![0u8; len];
        p.read(0, &mut primary);
        drop(p);
        let b = std::fs::read(&self.remote).unwrap();
        let at = PART0_DATA_OFFSET as usize;
        assert!(
            b[at..at + len] == primary[..],
            "remote replica differs from the primary after resync"
        );
    }
}

fn zero_range(path: &PathBuf, at: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0u8; len], at).unwrap();
    f.sync_all().unwrap();
}

fn rebuilt_line(report: &pool::ResyncReport) -> &str {
    report
        .repaired
        .iter()
        .find(|l| l.contains("replica 1") && l.contains("created anew"))
        .unwrap_or_else(|| panic!("the report must say replica 1 was rebuilt: {report:?}"))
}

#[test]
fn damaged_header_or_attribute_block_is_rebuilt_by_resync() {
    // (what, file offset, bytes): the pool crate's header region, rpmemd's attribute area.
    for (what, at, len) in [("header", 0u64, 4096usize), ("attributes", 4096, 4096)] {
        let s = setup();
        let len_pool = s.create_with_data();
        zero_range(&s.remote, at, len);
        let e = s
            .open()
            .err()
            .expect("a damaged remote replica must be refused");
        assert!(
            matches!(e, PoolError::Remote { replica: 1, .. }),
            "{what}: {e:?}"
        );
        assert!(e.to_string().contains("BadPoolset"), "{what}: {e}");
        let report = s
            .resync()
            .expect("resync alone rebuilds the damaged remote pool");
        assert_eq!(report.replicas.len(), 1, "{what}: {report:?}");
        assert_eq!(report.replicas[0].copied_bytes, len_pool as u64);
        assert!(rebuilt_line(&report).contains("BadPoolset"), "{what}");
        s.assert_restored(len_pool);
    }
}

#[test]
fn another_pool_sets_replica_is_replaced_by_resync_only() {
    let s = setup();
    let len = s.create_with_data();
    let other = setup();
    drop(other.create());
    std::fs::copy(&other.remote, &s.remote).unwrap();
    let foreign = std::fs::read(&s.remote).unwrap();
    let e = s
        .open()
        .err()
        .expect("a foreign remote replica must be refused");
    assert!(e.to_string().contains("poolset_uuid"), "{e}");
    // A degraded open marks it stale and leaves it alone.
    let c = Connector::new(s.opts.clone());
    let f = c.as_fn();
    let o = OpenOptions {
        remote: Some(&f),
        failure_policy: FailurePolicy::Degraded,
        ..OpenOptions::default()
    };
    let p = Pool::open(&s.set(), Some("rebuild"), o).unwrap();
    assert!(!p.replica_health()[1].is_healthy());
    drop(p);
    assert!(
        std::fs::read(&s.remote).unwrap() == foreign,
        "an open changed the foreign pool"
    );
    let report = s.resync().expect("resync replaces the foreign replica");
    assert!(
        rebuilt_line(&report).contains("poolset_uuid"),
        "the report must say why the remote pool was replaced: {report:?}"
    );
    s.assert_restored(len);
    // The other pool set's copy is gone from this place, not from its own.
    drop(other.open().expect("the other pool set is untouched"));
}

#[test]
fn a_remote_pool_held_by_another_session_is_never_removed() {
    let s = setup();
    let len = s.create_with_data();
    let before = std::fs::read(&s.remote).unwrap();
    let mut nlanes = 1;
    let (holder, _) = RpmemPool::open(
        "localhost",
        "r.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut nlanes,
        &s.opts,
    )
    .expect("another session opens the remote pool");
    let e = s.resync().expect_err("resync of a busy remote pool");
    let text = e.to_string();
    assert!(
        text.contains("PoolBusy") && text.contains("left alone"),
        "{text}"
    );
    assert!(
        std::fs::read(&s.remote).unwrap() == before,
        "the busy remote pool was changed"
    );
    holder.close(false).unwrap();
    let report = s.resync().expect("resync once the other session is gone");
    assert_eq!(report.replicas.len(), 1, "{report:?}");
    assert!(
        !report.repaired.iter().any(|l| l.contains("created anew")),
        "a usable remote pool must be opened, not rebuilt: {report:?}"
    );
    s.assert_restored(len);
}

#[test]
fn the_connector_removes_nothing_outside_a_resync_rebuild() {
    let s = setup();
    let len = s.create_with_data();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.remote)
        .unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    let truncated = std::fs::read(&s.remote).unwrap();
    let set = s.set();
    let poolset::Replica::Remote(rr) = &set.replicas[1] else {
        panic!("replica 1 is remote");
    };
    let spec = |create: bool, resync: bool| pool::RemoteSpec {
        replica: 1,
        replica_count: 2,
        pool_size: len as u64,
        create,
        poolset_uuid: Some(Uuid([7; 16])),
        uuid: Some(Uuid([8; 16])),
        prev_repl_uuid: Some(Uuid([9; 16])),
        next_repl_uuid: Some(Uuid([9; 16])),
        primary: None,
        resync,
    };
    let c = Connector::new(s.opts.clone());
    for (create, resync) in [(false, false), (false, true), (true, false)] {
        let e = c
            .connect(rr, &spec(create, resync))
            .err()
            .unwrap_or_else(|| panic!("create {create} resync {resync} must fail"));
        eprintln!("create {create} resync {resync}: {e}");
        assert!(
            std::fs::read(&s.remote).unwrap() == truncated,
            "create {create} resync {resync} changed the remote pool"
        );
    }
    let rep = c
        .connect(rr, &spec(true, true))
        .expect("the rebuild request recreates it");
    assert_eq!(rep.len(), len);
    drop(rep);
    assert_eq!(std::fs::metadata(&s.remote).unwrap().len(), 6 << 20);
}

#[test]
fn a_deleted_part_of_a_multi_part_remote_pool_is_rebuilt_by_resync() {
    // The remote replica in two 4 MiB parts; its second part file is deleted while closed.
    let mut s = setup();
    let site = Site::new();
    let parts = site.poolset("r.set", &[4, 4]);
    s.opts = site.local();
    s.opts.persist_deadline = Duration::from_secs(2);
    s.remote = parts[0].clone();
    let len = s.create_with_data();
    std::fs::remove_file(&parts[1]).unwrap();
    let e = s
        .open()
        .err()
        .expect("a remote pool missing a part must be refused");
    assert!(
        e.to_string().contains("BadPoolset") && e.to_string().contains("missing"),
        "{e}"
    );
    let report = s
        .resync()
        .expect("resync rebuilds the incomplete remote pool");
    assert!(rebuilt_line(&report).contains("missing"), "{report:?}");
    assert!(parts[1].exists(), "the deleted part is back");
    // The remote pool's bytes, read back through rpmemd, equal the primary's.
    let p = s.open().expect("fail-stop open after resync");
    let mut primary = vec![0u8; len];
    p.read(0, &mut primary);
    drop(p);
    let back = remote_bytes("r.set", len, &s.opts);
    assert!(
        back == primary,
        "remote replica differs from the primary after resync"
    );
}
