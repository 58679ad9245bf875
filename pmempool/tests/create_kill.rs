//! `pmempool create FILE --size`, killed with SIGKILL at random moments, never leaves a
//! half-made pool at FILE: afterwards FILE is either absent (then `create` succeeds) or a
//! complete pool that `check` accepts (then `create` says it exists). Leftover temporary files
//! of the killed creators are removed by the next create. Seed printed; replay with
//! `PMEMPOOL_KILL_SEED`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn killed_create_leaves_no_half_made_pool() {
    let seed = testkit::seed("PMEMPOOL_KILL_SEED");
    let mut rng = seed | 1;
    let dir = testkit::shm_tempdir();
    let (mut absent, mut complete) = (0, 0);
    // Measure an uninterrupted create, so the kills spread over its whole length.
    let probe = dir.path().join("probe");
    let t = Instant::now();
    run_expect(&["create", "--size", "64M", s(&probe)], 0);
    let full = t.elapsed().max(Duration::from_millis(2));
    for round in 0..25 {
        let file = dir.path().join(format!("pool{round}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pmempool"))
            .args(["create", "--size", "64M", s(&file)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = full.mul_f64((rng % 1000) as f64 / 1000.0 * 1.2);
        std::thread::sleep(wait);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !file.exists() {
            assert!(
                !status.success(),
                "round {round} (seed {seed}): create succeeded but left no file"
            );
            absent += 1;
            // Creating it now works, and removes the killed creator's temporary file.
            run_expect(&["create", "--size", "64M", s(&file)], 0);
        } else {
            complete += 1;
            let out = pmempool(&["check", s(&file)]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round} (seed {seed}): FILE exists after the kill but check refuses it:\n{}",
                text(&out.stderr)
            );
            let again = pmempool(&["create", "--size", "64M", s(&file)]);
            assert_eq!(again.status.code(), Some(1), "round {round}");
            assert!(
                text(&again.stderr).contains("exist"),
                "round {round}: {}",
                text(&again.stderr)
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".pool{round}.creating")))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: temporary files left after the next create: {leftovers:?}"
        );
        std::fs::remove_file(&file).unwrap();
    }
    eprintln!("{absent} rounds left no file, {complete} a complete pool");
    assert!(absent + complete == 25);
}
