//! Lanes are never waited for by a thread that holds them: a heap call inside a transaction on
//! the same thread takes a second lane (or fails with `palloc::Error::NoLane` when the thread
//! holds every lane), and two threads whose home lanes collide both run transactions at once.
//! Every test runs its work on other threads and waits with a timeout: a regression fails, it
//! does not hang.

mod common;
use common::{assert_heap_ok, region, small};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;
use tx::{ptype, Error, PMutex, PoolTyped};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Root {
    count: u64,
    lock: PMutex,
}
ptype!(Root);

type Pool = PoolTyped<Root, pool::region::MappedRegion>;

const DEADLINE: Duration = Duration::from_secs(30);

fn fresh(lanes: u32) -> Arc<Pool> {
    Arc::new(PoolTyped::create_in(region(4 << 20), &small(lanes)).unwrap())
}

/// Run `f` on its own thread; its result, or a panic naming `what` if it does not finish in
/// time (the thread is left behind, deadlocked).
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(r) => r,
        Err(e) => panic!("{what}: did not finish within {DEADLINE:?} ({e})"),
    }
}

#[test]
fn heap_alloc_inside_a_tx_on_the_same_thread_completes() {
    let pool = fresh(2);
    let p = pool.clone();
    let off = within("heap alloc inside a tx", move || {
        p.tx(|_| Ok::<_, Error>(p.heap().alloc(64, 1, None)?))
            .unwrap()
    });
    let o = pool.heap().object(off).unwrap();
    assert!(o.usable_size >= 64);
    pool.heap().free(off, None).unwrap();
    // The transaction's lane was released, and so was the second one.
    let lane = pool.heap().lane().unwrap();
    assert!(lane.index() < 2, "lane {}", lane.index());
    drop(lane);
    assert_heap_ok(&**pool.persister());
}

#[test]
fn a_thread_holding_every_lane_gets_an_error_not_a_deadlock() {
    let pool = fresh(1);
    let p = pool.clone();
    let r = within("heap alloc inside a tx with one lane", move || {
        p.tx(|_| Ok::<_, Error>(p.heap().alloc(64, 1, None)))
            .unwrap()
    });
    match r {
        Err(palloc::Error::NoLane {
            lanes: 1,
            held: 1,
            waited_ms: 0,
        }) => {}
        other => panic!("expected NoLane, got {other:?}"),
    }
    // Outside the transaction the only lane is free again.
    let off = pool.heap().alloc(64, 1, None).unwrap();
    pool.heap().free(off, None).unwrap();
    assert_heap_ok(&**pool.persister());
}

/// A thread (of at most 64 tried) whose home lane is `home`, parked until it receives its job.
fn thread_with_home(pool: &Arc<Pool>, home: usize) -> std::sync::mpsc::Sender<Job> {
    for _ in 0..64 {
        let (home_tx, home_rx) = channel();
        let (job_tx, job_rx): (_, Receiver<Job>) = channel();
        let p = pool.clone();
        std::thread::spawn(move || {
            let _ = home_tx.send(p.heap().home_lane());
            if let Ok(job) = job_rx.recv() {
                job();
            }
        });
        if home_rx.recv_timeout(DEADLINE).unwrap() == home {
            return job_tx;
        }
        // Dropping `job_tx` ends that thread.
    }
    panic!("no thread with home lane {home} in 64 tries");
}

type Job = Box<dyn FnOnce() + Send>;

#[test]
fn two_threads_on_the_same_home_lane_share_a_pmutex_inside_transactions() {
    let pool = fresh(2);
    let root = pool.root();
    let (a_locked_tx, a_locked) = channel::<()>();
    let (b_in_tx_tx, b_in_tx) = channel::<usize>();
    let (done_tx, done) = channel::<(char, Result<usize, Error>)>();

    let p = pool.clone();
    let done_a = done_tx.clone();
    let a = move || {
        let r = p.tx(|tx| {
            let _g = p.lock(&root, |r| &r.lock)?;
            let c = tx.read(&root)?.count;
            tx.set_field(&root, |r| &r.count, c + 1)?;
            let _ = a_locked_tx.send(());
            // B must get into its own transaction while this one holds the lane and the
            // mutex (it used to wait for this thread's lane: a deadlock).
            let b_lane = b_in_tx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| Error::Config("B could not begin a transaction within 10 s".into()))?;
            if b_lane == tx.lane_index() {
                return Err(Error::Config(format!("both transactions on lane {b_lane}")));
            }
            Ok(tx.lane_index())
        });
        let _ = done_a.send(('A', r));
    };
    let p = pool.clone();
    let b = move || {
        let r = a_locked
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::Config("A never locked".into()))
            .and_then(|()| {
                p.tx(|tx| {
                    let _ = b_in_tx_tx.send(tx.lane_index());
                    // Waits until A's transaction ends and releases the mutex.
                    let _g = p.lock(&root, |r| &r.lock)?;
                    let c = tx.read(&root)?.count;
                    tx.set_field(&root, |r| &r.count, c + 10)?;
                    Ok(tx.lane_index())
                })
            });
        let _ = done_tx.send(('B', r));
    };
    // Two threads whose home lane is 0.
    let (home_tx, home_rx) = channel();
    let first = thread_with_home(&pool, 0);
    first
        .send(Box::new(move || {
            let _ = home_tx.send(());
            a()
        }))
        .unwrap();
    home_rx.recv_timeout(DEADLINE).unwrap();
    thread_with_home(&pool, 0).send(Box::new(b)).unwrap();

    let mut lanes = Vec::new();
    for _ in 0..2 {
        let (who, r) = done
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("a transaction did not finish within {DEADLINE:?}: {e}"));
        lanes.push(r.unwrap_or_else(|e| panic!("{who}: {e}")));
    }
    assert_ne!(lanes[0], lanes[1]);
    assert_eq!(pool.read(&root).unwrap().count, 11);
    assert_heap_ok(&**pool.persister());
}
