//! Layout freeze: every wire struct's size and field offsets, exactly as the byte maps of
//! docs/PROTOCOL.md state them. A failing assertion here means the wire format changed: bump
//! PROTO_MAJOR and update the document, or undo the change.

use std::mem::{align_of, offset_of, size_of};

use rpmem_proto::wire::*;
use static_assertions::const_assert_eq;

const_assert_eq!(size_of::<FrameHeader>(), 16);
const_assert_eq!(offset_of!(FrameHeader, magic), 0);
const_assert_eq!(offset_of!(FrameHeader, msg_type), 4);
const_assert_eq!(offset_of!(FrameHeader, flags), 6);
const_assert_eq!(offset_of!(FrameHeader, body_len), 8);
const_assert_eq!(offset_of!(FrameHeader, reserved), 12);

const_assert_eq!(size_of::<HelloWire>(), 16);
const_assert_eq!(offset_of!(HelloWire, magic), 0);
const_assert_eq!(offset_of!(HelloWire, major), 4);
const_assert_eq!(offset_of!(HelloWire, minor), 6);
const_assert_eq!(offset_of!(HelloWire, capabilities), 8);

const_assert_eq!(size_of::<HelloRespWire>(), 24);
const_assert_eq!(offset_of!(HelloRespWire, magic), 0);
const_assert_eq!(offset_of!(HelloRespWire, major), 4);
const_assert_eq!(offset_of!(HelloRespWire, minor), 6);
const_assert_eq!(offset_of!(HelloRespWire, capabilities), 8);
const_assert_eq!(offset_of!(HelloRespWire, status), 16);
const_assert_eq!(offset_of!(HelloRespWire, reserved), 20);

// librpmem's struct rpmem_pool_attr is 104 bytes with these offsets.
const_assert_eq!(size_of::<PoolAttrWire>(), 104);
const_assert_eq!(offset_of!(PoolAttrWire, signature), 0);
const_assert_eq!(offset_of!(PoolAttrWire, major), 8);
const_assert_eq!(offset_of!(PoolAttrWire, compat_features), 12);
const_assert_eq!(offset_of!(PoolAttrWire, incompat_features), 16);
const_assert_eq!(offset_of!(PoolAttrWire, ro_compat_features), 20);
const_assert_eq!(offset_of!(PoolAttrWire, poolset_uuid), 24);
const_assert_eq!(offset_of!(PoolAttrWire, uuid), 40);
const_assert_eq!(offset_of!(PoolAttrWire, next_uuid), 56);
const_assert_eq!(offset_of!(PoolAttrWire, prev_uuid), 72);
const_assert_eq!(offset_of!(PoolAttrWire, user_flags), 88);

const_assert_eq!(size_of::<PoolRequestWire>(), 24);
const_assert_eq!(offset_of!(PoolRequestWire, pool_size), 0);
const_assert_eq!(offset_of!(PoolRequestWire, nlanes), 8);
const_assert_eq!(offset_of!(PoolRequestWire, buff_size), 12);
const_assert_eq!(offset_of!(PoolRequestWire, provider), 16);
const_assert_eq!(offset_of!(PoolRequestWire, persist_method), 18);
const_assert_eq!(offset_of!(PoolRequestWire, reserved), 20);

const_assert_eq!(size_of::<PoolRespWire>(), 88);
const_assert_eq!(offset_of!(PoolRespWire, status), 0);
const_assert_eq!(offset_of!(PoolRespWire, nlanes), 4);
const_assert_eq!(offset_of!(PoolRespWire, port), 8);
const_assert_eq!(offset_of!(PoolRespWire, addr_family), 10);
const_assert_eq!(offset_of!(PoolRespWire, persist_method), 12);
const_assert_eq!(offset_of!(PoolRespWire, provider), 14);
const_assert_eq!(offset_of!(PoolRespWire, addr), 16);
const_assert_eq!(offset_of!(PoolRespWire, rkey), 32);
const_assert_eq!(offset_of!(PoolRespWire, raddr), 40);
const_assert_eq!(offset_of!(PoolRespWire, pool_size), 48);
const_assert_eq!(offset_of!(PoolRespWire, secret), 56);

const_assert_eq!(size_of::<StatusWire>(), 8);
const_assert_eq!(offset_of!(StatusWire, status), 0);
const_assert_eq!(offset_of!(StatusWire, reserved), 4);

const_assert_eq!(size_of::<FlagsWire>(), 8);
const_assert_eq!(offset_of!(FlagsWire, flags), 0);
const_assert_eq!(offset_of!(FlagsWire, reserved), 4);

const_assert_eq!(size_of::<ErrorWire>(), 8);
const_assert_eq!(offset_of!(ErrorWire, in_reply_to), 0);
const_assert_eq!(offset_of!(ErrorWire, reserved), 2);
const_assert_eq!(offset_of!(ErrorWire, status), 4);

const_assert_eq!(size_of::<PersistWire>(), 24);
const_assert_eq!(offset_of!(PersistWire, lane), 0);
const_assert_eq!(offset_of!(PersistWire, flags), 4);
const_assert_eq!(offset_of!(PersistWire, offset), 8);
const_assert_eq!(offset_of!(PersistWire, length), 16);

const_assert_eq!(size_of::<PersistRespWire>(), 8);
const_assert_eq!(offset_of!(PersistRespWire, lane), 0);
const_assert_eq!(offset_of!(PersistRespWire, status), 4);

const_assert_eq!(size_of::<LaneConnectWire>(), 48);
const_assert_eq!(offset_of!(LaneConnectWire, magic), 0);
const_assert_eq!(offset_of!(LaneConnectWire, major), 4);
const_assert_eq!(offset_of!(LaneConnectWire, minor), 6);
const_assert_eq!(offset_of!(LaneConnectWire, lane), 8);
const_assert_eq!(offset_of!(LaneConnectWire, reserved), 12);
const_assert_eq!(offset_of!(LaneConnectWire, secret), 16);

// Alignment 1 everywhere: the structs can be read from any offset of a receive buffer and carry
// no padding.
const_assert_eq!(align_of::<FrameHeader>(), 1);
const_assert_eq!(align_of::<PoolRespWire>(), 1);
const_assert_eq!(align_of::<PoolAttrWire>(), 1);
const_assert_eq!(align_of::<PersistWire>(), 1);

const_assert_eq!(size_of::<PersistInlineWire>(), 16);
const_assert_eq!(offset_of!(PersistInlineWire, lane), 0);
const_assert_eq!(offset_of!(PersistInlineWire, flags), 4);
const_assert_eq!(offset_of!(PersistInlineWire, seq), 8);
const_assert_eq!(size_of::<InlineRecordWire>(), 16);
const_assert_eq!(offset_of!(InlineRecordWire, offset), 0);
const_assert_eq!(offset_of!(InlineRecordWire, length), 8);
const_assert_eq!(offset_of!(InlineRecordWire, reserved), 12);
const_assert_eq!(align_of::<InlineRecordWire>(), 1);

/// PERSIST_INLINE golden bytes: one 3-byte record, padded to 8.
#[test]
fn persist_inline_frame_golden_bytes() {
    let m = rpmem_proto::Message::PersistInline {
        lane: 1,
        relaxed: false,
        seq: 0x0102,
        records: vec![rpmem_proto::InlineRecord {
            offset: 0x2000,
            data: vec![0xAA, 0xBB, 0xCC],
        }],
    };
    let bytes = rpmem_proto::encode(&m).unwrap();
    let want: Vec<u8> = [
        &b"RPMF"[..],                       // magic
        &[0x02, 0x01],                      // type PERSIST_INLINE = 0x0102
        &[0, 0],                            // flags
        &[40, 0, 0, 0],                     // body length: 16 + 16 + 8
        &[0, 0, 0, 0],                      // reserved
        &[1, 0, 0, 0],                      // lane
        &[0, 0, 0, 0],                      // flags
        &[0x02, 0x01, 0, 0, 0, 0, 0, 0],    // seq 0x0102
        &[0, 0x20, 0, 0, 0, 0, 0, 0],       // record offset
        &[3, 0, 0, 0],                      // record length
        &[0, 0, 0, 0],                      // record reserved
        &[0xAA, 0xBB, 0xCC, 0, 0, 0, 0, 0], // data + zero padding
    ]
    .concat();
    assert_eq!(bytes, want);
}

/// A golden frame pins the bytes end to end, including endianness and the magic's spelling.
#[test]
fn persist_frame_golden_bytes() {
    let m = rpmem_proto::Message::Persist {
        lane: 3,
        relaxed: true,
        deep: false,
        offset: 0x1000,
        length: 0x40,
    };
    let bytes = rpmem_proto::encode(&m).unwrap();
    let want: Vec<u8> = [
        &b"RPMF"[..],                 // magic
        &[0x01, 0x01],                // type PERSIST = 0x0101
        &[0, 0],                      // flags
        &[24, 0, 0, 0],               // body length
        &[0, 0, 0, 0],                // reserved
        &[3, 0, 0, 0],                // lane
        &[1, 0, 0, 0],                // flags: RELAXED
        &[0, 0x10, 0, 0, 0, 0, 0, 0], // offset
        &[0x40, 0, 0, 0, 0, 0, 0, 0], // length
    ]
    .concat();
    assert_eq!(bytes, want);
}

/// FNV-1a, enough to notice an edit.
fn fnv1a(data: &str) -> u64 {
    data.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The byte maps (`src/wire.rs`), the wire values (`src/types.rs`), the write-data bit map
/// (`src/write_data.rs`) and the PERSIST_INLINE rules (`src/inline.rs`) cannot change without
/// docs/PROTOCOL.md being looked at: the document records their hash. If this fails, update the
/// document for the change (and the protocol version if a byte map changed), then the hash line.
#[test]
fn protocol_doc_tracks_wire_sources() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let hash = fnv1a(include_str!("../src/wire.rs"))
        ^ fnv1a(include_str!("../src/types.rs")).rotate_left(1)
        ^ fnv1a(include_str!("../src/write_data.rs")).rotate_left(2)
        ^ fnv1a(include_str!("../src/inline.rs")).rotate_left(3);
    let line = format!("wire-sources-hash: {hash:016x}");
    assert!(
        doc.contains(&line),
        "docs/PROTOCOL.md does not record the current wire sources; review it, then set `{line}`"
    );
}
