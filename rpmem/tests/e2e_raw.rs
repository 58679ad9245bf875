//! rpmemd driven by hand with the codec and raw fabric endpoints, to send what a well-behaved
//! initiator never would: a wrong session secret, out-of-range and wrong-lane PERSISTs, garbage
//! on the control channel. rpmemd must refuse each, keep serving, and never panic.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fabric::{Domain, Endpoint, EndpointConfig, Fabric, Hints, Info};
use rpmem_proto::{
    Capabilities, Hello, LaneConnect, Message, PersistMethod, PoolRequest, PoolResp, Provider,
    Secret, Status,
};

fn spawn(site: &Site) -> Child {
    Command::new(rpmemd_bin())
        .args(site.rpmemd_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn call(child: &mut Child, m: &Message) -> Message {
    rpmem_proto::write_message(child.stdin.as_mut().unwrap(), m).unwrap();
    rpmem_proto::read_message(child.stdout.as_mut().unwrap()).unwrap()
}

fn create(child: &mut Child, nlanes: u32) -> PoolResp {
    let h = call(
        child,
        &Message::Hello(Hello {
            major: rpmem_proto::PROTO_MAJOR,
            minor: rpmem_proto::PROTO_MINOR,
            capabilities: Capabilities::KNOWN,
        }),
    );
    assert!(
        matches!(h, Message::HelloResp(ref r) if r.status == Status::Ok),
        "{h:?}"
    );
    let r = call(
        child,
        &Message::Create {
            pool: PoolRequest {
                pool_size: 1 << 20,
                nlanes,
                buff_size: 64,
                provider: Provider::Tcp,
                persist_method: PersistMethod::General,
                descriptor: "raw.set".into(),
            },
            attr: attr(1),
        },
    );
    match r {
        Message::CreateResp(r) => r,
        other => panic!("CREATE: {other:?}"),
    }
}

fn connect(resp: &PoolResp, lane: u32, secret: Secret) -> fabric::Result<(Domain, Endpoint)> {
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
        msg_bytes_max: 64,
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
