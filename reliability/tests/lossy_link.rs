//! A replicated pool persisting over a lossy link (root only; prints `SKIPPED` otherwise).
//!
//! The remote replica is served by a real rpmemd on a "second host": a network namespace
//! (testkit `NetnsHost`) with an sshd that starts rpmemd, exactly as the other netns tests do.
//! Loss is injected with nftables *inside the namespace* (`tc netem` is not available here): a
//! table `reliability_lossy` whose input and output chains drop a random `pct` % of the TCP
//! packets on the namespace's veth (`numgen random mod 100 < pct`), in both directions, with a
//! counter so the test can show that packets really were dropped. The table dies with the
//! namespace, so a crashed test leaves no firewall change behind.
//!
//! For each loss level (0 % as the baseline, then 5 %, then 20 %) a fresh fail-stop replicated
//! pool is created over a clean link, the loss is switched on, and a worker thread persists
//! seeded 8 KiB chunks at distinct offsets until a count or a time budget is reached. TCP
//! retransmits, so persists must complete, only slower; a persist may instead fail, but then
//! only with the replica's persist-deadline error, and within the deadline plus a margin. The
//! worker is bounded as a whole (the test fails instead of hanging). After the loss is removed
//! and the pool closed, every acknowledged chunk must be byte-identical in the remote part file;
//! a fail-stop reopen must then leave the whole remote replica identical to the primary, and a
//! persist on the healed link must be quick again. The latencies are printed
//! (`cargo test -p reliability --test lossy_link -- --nocapture`).

#[path = "../../rpmem/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use pool::persist::{Flags, PersistError};
use pool::{FailurePolicy, OpenOptions, Persister, Pool};
use rpmem::replica::Connector;
use rpmem::Options;

const TEST: &str = "persists_over_a_lossy_link_complete_or_fail_in_time";
/// Primary part, MiB (the pool is this minus the 4 KiB header).
const PART_MIB: u64 = 4;
/// Remote part: the pool + rpmemd's attribute area + the header, in whole MiB.
const REMOTE_PART_MIB: u64 = 6;
/// Offset of pool offset 0 in the primary's part file (the pool header).
const PRIMARY_DATA_OFFSET: u64 = 4096;
const PERSIST_DEADLINE: Duration = Duration::from_secs(2);
const CONTROL_DEADLINE: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(1500);
const CHUNK: usize = 8 << 10;
const PERSISTS_MAX: usize = 150;
/// Time budget of one level's workload; a persist started before it ends is still waited for.
const LEVEL_BUDGET: Duration = Duration::from_secs(5);
/// Bound on one level's whole workload: the budget plus one persist's deadline and margin.
const LEVEL_BOUND: Duration = Duration::from_secs(5 + 2 + 2);
const LOSS_TABLE: &str = "reliability_lossy";

/// A second host: a network namespace with an sshd whose sessions find our rpmemd.
struct Remote {
    host: testkit::NetnsHost,
    sshd: testkit::Sshd,
    site: Site,
    opts: Options,
}

impl Remote {
    fn start() -> Option<Remote> {
        if !testkit::require_root(TEST) {
            return None;
        }
        if testkit::which("nft").is_none() {
            testkit::report_skip(TEST, "needs nft (apt install nftables)");
            return None;
        }
        let host = match testkit::NetnsHost::create() {
            Ok(h) => h,
            Err(e) => {
                testkit::report_skip(TEST, &e.to_string());
                return None;
            }
        };
        let site = Site::new();
        let sshd = host
            .sshd_builder()
            .set_env("PATH", testkit::rpmemd::session_path())
            .start()
            .expect("sshd in the namespace");
        let mut opts = ssh_options(&sshd, &site, "rpmemd");
        opts.persist_deadline = PERSIST_DEADLINE;
        opts.control_deadline = CONTROL_DEADLINE;
        Some(Remote {
            host,
            sshd,
            site,
            opts,
        })
    }

    fn nft(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = self.host.command("nft");
        cmd.args(args);
        if stdin.is_some() {
            cmd.args(["-f", "-"]);
        }
        let out = match stdin {
            None => testkit::output_with_timeout(&mut cmd, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{}: {e}", testkit::command_line(&cmd))),
            Some(text) => {
                use std::io::Write;
                use std::process::Stdio;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{}: {e}", testkit::command_line(&cmd)));
                child
                    .stdin
                    .take()
                    .expect("piped stdin")
                    .write_all(text.as_bytes())
                    .expect("writing the ruleset to nft");
                // nft reads a short ruleset and exits; it has no reason to block.
                child.wait_with_output().expect("waiting for nft")
            }
        };
        assert!(
            out.status.success(),
            "{}: {}",
            testkit::command_line(&cmd),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drops a random `pct` % of the TCP packets entering and leaving the namespace's veth.
    fn loss_on(&self, pct: u32) {
        let veth = self.host.peer_veth();
        let ruleset = format!(
            "table inet {LOSS_TABLE} {{\n\
             \x20 chain input {{ type filter hook input priority -300; policy accept; \
             iifname \"{veth}\" meta l4proto tcp numgen random mod 100 < {pct} counter drop; }}\n\
             \x20 chain output {{ type filter hook output priority -300; policy accept; \
             oifname \"{veth}\" meta l4proto tcp numgen random mod 100 < {pct} counter drop; }}\n\
             }}\n"
        );
        self.nft(&[], Some(&ruleset));
    }

    /// Removes the loss table; returns the packets it dropped (input, output).
    fn loss_off(&self) -> (u64, u64) {
        let listing = self.nft(&["list", "table", "inet", LOSS_TABLE], None);
        let counts: Vec<u64> = listing
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.iter()
                    .position(|x| *x == "packets")
                    .and_then(|i| w.get(i + 1))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        assert_eq!(counts.len(), 2, "two counters expected in:\n{listing}");
        self.nft(&["delete", "table", "inet", LOSS_TABLE], None);
        (counts[0], counts[1])
    }

    /// Ends the rpmemd sessions still running in the namespace (started by this test through
    /// its sshd): after a failed session they may wait for a peer that is gone.
    fn kill_rpmemds(&self) {
        let rpmemds = || -> Vec<u32> {
            self.host
                .pids()
                .unwrap()
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .map(|c| c.trim() == "rpmemd")
                        .unwrap_or(false)
                })
                .collect()
        };
        for pid in rpmemds() {
            // SAFETY: kill(2) has no memory-safety preconditions; pid is an rpmemd in this
            // test's own namespace, started through this test's sshd.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        assert!(
            testkit::wait_for(Duration::from_secs(5), || rpmemds().is_empty()),
            "rpmemd still runs in the namespace"
        );
    }
}

/// One level's pool set: the primary's part and the remote part file (on this machine's file
/// system, though rpmemd runs in the namespace).
struct Layout {
    set_file: PathBuf,
    primary: PathBuf,
    remote: PathBuf,
}

impl Layout {
    fn new(dir: &Path, rh: &Remote, tag: &str) -> Layout {
        let name = format!("{tag}.set");
        let remote = rh.site.poolset(&name, &[REMOTE_PART_MIB])[0].clone();
        let primary = dir.join(format!("{tag}.part"));
        let set_file = dir.join(format!("{tag}.pool.set"));
        std::fs::write(
            &set_file,
            format!(
                "PMEMPOOLSET\n{PART_MIB}M {}\nREPLICA {}@{}:{} {name}\n",
                primary.display(),
                rh.sshd.user(),
                rh.host.peer_addr(),
                rh.sshd.port()
            ),
        )
        .unwrap();
        Layout {
            set_file,
            primary,
            remote,
        }
    }

    fn open(&self, opts: &Options, create: bool) -> Result<Pool, pool::Error> {
        let set = poolset::parse_file(&self.set_file, poolset::Mode::Initiator)
            .unwrap()
            .set;
        let c = Connector::new(opts.clone());
        let f = c.as_fn();
        let o = OpenOptions {
            remote: Some(&f),
            failure_policy: FailurePolicy::FailStop,
            ..OpenOptions::default()
        };
        if create {
            Pool::create(&set, "lossy", o)
        } else {
            Pool::open(&set, Some("lossy"), o)
        }
    }
}

fn file_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    b[at as usize..at as usize + len].to_vec()
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// What the worker saw: latencies of the acknowledged persists, and the failure if one came.
struct Outcome {
    acked: Vec<Duration>,
    failure: Option<(PersistError, Duration)>,
    elapsed: Duration,
}

/// Persists seeded chunks at distinct offsets until `PERSISTS_MAX` or `LEVEL_BUDGET`, or the
/// first failure (fail-stop: the pool is unusable after it).
fn workload(pool: &Pool, data: &[u8]) -> Outcome {
    let started = Instant::now();
    let mut acked = Vec::new();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        if started.elapsed() >= LEVEL_BUDGET {
            break;
        }
        let t = Instant::now();
        match pool.memcpy_persist(i * CHUNK, chunk, Flags::NONE) {
            Ok(()) => acked.push(t.elapsed()),
            Err(e) => {
                return Outcome {
                    acked,
                    failure: Some((e, t.elapsed())),
                    elapsed: started.elapsed(),
                }
            }
        }
    }
    Outcome {
        acked,
        failure: None,
        elapsed: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// The loss levels, in percent: `RELIABILITY_LOSS_LEVELS` (comma-separated, each 0..=100), or
/// 0 (the baseline), 5 and 20.
fn loss_levels() -> Vec<u32> {
    let Ok(text) = std::env::var("RELIABILITY_LOSS_LEVELS") else {
        return vec![0, 5, 20];
    };
    text.split(',')
        .map(|w| match w.trim().parse::<u32>() {
            Ok(p) if p <= 100 => p,
            _ => panic!("RELIABILITY_LOSS_LEVELS: {w:?} is not a percentage 0..=100"),
        })
        .collect()
}

#[test]
fn persists_over_a_lossy_link_complete_or_fail_in_time() {
    let test_started = Instant::now();
    let Some(rh) = Remote::start() else {
        return;
    };
    let dir = testkit::shm_tempdir();
    let s = seed();
    let mut report = Vec::new();
    for pct in loss_levels() {
        let l = Layout::new(dir.path(), &rh, &format!("loss{pct}"));
        let pool = l.open(&rh.opts, true).expect("create over the clean link");
        let len = pool.len();
        let data = pattern(s ^ u64::from(pct), (PERSISTS_MAX * CHUNK).min(len));
        if pct > 0 {
            rh.loss_on(pct);
        }
        // The worker owns the pool; a hang shows up as a missing answer within the bound.
        let (tx, rx) = mpsc::channel();
        let worker_data = data.clone();
        std::thread::spawn(move || {
            let out = workload(&pool, &worker_data);
            let _ = tx.send((pool, out));
        });
        let (pool, out) = match rx.recv_timeout(LEVEL_BOUND) {
            Ok(r) => r,
            Err(_) => panic!(
                "{pct} % loss: the workload did not finish within {LEVEL_BOUND:?} (a persist \
                 hung past its {PERSIST_DEADLINE:?} deadline; seed {s})"
            ),
        };
        let dropped = if pct > 0 { rh.loss_off() } else { (0, 0) };

        let mut lat = out.acked.clone();
        lat.sort();
        let line = format!(
            "{pct:>2} % loss: {} persists of {} KiB acknowledged in {:?} (p50 {:?}, p90 {:?}, \
             max {:?}); packets dropped in/out {}/{}{}",
            lat.len(),
            CHUNK >> 10,
            out.elapsed,
            percentile(&lat, 50),
            percentile(&lat, 90),
            lat.last().copied().unwrap_or_default(),
            dropped.0,
            dropped.1,
            match &out.failure {
                None => String::new(),
                Some((e, took)) => format!("; then a persist failed after {took:?}: {e}"),
            }
        );
        eprintln!("{line}");
        report.push(line);

        for (i, t) in out.acked.iter().enumerate() {
            assert!(
                *t < PERSIST_DEADLINE + MARGIN,
                "{pct} % loss: persist {i} was acknowledged after {t:?}, past the \
                 {PERSIST_DEADLINE:?} deadline"
            );
        }
        if let Some((e, took)) = &out.failure {
            assert!(
                matches!(e, PersistError::Replica { replica: 1, message }
                    if message.contains("persist deadline")),
                "{pct} % loss: the only acceptable failure is the replica's persist deadline: \
                 {e:?}"
            );
            assert!(
                *took < PERSIST_DEADLINE + MARGIN,
                "{pct} % loss: the failing persist took {took:?}"
            );
        }
        if pct == 0 {
            assert!(
                out.failure.is_none() && out.acked.len() == data.len().div_ceil(CHUNK),
                "the baseline without loss must persist everything"
            );
        } else if pct <= 20 {
            // TCP retransmits: at moderate loss work goes on, only slower.
            assert!(
                !out.acked.is_empty(),
                "{pct} % loss: no persist was acknowledged"
            );
        }
        if pct > 0 {
            assert!(
                dropped.0 + dropped.1 > 0,
                "{pct} % loss: the nftables rules dropped nothing (loss not in effect)"
            );
        }

        let closing = Instant::now();
        drop(pool);
        let close_took = closing.elapsed();
        assert!(
            close_took < CONTROL_DEADLINE + MARGIN,
            "{pct} % loss: closing took {close_took:?}"
        );
        rh.kill_rpmemds();

        // Every acknowledged chunk is on the replica, byte for byte.
        let acked_len = out.acked.len() * CHUNK;
        let remote = file_range(&l.remote, PART0_DATA_OFFSET, acked_len);
        assert!(
            remote == data[..acked_len],
            "{pct} % loss: acknowledged data differs on the replica first at {:?} (seed {s})",
            first_diff(&remote, &data[..acked_len])
        );

        // A fail-stop reopen over the healed link repairs whatever the replica missed (a
        // failed persist's chunk), and persists are quick again.
        let t = Instant::now();
        let pool = l
            .open(&rh.opts, false)
            .expect("reopen over the healed link");
        let reopen_took = t.elapsed();
        let t = Instant::now();
        pool.memcpy_persist(len - CHUNK, &data[..CHUNK], Flags::NONE)
            .expect("a persist over the healed link");
        let healed = t.elapsed();
        assert!(
            healed < PERSIST_DEADLINE,
            "{pct} % loss: a persist after the loss was removed took {healed:?}"
        );
        eprintln!(
            "{pct:>2} % loss, then healed: close {close_took:?}, reopen {reopen_took:?}, one \
             persist {healed:?}"
        );
        drop(pool);
        rh.kill_rpmemds();
        let primary = file_range(&l.primary, PRIMARY_DATA_OFFSET, len);
        let remote = file_range(&l.remote, PART0_DATA_OFFSET, len);
        assert!(
            remote == primary,
            "{pct} % loss: after reopen the replica differs from the primary first at {:?}",
            first_diff(&remote, &primary)
        );
    }
    eprintln!(
        "lossy link summary (seed {s}, deadline {PERSIST_DEADLINE:?}, whole test {:?}):\n  {}",
        test_started.elapsed(),
        report.join("\n  ")
    );
}
