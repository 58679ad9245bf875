//! `pmempool rm` on a poolset with a remote replica: the remote part files are removed by a
//! real rpmemd (REMOVE over rpmem's control channel, local transport: RPMEM_TRANSPORT=local and
//! RPMEMD_PATH pointing at a wrapper that gives rpmemd its configuration).
//!
//! Finding rpmemd: `RPMEMD_BIN` if set; otherwise built once with `cargo build -p rpmemd` into
//! `<target-dir>/e2e-rpmemd` (a separate target directory: the outer `cargo test` holds the lock
//! of its own), as rpmem's end-to-end tests do.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn rpmemd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RPMEMD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let dir = target.join("e2e-rpmemd");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "rpmemd",
            "--bin",
            "rpmemd",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&dir)
        .output()
        .expect("running cargo build -p rpmemd");
    assert!(
        out.status.success(),
        "cargo build -p rpmemd failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("debug").join("rpmemd")
}

#[test]
fn rm_removes_remote_replica_parts_through_rpmemd() {
    let d = shm_dir();
    let site = d.path().join("site");
    let sets = site.join("sets");
    let parts = site.join("parts");
    std::fs::create_dir_all(&sets).unwrap();
    std::fs::create_dir_all(&parts).unwrap();
    let conf = site.join("rpmemd.conf");
    std::fs::write(
        &conf,
        format!(
            "poolset-dir = {}\nuse-syslog = no\nlog-file = -\nlog-level = info\n",
            sets.display()
        ),
    )
    .unwrap();
    // The target's pool: a poolset in its poolset-dir naming one part file.
    let remote_part = parts.join("target.part0");
    std::fs::write(&remote_part, vec![0u8; 2 << 20]).unwrap();
    std::fs::write(
        sets.join("target.set"),
        format!("PMEMPOOLSET\n2M {}\n", remote_part.display()),
    )
    .unwrap();
    let wrapper = site.join("rpmemd.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -c {} \"$@\"\n",
            rpmemd_bin().display(),
            conf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
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
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pmempool"))
            .args(args)
            .env("RPMEM_TRANSPORT", "local")
            .env("RPMEMD_PATH", &wrapper)
            .output()
            .expect("run pmempool")
    };
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
        !sets.join("target.set").exists(),
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
