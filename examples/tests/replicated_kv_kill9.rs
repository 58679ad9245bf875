//! kill -9 of `replicated-kv run` (the README's demo): the map lives in a pool whose poolset
//! has a remote replica served by a real rpmemd (local transport). Each round the app is killed
//! with SIGKILL mid-run; `verify --committed N` (N = the last `committed N steps` the app
//! printed) must then find, without opening the pool, that the replica — read back through
//! rpmem and recovered alone in memory — holds a consistent map with at least N steps. The
//! next round's `run` reopens the pool (replica repaired from the primary) and continues; at
//! the end `check` passes and `verify` finds the replica byte-identical to the primary.

#[path = "../../rpmem/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Site;

fn kv(site: &Site, set: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replicated-kv"));
    c.arg("--local-rpmemd")
        .arg(testkit::rpmemd::binary())
        .args(["--rpmemd-arg", "-c", "--rpmemd-arg"])
        .arg(site.config())
        .arg(set);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn replica_holds_every_committed_step_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new();
    // Remote: pool (8 MiB part minus its header) + rpmemd's attribute area + header.
    site.poolset("kv.set", &[9]);
    let set = dir.path().join("pool.set");
    std::fs::write(
        &set,
        format!(
            "PMEMPOOLSET\n8M {}\nREPLICA localhost:kv.set\n",
            dir.path().join("primary.part").display()
        ),
    )
    .unwrap();
    let mut last_committed = 0;
    for round in 0..3u64 {
        let mut child = kv(&site, &set)
            .arg("run")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn replicated-kv run");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let t0 = Instant::now();
        let mut committed = None;
        let mut seen = 0;
        while seen < 1 + round % 2 {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l
                        .strip_prefix("committed ")
                        .and_then(|r| r.strip_suffix(" steps"))
                    {
                        committed = Some(n.parse::<u64>().unwrap());
                        seen += 1;
                    }
                }
                other => panic!("round {round}: stdout ended early ({other:?})"),
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        }
        std::thread::sleep(Duration::from_millis(5 + 11 * round));
        child.kill().expect("SIGKILL");
        assert!(!child.wait().unwrap().success());
        // Lines the app printed before it died, up to the kill.
        for l in lines.map_while(|l| l.ok()) {
            if let Some(n) = l
                .strip_prefix("committed ")
                .and_then(|r| r.strip_suffix(" steps"))
            {
                committed = Some(n.parse().unwrap());
            }
        }
        let committed = committed.unwrap();
        assert!(committed > last_committed, "round {round}: no progress");
        last_committed = committed;

        let out = kv(&site, &set)
            .args(["verify", "--committed", &committed.to_string()])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "round {round}: verify failed:\n{t}");
        assert!(
            t.contains("holds every step the app reported committed"),
            "{t}"
        );
        eprintln!("round {round} ({committed} steps reported):\n{t}");
    }
    let out = kv(&site, &set).arg("check").output().unwrap();
    let t = text(&out);
    assert!(
        out.status.success() && t.lines().any(|l| l.starts_with("ok: ")),
        "{t}"
    );
    assert!(
        t.contains("replica 1 (remote localhost:kv.set): healthy"),
        "{t}"
    );
    let out = kv(&site, &set).arg("verify").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("identical to the primary's"), "{t}");
}
