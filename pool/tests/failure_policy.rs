//! Failure policies with mock remote replicas (no network): drains of all replicas are started
//! before any is awaited; fail-stop returns an error naming the replica; degraded marks the
//! replica stale durably (the primary's header says so after reopen), stops writing it, and a
//! fail-stop reopen refuses the pool; NOHDRS cannot record a mark.

use pool::header::{PartHeader, HEADER_SLOT_BYTES};
use pool::persist::{Flags, PersistError};
use pool::{Error, FailurePolicy, OpenOptions, PendingDrain, Persister, Pool, RemoteSpec, Replica};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

/// A mock remote replica that logs drain begins and waits into a log shared by all mocks.
struct Mock {
    name: usize,
    data: Mutex<Vec<u8>>,
    fail: AtomicBool,
    log: Arc<Mutex<Vec<String>>>,
    writes: Mutex<usize>,
}

struct Handle(Arc<Mock>);

struct Wait(Arc<Mock>);

impl PendingDrain for Wait {
    fn wait(self: Box<Self>) -> Result<(), PersistError> {
        self.0
            .log
            .lock()
            .unwrap()
            .push(format!("wait {}", self.0.name));
        Ok(())
    }
}

impl Replica for Handle {
    fn describe(&self) -> String {
        format!("mock {}", self.0.name)
    }
    fn len(&self) -> usize {
        self.0.data.lock().unwrap().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        buf.copy_from_slice(&self.0.data.lock().unwrap()[off..off + buf.len()]);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        if self.0.fail.load(Ordering::SeqCst) {
            return Err(PersistError::Replica {
                replica: 0,
                message: "mock link down".into(),
            });
        }
        *self.0.writes.lock().unwrap() += 1;
        self.0.data.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn drain(&self) -> Result<(), PersistError> {
        Ok(())
    }
    fn drain_begin(&self) -> Result<Box<dyn PendingDrain + '_>, PersistError> {
        self.0
            .log
            .lock()
            .unwrap()
            .push(format!("begin {}", self.0.name));
        Ok(Box::new(Wait(self.0.clone())))
    }
}

struct Mocks {
    log: Arc<Mutex<Vec<String>>>,
    all: Mutex<Vec<Arc<Mock>>>,
}

impl Mocks {
    fn new() -> Mocks {
        Mocks {
            log: Arc::default(),
            all: Mutex::default(),
        }
    }
    fn connector(
        &self,
    ) -> impl Fn(&poolset::RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String> + '_
    {
        move |_rr, spec| {
            let m = Arc::new(Mock {
                name: spec.replica,
                data: Mutex::new(vec![0; spec.pool_size as usize]),
                fail: AtomicBool::new(false),
                log: self.log.clone(),
                writes: Mutex::new(0),
            });
            self.all.lock().unwrap().push(m.clone());
            Ok(Box::new(Handle(m)) as Box<dyn Replica>)
        }
    }
    fn get(&self, replica: usize) -> Arc<Mock> {
        let all = self.all.lock().unwrap();
        all.iter()
            .rev()
            .find(|m| m.name == replica)
            .unwrap()
            .clone()
    }
}

fn set_with_two_remotes(dir: &Path, nohdrs: bool) -> poolset::PoolSet {
    let text = format!(
        "PMEMPOOLSET\n{}2M {}\nREPLICA\n2M {}\nREPLICA host1:a.set\nREPLICA host2:b.set\n",
        if nohdrs { "OPTION NOHDRS\n" } else { "" },
        dir.join("p").display(),
        dir.join("l").display()
    );
    let f = dir.join("set");
    std::fs::write(&f, text).unwrap();
    poolset::parse_file(&f, poolset::Mode::Initiator)
        .unwrap()
        .set
}

fn primary_header(dir: &Path) -> PartHeader {
    let mut b = vec![0u8; HEADER_SLOT_BYTES];
    std::fs::File::open(dir.join("p"))
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    PartHeader::read_from_bytes(&b).unwrap()
}

fn opts<'a>(c: pool::pool::RemoteConnector<'a>, policy: FailurePolicy) -> OpenOptions<'a> {
    OpenOptions {
        remote: Some(c),
        failure_policy: policy,
        ..OpenOptions::default()
    }
}

#[test]
fn every_drain_is_started_before_any_is_awaited() {
    let d = tempfile::tempdir().unwrap();
    let set = set_with_two_remotes(d.path(), false);
    let m = Mocks::new();
    let c = m.connector();
    let p = Pool::create(&set, "t", opts(&c, FailurePolicy::FailStop)).unwrap();
    m.log.lock().unwrap().clear();
    p.memcpy_persist(100, b"hello", Flags::NONE).unwrap();
    assert_eq!(
        *m.log.lock().unwrap(),
        ["begin 2", "begin 3", "wait 2", "wait 3"]
    );
    assert_eq!(&m.get(3).data.lock().unwrap()[100..105], b"hello");
}

#[test]
fn fail_stop_names_the_replica() {
    let d = tempfile::tempdir().unwrap();
    let set = set_with_two_remotes(d.path(), false);
    let m = Mocks::new();
    let c = m.connector();
    let p = Pool::create(&set, "t", opts(&c, FailurePolicy::FailStop)).unwrap();
    m.get(3).fail.store(true, Ordering::SeqCst);
    let e = p.memcpy_persist(0, b"x", Flags::NONE).unwrap_err();
    assert!(
        matches!(&e, PersistError::Replica { replica: 3, message } if message.contains("mock 3") && message.contains("mock link down")),
        "{e:?}"
    );
    assert!(p.replica_health().iter().all(|h| h.is_healthy()));
    assert!(primary_header(d.path()).stale_replicas().is_empty());
}

#[test]
fn degraded_marks_durably_and_stops_writing_the_replica() {
    let d = tempfile::tempdir().unwrap();
    let set = set_with_two_remotes(d.path(), false);
    let m = Mocks::new();
    let c = m.connector();
    let p = Pool::create(&set, "t", opts(&c, FailurePolicy::Degraded)).unwrap();
    let bad = m.get(2);
    bad.fail.store(true, Ordering::SeqCst);
    p.memcpy_persist(0, b"x", Flags::NONE).unwrap();
    // The mark is in the primary's header before the persist returned.
    assert_eq!(primary_header(d.path()).stale_replicas(), [2]);
    let h = p.replica_health();
    assert!(h[0].is_healthy() && h[1].is_healthy() && h[3].is_healthy());
    assert!(
        h[2].stale.as_deref().unwrap().contains("mock link down"),
        "{h:?}"
    );
    let writes = *bad.writes.lock().unwrap();
    bad.fail.store(false, Ordering::SeqCst);
    p.memcpy_persist(8, b"y", Flags::NONE).unwrap();
    assert_eq!(
        *bad.writes.lock().unwrap(),
        writes,
        "a stale replica is not written"
    );
    assert_eq!(&m.get(3).data.lock().unwrap()[8..9], b"y");
    drop(p);

    // The local replica's part-0 header carries the mark too.
    let mut b = vec![0u8; HEADER_SLOT_BYTES];
    std::fs::File::open(d.path().join("l"))
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    assert_eq!(
        PartHeader::read_from_bytes(&b).unwrap().stale_replicas(),
        [2]
    );

    let e = Pool::open(&set, None, opts(&c, FailurePolicy::FailStop))
        .err()
        .unwrap();
    assert!(matches!(e, Error::StaleReplica { replica: 2, .. }), "{e:?}");
    let before = m.all.lock().unwrap().len();
    let p = Pool::open(&set, None, opts(&c, FailurePolicy::Degraded)).unwrap();
    // Only replica 3 was connected: a stale replica is left alone.
    let connected: Vec<usize> = m.all.lock().unwrap()[before..]
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(connected, [3]);
    assert!(!p.replica_health()[2].is_healthy());
}

#[test]
fn degraded_without_headers_cannot_mark_and_fails() {
    let d = tempfile::tempdir().unwrap();
    let set = set_with_two_remotes(d.path(), true);
    let m = Mocks::new();
    let c = m.connector();
    let p = Pool::create(&set, "t", opts(&c, FailurePolicy::Degraded)).unwrap();
    m.get(2).fail.store(true, Ordering::SeqCst);
    let e = p.memcpy_persist(0, b"x", Flags::NONE).unwrap_err();
    assert!(
        matches!(&e, PersistError::Replica { replica: 2, message } if message.contains("NOHDRS")),
        "{e:?}"
    );
}
