//! Resync and the replica UUID ring: several adjacent replicas deleted while closed are marked
//! stale by a degraded open and restored by `pool::resync` with every `prev_repl_uuid` /
//! `next_repl_uuid` link naming the neighbour's part-0 UUID (never nil), so a fail-stop open
//! and `pool::verify` accept the pool; a place no header names gets the derived UUID, the same
//! in a rerun after an interruption (a progress callback that panics) and in a later resync; a
//! healthy remote replica next to such a place gets its attributes rewritten with the ring.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zerocopy::IntoBytes;

use pool::header::{self, PartHeader, Uuid};
use pool::persist::{Flags, PersistError};
use pool::{
    resync, verify, Error, FailurePolicy, OpenOptions, Persister, Pool, RemoteSpec, Replica,
    ResyncMode,
};

/// A poolset of local replicas (each a list of 2 MiB parts) and remote ones (`None`: a
/// `REPLICA host<i>:r<i>.set` line).
fn write_set(d: &Path, replicas: &[Option<Vec<PathBuf>>]) -> poolset::PoolSet {
    let mut t = String::from("PMEMPOOLSET\n");
    for (i, r) in replicas.iter().enumerate() {
        match r {
            Some(parts) => {
                if i > 0 {
                    t.push_str("REPLICA\n");
                }
                for p in parts {
                    t.push_str(&format!("2M {}\n", p.display()));
                }
            }
            None => t.push_str(&format!("REPLICA host{i}:r{i}.set\n")),
        }
    }
    let f = d.join("ring.set");
    std::fs::write(&f, t).unwrap();
    poolset::parse_file(&f, poolset::Mode::Initiator)
        .unwrap()
        .set
}

/// `n` local replicas; replica 2 has two parts (so a restored replica's part links are
/// checked too), the others one.
fn local_replicas(d: &Path, n: usize) -> Vec<Vec<PathBuf>> {
    (0..n)
        .map(|r| {
            let parts = if r == 2 { 2 } else { 1 };
            (0..parts).map(|p| d.join(format!("r{r}p{p}"))).collect()
        })
        .collect()
}

fn header_of(file: &Path) -> PartHeader {
    let mut b = vec![0u8; header::HEADER_REGION_BYTES];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    header::decode_region(&b).unwrap().header
}

/// (uuid, prev_repl_uuid, next_repl_uuid) of part 0 of every local replica.
fn ring_of(reps: &[Vec<PathBuf>]) -> Vec<(Uuid, Uuid, Uuid)> {
    reps.iter()
        .map(|parts| {
            let h = header_of(&parts[0]);
            (Uuid(h.uuid), Uuid(h.prev_repl_uuid), Uuid(h.next_repl_uuid))
        })
        .collect()
}

/// Every replica's links name its neighbours' part-0 UUIDs, and no UUID is nil; every part of
/// every replica links to part 0's neighbours.
fn assert_ring_closed(reps: &[Vec<PathBuf>]) {
    let ring = ring_of(reps);
    let n = ring.len();
    for (r, (u, prev, next)) in ring.iter().enumerate() {
        assert!(
            !u.is_nil() && !prev.is_nil() && !next.is_nil(),
            "replica {r}: {ring:?}"
        );
        assert_eq!(*prev, ring[(r + n - 1) % n].0, "replica {r} prev: {ring:?}");
        assert_eq!(*next, ring[(r + 1) % n].0, "replica {r} next: {ring:?}");
        for p in &reps[r][1..] {
            let h = header_of(p);
            assert_eq!((h.prev_repl_uuid, h.next_repl_uuid), (prev.0, next.0));
        }
    }
}

fn fill(pool: &Pool, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..pool.len())
        .map(|i| (i as u8).wrapping_mul(29) ^ seed)
        .collect();
    pool.memcpy_persist(0, &data, Flags::NONE).unwrap();
    data
}

fn degraded() -> OpenOptions<'static> {
    OpenOptions {
        failure_policy: FailurePolicy::Degraded,
        ..OpenOptions::default()
    }
}

fn stale_of(pool: &Pool) -> Vec<usize> {
    pool.replica_health()
        .into_iter()
        .filter(|h| !h.is_healthy())
        .map(|h| h.replica)
        .collect()
}

fn delete(reps: &[Vec<PathBuf>], which: &[usize]) {
    for &r in which {
        for p in &reps[r] {
            std::fs::remove_file(p).unwrap();
        }
    }
}

/// Resync that panics (an interruption) once replica `at` has had its first step copied.
fn interrupted_resync(set: &poolset::PoolSet, opts: OpenOptions<'_>, at: usize) {
    let r = catch_unwind(AssertUnwindSafe(|| {
        resync(set, Some("ring"), opts, ResyncMode::Full, &mut |p| {
            if p.replica == at && p.done_bytes > 0 {
                panic!("interrupted at replica {at}");
            }
        })
    }));
    if let Ok(res) = r {
        panic!("resync was not interrupted: {res:?}");
    }
}

fn assert_still_stale(set: &poolset::PoolSet, replica: usize) {
    match Pool::open(set, Some("ring"), OpenOptions::default()) {
        Err(Error::StaleReplica { replica: r, .. }) if r == replica => {}
        Err(e) => panic!("expected replica {replica} stale, got {e}"),
        Ok(_) => panic!("expected replica {replica} stale, the pool opened fail-stop"),
    }
}

/// Fail-stop open succeeds with every replica healthy and holding `want`; verify is clean.
fn assert_restored(set: &poolset::PoolSet, reps: &[Vec<PathBuf>], want: &[u8]) {
    let pool = Pool::open(set, Some("ring"), OpenOptions::default()).unwrap();
    assert!(stale_of(&pool).is_empty());
    drop(pool);
    assert_eq!(verify(set, Some("ring")).unwrap(), vec![]);
    assert_ring_closed(reps);
    for (r, parts) in reps.iter().enumerate() {
        // Single-part replicas: data follows the 4 KiB header.
        if parts.len() == 1 {
            let b = std::fs::read(&parts[0]).unwrap();
            assert!(
                b[4096..4096 + want.len()] == *want,
                "replica {r} data differs"
            );
        }
    }
}

#[test]
fn two_adjacent_deleted_replicas_are_restored_with_a_closed_ring() {
    let d = testkit::shm_tempdir();
    let reps = local_replicas(d.path(), 5);
    let set = write_set(
        d.path(),
        &reps.iter().cloned().map(Some).collect::<Vec<_>>(),
    );
    let pool = Pool::create(&set, "ring", OpenOptions::default()).unwrap();
    let want = fill(&pool, 3);
    drop(pool);
    let before = ring_of(&reps);
    delete(&reps, &[2, 3]);
    let pool = Pool::open(&set, Some("ring"), degraded()).unwrap();
    assert_eq!(stale_of(&pool), vec![2, 3]);
    drop(pool);
    // Interrupted in replica 3: replica 2 is back (mark cleared), 3 is still stale.
    interrupted_resync(&set, OpenOptions::default(), 3);
    assert_still_stale(&set, 3);
    let after_2 = ring_of(&reps[..3]);
    assert_eq!(after_2[2], before[2], "replica 2 got its old place back");
    let report = resync(
        &set,
        Some("ring"),
        OpenOptions::default(),
        ResyncMode::Full,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        report
            .replicas
            .iter()
            .map(|r| r.replica)
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(ring_of(&reps), before, "the rerun restored the same ring");
    assert_restored(&set, &reps, &want);
}

/// Three adjacent replicas gone: no header names replica 2's UUID, so it is derived; the link
/// to it written before an interruption, the UUID written by the rerun, and the one a later
/// resync derives again all agree.
#[test]
fn a_place_no_header_names_gets_the_same_derived_uuid_in_every_run() {
    let d = testkit::shm_tempdir();
    let reps = local_replicas(d.path(), 5);
    let set = write_set(
        d.path(),
        &reps.iter().cloned().map(Some).collect::<Vec<_>>(),
    );
    let pool = Pool::create(&set, "ring", OpenOptions::default()).unwrap();
    let want = fill(&pool, 5);
    drop(pool);
    let before = ring_of(&reps);
    delete(&reps, &[1, 2, 3]);
    let pool = Pool::open(&set, Some("ring"), degraded()).unwrap();
    assert_eq!(stale_of(&pool), vec![1, 2, 3]);
    drop(pool);
    interrupted_resync(&set, OpenOptions::default(), 2);
    assert_still_stale(&set, 2);
    let link_to_2 = ring_of(&reps[..2])[1].2;
    assert!(
        !link_to_2.is_nil(),
        "replica 1 links to replica 2 by a nil UUID"
    );
    assert_ne!(
        link_to_2, before[2].0,
        "nothing could know replica 2's lost UUID"
    );
    resync(
        &set,
        Some("ring"),
        OpenOptions::default(),
        ResyncMode::Full,
        &mut |_| {},
    )
    .unwrap();
    let ring = ring_of(&reps);
    assert_eq!(ring[2].0, link_to_2, "the rerun derived another UUID");
    assert_eq!((ring[1].0, ring[3].0), (before[1].0, before[3].0));
    assert_restored(&set, &reps, &want);
    // The same loss again: the same UUID is derived (and every other place is known).
    delete(&reps, &[1, 2, 3]);
    drop(Pool::open(&set, Some("ring"), degraded()).unwrap());
    resync(
        &set,
        Some("ring"),
        OpenOptions::default(),
        ResyncMode::Compare,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(ring_of(&reps), ring);
    assert_restored(&set, &reps, &want);
}

/// A nil link (as an earlier build's resync wrote next to an unknown place) in a healthy
/// replica is not taken as a UUID: the place is derived and the link rewritten.
#[test]
fn a_nil_link_in_a_healthy_replica_is_replaced_by_the_derived_uuid() {
    let d = testkit::shm_tempdir();
    let reps = local_replicas(d.path(), 5);
    let set = write_set(
        d.path(),
        &reps.iter().cloned().map(Some).collect::<Vec<_>>(),
    );
    let pool = Pool::create(&set, "ring", OpenOptions::default()).unwrap();
    let want = fill(&pool, 9);
    drop(pool);
    delete(&reps, &[2, 3]);
    drop(Pool::open(&set, Some("ring"), degraded()).unwrap());
    // Replica 1's next link (to the stale replica 2) made nil, both slots, checksums fixed.
    let mut b = std::fs::read(&reps[1][0]).unwrap();
    for slot in [0, header::HEADER_SLOT_BYTES] {
        let mut h = PartHeader::decode(&b[slot..]).unwrap();
        h.next_repl_uuid = [0; 16];
        h.seal();
        b[slot..slot + header::HEADER_SLOT_BYTES].copy_from_slice(h.as_bytes());
    }
    std::fs::write(&reps[1][0], &b).unwrap();
    let report = resync(
        &set,
        Some("ring"),
        OpenOptions::default(),
        ResyncMode::Full,
        &mut |_| {},
    )
    .unwrap();
    assert!(
        report.repaired.iter().any(|l| l.contains("replica links")),
        "{report:?}"
    );
    assert_restored(&set, &reps, &want);
}

/// A mock remote target: attributes (part-0 UUID and links) and data that outlive a
/// connection, checked at open as rpmem does (`None` in the spec: not compared; a resync spec
/// rewrites disagreeing attributes).
#[derive(Default)]
struct Targets {
    pools: Mutex<HashMap<usize, Target>>,
}

#[derive(Clone)]
struct Target {
    attrs: [[u8; 16]; 3],
    data: Arc<Mutex<Vec<u8>>>,
}

struct MockReplica(Arc<Mutex<Vec<u8>>>, usize);

impl Replica for MockReplica {
    fn describe(&self) -> String {
        format!("mock remote {}", self.1)
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        buf.copy_from_slice(&self.0.lock().unwrap()[off..off + buf.len()]);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.0.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn drain(&self) -> Result<(), PersistError> {
        Ok(())
    }
}

impl Targets {
    fn connect(&self, spec: &RemoteSpec) -> Result<Box<dyn Replica>, String> {
        let want = [spec.uuid, spec.prev_repl_uuid, spec.next_repl_uuid];
        let mut pools = self.pools.lock().unwrap();
        let t = if spec.create {
            let t = Target {
                attrs: want.map(|u| u.expect("create knows the ring").0),
                data: Arc::new(Mutex::new(vec![0; spec.pool_size as usize])),
            };
            pools.insert(spec.replica, t.clone());
            t
        } else {
            let t = pools
                .get_mut(&spec.replica)
                .ok_or_else(|| format!("no pool for replica {}", spec.replica))?;
            let disagree = want
                .iter()
                .zip(t.attrs)
                .any(|(w, got)| w.is_some_and(|w| w.0 != got));
            if disagree {
                if !spec.resync {
                    return Err(format!(
                        "attributes {:?} disagree with the spec {want:?}",
                        t.attrs.map(Uuid)
                    ));
                }
                t.attrs = want.map(|u| u.expect("a resync spec knows the ring").0);
            }
            t.clone()
        };
        Ok(Box::new(MockReplica(t.data, spec.replica)))
    }
}

/// Local primary, remote 1, local 2, remote 3: replica 2's neighbours are both remote, so once
/// it is deleted no header names its UUID. The derived one goes into its header and into the
/// attributes of the healthy remote replicas 1 and 3, and the pool opens fail-stop again.
#[test]
fn healthy_remote_neighbours_of_a_derived_place_get_the_ring_in_their_attributes() {
    let d = testkit::shm_tempdir();
    let (p, l) = (vec![d.path().join("p")], vec![d.path().join("l")]);
    let set = write_set(d.path(), &[Some(p.clone()), None, Some(l.clone()), None]);
    let targets = Targets::default();
    let connect = |_rr: &poolset::RemoteReplica, spec: &RemoteSpec| targets.connect(spec);
    let opts = OpenOptions {
        remote: Some(&connect),
        ..OpenOptions::default()
    };
    let pool = Pool::create(&set, "ring", opts).unwrap();
    let want = fill(&pool, 1);
    drop(pool);
    let old = Uuid(header_of(&l[0]).uuid);
    std::fs::remove_file(&l[0]).unwrap();
    let pool = Pool::open(
        &set,
        Some("ring"),
        OpenOptions {
            failure_policy: FailurePolicy::Degraded,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(stale_of(&pool), vec![2]);
    drop(pool);
    let report = resync(&set, Some("ring"), opts, ResyncMode::Full, &mut |_| {}).unwrap();
    assert_eq!(report.replicas.len(), 1, "{report:?}");
    let h2 = header_of(&l[0]);
    assert_ne!(Uuid(h2.uuid), old);
    {
        let pools = targets.pools.lock().unwrap();
        assert_eq!(pools[&1].attrs[2], h2.uuid, "replica 1's next link");
        assert_eq!(pools[&3].attrs[1], h2.uuid, "replica 3's prev link");
        assert_eq!(
            (h2.prev_repl_uuid, h2.next_repl_uuid),
            (pools[&1].attrs[0], pools[&3].attrs[0])
        );
    }
    let pool = Pool::open(&set, Some("ring"), opts).unwrap();
    assert!(stale_of(&pool).is_empty());
    let relinked: Vec<_> = report
        .repaired
        .iter()
        .filter(|l| l.contains("ring links"))
        .collect();
    assert_eq!(relinked.len(), 2, "{report:?}");
    let mut got = vec![0u8; pool.len()];
    pool.read(0, &mut got);
    assert!(got == want);
    drop(pool);
    let b = std::fs::read(&l[0]).unwrap();
    assert!(
        b[4096..4096 + want.len()] == *want,
        "replica 2 data differs"
    );
    for r in [1, 3] {
        let data = targets.pools.lock().unwrap()[&r].data.clone();
        assert!(
            *data.lock().unwrap() == want,
            "remote replica {r} data differs"
        );
    }
}
