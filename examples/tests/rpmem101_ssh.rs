//! The seed scenario "rpmemd started over SSH on localhost": the `rpmem101` binary, with its
//! `--ssh-*` flags pointing at a throw-away sshd on 127.0.0.1 (testkit), starts the real rpmemd
//! (found through the PATH the sshd sets) with the poolset-dir given by `--rpmemd-arg`, and the
//! greeting it persists must be in the target's part file at byte 8192 (pool header 4096 +
//! rpmemd's attribute area 4096, docs/PROTOCOL.md §14) — what the README's hexdump shows.

#[path = "../../rpmem/tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{Site, PART0_DATA_OFFSET};
use testkit::Sshd;

/// What rpmem101 writes at pool offset 0 (examples/src/bin/rpmem101.rs).
const GREETING: &[u8] = b"Hello world from rpmem101! (persisted over the fabric)\n";

fn rpmem101(sshd: &Sshd, site: &Site, target: &str, descriptor: &str) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rpmem101"));
    cmd.arg("--ssh-known-hosts")
        .arg(sshd.known_hosts())
        .arg("--ssh-identity")
        .arg(sshd.user_key())
        .args(["--ssh-config", "/dev/null"])
        .args(["--rpmemd-arg", "-c", "--rpmemd-arg"])
        .arg(site.config())
        .args(["--rpmemd-arg", "--poolset-dir", "--rpmemd-arg"])
        .arg(site.poolset_dir())
        .args([target, descriptor])
        // Only the flags above choose the transport and the keys.
        .env_remove("RPMEM_TRANSPORT")
        .env_remove("RPMEM_ENABLE_SOCKETS")
        .env_remove("SSH_AUTH_SOCK");
    testkit::output_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap()
}

#[test]
fn rpmem101_over_ssh_on_localhost_lands_the_greeting_at_offset_8192() {
    let site = Site::new();
    let parts = site.poolset("rpmem101.set", &[4]);
    let sshd = Sshd::builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap();
    let target = format!("{}@127.0.0.1:{}", sshd.user(), sshd.port());
    let out = rpmem101(&sshd, &site, &target, "rpmem101.set");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rpmem101 failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("closed"), "{stdout}");
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert_eq!(&file[at..at + GREETING.len()], GREETING);
    // The rest of the remote pool stays zero.
    assert!(file[at + GREETING.len()..at + 4096].iter().all(|&b| b == 0));
}

#[test]
fn rpmem101_refuses_an_unknown_host_key_and_says_so() {
    let site = Site::new();
    site.poolset("unknown.set", &[4]);
    let sshd = Sshd::builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap();
    let empty = site.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let target = format!("{}@127.0.0.1:{}", sshd.user(), sshd.port());
    let out = Command::new(env!("CARGO_BIN_EXE_rpmem101"))
        .arg("--ssh-known-hosts")
        .arg(&empty)
        .arg("--ssh-identity")
        .arg(sshd.user_key())
        .args(["--ssh-config", "/dev/null", &target, "unknown.set"])
        .env_remove("RPMEM_TRANSPORT")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not in") && stderr.contains("empty_known_hosts"),
        "{stderr}"
    );
}

#[test]
fn ssh_flags_and_the_local_transport_do_not_mix() {
    let out = Command::new(env!("CARGO_BIN_EXE_rpmem101"))
        .args(["--local-rpmemd", "/bin/false", "--ssh-config", "/dev/null"])
        .args(["localhost", "x.set"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot be combined"), "{stderr}");
}
