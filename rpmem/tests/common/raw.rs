//! A raw rpmemd session for hostile-peer tests: rpmemd spawned directly (local transport, no
//! rpmem), HELLO/CREATE by hand, and lane 0 connected with a plain fabric endpoint, so a test
//! can send what a correct initiator never would. Included by the tests that need it as
//! `#[path = "common/raw.rs"] mod raw;` (beside `mod common;`, which other crates' tests share
//! without the fabric dependency).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fabric::{
    Access, Domain, Endpoint, EndpointConfig, Fabric, Hints, Info, OwnedRegion, RemoteKey,
};
use rpmem_proto::{
    Capabilities, Hello, LaneConnect, Message, PersistMethod, PoolRequest, PoolResp, Provider,
    Status,
};

use crate::common::{attr, Site};

pub fn spawn(site: &Site) -> Child {
    Command::new(testkit::rpmemd::binary())
        .args(site.rpmemd_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn call(child: &mut Child, m: &Message) -> Message {
    rpmem_proto::write_message(child.stdin.as_mut().unwrap(), m).unwrap();
    rpmem_proto::read_message(child.stdout.as_mut().unwrap()).unwrap()
}

/// HELLO offering `caps` as protocol 1.`minor`, then CREATE; returns the grant and the
/// negotiated (minor, capabilities).
pub fn create(child: &mut Child, minor: u16, caps: Capabilities) -> (PoolResp, u16, Capabilities) {
    create_lanes(child, minor, caps, 1)
}

/// [`create`] asking for `nlanes` lanes.
pub fn create_lanes(
    child: &mut Child,
    minor: u16,
    caps: Capabilities,
    nlanes: u32,
) -> (PoolResp, u16, Capabilities) {
    let h = call(
        child,
        &Message::Hello(Hello {
            major: rpmem_proto::PROTO_MAJOR,
            minor,
            capabilities: caps,
        }),
    );
    let Message::HelloResp(h) = h else {
        panic!("HELLO: {h:?}")
    };
    assert_eq!(h.status, Status::Ok);
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
            attr: attr(41),
        },
    );
    match r {
        Message::CreateResp(r) => (r, h.minor, h.capabilities),
        other => panic!("CREATE: {other:?}"),
    }
}

/// A raw lane 0 with a registered local buffer of 4096 bytes; it sends frames up to a whole
/// PERSIST_INLINE.
pub struct RawLane {
    pub ep: Endpoint,
    pub local: OwnedRegion,
    pub key: RemoteKey,
    _domain: Domain,
}

pub fn connect(resp: &PoolResp, minor: u16) -> RawLane {
    connect_lane(resp, minor, 0)
}

/// [`connect`] as lane `lane`.
pub fn connect_lane(resp: &PoolResp, minor: u16, lane: u32) -> RawLane {
    let port = resp.port.to_string();
    let addr = resp.addr.to_string();
    let info = Info::get(&Hints::connect(fabric::Provider::Tcp, &addr, &port)).unwrap();
    let fab = Fabric::open(&info).unwrap();
    let domain = Domain::open(&fab, &info).unwrap();
    let data = LaneConnect {
        major: rpmem_proto::PROTO_MAJOR,
        minor,
        lane,
        secret: resp.secret,
    }
    .encode();
    let cfg = EndpointConfig {
        msg_bytes_max: rpmem_proto::LANE_INLINE_FRAME_MAX,
        ..EndpointConfig::default()
    };
    let ep = Endpoint::connect(
        &domain,
        &info,
        &cfg,
        &data,
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap();
    assert!(ep.supports_write_data());
    let local = OwnedRegion::new(&domain, 4096, Access::LOCAL).unwrap();
    local.write_at(0, &[0xA5; 4096]).unwrap();
    RawLane {
        ep,
        local,
        key: RemoteKey {
            addr: resp.raddr,
            len: resp.pool_size,
            key: resp.rkey,
        },
        _domain: domain,
    }
}

impl RawLane {
    /// Writes `len` bytes at `at` carrying the raw immediate `imm`; returns the PERSIST_RESP
    /// status, or `None` when the lane gives no answer (closed).
    pub fn persist_raw(&mut self, at: u64, len: usize, imm: u64) -> Option<Status> {
        let deadline = Instant::now() + Duration::from_secs(5);
        self.ep
            .write_with_data(self.local.mr(), 0, len, &self.key, at, imm, deadline)
            .unwrap();
        let frame = self.ep.recv(deadline).ok()?;
        match rpmem_proto::decode(&frame) {
            Ok(Message::PersistResp { lane: 0, status }) => Some(status),
            other => panic!("expected PERSIST_RESP for lane 0, got {other:?}"),
        }
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// The session ended as §8.1 says for malformed lane input: an unsolicited ERROR `Malformed`
/// (`in_reply_to` 0) on the control channel whose text contains every one of `says`, then
/// rpmemd exits with status 1 within 5 s. `ctx` prefixes the failure messages.
pub fn expect_malformed_end(child: &mut Child, says: &[&str], ctx: &str) {
    match rpmem_proto::read_message(child.stdout.as_mut().unwrap()) {
        Ok(Message::Error {
            status: Status::Malformed,
            in_reply_to: 0,
            message,
        }) => assert!(
            says.iter().all(|w| message.contains(w)),
            "{ctx}: ERROR text {message:?} lacks one of {says:?}"
        ),
        other => panic!("{ctx}: expected ERROR Malformed, got {other:?}"),
    }
    let _ = child.stdin.as_mut().unwrap().flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{ctx}: rpmemd did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1), "{ctx}");
}
