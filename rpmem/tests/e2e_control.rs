//! The control channel after a failure, and where the lanes connect.
//!
//! - A control request that times out breaks the session: the channel is dropped (the local
//!   rpmemd killed), so rpmemd's late reply can never be taken for the answer to the next
//!   request, which fails with `SessionBroken`.
//! - One deadline covers a whole reply: a peer trickling bytes cannot stretch it.
//! - The lanes connect to the address the target was reached at, not to whatever address the
//!   CREATE_RESP names (docs/PROTOCOL.md §14 "Lane address"): a relay between the initiator and a
//!   real rpmemd rewrites the announced address, playing a man in the middle or a target behind
//!   NAT. The relay is this test binary itself, re-run as the "rpmemd" of the local transport
//!   (see [`relay_entry`]).

mod common;

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rpmem::{Error, Options, PersistFlags, PoolMemory, RpmemPool, Transport};
use rpmem_proto::{Capabilities, HelloResp, Message, Status};

const CONTROL_DEADLINE: Duration = Duration::from_secs(1);
/// Slack on top of a deadline for scheduling on a busy 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

#[test]
fn a_timed_out_request_breaks_the_session_and_its_late_reply_is_never_used() {
    let site = Site::new();
    site.poolset("late.set", &[4]);
    let opts = Options {
        control_deadline: CONTROL_DEADLINE,
        ..site.local()
    };
    let mut n = 1;
    let pool = RpmemPool::create(
        "127.0.0.1",
        "late.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(1),
        &opts,
    )
    .unwrap();
    let pid = rpmemd_child_of(&site);
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let e = pool.set_attr(&attr(2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ControlTimeout {
                during: "SET_ATTR",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < CONTROL_DEADLINE + MARGIN);
    // Were rpmemd still there, resuming it would let its SET_ATTR_RESP reach the channel and
    // the next SET_ATTR would read it as its own answer.
    if our_rpmemd_children().contains(&pid) {
        // SAFETY: kill(2) on the pid of our own (still unreaped) child process.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = pool.set_attr(&attr(3)).unwrap_err();
    assert!(
        matches!(&again, Error::SessionBroken { during: "SET_ATTR", why, .. }
            if why.contains("did not answer SET_ATTR")),
        "{again:?}"
    );
    assert!(
        !our_rpmemd_children().contains(&pid),
        "the timed-out rpmemd {pid} was killed and reaped"
    );
    let c = pool.close(false).unwrap_err();
    assert!(
        matches!(
            c,
            Error::SessionBroken {
                during: "CLOSE",
                ..
            }
        ),
        "{c:?}"
    );
    eprintln!("{e}\n{again}\n{c}");
}

#[test]
fn a_trickled_reply_cannot_stretch_past_the_control_deadline() {
    // A fake rpmemd that answers HELLO correctly, one byte every 100 ms: each read is quick,
    // only the deadline of the whole message can stop it.
    let frame = rpmem_proto::encode(&Message::HelloResp(HelloResp {
        status: Status::Ok,
        major: rpmem_proto::PROTO_MAJOR,
        minor: rpmem_proto::PROTO_MINOR,
        capabilities: Capabilities::KNOWN,
    }))
    .unwrap();
    let mut script = String::new();
    for b in &frame {
        script.push_str(&format!("printf '\\{b:03o}'; sleep 0.1; "));
    }
    script.push_str("sleep 5");
    let opts = Options {
        transport: Some(Transport::Local {
            program: "sh".into(),
        }),
        rpmemd_args: vec!["-c".into(), script],
        control_deadline: CONTROL_DEADLINE,
        ..Options::default()
    };
    let started = Instant::now();
    let mut n = 1;
    let e = RpmemPool::create(
        "127.0.0.1",
        "x.set",
        PoolMemory::new(1 << 20).unwrap(),
        &mut n,
        &attr(1),
        &opts,
    )
    .err()
    .expect("must fail");
    let took = started.elapsed();
    assert!(
        matches!(
            e,
            Error::ControlTimeout {
                during: "HELLO",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(took < CONTROL_DEADLINE + MARGIN, "took {took:?}");
}

/// Options whose "rpmemd" is this test binary relaying to the real rpmemd, with the listener
/// address in CREATE_RESP/OPEN_RESP replaced by `announce`.
fn relayed(site: &Site, announce: IpAddr) -> Options {
    let exe = std::env::current_exe().unwrap();
    // fd 3 carries the frames: libtest prints its own lines on stdout, sent to stderr here.
    let script = "exec 3>&1 1>&2; RPMEMD_BIN=\"$1\" RPMEM_TEST_RELAY_ADDR=\"$2\" \
                  RPMEM_TEST_RELAY_CONF=\"$3\" exec \"$0\" --exact relay_entry --nocapture \
                  --test-threads=1";
    Options {
        transport: Some(Transport::Local {
            program: "sh".into(),
        }),
        rpmemd_args: vec![
            "-c".into(),
            script.into(),
            exe.display().to_string(),
            testkit::rpmemd::binary().display().to_string(),
            announce.to_string(),
            site.config().display().to_string(),
        ],
        control_deadline: Duration::from_secs(10),
        lane_connect_deadline: Duration::from_secs(3),
        persist_deadline: Duration::from_secs(5),
        ..Options::default()
    }
}

/// The relay, when run by [`relayed`] (a no-op test otherwise): rpmemd as its child, stdin
/// copied to rpmemd byte for byte, rpmemd's frames copied to fd 3 with the listener address
/// of CREATE_RESP/OPEN_RESP rewritten.
#[test]
fn relay_entry() {
    let (Ok(addr), Ok(conf)) = (
        std::env::var("RPMEM_TEST_RELAY_ADDR"),
        std::env::var("RPMEM_TEST_RELAY_CONF"),
    ) else {
        return;
    };
    let addr: IpAddr = addr.parse().unwrap();
    let mut child = Command::new(testkit::rpmemd::binary())
        .args(["-c", &conf])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_rpmemd = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_rpmemd);
        // Dropping `to_rpmemd` ends rpmemd's input, as the initiator ended ours.
    });
    let mut from_rpmemd = child.stdout.take().unwrap();
    // SAFETY: fd 3 was opened by the wrapper script for this process and nothing else uses it.
    let mut out = unsafe { File::from_raw_fd(3) };
    while let Ok(mut m) = rpmem_proto::read_message(&mut from_rpmemd) {
        match &mut m {
            Message::CreateResp(r) | Message::OpenResp { resp: r, .. } => r.addr = addr,
            _ => {}
        }
        if rpmem_proto::write_message(&mut out, &m).is_err() {
            break;
        }
        let _ = out.flush();
    }
    let status = child.wait().unwrap();
    std::process::exit(status.code().unwrap_or(1));
}

fn create_persist_close(site: &Site, opts: &Options, name: &str) -> Result<(), Error> {
    let parts = site.poolset(name, &[4]);
    let seed = seed();
    let data = pattern(seed, 64 << 10);
    let mem = PoolMemory::new(1 << 20).unwrap();
    mem.write(0, &data).unwrap();
    let mut n = 2;
    let pool = RpmemPool::create("127.0.0.1", name, mem, &mut n, &attr(5), opts)?;
    pool.persist(0, data.len() as u64, n - 1, PersistFlags::NONE)?;
    pool.close(false)?;
    let file = std::fs::read(&parts[0]).unwrap();
    let at = PART0_DATA_OFFSET as usize;
    assert!(file[at..at + data.len()] == data[..], "seed {seed}");
    Ok(())
}

#[test]
fn an_announced_address_on_another_host_is_not_followed() {
    let site = Site::new();
    // 192.0.2.1 (TEST-NET-1) is nobody's address: following it could only fail (or, for a real
    // man in the middle, hand the session secret to another host).
    create_persist_close(
        &site,
        &relayed(&site, "192.0.2.1".parse().unwrap()),
        "mitm.set",
    )
    .unwrap();
}

#[test]
fn another_loopback_address_is_followed_on_the_same_host() {
    let site = Site::new();
    // The relay claims 127.0.0.2 while rpmemd listens on 127.0.0.1: the claim is followed (a
    // loopback address of the host the target is) and nothing listens there.
    let e = create_persist_close(
        &site,
        &relayed(&site, "127.0.0.2".parse().unwrap()),
        "lo.set",
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::LaneConnect { addr, .. } if addr == "127.0.0.2"),
        "{e:?}"
    );
    // An operator's RPMEMD_LISTEN_ADDR=127.0.0.2 on the local transport works.
    let opts = Options {
        transport: Some(Transport::Local {
            program: "env".into(),
        }),
        rpmemd_args: [
            "RPMEMD_LISTEN_ADDR=127.0.0.2".to_string(),
            testkit::rpmemd::binary().display().to_string(),
        ]
        .into_iter()
        .chain(site.rpmemd_args())
        .collect(),
        ..site.local()
    };
    create_persist_close(&site, &opts, "listen.set").unwrap();
}
