//! Faults that give no error of their own, only silence: the link to the target dropped by a
//! firewall (nftables inside a network namespace) and rpmemd stopped with SIGSTOP. Each must end
//! in a typed timeout within the configured deadline, never a hang, and `close` must be bounded
//! too. After the link is restored a fresh session works.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rpmem::{Error, Options, PersistFlags, PoolMemory, RpmemPool};

/// Deadlines used here: short, so the test is quick and the bound is meaningful.
const PERSIST_DEADLINE: Duration = Duration::from_secs(2);
const CONTROL_DEADLINE: Duration = Duration::from_secs(3);
/// Slack on top of a deadline for scheduling on a busy 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn short_deadlines(mut o: Options) -> Options {
    o.persist_deadline = PERSIST_DEADLINE;
    o.control_deadline = CONTROL_DEADLINE;
    o
}

/// A persist that must fail with `LaneTimeout` within the persist deadline (+ margin).
fn persist_times_out(pool: &RpmemPool, what: &str) -> Error {
    let started = Instant::now();
    let r = pool.persist(0, 4096, 0, PersistFlags::NONE);
    let took = started.elapsed();
    let e = r.expect_err("persist must fail");
    assert!(
        matches!(e, Error::LaneTimeout { deadline, .. } if deadline == PERSIST_DEADLINE),
        "{what}: expected a lane timeout, got {e:?}"
    );
    assert!(
        e.to_string().contains("no answer within"),
        "{what}: the message names the timeout: {e}"
    );
    assert!(
        took < PERSIST_DEADLINE + MARGIN,
        "{what}: persist took {took:?}"
    );
    assert!(
        took >= PERSIST_DEADLINE - Duration::from_millis(100),
        "{what}: persist gave up before its deadline ({took:?})"
    );
    eprintln!("{what}: persist failed after {took:?}: {e}");
    // The lane is not used again: a late answer must not be taken for the next one.
    let again = pool.persist(0, 4096, 0, PersistFlags::NONE).unwrap_err();
    assert!(
        matches!(again, Error::LaneBroken { lane: 0, .. }),
        "{again:?}"
    );
    e
}

#[test]
fn link_cut_silently_times_out_then_a_new_session_works() {
    if !testkit::require_root("link_cut_silently_times_out_then_a_new_session_works") {
        return;
    }
    let host = match testkit::NetnsHost::create() {
        Ok(h) => h,
        Err(e) => {
            testkit::report_skip(
                "link_cut_silently_times_out_then_a_new_session_works",
                &e.to_string(),
            );
            return;
        }
    };
    let site = Site::new();
    site.poolset("cut.set", &[4]);
    let parts = site.poolset("after.set", &[4]);
    let sshd = host
        .sshd_builder()
        .set_env("PATH", testkit::rpmemd::session_path())
        .start()
        .unwrap();
    let target = format!("{}@{}:{}", sshd.user(), host.peer_addr(), sshd.port());
    let opts = short_deadlines(ssh_options(&sshd, &site, "rpmemd"));
    let size = 1 << 20;
    let mut n = 2;
    let pool = RpmemPool::create(
        &target,
        "cut.set",
        PoolMemory::new(size).unwrap(),
        &mut n,
        &attr(21),
        &opts,
    )
    .unwrap();
    pool.memory().write(0, &[0x5a; 4096]).unwrap();
    pool.persist(0, 4096, 0, PersistFlags::NONE).unwrap();

    host.cut_link().unwrap();
    persist_times_out(&pool, "link cut");
    // The other lane times out on its own deadline too (it never saw an error).
    let started = Instant::now();
    let e = pool.persist(4096, 4096, 1, PersistFlags::NONE).unwrap_err();
    assert!(matches!(e, Error::LaneTimeout { lane: 1, .. }), "{e:?}");
    assert!(started.elapsed() < PERSIST_DEADLINE + MARGIN);

    // close needs the control channel, which is cut as well: bounded by the control deadline.
    let started = Instant::now();
    let c = pool
        .close(false)
        .expect_err("close over a cut link must fail");
    let took = started.elapsed();
    assert!(
        matches!(c, Error::ControlTimeout { .. } | Error::ControlIo { .. }),
        "{c:?}"
    );
    assert!(took < CONTROL_DEADLINE + MARGIN, "close took {took:?}");
    eprintln!("close over a cut link failed after {took:?}: {c}");

    // With the link back, a fresh session to the same host works (another pool: the first
    // rpmemd may still hold its pool until it notices its peer is gone).
    host.restore_link().unwrap();
    let data = pattern(seed(), size);
    let mem = PoolMemory::new(size).unwrap();
    mem.write(0, &data).unwrap();
    let mut n = 1;
    let pool = RpmemPool::create(&target, "after.set", mem, &mut n, &attr(22), &opts).unwrap();
    pool.persist(0, size as u64, 0, PersistFlags::NONE).unwrap();
    pool.close(false).unwrap();
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(file[at..at + size] == data[..]);
}

#[test]
fn stopped_rpmemd_times_out_and_close_is_bounded() {
    let site = Site::new();
    site.poolset("stop.set", &[4]);
    let opts = short_deadlines(site.local());
    let mut n = 1;
    let pool = RpmemPool::create(
        "127.0.0.1",
        "stop.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(23),
        &opts,
    )
    .unwrap();
    pool.persist(0, 4096, 0, PersistFlags::NONE).unwrap();
    let pid = rpmemd_child_of(&site);
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    persist_times_out(&pool, "rpmemd stopped");
    let started = Instant::now();
    let c = pool
        .close(false)
        .expect_err("close with a stopped rpmemd must fail");
    let took = started.elapsed();
    assert!(matches!(c, Error::ControlTimeout { .. }), "{c:?}");
    // The control deadline, then at most the channel's grace period before the kill.
    assert!(
        took < CONTROL_DEADLINE + MARGIN + Duration::from_secs(1),
        "close took {took:?}"
    );
    // The stopped child was killed and reaped on the way out: nothing is left behind.
    assert!(
        !our_rpmemd_children().contains(&pid),
        "the stopped rpmemd {pid} is still there"
    );
}
