//! Process crashes for real: this test binary re-runs itself as a child that runs transactions
//! on a pool file and reports each finished step on its stdout (a pipe) right after it
//! returned; the parent kills it with SIGKILL at a random moment — often mid-transaction,
//! sometimes during open and recovery —, many times. After every kill the pool must open
//! (recovering what the child left), pass the heap checker, hold no leaked or dangling object,
//! and equal the model after the last acknowledged step, or after the one step that may have
//! committed without having been acknowledged yet. The next child continues from there.
//!
//! A process crash keeps every store in the page cache (flushed or not), so this tests the
//! recovery of interrupted transactions and of interrupted recoveries, as a real application
//! sees them; power failures are the crash-image tests' job (`crash_explore.rs`).
//!
//! `RELIABILITY_KILL_SEED` replays the kill moments and `RELIABILITY_KILLS` sets the number of
//! kills (default 50).

use pool::Pool;
use reliability::seed::{env_u64, seed, Rng};
use reliability::workload::{layout, observe, run_step, Model, Root, Step, TxOp, DATA, SLOTS};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tx::PoolTyped;

const CHILD_ENV: &str = "RELIABILITY_KILL_CHILD";
const POOL_BYTES: u64 = 8 << 20;

/// Step `i` (from 1) of the child's endless workload: a transaction that rewrites all of the
/// root's data, allocates into or frees a slot, writes a word of another slot's object; every
/// 11th aborts (and must leave no trace).
fn step(i: u64) -> Step {
    let slot = (i % SLOTS as u64) as usize;
    let change = if i.is_multiple_of(5) {
        TxOp::Free { slot }
    } else {
        TxOp::Alloc { slot, val: i }
    };
    Step::Tx {
        ops: vec![
            TxOp::WriteRoot {
                at: 0,
                len: DATA,
                byte: i as u8,
            },
            change,
            TxOp::WriteObj {
                slot: (i as usize * 3) % SLOTS,
                idx: (i % 8) as usize,
                val: i,
            },
            TxOp::Nested {
                ops: vec![TxOp::Alloc {
                    slot: (slot + 1) % SLOTS,
                    val: !i,
                }],
                abort: false,
            },
        ],
        abort: i.is_multiple_of(11),
    }
}

/// The child: open (or create) the pool, then run steps from `RELIABILITY_KILL_START` on,
/// printing `ack <i>` after each returned, until killed.
#[test]
fn kill_child_entry() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return; // Not the child: nothing to do.
    };
    let path = Path::new(&path);
    let start = env_u64("RELIABILITY_KILL_START").unwrap_or(1);
    let pool = if path.exists() {
        let p = Pool::open_file(path, Some("reliability")).expect("child: open");
        PoolTyped::<Root, Pool>::open_in(Arc::new(p), Default::default()).expect("child: open")
    } else {
        // Staged: the file appears at `path` only with its heap laid out, so a kill during
        // create leaves no pool file rather than a half-made one.
        let (p, staged) =
            Pool::create_file_staged(path, POOL_BYTES, "reliability").expect("child: create");
        let pool =
            PoolTyped::<Root, Pool>::create_in(Arc::new(p), &layout()).expect("child: create");
        staged.publish().expect("child: publish the created pool");
        pool
    };
    let mut out = std::io::stdout().lock();
    // On a line of its own: libtest has already written "test kill_child_entry ... ".
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    for i in start.. {
        run_step(&pool, &step(i)).unwrap_or_else(|e| panic!("child: step {i}: {e}"));
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

fn model_upto(last: u64) -> Model {
    (1..=last).fold(Model::default(), |m, i| m.after(&step(i)))
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // The child runs only its entry point.
    }
    let seed = seed("RELIABILITY_KILL_SEED");
    let kills = env_u64("RELIABILITY_KILLS").unwrap_or(50);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool");
    let exe = std::env::current_exe().unwrap();
    // `done` = steps whose outcome is in the pool; the model after them.
    let mut done = 0u64;
    let mut model = Model::default();
    let (mut in_flight_committed, mut during_open) = (0, 0);
    let started = Instant::now();
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("RELIABILITY_KILL_START", (done + 1).to_string())
            // Page-cache stores survive a process crash either way; CPU flushes instead of
            // msync let the child run more transactions per round.
            .env("PMEM_IS_PMEM_FORCE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            })
        };
        // One kill in five lands at a random moment of start-up (open, recovery); the others
        // once the child is running steps.
        let early = rng.below(5) == 0;
        if early {
            std::thread::sleep(Duration::from_micros(rng.below(8_000)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !lines.lock().unwrap().iter().any(|l| l == "ready") {
                if let Some(st) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err)
                        .unwrap();
                    panic!("round {round}: child exited ({st}) before ready:\n{err}");
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: child never ready"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(1_000 + rng.below(60_000)));
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we have not yet waited for (so the pid cannot
        // have been reused).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill child");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let lines = lines.lock().unwrap().clone();
        if let Some(code) = status.code() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("round {round}: child exited with {code} before the kill:\n{err}");
        }
        let acked = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ack ")?.parse::<u64>().ok())
            .max()
            .unwrap_or(done);
        if !lines.iter().any(|l| l == "ready") {
            during_open += 1;
        }
        // What the pool must hold: the model after `acked`, or after `acked + 1`.
        let mut m_acked = model.clone();
        for i in done + 1..=acked {
            m_acked = m_acked.after(&step(i));
        }
        let m_next = m_acked.after(&step(acked + 1));
        if !path.exists() {
            // Killed before the pool file was created: nothing was acknowledged.
            assert_eq!(
                acked, 0,
                "round {round}: acknowledged steps but no pool file"
            );
            continue;
        }
        let got = {
            let p = Pool::open_file(&path, Some("reliability")).unwrap_or_else(|e| {
                panic!("round {round} (RELIABILITY_KILL_SEED={seed}): pool does not open: {e}")
            });
            let pool = PoolTyped::<Root, Pool>::open_in(Arc::new(p), Default::default())
                .unwrap_or_else(|e| {
                    panic!("round {round} (RELIABILITY_KILL_SEED={seed}): tx open: {e}")
                });
            let rep = palloc::check(&**pool.persister()).unwrap();
            assert!(
                rep.is_ok(),
                "round {round} (RELIABILITY_KILL_SEED={seed}): heap checker: {:?}",
                rep.problems
            );
            observe(&pool)
                .unwrap_or_else(|e| panic!("round {round} (RELIABILITY_KILL_SEED={seed}): {e}"))
        };
        if got == m_acked {
            done = acked;
            model = m_acked;
        } else if got == m_next {
            done = acked + 1;
            model = m_next;
            in_flight_committed += 1;
        } else {
            panic!(
                "round {round} (RELIABILITY_KILL_SEED={seed}): after the kill the pool holds \
                 neither the state after acknowledged step {acked} nor after step {}:\n  got \
                 {got:?}\n  after {acked}: {m_acked:?}",
                acked + 1
            );
        }
    }
    assert_eq!(model, model_upto(done), "model bookkeeping");
    eprintln!(
        "{kills} kills in {:.1} s: {done} steps durable, {in_flight_committed} kills after a \
         commit not yet acknowledged, {during_open} during start-up",
        started.elapsed().as_secs_f64()
    );
    assert!(
        done > kills / 2,
        "the child made too little progress ({done} steps)"
    );
}
