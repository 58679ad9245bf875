//! `pmempool rm` on a poolset with a remote replica: the remote part files are removed by a
//! real rpmemd (REMOVE over rpmem's control channel, local transport: RPMEM_TRANSPORT=local and
//! RPMEMD_PATH pointing at a wrapper that gives rpmemd its configuration).

mod common;

use common::*;

#[test]
fn rm_removes_remote_replica_parts_through_rpmemd() {
    let d = testkit::shm_tempdir();
    let site = RemoteSite::new(d.path());
    // The target's pool: a poolset in its poolset-dir naming one part file.
    let remote_part = site.poolset("target.set", 2);
    std::fs::write(&remote_part, vec![0u8; 2 << 20]).unwrap();
    let local_part = d.path().join("a0");
    std::fs::write(&local_part, b"local part").unwrap();
    let set = write_set(
        d.path(),
        "pool.set",
        &[
            format!("8M {}", local_part.display()),
            "REPLICA localhost target.set".into(),
        ],
    );
    let run = |args: &[&str]| site.run(args);
    // --local leaves the remote replica alone.
    let out = run(&["rm", "--local", "--only-pools", s(&set)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!local_part.exists());
    assert!(remote_part.exists());
    let out = run(&["rm", "-v", "--remote", s(&set)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout {}\nstderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!remote_part.exists(), "rpmemd removed the remote part");
    assert!(
        !site.sets.join("target.set").exists(),
        "and its poolset (no --only-pools)"
    );
    assert!(text(&out.stderr).contains("removed replica 1 on localhost"));
    assert!(
        set.exists(),
        "the local poolset stays when only --remote is asked"
    );
    // Again: the remote poolset is gone now, and the error names the replica.
    let out = run(&["rm", "--remote", s(&set)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("replica 1 (remote localhost, target.set)"),
        "{}",
        text(&out.stderr)
    );
}
