//! kill -9 tests of the transactional examples: each example runs its endless workload on a
//! pool file, is killed with SIGKILL mid-run (at a moment that varies per round), and the next
//! process reopens the pool (rolling back the transaction in flight) and checks that the data
//! is exactly what the committed transactions made — several rounds on the same pool.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kill_rounds(bin: &str, rounds: u32) {
    // No tempfile dev-dependency in this crate: a unique name in the temp dir, removed at the end.
    let name = std::path::Path::new(bin).file_name().expect("binary name");
    let pool = std::env::temp_dir().join(format!(
        "kill9-{}-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
    ));
    let mut last_check = String::new();
    for round in 0..rounds {
        let mut child = Command::new(bin)
            .arg(&pool)
            .arg("run")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn example");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let t0 = Instant::now();
        let mut seen = 0;
        while seen < 1 + round % 2 {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("progress") => seen += 1,
                Some(Ok(_)) => {}
                other => panic!("{bin} round {round}: stdout ended early ({other:?})"),
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{bin}: no progress");
        }
        // Let it run into the middle of some transaction, at a different moment every round.
        std::thread::sleep(Duration::from_millis(3 + 7 * round as u64));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "{bin} round {round}: the kill did not kill"
        );
        let out = Command::new(bin)
            .arg(&pool)
            .arg("check")
            .output()
            .expect("run check");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.starts_with("ok"),
            "{bin} round {round}: check after kill -9 failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            text, last_check,
            "{bin} round {round}: no progress between kills"
        );
        eprintln!("{bin} round {round}: {}", text.trim());
        last_check = text;
    }
    std::fs::remove_file(&pool).expect("remove the pool file");
}

#[test]
fn pqueue_survives_kill_9() {
    kill_rounds(env!("CARGO_BIN_EXE_pqueue"), 4);
}

#[test]
fn pkv_survives_kill_9() {
    kill_rounds(env!("CARGO_BIN_EXE_pkv"), 4);
}
