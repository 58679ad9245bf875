//! Fail-stop at every drain of one transaction: a replica (an in-memory mock behind
//! `pool::Replica`, so the failure point is exact) fails at the k-th drain of a `kv::run_step`,
//! for every k — once (a transient failure), or at that drain and every later one (a replica
//! that is gone). After a reopen (primary authoritative) the map must match what the step
//! returned: `Ok` or `tx::Error::CommittedReplicationFailed` (the failure came after the
//! commit point) — the step is there; any other error — the step is absent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use examples::kv::{self, KvPool};
use pool::persist::PersistError;
use pool::{FailurePolicy, OpenOptions, Pool, Replica};
use tx::obj::LAYOUT;
use tx::PoolTyped;

struct Mock {
    mem: Arc<Mutex<Vec<u8>>>,
    drains: Arc<AtomicU64>,
    fail_at: u64,
    /// Fail every drain from `fail_at` on, not only that one.
    sticky: bool,
}

impl Replica for Mock {
    fn describe(&self) -> String {
        "mock".into()
    }
    fn len(&self) -> usize {
        self.mem.lock().unwrap().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        buf.copy_from_slice(&self.mem.lock().unwrap()[off..off + buf.len()]);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.mem.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn drain(&self) -> Result<(), PersistError> {
        let n = self.drains.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at || (self.sticky && n > self.fail_at) {
            return Err(PersistError::Replica {
                replica: 1,
                message: format!("mock failure at drain {n}"),
            });
        }
        Ok(())
    }
}

/// What a step returned.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Absent,
    Committed,
}

fn run(k: u64, sticky: bool) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().unwrap();
    let set_file = dir.path().join("pool.set");
    std::fs::write(
        &set_file,
        format!(
            "PMEMPOOLSET\n4M {}\nREPLICA localhost:mock.set\n",
            dir.path().join("p").display()
        ),
    )
    .unwrap();
    let set = poolset::parse_file(&set_file, poolset::Mode::Initiator)
        .unwrap()
        .set;
    let mem = Arc::new(Mutex::new(Vec::new()));
    let drains = Arc::new(AtomicU64::new(0));
    let fail_at = Arc::new(AtomicU64::new(u64::MAX));
    let connect = |_: &poolset::RemoteReplica, spec: &pool::RemoteSpec| {
        let mut m = mem.lock().unwrap();
        if m.is_empty() {
            m.resize(spec.pool_size as usize, 0);
        }
        Ok(Box::new(Mock {
            mem: mem.clone(),
            drains: drains.clone(),
            fail_at: fail_at.load(Ordering::SeqCst),
            sticky,
        }) as Box<dyn Replica>)
    };
    let o = OpenOptions {
        remote: Some(&connect),
        failure_policy: FailurePolicy::FailStop,
        ..OpenOptions::default()
    };
    let p = Pool::create(&set, LAYOUT, o).unwrap();
    let pool: KvPool = PoolTyped::create_in(Arc::new(p), &Default::default()).unwrap();
    for _ in 0..10 {
        kv::run_step(&pool).unwrap();
    }
    drop(pool);
    // Drains an open makes (recovery, run-generation bump), so that k counts from the step.
    let before_open = drains.load(Ordering::SeqCst);
    let p = Pool::open(&set, Some(LAYOUT), o).unwrap();
    let pool: KvPool = PoolTyped::open_in(Arc::new(p), Default::default()).unwrap();
    let open_drains = drains.load(Ordering::SeqCst) - before_open;
    drop(pool);
    // Now arm: the connector reads fail_at at connect time.
    fail_at.store(
        drains.load(Ordering::SeqCst) + open_drains + k,
        Ordering::SeqCst,
    );
    let p = Pool::open(&set, Some(LAYOUT), o).unwrap();
    let pool: KvPool = PoolTyped::open_in(Arc::new(p), Default::default()).unwrap();
    let r = kv::run_step(&pool);
    drop(pool);
    fail_at.store(u64::MAX, Ordering::SeqCst);
    let p = Pool::open(&set, Some(LAYOUT), o).unwrap();
    let pool: KvPool =
        PoolTyped::open_in(Arc::new(p), Default::default()).map_err(|e| e.to_string())?;
    let steps = pool.read(&pool.root()).unwrap().steps;
    match (&r, kv::check(&pool)) {
        (Err(tx::Error::CommittedReplicationFailed(_)), Ok((_, 11))) => Ok(Outcome::Committed),
        (Err(tx::Error::CommittedReplicationFailed(_)), c) => Err(format!(
            "drain {k} (sticky {sticky}): step reported committed; reopened: steps {steps}, \
             check {c:?}"
        )),
        (Err(_), Ok((_, 10))) => Ok(Outcome::Absent),
        (Ok(_), Ok((_, 11))) => Ok(Outcome::Ok),
        (r, c) => Err(format!(
            "drain {k} (sticky {sticky}): step returned {r:?}; reopened: steps {steps}, \
             check {c:?}"
        )),
    }
}

fn every_drain(sticky: bool) {
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    for k in 1..=12 {
        match run(k, sticky) {
            Ok(o) => seen.push(o),
            Err(e) => bad.push(e),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    eprintln!("sticky {sticky}: outcomes by drain {seen:?}");
    // The step's drains: undo appends and commit step 1 (absent), the redo log's commit
    // record (absent: invalidated), applying and clearing it (committed), then none left (ok).
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [Outcome::Ok, Outcome::Absent, Outcome::Committed],
        "every kind of outcome must occur"
    );
}

#[test]
fn replica_failure_at_every_drain_of_a_step() {
    every_drain(false);
}

#[test]
fn replica_gone_from_every_drain_of_a_step_on() {
    every_drain(true);
}
