//! End to end over SSH: a real sshd on 127.0.0.1 (testkit) starts rpmemd (found through the PATH
//! the sshd sets), the built-in SSH client carries the control channel, and the data lanes go
//! to the address rpmemd derives from SSH_CONNECTION.

mod common;

use common::*;
use rpmem::{Error, PersistFlags, PoolMemory, RpmemPool};
use testkit::Sshd;

fn start_sshd() -> Sshd {
    Sshd::builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap()
}

#[test]
fn create_persist_close_over_ssh() {
    let site = Site::new();
    let parts = site.poolset("ssh.set", &[4]);
    let sshd = start_sshd();
    let target = format!("{}@127.0.0.1:{}", sshd.user(), sshd.port());
    let size = 1 << 20;
    let seed = seed();
    let data = pattern(seed, size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut n = 2;
    let pool = RpmemPool::create(
        &target,
        "ssh.set",
        mem,
        &mut n,
        &attr(9),
        &ssh_options(&sshd, &site, "rpmemd"),
    )
    .unwrap();
    pool.persist(0, size as u64 / 2, 0, PersistFlags::NONE)
        .unwrap();
    pool.persist(size as u64 / 2, size as u64 / 2, n - 1, PersistFlags::NONE)
        .unwrap();
    let mut back = vec![0u8; 4096];
    pool.read(&mut back, 12345, 0).unwrap();
    assert!(back[..] == data[12345..12345 + 4096]);
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(file[at..at + size] == data[..], "seed {seed}");
}

#[test]
fn rpmemd_missing_on_the_target_is_explained() {
    let site = Site::new();
    let sshd = start_sshd();
    let target = format!("{}@127.0.0.1:{}", sshd.user(), sshd.port());
    let mut n = 1;
    let r = RpmemPool::create(
        &target,
        "x.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(1),
        &ssh_options(&sshd, &site, "rpmemd-not-installed"),
    );
    let e = r.err().expect("must fail");
    assert!(matches!(e, Error::RpmemdGone { .. }), "{e:?}");
    assert!(e.to_string().contains("not installed"), "{e}");
}

#[test]
fn second_host_in_a_network_namespace() {
    if !testkit::require_root("second_host_in_a_network_namespace") {
        return;
    }
    let host = match testkit::NetnsHost::create() {
        Ok(h) => h,
        Err(e) => {
            testkit::report_skip("second_host_in_a_network_namespace", &e.to_string());
            return;
        }
    };
    let site = Site::new();
    let parts = site.poolset("ns.set", &[4]);
    let sshd = host
        .sshd_builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap();
    let target = format!("{}@{}:{}", sshd.user(), host.peer_addr(), sshd.port());
    let size = 1 << 20;
    let seed = seed();
    let data = pattern(seed, size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut n = 2;
    let pool = RpmemPool::create(
        &target,
        "ns.set",
        mem,
        &mut n,
        &attr(11),
        &ssh_options(&sshd, &site, "rpmemd"),
    )
    .unwrap();
    pool.persist(0, size as u64, 1, PersistFlags::NONE).unwrap();
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(file[at..at + size] == data[..], "seed {seed}");
}
