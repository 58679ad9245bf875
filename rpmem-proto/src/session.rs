//! The legal orders of messages, as pure functions over message types: version negotiation,
//! the target-side control state machine, and the initiator's check that a reply matches its
//! request. No I/O and no pool logic: rpmemd and rpmem drive these and do the work.
//!
//! Control channel (docs/PROTOCOL.md, "Session state machine"):
//! `AwaitHello --HELLO--> Ready --CREATE|OPEN--> PoolOpen --SET_ATTR*--> PoolOpen --CLOSE--> Closed`,
//! and `Ready --REMOVE--> Closed`. A failed CREATE/OPEN/SET_ATTR leaves the state unchanged; a
//! failed HELLO or CLOSE, or a failed REMOVE, ends the session. A request refused by
//! [`TargetState::check_request`] (wrong state or channel) is answered with an ERROR carrying
//! [`ProtocolError::status`], and then the session ends.

use crate::error::ProtocolError;
use crate::msg::{Hello, HelloResp, Message};
use crate::types::{Capabilities, MsgType, Status};
use crate::write_data::WriteData;

/// Negotiates the session version from the initiator's HELLO and this side's version.
///
/// Majors must be equal; the minor is the smaller of the two; capabilities are the common known
/// bits that the negotiated minor defines (WRITE_DATA needs 1.1). On a major mismatch the answer carries `VersionMismatch` and this side's own version,
/// so the initiator can tell the user which versions are installed.
pub fn negotiate(ours_major: u16, ours_minor: u16, ours: Capabilities, hello: &Hello) -> HelloResp {
    if hello.major != ours_major {
        return HelloResp {
            status: Status::VersionMismatch,
            major: ours_major,
            minor: ours_minor,
            capabilities: Capabilities(0),
        };
    }
    let minor = ours_minor.min(hello.minor);
    let common = ours.common(hello.capabilities);
    HelloResp {
        status: Status::Ok,
        major: ours_major,
        minor,
        capabilities: Capabilities(common.0 & Capabilities::defined_in_minor(minor).0),
    }
}

/// Checks the initiator's side of the negotiation: the answer must be Ok, with the major it
/// asked for and a minor not above its own.
pub fn accept_hello_resp(
    ours_major: u16,
    ours_minor: u16,
    resp: &HelloResp,
) -> Result<(), ProtocolError> {
    if resp.status != Status::Ok || resp.major != ours_major || resp.minor > ours_minor {
        return Err(ProtocolError::VersionUnsupported {
            peer_major: resp.major,
            peer_minor: resp.minor,
            ours: ours_major,
        });
    }
    Ok(())
}

/// rpmemd's control-channel state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    AwaitHello,
    /// Version agreed; waiting for CREATE, OPEN or REMOVE.
    Ready,
    /// A pool is created or opened and its lanes may connect.
    PoolOpen,
    /// CLOSE or REMOVE answered, or a fatal error sent: the session is over.
    Closed,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            TargetState::AwaitHello => "AwaitHello",
            TargetState::Ready => "Ready",
            TargetState::PoolOpen => "PoolOpen",
            TargetState::Closed => "Closed",
        }
    }

    /// Whether request `got` may arrive on the control channel now.
    pub fn check_request(self, got: MsgType) -> Result<(), ProtocolError> {
        if got.is_lane() {
            return Err(ProtocolError::WrongChannel {
                got,
                expected_channel: "a data lane",
            });
        }
        let ok = match self {
            TargetState::AwaitHello => got == MsgType::Hello,
            TargetState::Ready => {
                matches!(got, MsgType::Create | MsgType::Open | MsgType::Remove)
            }
            TargetState::PoolOpen => matches!(got, MsgType::SetAttr | MsgType::Close),
            TargetState::Closed => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ProtocolError::Unexpected {
                state: self.name(),
                got,
            })
        }
    }

    /// The state after rpmemd sent `reply` to a request it had accepted with
    /// [`check_request`](Self::check_request). `request` is that request's type.
    pub fn after_reply(self, request: MsgType, reply: &Message) -> TargetState {
        let failed = match reply {
            Message::Error { .. } => true,
            Message::HelloResp(h) => !h.status.is_ok(),
            _ => false,
        };
        match (request, failed) {
            (MsgType::Hello, false) => TargetState::Ready,
            (MsgType::Create | MsgType::Open, false) => TargetState::PoolOpen,
            (MsgType::Create | MsgType::Open | MsgType::SetAttr, true) => self,
            (MsgType::SetAttr, false) => TargetState::PoolOpen,
            // HELLO failing, CLOSE and REMOVE either way, anything else: the session ends.
            _ => TargetState::Closed,
        }
    }
}

/// Initiator side: checks that `reply` answers `request`: its response type with status Ok, or an
/// ERROR whose `in_reply_to` is `request` (or 0, which rpmemd sends when no request applies, as
/// for a frame it could not decode).
///
/// A matching ERROR is a well-formed refusal, not a protocol violation, so it passes: `Ok(())`.
/// **The caller must then handle `Message::Error` itself** (report its status and text, e.g. as
/// rpmem's `Error::Refused`); `Ok(())` does not mean the request succeeded. Everything else is an
/// `Err`: another response type ([`ProtocolError::Unexpected`]), an ERROR naming another request
/// ([`ProtocolError::ReplyToOther`]), or a response carrying a failure status
/// ([`ProtocolError::NotOk`]).
pub fn check_reply(request: MsgType, reply: &Message) -> Result<(), ProtocolError> {
    let got = reply.msg_type();
    if let Message::Error { in_reply_to, .. } = *reply {
        if in_reply_to != 0 && in_reply_to != request.to_wire() {
            return Err(ProtocolError::ReplyToOther {
                request,
                in_reply_to,
            });
        }
        return Ok(());
    }
    if Some(got) != request.response() {
        return Err(ProtocolError::Unexpected {
            state: request.name(),
            got,
        });
    }
    let status = match reply {
        Message::CreateResp(r) | Message::OpenResp { resp: r, .. } => r.status,
        Message::SetAttrResp(s) | Message::CloseResp(s) | Message::RemoveResp(s) => *s,
        Message::PersistResp { status, .. } => *status,
        // HELLO_RESP with a failure status is the documented way to report a version mismatch;
        // accept_hello_resp judges it.
        _ => Status::Ok,
    };
    if status.is_ok() {
        Ok(())
    } else {
        Err(ProtocolError::NotOk { msg: got, status })
    }
}

/// rpmemd's checks on a PERSIST arriving on the endpoint of lane `endpoint_lane`: the message
/// must name that lane, DEEP needs the negotiated capability, and the range must lie inside the
/// pool. On failure rpmemd answers PERSIST_RESP with [`ProtocolError::status`] and keeps the
/// lane open: a bad range hurts no one but the sender.
pub fn check_persist(
    msg: &Message,
    endpoint_lane: u32,
    pool_size: u64,
    negotiated: Capabilities,
) -> Result<(), ProtocolError> {
    let Message::Persist {
        lane,
        deep,
        offset,
        length,
        ..
    } = *msg
    else {
        return Err(ProtocolError::Unexpected {
            state: "data lane",
            got: msg.msg_type(),
        });
    };
    if lane != endpoint_lane {
        return Err(ProtocolError::Illegal {
            field: "lane",
            value: lane.into(),
            why: "differs from the lane this endpoint connected as",
        });
    }
    if deep && !negotiated.contains(Capabilities::DEEP_PERSIST) {
        return Err(ProtocolError::Illegal {
            field: "flags",
            value: crate::msg::PERSIST_DEEP.into(),
            why: "DEEP was not negotiated (capability DEEP_PERSIST)",
        });
    }
    crate::msg::check_range(offset, length, pool_size)
}

/// rpmemd's checks on a persist described by write data ([`WriteData`]), exactly those of
/// [`check_persist`] minus the lane (the endpoint that delivered it is the lane): DEEP needs the
/// negotiated capability, and the range must lie inside the pool. On failure rpmemd answers
/// PERSIST_RESP with [`ProtocolError::status`] and keeps the lane open.
///
/// Whether write data may arrive at all (WRITE_DATA negotiated) is the caller's check: write
/// data on a session without it is malformed (docs/PROTOCOL.md §8.5) and ends the session.
pub fn check_write_data(
    wd: &WriteData,
    pool_size: u64,
    negotiated: Capabilities,
) -> Result<(), ProtocolError> {
    if wd.deep && !negotiated.contains(Capabilities::DEEP_PERSIST) {
        return Err(ProtocolError::Illegal {
            field: "write data deep bit",
            value: crate::write_data::WRITE_DATA_DEEP,
            why: "DEEP was not negotiated (capability DEEP_PERSIST)",
        });
    }
    crate::msg::check_range(wd.offset, wd.length, pool_size)
}

/// rpmemd's checks on a PERSIST_INLINE (§8.6) arriving on the endpoint of lane
/// `endpoint_lane`: the message must name that lane and every record's range must lie inside
/// the pool. On failure rpmemd answers PERSIST_RESP with [`ProtocolError::status`], stores
/// none of the records, and keeps the lane open.
///
/// Whether PERSIST_INLINE may arrive at all (INLINE_PERSIST negotiated) is the caller's check:
/// without it the message is malformed and ends the session, like write data (§8.5).
pub fn check_inline(
    msg: &crate::inline::InlineRecords<'_>,
    endpoint_lane: u32,
    pool_size: u64,
) -> Result<(), ProtocolError> {
    if msg.lane != endpoint_lane {
        return Err(ProtocolError::Illegal {
            field: "lane",
            value: msg.lane.into(),
            why: "differs from the lane this endpoint connected as",
        });
    }
    msg.iter().try_for_each(|(offset, data)| {
        crate::msg::check_range(offset, data.len() as u64, pool_size)
    })
}

impl ProtocolError {
    /// The status code that reports this error to the peer.
    pub fn status(&self) -> Status {
        match self {
            ProtocolError::Unexpected { .. }
            | ProtocolError::WrongChannel { .. }
            | ProtocolError::ReplyToOther { .. } => Status::UnexpectedMessage,
            ProtocolError::VersionUnsupported { .. } => Status::VersionMismatch,
            ProtocolError::OutOfRange { .. } => Status::OutOfRange,
            ProtocolError::BadLane { .. } => Status::BadLane,
            ProtocolError::Illegal { field: "lane", .. } => Status::BadLane,
            ProtocolError::NotOk { status, .. } => *status,
            ProtocolError::Illegal { .. } => Status::Malformed,
        }
    }
}
