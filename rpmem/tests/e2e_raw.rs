//! rpmemd driven by hand with the codec and raw fabric endpoints, to send what a well-behaved
//! initiator never would: a wrong session secret, out-of-range and wrong-lane PERSISTs, garbage
//! on the control channel, garbage on a lane. rpmemd must refuse each and never panic; a
//! refused PERSIST keeps the session, a malformed frame (control or lane) ends it.

mod common;
#[path = "common/raw.rs"]
#[allow(dead_code)] // each test binary uses only some of these
mod raw;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fabric::{Domain, Endpoint, EndpointConfig, Fabric, Hints, Info};
use raw::{call, create_lanes, spawn};
use rpmem_proto::{Capabilities, Hello, LaneConnect, Message, PoolResp, Secret, Status};

/// HELLO (this version, every capability) and CREATE of `raw.set` with `nlanes` lanes.
fn create(child: &mut Child, nlanes: u32) -> PoolResp {
    create_lanes(child, rpmem_proto::PROTO_MINOR, Capabilities::KNOWN, nlanes).0
}

fn connect(resp: &PoolResp, lane: u32, secret: Secret) -> fabric::Result<(Domain, Endpoint)> {
    connect_with(resp, lane, secret, 64)
}

fn connect_with(
    resp: &PoolResp,
    lane: u32,
    secret: Secret,
    msg_bytes_max: usize,
) -> fabric::Result<(Domain, Endpoint)> {
    let port = resp.port.to_string();
    let addr = resp.addr.to_string();
    let info = Info::get(&Hints::connect(fabric::Provider::Tcp, &addr, &port))?;
    let fab = Fabric::open(&info)?;
    let domain = Domain::open(&fab, &info)?;
    let data = LaneConnect {
        major: rpmem_proto::PROTO_MAJOR,
        minor: rpmem_proto::PROTO_MINOR,
        lane,
        secret,
    }
    .encode();
    let cfg = EndpointConfig {
        msg_bytes_max,
        ..EndpointConfig::default()
    };
    let ep = Endpoint::connect(
        &domain,
        &info,
        &cfg,
        &data,
        Instant::now() + Duration::from_secs(5),
    )?;
    Ok((domain, ep))
}

fn persist(ep: &mut Endpoint, lane: u32, offset: u64, length: u64) -> Status {
    let frame = rpmem_proto::encode(&Message::Persist {
        lane,
        relaxed: false,
        deep: false,
        offset,
        length,
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    ep.send(&frame, deadline).unwrap();
    match rpmem_proto::decode(&ep.recv(deadline).unwrap()).unwrap() {
        Message::PersistResp { status, .. } => status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_secret_is_refused_and_the_real_lane_still_connects() {
    let site = Site::new();
    site.poolset("raw.set", &[4]);
    let mut child = spawn(&site);
    let resp = create(&mut child, 1);
    let mut wrong = resp.secret;
    wrong.0[0] ^= 1;
    let refused = connect(&resp, 0, wrong);
    assert!(
        matches!(refused, Err(fabric::Error::Rejected { .. })),
        "a wrong secret must be rejected: {:?}",
        refused.err()
    );
    // Lane outside the granted count, with the right secret: refused too.
    assert!(connect(&resp, 1, resp.secret).is_err());
    let (_d, mut ep) = connect(&resp, 0, resp.secret).expect("the right secret is accepted");
    assert_eq!(persist(&mut ep, 0, 0, 4096), Status::Ok);
    // Out of range, overflowing, wrong lane: refused, and the lane stays usable.
    assert_eq!(persist(&mut ep, 0, resp.pool_size, 1), Status::OutOfRange);
    assert_eq!(persist(&mut ep, 0, u64::MAX, 2), Status::OutOfRange);
    assert_eq!(persist(&mut ep, 7, 0, 1), Status::BadLane);
    assert_eq!(persist(&mut ep, 0, resp.pool_size - 1, 1), Status::Ok);
    let close = call(&mut child, &Message::Close { remove: true });
    assert!(matches!(close, Message::CloseResp(Status::Ok)), "{close:?}");
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("wrong session secret"), "rpmemd log: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn garbage_on_the_control_channel_gets_an_error_frame_not_a_panic() {
    let site = Site::new();
    for garbage in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        vec![0xff; 64],
        rpmem_proto::encode(&Message::Close { remove: false }).unwrap(),
    ] {
        let mut child = spawn(&site);
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(&garbage).unwrap();
        stdin.flush().unwrap();
        drop(child.stdin.take());
        let reply = rpmem_proto::read_message(child.stdout.as_mut().unwrap());
        match reply {
            Ok(Message::Error { status, .. }) => {
                assert!(matches!(
                    status,
                    Status::Malformed | Status::UnexpectedMessage
                ))
            }
            other => panic!("expected an ERROR frame, got {other:?}"),
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Reads one control frame with a deadline (a thread does the blocking read).
fn read_control_within(child: &mut Child, within: Duration) -> Option<Message> {
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(rpmem_proto::read_message(&mut stdout).ok());
    });
    rx.recv_timeout(within).ok().flatten()
}

fn wait_exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_malformed_lane_frame_ends_the_whole_session() {
    let undecodable = b"this is not a frame at all, 40 bytes...".to_vec();
    let mut bad_magic = rpmem_proto::encode(&Message::Persist {
        lane: 0,
        relaxed: false,
        deep: false,
        offset: 0,
        length: 8,
    })
    .unwrap();
    bad_magic[0] ^= 0xff;
    // Longer than rpmemd's 64-byte lane receive buffers: a truncated receive.
    let oversized = vec![0x52u8; 200];
    for (name, garbage) in [
        ("undecodable", undecodable),
        ("bad magic", bad_magic),
        ("oversized", oversized),
    ] {
        let site = Site::new();
        let parts = site.poolset("raw.set", &[4]);
        let mut child = spawn(&site);
        let resp = create(&mut child, 2);
        let (_d0, mut ep0) = connect_with(&resp, 0, resp.secret, 256).unwrap();
        let (_d1, mut ep1) = connect(&resp, 1, resp.secret).unwrap();
        assert_eq!(persist(&mut ep1, 1, 0, 4096), Status::Ok, "{name}");
        let deadline = Instant::now() + Duration::from_secs(5);
        ep0.send(&garbage, deadline).unwrap();
        // The lane answers Malformed if it can, then closes: either way no Ok.
        if let Ok(frame) = ep0.recv(deadline) {
            assert!(
                matches!(
                    rpmem_proto::decode(&frame),
                    Ok(Message::PersistResp {
                        status: Status::Malformed,
                        ..
                    })
                ),
                "{name}: {frame:?}"
            );
        }
        // The session ends: one unsolicited ERROR Malformed on the control channel...
        match read_control_within(&mut child, Duration::from_secs(5)) {
            Some(Message::Error {
                status: Status::Malformed,
                in_reply_to: 0,
                message,
            }) => assert!(message.contains("lane 0"), "{name}: {message}"),
            other => panic!("{name}: expected ERROR Malformed, got {other:?}"),
        }
        // ...rpmemd exits with status 1...
        let status = wait_exit_within(&mut child, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{name}: rpmemd did not exit"));
        assert_eq!(status.code(), Some(1), "{name}");
        // ...the other lane is gone with it...
        let frame = rpmem_proto::encode(&Message::Persist {
            lane: 1,
            relaxed: false,
            deep: false,
            offset: 0,
            length: 1,
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let other_lane = ep1.send(&frame, deadline).and_then(|()| ep1.recv(deadline));
        assert!(other_lane.is_err(), "{name}: lane 1 still answers");
        // ...and the pool was closed, not removed; nothing panicked.
        assert!(parts[0].exists(), "{name}");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("malformed frame"), "{name}: rpmemd log: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn one_byte_of_hello_then_silence_ends_rpmemd_within_the_hello_deadline() {
    let site = Site::new();
    let mut child = Command::new(testkit::rpmemd::binary())
        .args(site.rpmemd_args())
        .env("RPMEMD_HELLO_DEADLINE_MS", "700")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The first byte of a real HELLO frame, then nothing; stdin stays open.
    let hello = rpmem_proto::encode(&Message::Hello(Hello {
        major: rpmem_proto::PROTO_MAJOR,
        minor: rpmem_proto::PROTO_MINOR,
        capabilities: Capabilities::KNOWN,
    }))
    .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&hello[..1]).unwrap();
    stdin.flush().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("rpmemd still waiting after {took:?}: {log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_millis(700 + 1500),
        "exited after {took:?}"
    );
    assert!(log.contains("no complete HELLO within 700ms"), "{log}");
    eprintln!("rpmemd after {took:?}: {log}");
}
