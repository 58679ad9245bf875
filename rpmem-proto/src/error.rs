//! The two kinds of protocol failure, kept apart on purpose.
//!
//! [`DecodeError`]: the bytes are not a message of this protocol (hostile, corrupt or out of
//! sync); it names the message and the field. [`ProtocolError`]: the message decoded fine but is
//! not allowed here (wrong state, range outside the pool, unsupported version). Neither is ever a
//! panic.

use crate::types::{MsgType, Status};

/// Malformed bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad frame magic {found:#010x} (expected {expected:#010x}): the peer is not speaking the rpmem protocol, or the stream is out of sync", expected = crate::FRAME_MAGIC)]
    BadMagic { found: u32 },
    #[error("unknown message type {0:#06x}")]
    UnknownType(u16),
    #[error("frame body of {len} bytes exceeds the maximum of {max} bytes")]
    BodyTooLarge { len: u32, max: u32 },
    #[error("{msg}: truncated in field `{field}`")]
    Truncated {
        msg: &'static str,
        field: &'static str,
    },
    #[error("{msg}: {extra} unexpected trailing bytes after the last field")]
    TrailingBytes { msg: &'static str, extra: usize },
    #[error("{msg}: field `{field}` is invalid: {why}")]
    BadField {
        msg: &'static str,
        field: &'static str,
        why: String,
    },
}

impl DecodeError {
    pub(crate) fn bad(msg: &'static str, field: &'static str, why: impl Into<String>) -> Self {
        DecodeError::BadField {
            msg,
            field,
            why: why.into(),
        }
    }
}

/// A well-formed message that is illegal where it arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("{got} is not allowed in state {state}")]
    Unexpected { state: &'static str, got: MsgType },
    #[error("{got} belongs on {expected_channel}, not here")]
    WrongChannel {
        got: MsgType,
        expected_channel: &'static str,
    },
    #[error("peer speaks protocol {peer_major}.{peer_minor}, this side supports major {ours}")]
    VersionUnsupported {
        peer_major: u16,
        peer_minor: u16,
        ours: u16,
    },
    #[error("range [{offset}, +{length}) is outside the pool of {pool_size} bytes")]
    OutOfRange {
        offset: u64,
        length: u64,
        pool_size: u64,
    },
    #[error("lane {lane} is outside the {nlanes} negotiated lanes")]
    BadLane { lane: u32, nlanes: u32 },
    #[error("{msg} carries status {status} where only Ok is allowed")]
    NotOk { msg: MsgType, status: Status },
    #[error("ERROR in reply to message type {in_reply_to:#06x} while the outstanding request is {request}: the session is out of step")]
    ReplyToOther { request: MsgType, in_reply_to: u16 },
    #[error("{field} = {value} is not allowed: {why}")]
    Illegal {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
}
