//! Replicas behind the `Replica` trait: a mock remote replica checks replica numbering over the
//! whole pool set (K1), that persist returns only after every replica drained and that a
//! replica's error comes back from the persist (T2).

use pool::header::{PartHeader, Uuid, HEADER_SLOT_BYTES};
use pool::persist::{Flags, PersistError};
use pool::pool::RemoteSpec;
use pool::{Error, OpenOptions, Persister, Pool, Replica};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

const MIB: usize = 1 << 20;

/// Shared state of a mock replica: what was written and flushed, what was drained (durable),
/// and the spec its connector was given.
#[derive(Default)]
struct MemState {
    flushed: Mutex<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    /// Ranges written since the last drain.
    pending: Mutex<Vec<(usize, usize)>>,
    spec: Mutex<Option<RemoteSpec>>,
    fail_write: Mutex<bool>,
    fail_drain: Mutex<bool>,
}

struct MemReplica(Arc<MemState>);

impl Replica for MemReplica {
    fn describe(&self) -> String {
        "mock".into()
    }
    fn len(&self) -> usize {
        self.0.flushed.lock().unwrap().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        buf.copy_from_slice(&self.0.flushed.lock().unwrap()[off..off + buf.len()]);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        if *self.0.fail_write.lock().unwrap() {
            return Err(PersistError::Replica {
                replica: 99,
                message: "mock write failure".into(),
            });
        }
        self.0.flushed.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
        self.0.pending.lock().unwrap().push((off, data.len()));
        Ok(())
    }
    fn drain(&self) -> Result<(), PersistError> {
        if *self.0.fail_drain.lock().unwrap() {
            return Err(PersistError::Replica {
                replica: 99,
                message: "mock drain failure".into(),
            });
        }
        let flushed = self.0.flushed.lock().unwrap();
        let mut durable = self.0.durable.lock().unwrap();
        for (off, len) in self.0.pending.lock().unwrap().drain(..) {
            durable[off..off + len].copy_from_slice(&flushed[off..off + len]);
        }
        Ok(())
    }
}

/// Pool set: local primary, remote replica 1 (the mock), local replica 2.
fn set_with_remote_in_the_middle(d: &Path) -> (poolset::PoolSet, PathBuf, PathBuf) {
    let (a, r2) = (d.join("a"), d.join("r2"));
    let text = format!(
        "PMEMPOOLSET\n2M {}\nREPLICA user@host remote.set\nREPLICA\n2M {}\n",
        a.display(),
        r2.display()
    );
    let set = poolset::parse_bytes("x.set", text.as_bytes(), poolset::Mode::Initiator)
        .unwrap()
        .set;
    (set, a, r2)
}

fn header_of(file: &Path) -> PartHeader {
    let mut b = vec![0u8; HEADER_SLOT_BYTES];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    PartHeader::read_from_bytes(&b).unwrap()
}

fn connector(
    state: &Arc<MemState>,
) -> impl Fn(&poolset::RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String> + '_ {
    move |_rr, spec| {
        *state.spec.lock().unwrap() = Some(spec.clone());
        let len = spec.pool_size as usize;
        state.flushed.lock().unwrap().resize(len, 0);
        state.durable.lock().unwrap().resize(len, 0);
        Ok(Box::new(MemReplica(state.clone())) as Box<dyn Replica>)
    }
}

#[test]
fn replicas_are_numbered_over_the_whole_pool_set() {
    let d = testkit::shm_tempdir();
    let (set, a, r2) = set_with_remote_in_the_middle(d.path());
    let state = Arc::new(MemState::default());
    let conn = connector(&state);
    let opts = OpenOptions {
        remote: Some(&conn),
        ..OpenOptions::default()
    };
    let p = Pool::create(&set, "ring", opts).unwrap();
    assert_eq!(p.replica_count(), 3);
    drop(p);
    let (ha, h2) = (header_of(&a), header_of(&r2));
    assert_eq!((ha.replica_index.get(), ha.replica_count.get()), (0, 3));
    assert_eq!((h2.replica_index.get(), h2.replica_count.get()), (2, 3));
    let spec = state.spec.lock().unwrap().clone().unwrap();
    assert_eq!(
        (spec.replica, spec.replica_count, spec.create),
        (1, 3, true)
    );
    // The ring 0 -> 1 (remote) -> 2 -> 0.
    let remote = spec
        .uuid
        .expect("the remote replica has a UUID in the ring");
    assert_eq!(Uuid(ha.next_repl_uuid), remote);
    assert_eq!(Uuid(h2.prev_repl_uuid), remote);
    assert_eq!(spec.prev_repl_uuid, Some(Uuid(ha.uuid)));
    assert_eq!(spec.next_repl_uuid, Some(Uuid(h2.uuid)));
    assert_eq!(Uuid(ha.prev_repl_uuid), Uuid(h2.uuid));
    assert_eq!(Uuid(h2.next_repl_uuid), Uuid(ha.uuid));
    assert_eq!(spec.poolset_uuid, Some(Uuid(ha.poolset_uuid)));

    // Open finds the same numbering and tells the connector the same ring.
    let p = Pool::open(&set, Some("ring"), opts).unwrap();
    let again = state.spec.lock().unwrap().clone().unwrap();
    assert_eq!(
        again,
        RemoteSpec {
            create: false,
            // The primary is mapped again at open, maybe elsewhere.
            primary: again.primary,
            ..spec
        }
    );
    // Error numbering: the mock is replica 1 (the local one after it is replica 2).
    *state.fail_write.lock().unwrap() = true;
    let e = p.memcpy_persist(0, b"x", Flags::NONE).unwrap_err();
    assert!(matches!(e, PersistError::Replica { replica: 1, .. }), "{e}");
}

#[test]
fn a_broken_ring_to_a_remote_replica_is_detected() {
    let d = testkit::shm_tempdir();
    let (set, _a, r2) = set_with_remote_in_the_middle(d.path());
    let state = Arc::new(MemState::default());
    let conn = connector(&state);
    let opts = OpenOptions {
        remote: Some(&conn),
        ..OpenOptions::default()
    };
    drop(Pool::create(&set, "ring", opts).unwrap());
    // Replica 2 now names another UUID as its previous (remote) replica than replica 0 names
    // as its next one.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&r2)
        .unwrap();
    for slot in 0..2u64 {
        let mut b = vec![0u8; HEADER_SLOT_BYTES];
        f.read_exact_at(&mut b, slot * HEADER_SLOT_BYTES as u64)
            .unwrap();
        let mut h = PartHeader::read_from_bytes(&b).unwrap();
        h.prev_repl_uuid = [7; 16];
        h.seal();
        use zerocopy::IntoBytes;
        f.write_all_at(h.as_bytes(), slot * HEADER_SLOT_BYTES as u64)
            .unwrap();
    }
    let e = Pool::open(&set, None, opts).err().unwrap();
    assert!(
        matches!(e, Error::Mismatch { field: "prev_repl_uuid", ref path, .. } if *path == r2),
        "{e}"
    );
}

/// T2: `persist` returns only after every replica drained what it was given; an error of a
/// replica's write or drain is the persist's error.
#[test]
fn persist_waits_for_every_replica_and_returns_their_errors() {
    let d = testkit::shm_tempdir();
    let (set, _a, _r2) = set_with_remote_in_the_middle(d.path());
    let state = Arc::new(MemState::default());
    let conn = connector(&state);
    let opts = OpenOptions {
        remote: Some(&conn),
        ..OpenOptions::default()
    };
    let p = Pool::create(&set, "t2", opts).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    for (i, flags) in [Flags::NONE, Flags::NONTEMPORAL, Flags::TEMPORAL]
        .into_iter()
        .enumerate()
    {
        let off = 1000 + i * 200_000;
        p.memcpy_persist(off, &data, flags).unwrap();
        assert!(state.pending.lock().unwrap().is_empty(), "not drained");
        assert_eq!(
            &state.durable.lock().unwrap()[off..off + data.len()],
            &data[..]
        );
    }
    p.write(MIB, b"plain store");
    p.persist(MIB, 11).unwrap();
    assert_eq!(
        &state.durable.lock().unwrap()[MIB..MIB + 11],
        b"plain store"
    );
    // NO_DRAIN leaves it pending until the pool's drain.
    p.memcpy_persist(5, b"later", Flags::NO_DRAIN).unwrap();
    assert!(!state.pending.lock().unwrap().is_empty());
    p.drain().unwrap();
    assert_eq!(&state.durable.lock().unwrap()[5..10], b"later");

    *state.fail_drain.lock().unwrap() = true;
    let e = p.memcpy_persist(0, b"y", Flags::NONE).unwrap_err();
    assert!(
        matches!(&e, PersistError::Replica { replica: 1, message } if message.contains("mock drain failure")),
        "{e}"
    );
    p.write(64, b"z");
    assert!(p.persist(64, 1).is_err());
    assert!(p.drain().is_err());
    *state.fail_drain.lock().unwrap() = false;
    *state.fail_write.lock().unwrap() = true;
    let e = p.persist(64, 1).unwrap_err();
    assert!(
        matches!(&e, PersistError::Replica { replica: 1, message } if message.contains("mock write failure")),
        "{e}"
    );
}
