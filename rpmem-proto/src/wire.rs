//! Fixed-size wire layouts: `#[repr(C)]`, alignment 1, little-endian integers, no padding.
//!
//! These structs are the byte maps of docs/PROTOCOL.md, nothing more: they carry no validation and
//! are never used on media (the pool crate has its own headers). Typed messages in [`crate::msg`]
//! are built from them after every field has been checked. The layout-freeze test
//! (`tests/layout.rs`) pins every size and offset, so a change here is always deliberate and must
//! be matched by a protocol version bump and a PROTOCOL.md edit.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Every frame starts with this 16-byte header, followed by `body_len` bytes of body.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct FrameHeader {
    /// [`crate::FRAME_MAGIC`].
    pub magic: U32,
    /// [`crate::MsgType`] value.
    pub msg_type: U16,
    /// Reserved, must be zero.
    pub flags: U16,
    /// Length of the body that follows, at most [`crate::MAX_BODY_LEN`].
    pub body_len: U32,
    /// Reserved, must be zero.
    pub reserved: U32,
}

/// HELLO body: the initiator's highest protocol version and its capabilities.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct HelloWire {
    pub magic: U32,
    pub major: U16,
    pub minor: U16,
    pub capabilities: U64,
}

/// HELLO_RESP body: the version rpmemd chose (or its own, on a mismatch) and common capabilities.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct HelloRespWire {
    pub magic: U32,
    pub major: U16,
    pub minor: U16,
    pub capabilities: U64,
    pub status: U32,
    pub reserved: U32,
}

/// Pool attributes, field for field librpmem's `struct rpmem_pool_attr` (104 bytes).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PoolAttrWire {
    pub signature: [u8; 8],
    pub major: U32,
    pub compat_features: U32,
    pub incompat_features: U32,
    pub ro_compat_features: U32,
    pub poolset_uuid: [u8; 16],
    pub uuid: [u8; 16],
    pub next_uuid: [u8; 16],
    pub prev_uuid: [u8; 16],
    pub user_flags: [u8; 16],
}

/// Fixed part shared by CREATE and OPEN (24 bytes); the descriptor string follows.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PoolRequestWire {
    pub pool_size: U64,
    pub nlanes: U32,
    pub buff_size: U32,
    pub provider: U16,
    pub persist_method: U16,
    pub reserved: U32,
}

/// Fixed part of CREATE_RESP and OPEN_RESP (88 bytes): where and how to reach the pool.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PoolRespWire {
    pub status: U32,
    pub nlanes: U32,
    pub port: U16,
    pub addr_family: U16,
    pub persist_method: U16,
    pub provider: U16,
    pub addr: [u8; 16],
    pub rkey: U64,
    pub raddr: U64,
    pub pool_size: U64,
    pub secret: [u8; 32],
}

/// SET_ATTR_RESP, CLOSE_RESP and REMOVE_RESP body (8 bytes).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct StatusWire {
    pub status: U32,
    pub reserved: U32,
}

/// CLOSE body and the fixed part of REMOVE (8 bytes).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct FlagsWire {
    pub flags: U32,
    pub reserved: U32,
}

/// Fixed part of ERROR (8 bytes); the message text follows.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct ErrorWire {
    pub in_reply_to: U16,
    pub reserved: U16,
    pub status: U32,
}

/// PERSIST body (24 bytes), sent on a data lane after the RMA write of the range.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PersistWire {
    pub lane: U32,
    pub flags: U32,
    pub offset: U64,
    pub length: U64,
}

/// PERSIST_RESP body (8 bytes).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PersistRespWire {
    pub lane: U32,
    pub status: U32,
}

/// Connection-request data of a lane endpoint (48 bytes; not framed).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct LaneConnectWire {
    pub magic: U32,
    pub major: U16,
    pub minor: U16,
    pub lane: U32,
    pub reserved: U32,
    pub secret: [u8; 32],
}

/// PERSIST_INLINE body, fixed part (protocol 1.2); records follow (docs/PROTOCOL.md §8.6).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct PersistInlineWire {
    pub lane: U32,
    pub flags: U32,
    /// Session-wide order of PERSIST_INLINE messages over all lanes, from 1.
    pub seq: U64,
}

/// One record of a PERSIST_INLINE body: `length` data bytes follow, then zero padding to a
/// multiple of 8.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
#[repr(C)]
pub struct InlineRecordWire {
    pub offset: U64,
    pub length: U32,
    pub reserved: U32,
}
