//! Session rules: version negotiation and the target's control state machine.

use rpmem_proto::session::*;
use rpmem_proto::*;

fn hello(major: u16, minor: u16, caps: u64) -> Hello {
    Hello {
        major,
        minor,
        capabilities: Capabilities(caps),
    }
}

#[test]
fn negotiation() {
    let ours = Capabilities::DEEP_PERSIST | Capabilities::SOCKETS;
    // Same major, lower minor wins, capabilities intersect and unknown bits drop.
    let r = negotiate(1, 3, ours, &hello(1, 1, 0xFF00 | 0b0011));
    assert_eq!((r.status, r.major, r.minor), (Status::Ok, 1, 1));
    assert_eq!(r.capabilities, Capabilities::DEEP_PERSIST);
    assert!(accept_hello_resp(1, 1, &r).is_ok());
    // Different major: refused, with our version so the user can be told.
    let r = negotiate(1, 3, ours, &hello(2, 0, 0));
    assert_eq!(
        (r.status, r.major, r.minor),
        (Status::VersionMismatch, 1, 3)
    );
    assert_eq!(
        accept_hello_resp(2, 0, &r),
        Err(ProtocolError::VersionUnsupported {
            peer_major: 1,
            peer_minor: 3,
            ours: 2
        })
    );
    // A peer claiming a minor above ours is lying about negotiation.
    let lying = HelloResp {
        status: Status::Ok,
        major: 1,
        minor: 5,
        capabilities: Capabilities(0),
    };
    assert!(accept_hello_resp(1, 2, &lying).is_err());
}

#[test]
fn target_state_machine() {
    use MsgType::*;
    let mut s = TargetState::AwaitHello;
    assert!(s.check_request(Create).is_err());
    assert!(s.check_request(Hello).is_ok());
    s = s.after_reply(
        Hello,
        &Message::HelloResp(negotiate(1, 0, Capabilities(0), &hello(1, 0, 0))),
    );
    assert_eq!(s, TargetState::Ready);
    assert_eq!(
        s.check_request(Close),
        Err(ProtocolError::Unexpected {
            state: "Ready",
            got: Close
        })
    );
    assert!(matches!(
        s.check_request(Persist),
        Err(ProtocolError::WrongChannel { .. })
    ));
    // A failed OPEN keeps the session ready for another try.
    let err = Message::error(Open.to_wire(), Status::PoolsetNotFound, "no such poolset");
    assert_eq!(s.after_reply(Open, &err), TargetState::Ready);
    s = s.after_reply(Create, &Message::CloseResp(Status::Ok));
    assert_eq!(s, TargetState::PoolOpen);
    assert!(s.check_request(SetAttr).is_ok());
    assert!(s.check_request(Open).is_err());
    s = s.after_reply(SetAttr, &Message::SetAttrResp(Status::Ok));
    assert_eq!(s, TargetState::PoolOpen);
    s = s.after_reply(Close, &Message::CloseResp(Status::Ok));
    assert_eq!(s, TargetState::Closed);
    assert!(s.check_request(Hello).is_err());
    // A failed HELLO ends the session.
    let bad = negotiate(1, 0, Capabilities(0), &hello(9, 0, 0));
    assert_eq!(
        TargetState::AwaitHello.after_reply(Hello, &Message::HelloResp(bad)),
        TargetState::Closed
    );
    // REMOVE ends the session.
    assert_eq!(
        TargetState::Ready.after_reply(Remove, &Message::RemoveResp(Status::Ok)),
        TargetState::Closed
    );
}

#[test]
fn initiator_reply_checks() {
    use MsgType::*;
    assert!(check_reply(Close, &Message::CloseResp(Status::Ok)).is_ok());
    // An ERROR answering this request (or no particular one: in_reply_to 0) passes the check:
    // it is a well-formed refusal the caller reports with its status and text.
    assert!(check_reply(Close, &Message::error(0, Status::Io, "x")).is_ok());
    assert!(check_reply(Close, &Message::error(Close.to_wire(), Status::Io, "x")).is_ok());
    // An ERROR naming another request is out of step with this one.
    assert_eq!(
        check_reply(Close, &Message::error(Open.to_wire(), Status::Io, "x")),
        Err(ProtocolError::ReplyToOther {
            request: Close,
            in_reply_to: Open.to_wire(),
        })
    );
    assert_eq!(
        check_reply(Close, &Message::error(0x7777, Status::Io, "x"))
            .unwrap_err()
            .status(),
        Status::UnexpectedMessage
    );
    assert_eq!(
        check_reply(Close, &Message::SetAttrResp(Status::Ok)),
        Err(ProtocolError::Unexpected {
            state: "CLOSE",
            got: SetAttrResp
        })
    );
    assert_eq!(
        check_reply(SetAttr, &Message::SetAttrResp(Status::Io)),
        Err(ProtocolError::NotOk {
            msg: SetAttrResp,
            status: Status::Io
        })
    );
    assert_eq!(MsgType::Persist.response(), Some(MsgType::PersistResp));
    assert_eq!(MsgType::Error.response(), None);
}

#[test]
fn pool_request_semantic_checks() {
    let ok = PoolRequest {
        pool_size: 1 << 20,
        nlanes: 4,
        buff_size: LANE_FRAME_MAX as u32,
        provider: Provider::Tcp,
        persist_method: PersistMethod::General,
        descriptor: "p.set".into(),
    };
    assert!(ok.check().is_ok());
    let field = |r: PoolRequest| match r.check() {
        Err(ProtocolError::Illegal { field, .. }) => field,
        other => panic!("expected Illegal, got {other:?}"),
    };
    assert_eq!(
        field(PoolRequest {
            pool_size: 0,
            ..ok.clone()
        }),
        "pool_size"
    );
    assert_eq!(
        field(PoolRequest {
            nlanes: 0,
            ..ok.clone()
        }),
        "nlanes"
    );
    assert_eq!(
        field(PoolRequest {
            nlanes: MAX_LANES + 1,
            ..ok.clone()
        }),
        "nlanes"
    );
    assert_eq!(
        field(PoolRequest {
            buff_size: 39,
            ..ok
        }),
        "buff_size"
    );
}

#[test]
fn persist_checks() {
    let p = |lane, deep, offset, length| Message::Persist {
        lane,
        relaxed: false,
        deep,
        offset,
        length,
    };
    let caps = Capabilities::DEEP_PERSIST;
    assert!(check_persist(&p(2, true, 0, 4096), 2, 4096, caps).is_ok());
    let e = check_persist(&p(3, false, 0, 1), 2, 4096, caps).unwrap_err();
    assert_eq!(e.status(), Status::BadLane);
    let e = check_persist(&p(2, true, 0, 1), 2, 4096, Capabilities(0)).unwrap_err();
    assert!(matches!(e, ProtocolError::Illegal { field: "flags", .. }));
    let e = check_persist(&p(2, false, 4000, 97), 2, 4096, caps).unwrap_err();
    assert_eq!(e.status(), Status::OutOfRange);
    let e = check_persist(&p(2, false, u64::MAX, 1), 2, u64::MAX, caps).unwrap_err();
    assert_eq!(e.status(), Status::OutOfRange);
    let e = check_persist(&Message::Close { remove: false }, 2, 4096, caps).unwrap_err();
    assert_eq!(e.status(), Status::UnexpectedMessage);
}
